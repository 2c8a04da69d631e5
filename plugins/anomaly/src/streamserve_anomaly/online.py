"""The detector of one series: channels that each ask "is this a record?", one score, one alarm per event.

Per point, in order, each channel gives an **excess** (:mod:`~streamserve_anomaly.records`): how
far the point lies beyond what the series has shown lately, in units of that range.

- ``value``: the raw value (a spike, a level never reached lately, in either direction);
- ``level``: the value smoothed over ``LEVEL_HALFLIFE`` points (a shift too small for any single
  point to stand out, sustained);
- ``shape``: the novelty of the latest stretch's shape (:mod:`~streamserve_anomaly.shapes`);
- ``time``: the level's distance from where it was at this time 1, 2 or 7 days ago
  (:mod:`~streamserve_anomaly.seasonal`), counted at ``time_weight`` of its excess (the clock's
  habits are looser than the range's);
- ``prediction``: the calibrated likelihood of the TensorFlow model's prediction error
  (:mod:`~streamserve_anomaly.calibrate`), as an excess of at most ``prediction_weight``.

The score is ``e / (e + SCALE)`` of the largest excess ``e`` (0 when nothing is beyond its range), so
scores lie in [0, 1) and order points as their excess does. After a score of at least
``rest_score``, the next ``rest_points`` points score 0: the first point of an event is the one that
matters, the rest of a burst would only repeat it. The first ``warmup_points`` points score 0 while
every channel learns the series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streamserve_anomaly.calibrate import Calibrator
from streamserve_anomaly.records import RecordRange
from streamserve_anomaly.seasonal import SeasonalProfile
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.shapes import ShapeMemory
from streamserve_anomaly.stats import alpha_of

__all__ = ["LEVEL_HALFLIFE", "SCALE", "OnlineDetector"]

LEVEL_HALFLIFE = 6.0
"""Points after which a value weighs half in the smoothed level: enough to ignore one noisy point."""

SCALE = 0.02
"""The excess that scores 0.5."""


@dataclass(slots=True)
class OnlineDetector:
    """Everything the postprocessor remembers of one series; :meth:`point` once per point."""

    settings: AnomalySettings
    value: RecordRange
    level_record: RecordRange
    shapes: ShapeMemory
    seasonal: SeasonalProfile
    predictor: Calibrator
    level_alpha: float
    level: float = math.nan
    index: int = 0
    quiet_until: int = 0
    """Points before this index score 0: the rest after an alarm."""

    @classmethod
    def create(cls, settings: AnomalySettings) -> OnlineDetector:
        horizon = settings.horizon_points
        return cls(
            settings,
            RecordRange.create(horizon),
            RecordRange.create(horizon),
            ShapeMemory.create(horizon),
            SeasonalProfile.create(horizon),
            Calibrator.create(
                error_halflife=settings.error_halflife,
                averaging_halflife=settings.averaging_halflife,
                warmup_points=settings.warmup_points,
            ),
            alpha_of(LEVEL_HALFLIFE),
        )

    def point(self, value: float, timestamp: int, error: float) -> float:
        """The score of the series' next point: its value, timestamp and model error."""
        settings = self.settings
        level = self.level
        level = value if level != level else self.level_alpha * (value - level) + level
        self.level = level
        excess = self.value.excess(value)
        found = self.level_record.excess(level)
        if found > excess:
            excess = found
        found = self.shapes.point(value)
        if found > excess:
            excess = found
        found = self.seasonal.point(level, timestamp) * settings.time_weight
        if found > excess:
            excess = found
        found = self.predictor.point(error) * settings.prediction_weight
        if found > excess:
            excess = found
        index = self.index
        self.index = index + 1
        if index < settings.warmup_points or index < self.quiet_until or excess <= 0.0:
            return 0.0
        score = excess / (excess + SCALE)
        if score >= settings.rest_score:
            self.quiet_until = index + 1 + settings.rest_points
        return score
