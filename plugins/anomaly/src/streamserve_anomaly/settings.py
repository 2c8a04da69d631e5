"""The ``plugins.anomaly.settings`` section of the server configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streamserve_anomaly.signature import WINDOW

__all__ = ["AnomalySettings"]


class AnomalySettings(BaseModel):
    """How each stream is normalised and how prediction errors become scores.

    Every setting applies per stream: streams never share statistics.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_points: int = Field(default=2 * WINDOW, ge=WINDOW + 1)
    """The first this many points of a stream score 0.

    A young stream has no real window yet and no idea of its typical error, so any score would be
    noise. Must exceed the model window (32) so that the window has filled before scoring starts.
    """

    normalisation_halflife: float = Field(default=256.0, ge=1.0)
    """Points after which an observation weighs half in the running mean and variance.

    Values are standardised by these statistics before the model sees them, so that one model fits
    series of any level and scale and the detector follows slow drifts. Shorter adapts faster to
    level shifts but forgets them (and scores them) sooner. The default model was trained with 256;
    values far from it feed the model windows unlike those it learned from.
    """

    error_halflife: float = Field(default=128.0, ge=1.0)
    """Points after which a prediction error weighs half in the stream's typical error.

    Scores are relative to this typical error, so a noisy series needs a larger error to score high
    than a smooth one.
    """

    half_score_ratio: float = Field(default=5.0, gt=1.0)
    """The ratio of a point's error to the typical error at which its score is 0.5.

    The score rises steeply around it: at half this ratio a point scores about 0.06, at twice it
    about 0.94.
    """
