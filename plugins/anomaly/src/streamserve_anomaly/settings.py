"""The ``plugins.anomaly.settings`` section of the server configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streamserve_anomaly.signature import WINDOW

__all__ = ["AnomalySettings"]


class AnomalySettings(BaseModel):
    """How each series is judged and what is an anomaly (see docs/anomaly.md for the method).

    Every setting applies per series of a stream: series and streams never share statistics.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(default=0.48, ge=0.0, le=1.0)
    """A point is flagged (``is_anomaly``) when its score is at least this.

    A score ``s`` means the point lies beyond the range its series has shown lately (in its value,
    level, shape or time-of-day habit) by ``0.02 * s / (1 - s)`` of that range: 0.48 is 1.85 %. The
    default is the threshold NAB's optimiser picks on the NAB data of the repository (see
    docs/anomaly.md).
    """

    warmup_points: int = Field(default=150, ge=WINDOW + 1)
    """The first this many points of a series score 0 while the detector learns the series.

    Must exceed the model window (32). NAB does not score the first 15 % of a file (at most 750
    points); 150 lets short series be judged early.
    """

    horizon_points: int = Field(default=6000, ge=24)
    """How far back "lately" reaches: a value is compared with the range of about this many earlier
    points (three weeks of 5-minute data), so an old excursion does not hide a new one forever."""

    time_weight: float = Field(default=0.25, ge=0.0)
    """How much a departure from the series' time-of-day habit counts, relative to a departure from
    its range (0 turns the time channel off)."""

    prediction_weight: float = Field(default=0.02, ge=0.0)
    """The excess a certain prediction failure of the model counts as (its calibrated likelihood
    times this; 0 turns the prediction channel off)."""

    rest_points: int = Field(default=30, ge=0)
    """After a score of at least ``rest_score``, this many points score 0: one alarm per event.

    Short enough not to silence the next event of a short series (NAB's windows in a 1,000-point
    file are about 30 points long), long enough to silence the burst of records a shift sets."""

    rest_score: float = Field(default=0.6, ge=0.0, le=1.0)
    """The score from which an alarm silences the next ``rest_points`` points (somewhat above
    ``threshold``: a weak alarm, perhaps a false one, should not silence a strong one soon after)."""

    normalisation_halflife: float = Field(default=256.0, ge=1.0)
    """Points after which an observation weighs half in the running mean and variance that
    standardise the model's input window. The default model was trained with 256."""

    averaging_halflife: float = Field(default=4.0, ge=1.0)
    """Points after which a model error weighs half in the short-term average the prediction
    channel scores."""

    error_halflife: float = Field(default=8192.0, ge=1.0)
    """Points after which an averaged model error weighs half in the series' long-term error
    statistics."""

    max_series_per_stream: int = Field(default=10_000, ge=1)
    """How many distinct ``series_id`` one stream may carry; the next one ends the call with
    INVALID_ARGUMENT. Bounds the memory one stream can hold (about 30 kB per series)."""
