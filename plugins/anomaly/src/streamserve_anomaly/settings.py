"""The ``plugins.anomaly.settings`` section of the server configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streamserve_anomaly.signature import WINDOW

__all__ = ["AnomalySettings"]


class AnomalySettings(BaseModel):
    """How each series is normalised, how prediction errors become scores, and what is an anomaly.

    Every setting applies per series of a stream: series and streams never share statistics.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(default=0.43, ge=0.0, le=1.0)
    """A point is flagged (``is_anomaly``) when its score is at least this.

    The score is a log-likelihood: a score ``s`` means errors as large as these would happen by
    chance with probability ``1e-30 ** s`` (0.2: one in a million; 0.43: one in 10**13). The default
    is the threshold NAB's optimiser picks for the default model on the NAB data of the repository
    (see docs/anomaly.md).
    """

    warmup_points: int = Field(default=2 * WINDOW, ge=WINDOW + 1)
    """The first this many points of a series score 0.

    A young series has no real window yet and no idea of its typical error, so any score would be
    noise. Must exceed the model window (32) so that the window has filled before scoring starts.
    """

    normalisation_halflife: float = Field(default=256.0, ge=1.0)
    """Points after which an observation weighs half in the running mean and variance.

    Values are standardised by these statistics before the model sees them, so that one model fits
    series of any level and scale and the detector follows slow drifts. The default model was trained
    with 256; values far from it feed the model windows unlike those it learned from.
    """

    averaging_halflife: float = Field(default=4.0, ge=1.0)
    """Points after which a prediction error weighs half in the short-term average that is scored.

    1 scores each error nearly alone; longer lets a run of moderate errors add up to an anomaly.
    """

    error_halflife: float = Field(default=8192.0, ge=1.0)
    """Points after which an averaged error weighs half in the series' long-term error statistics.

    Scores say how unusual the recent errors are relative to these: longer remembers more of what is
    normal for the series; shorter gets used to a new regime sooner.
    """

    range_tolerance: float = Field(default=0.02, ge=0.0)
    """A value beyond the range of all earlier values of its series by more than this fraction of
    that range scores 1 (once past the warm-up), whatever the model predicted."""

    range_warmup_points: int = Field(default=750, ge=0)
    """The range rule (``range_tolerance``) applies from this point of a series on: before, the
    series has not shown its range yet (750 is 2.6 days of 5-minute data, and NAB's longest
    probationary period)."""

    max_series_per_stream: int = Field(default=10_000, ge=1)
    """How many distinct ``series_id`` one stream may carry; the next one ends the call with
    INVALID_ARGUMENT. Bounds the memory one stream can hold (a few kB per series)."""
