"""Postprocessing of one series: raw model errors become a calibrated anomaly score in [0, 1].

A raw error means little on its own: a noisy series always has large ones. Like Numenta's anomaly
likelihood, the score asks how unusual the *recent* errors are given the series' own history of
errors:

1. ``avg``: a short exponential average of the errors (``averaging_halflife``), so that a burst of
   moderate errors counts, and one lucky prediction does not reset it.
2. The long-term mean and variance of ``avg`` (``error_halflife``), of the points *before* this one.
3. ``z = (avg - mean) / std``; the likelihood that ``avg`` is normal is the upper tail
   ``q = Q(z)`` of the normal distribution, and the score is ``log(q + 1e-30) / log(1e-30)``: 0 for
   an ordinary error, 0.2 at ``q = 1e-6`` (z about 4.8), 0.5 at ``q = 1e-15`` (z about 8), 1 at
   ``q <= 1e-30``. The log scale spreads the scores of rare events (which all have a likelihood near
   1) over [0, 1], so a threshold can tell them apart.

This is the ``prediction`` channel of the detector (:mod:`~streamserve_anomaly.online`).
The first ``WINDOW`` points of a series have a padded window, so their errors are ignored; points
before ``warmup_points`` score 0 (there is no history of errors to judge them by yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import erfc

from streamserve_anomaly.signature import WINDOW
from streamserve_anomaly.stats import EwStats, alpha_of, exponential_average

__all__ = ["Calibrator", "score_of_z"]

LIKELIHOOD_FLOOR = 1e-30
"""The likelihood that scores 1: anything this unlikely is as anomalous as it gets."""
_SQRT2 = math.sqrt(2.0)

MIN_ERROR_STD = 1e-3
"""Floor of the spread of averaged errors (in standard deviations of the series): a series that is
predicted perfectly would otherwise make any rounding error an anomaly."""

REL_ERROR_STD = 0.1
"""Floor of that spread relative to the mean averaged error: errors are never assumed more regular
than this."""


def score_of_z(z: float) -> float:
    """The score of one standardised averaged error (plain floats: the point path)."""
    q = 0.5 * math.erfc(z / _SQRT2)
    return min(1.0, max(0.0, math.log(q + LIKELIHOOD_FLOOR) / math.log(LIKELIHOOD_FLOOR)))


def _scores_of_z(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    q = 0.5 * erfc(z / _SQRT2)
    score = np.log(q + LIKELIHOOD_FLOOR) / math.log(LIKELIHOOD_FLOOR)
    np.minimum(score, 1.0, out=score)
    np.maximum(score, 0.0, out=score)
    return score


@dataclass(slots=True)
class Calibrator:
    """The postprocessing state of one series."""

    stats: EwStats
    """Long-term statistics of the averaged error."""
    avg_alpha: float
    avg_beta: float
    warmup_points: int
    scored: int = 0
    """Points postprocessed so far (kept apart from the preprocessing count: the core may
    preprocess a stream's next message before this one is postprocessed)."""
    avg: float = 0.0

    @classmethod
    def create(
        cls,
        *,
        error_halflife: float,
        averaging_halflife: float,
        warmup_points: int,
    ) -> Calibrator:
        alpha = alpha_of(averaging_halflife)
        return cls(
            EwStats.create(error_halflife),
            alpha,
            1.0 - alpha,
            warmup_points,
        )

    def point(self, error: float) -> float:
        """The score of the next point of the series' model ``error``."""
        index = self.scored
        self.scored = index + 1
        if index < WINDOW:
            return 0.0  # the window is still padded: the error says more about the padding
        if index == WINDOW:
            self.avg = error
        avg = self.avg_alpha * error + self.avg_beta * self.avg
        self.avg = avg
        stats = self.stats
        score = 0.0
        if index >= self.warmup_points:
            mean = stats.mean
            std = max(math.sqrt(stats.var), REL_ERROR_STD * mean, MIN_ERROR_STD)
            score = score_of_z((avg - mean) / std)
        stats.fold(avg)
        return score

    def chunk(self, errors: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """:meth:`point` for every error of a chunk, in order (the same recursions as IIR filters)."""
        n = len(errors)
        scores = np.zeros(n)
        skip = min(n, max(0, WINDOW - self.scored))
        first = self.scored + skip  # the series index of errors[skip]
        self.scored += n
        if skip == n:
            return scores
        rest = errors[skip:]
        if first == WINDOW:
            self.avg = float(rest[0])
        avgs = exponential_average(rest, self.avg_alpha, self.avg_beta, self.avg)
        self.avg = float(avgs[-1])
        means, variances = self.stats.fold_many(avgs)
        start = max(0, self.warmup_points - first)
        if start < len(rest):
            m = means[start:]
            std = np.maximum(np.maximum(np.sqrt(variances[start:]), REL_ERROR_STD * m), MIN_ERROR_STD)
            scores[skip + start :] = _scores_of_z((avgs[start:] - m) / std)
        return scores
