"""Exponentially weighted mean and variance, folded one value at a time or a whole chunk at once.

The normalisation of values (:mod:`.normalise`) keeps such statistics per series (and the online
detector's prediction channel the same recursion, compiled). A point message folds one value, a chunk message
folds many; both must give the same numbers, so both live here, side by side:

- :meth:`EwStats.fold` is plain Python floats (a point costs well under a microsecond);
- :meth:`EwStats.fold_many` runs the same recursion as two first-order IIR filters
  (:func:`scipy.signal.lfilter`, about 10 µs for 1,024 values) over the chunk.

The recursion (West's weighted update, weight ``a`` per new value, ``b = 1 - a``)::

    d    = x - mean
    mean = b * mean + a * x
    var  = (b * a) * (d * d) + b * var

is written in exactly the operation order of lfilter's inner loop (``y = b0 * x + b * y_prev``), so
the two paths agree bitwise (a test checks it). While a series is young the weight is ``1 / n``
instead of ``a`` (a plain average, no bias towards the first value); that changes the coefficients
every step, which lfilter cannot do, so those first ``1 / a`` values (a few hundred, once per series)
go through :meth:`fold` in a loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

__all__ = ["EwStats", "alpha_of"]

Floats = npt.NDArray[np.float64]


def alpha_of(halflife: float) -> float:
    """The per-value weight of an exponential average whose weights halve every ``halflife``."""
    return 1.0 - 0.5 ** (1.0 / halflife)


def _exponential_average(xs: Floats, alpha: float, beta: float, previous: float) -> Floats:
    """``y = alpha * x + beta * y_prev`` over ``xs``, from ``y_prev = previous``: every ``y``.

    The chunk form of an exponential average that a point path folds as ``alpha * x + beta * y``
    (in that operation order, which is lfilter's: both give bitwise the same numbers).
    """
    return lfilter([alpha], [1.0, -beta], xs, zi=[beta * previous])[0]


@dataclass(slots=True)
class EwStats:
    """The running mean and variance of one sequence; :meth:`create` one per series."""

    alpha: float
    beta: float
    """``1 - alpha``, computed once so both paths use the very same coefficient."""
    young: int
    """The first this many values are weighted ``1 / n`` (which is at least ``alpha``)."""
    count: int = 0
    mean: float = 0.0
    var: float = 0.0

    @classmethod
    def create(cls, halflife: float) -> EwStats:
        alpha = alpha_of(halflife)
        return cls(alpha=alpha, beta=1.0 - alpha, young=math.floor(1.0 / alpha))

    def fold(self, x: float) -> None:
        """Fold one value in."""
        count = self.count + 1
        self.count = count
        if count <= self.young:
            a = 1.0 / count
            b = 1.0 - a
        else:
            a, b = self.alpha, self.beta
        d = x - self.mean
        self.mean = a * x + b * self.mean
        self.var = (b * a) * (d * d) + b * self.var

    def fold_many(self, xs: Floats) -> tuple[Floats, Floats]:
        """Fold ``xs`` in, in order; returns the mean and variance *before* each value.

        The statistics before value ``i`` are those of values ``..i-1``: what a causal detector may
        use to judge value ``i``.
        """
        n = len(xs)
        means = np.empty(n)
        variances = np.empty(n)
        i = 0
        if self.count < self.young:
            young = xs[: self.young - self.count].tolist()
            for i, x in enumerate(young):
                means[i] = self.mean
                variances[i] = self.var
                self.fold(x)
            i = len(young)
        if i < n:
            rest = xs[i:]
            b = self.beta
            after = _exponential_average(rest, self.alpha, b, self.mean)
            means[i] = self.mean
            means[i + 1 :] = after[:-1]
            d = rest - means[i:]
            var_after = lfilter([1.0], [1.0, -b], (b * self.alpha) * (d * d), zi=[b * self.var])[0]
            variances[i] = self.var
            variances[i + 1 :] = var_after[:-1]
            self.mean = float(after[-1])
            self.var = float(var_after[-1])
            self.count += n - i
        return means, variances
