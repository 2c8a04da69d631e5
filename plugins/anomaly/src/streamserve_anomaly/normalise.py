"""Preprocessing of one series: its recent window and online standardisation, causal.

For point ``t`` the window holds the raw values ``t-W .. t-1``; the window and the value ``t`` are
standardised with the running mean and variance of the points *before* ``t``
(:class:`~streamserve_anomaly.stats.EwStats`, so the detector follows slow drifts and fits series of
any level and scale), clipped to ``[-CLIP, CLIP]``, and only then is ``t`` folded into the window and
the statistics. A young series' window is padded with its first value (which standardises to 0).

:meth:`Normaliser.point` (one value, plain floats and one small array: the hot path of the point
method) and :meth:`Normaliser.chunk` (NumPy over the whole chunk) compute the same rows; the trainer
uses :meth:`Normaliser.chunk` too, so the model learns from exactly what it is served.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from streamserve_anomaly.signature import WINDOW
from streamserve_anomaly.stats import EwStats

__all__ = ["CLIP", "Normaliser"]

CLIP = 10.0
"""Standardised values are clipped to [-CLIP, CLIP]: a huge outlier still gets a huge error, but
the model is never fed values far outside what it was trained on."""

MIN_STD = 1e-6
"""Floor of the standard deviation, relative to ``max(1, |mean|)``: a flat series has none."""


@dataclass(slots=True)
class Normaliser:
    """The preprocessing state of one series: its last ``WINDOW`` values and their statistics."""

    stats: EwStats
    ring: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(2 * WINDOW))
    """The last ``WINDOW`` raw values, each written twice (at ``i`` and ``i + WINDOW``) so that the
    window in time order is always the contiguous slice ``ring[pos:pos + WINDOW]``."""
    pos: int = 0

    @classmethod
    def create(cls, halflife: float) -> Normaliser:
        return cls(EwStats.create(halflife))

    @property
    def seen(self) -> int:
        """Points preprocessed so far."""
        return self.stats.count

    def point(self, x: float) -> tuple[npt.NDArray[np.float32], float]:
        """The standardised window before ``x`` (float32[1, WINDOW]) and ``x``; then fold ``x`` in."""
        stats = self.stats
        if stats.count == 0:
            self.ring.fill(x)
            stats.mean = x
        mean = stats.mean
        inv_std = 1.0 / max(math.sqrt(stats.var), MIN_STD * max(1.0, abs(mean)))
        pos = self.pos
        # float64 (exact differences even at a large level), cast once. np.clip has a slow Python
        # wrapper; np.minimum/np.maximum are plain ufuncs.
        window = self.ring[pos : pos + WINDOW] - mean
        window *= inv_std
        np.minimum(window, CLIP, out=window)
        np.maximum(window, -CLIP, out=window)
        history = window.astype(np.float32)[np.newaxis]
        z = min(CLIP, max(-CLIP, (x - mean) * inv_std))

        self.ring[pos] = x
        self.ring[pos + WINDOW] = x
        self.pos = (pos + 1) % WINDOW
        stats.fold(x)
        return history, z

    def chunk(
        self, xs: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """:meth:`point` for every value of ``xs`` in order: float32[N, WINDOW] and float32[N]."""
        n = len(xs)
        if n == 0:
            return np.zeros((0, WINDOW), np.float32), np.zeros(0, np.float32)
        stats = self.stats
        if stats.count == 0:
            self.ring.fill(xs[0])
            stats.mean = float(xs[0])
        pos = self.pos
        extended = np.concatenate((self.ring[pos : pos + WINDOW], xs))
        means, variances = stats.fold_many(xs)
        inv_std = 1.0 / np.maximum(np.sqrt(variances), MIN_STD * np.maximum(1.0, np.abs(means)))

        # N x WINDOW values: the bulk of a chunk's preprocessing. The product is computed in float64
        # as in point() and rounded straight into the float32 result; clipping after rounding gives
        # the same numbers (rounding is monotonic and CLIP is exact in float32) at half the memory
        # traffic of clipping float64 and casting after.
        differences = sliding_window_view(extended, WINDOW)[:n] - means[:, np.newaxis]
        windows = np.multiply(differences, inv_std[:, np.newaxis],
                              out=np.empty((n, WINDOW), np.float32), casting="same_kind")
        np.minimum(windows, CLIP, out=windows)
        np.maximum(windows, -CLIP, out=windows)
        z = (xs - means) * inv_std
        np.minimum(z, CLIP, out=z)
        np.maximum(z, -CLIP, out=z)

        last = extended[-WINDOW:]
        self.ring[:WINDOW] = last
        self.ring[WINDOW:] = last
        self.pos = 0
        return windows, z.astype(np.float32)
