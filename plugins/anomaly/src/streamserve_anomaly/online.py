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

import numpy as np
import numpy.typing as npt

from streamserve_anomaly.calibrate import Calibrator
from streamserve_anomaly.records import RecordRange
from streamserve_anomaly.seasonal import SeasonalProfile
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.shapes import ShapeMemory
from streamserve_anomaly.stats import alpha_of, exponential_average

__all__ = ["LEVEL_HALFLIFE", "SCALE", "OnlineDetector"]

Floats = npt.NDArray[np.float64]

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
    level_beta: float
    """``1 - level_alpha``, computed once so both paths use the very same coefficient."""
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
            1.0 - alpha_of(LEVEL_HALFLIFE),
        )

    def point(self, value: float, timestamp: int, error: float) -> float:
        """The score of the series' next point: its value, timestamp and model error."""
        settings = self.settings
        level = self.level
        # In exponential_average's operation order, so that chunk() computes bitwise the same levels.
        level = value if level != level else self.level_alpha * value + self.level_beta * level
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

    def chunk(self, values: Floats, timestamps: npt.NDArray[np.int64], errors: Floats) -> Floats:
        """:meth:`point` for every point of a chunk, in order, with NumPy over the whole chunk.

        Bitwise the scores of :meth:`point` but for the ``prediction`` channel, whose likelihood
        NumPy's ``erfc`` may round differently in the last place.
        """
        settings = self.settings
        n = len(values)
        if n == 0:
            return np.zeros(0)
        a, b = self.level_alpha, self.level_beta
        if self.level != self.level:  # the series' first point is its level
            levels = np.concatenate(([values[0]], exponential_average(values[1:], a, b, values[0])))
        else:
            levels = exponential_average(values, a, b, self.level)
        self.level = float(levels[-1])
        # fmax, not maximum: a channel weighted 0 gives -inf * 0 = NaN, which point() ignores too.
        excess = self.value.chunk(values)
        excess = np.fmax(excess, self.level_record.chunk(levels))
        excess = np.fmax(excess, self.shapes.chunk(values))
        with np.errstate(invalid="ignore"):
            excess = np.fmax(excess, self.seasonal.chunk(levels, timestamps) * settings.time_weight)
        excess = np.fmax(excess, self.predictor.chunk(errors) * settings.prediction_weight)
        first = self.index
        self.index = first + n
        scores = np.zeros(n)
        positive = excess > 0.0
        scores[positive] = excess[positive] / (excess[positive] + SCALE)
        scores[: max(0, min(n, settings.warmup_points - first))] = 0.0
        quiet = self.quiet_until
        scores[: max(0, min(n, quiet - first))] = 0.0
        for alarm in np.flatnonzero(scores >= settings.rest_score).tolist():
            if first + alarm < quiet or scores[alarm] == 0.0:
                continue
            quiet = first + alarm + 1 + settings.rest_points
            scores[alarm + 1 : quiet - first] = 0.0
        self.quiet_until = quiet
        return scores
