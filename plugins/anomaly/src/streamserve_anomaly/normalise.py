"""Preprocessing of one series: its recent window and online standardisation, causal.

For point ``t`` the window holds the raw values ``t-W .. t-1``; the window and the value ``t`` are
standardised with the running mean and variance of the points *before* ``t`` (exponentially
weighted, a plain average while the series is young: the detector follows slow drifts and fits
series of any level and scale), clipped to ``[-CLIP, CLIP]``, and only then is ``t`` folded into the
window and the statistics. A young series' window is padded with its first value (which
standardises to 0).

:meth:`Normaliser.point` and :meth:`Normaliser.chunk` run one compiled loop (Numba, as the online
detector; :func:`_row`), so they compute the same rows; the trainer uses :meth:`Normaliser.chunk`
too, so the model learns from exactly what it is served.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from streamserve_anomaly.jit import compiled, compiled_loop
from streamserve_anomaly.signature import WINDOW
from streamserve_anomaly.stats import alpha_of

__all__ = ["CLIP", "Normaliser"]

Floats = npt.NDArray[np.float64]

CLIP = 10.0
"""Standardised values are clipped to [-CLIP, CLIP]: a huge outlier still gets a huge error, but
the model is never fed values far outside what it was trained on."""

MIN_STD = 1e-6
"""Floor of the standard deviation, relative to ``max(1, |mean|)``: a flat series has none."""

# The state vector: the weight of a new value once the series is no longer young, how many values
# are young (weighted 1 / n), values seen, their mean and variance, and where the window starts in
# the ring.
_ALPHA, _YOUNG, _COUNT, _MEAN, _VAR, _POS = range(6)


@compiled
def _row(state: Floats, ring: Floats, x: float, windows: npt.NDArray[np.float32], i: int) -> float:
    """The standardised window before ``x`` (into ``windows[i]``) and ``x``; then fold ``x`` in."""
    if state[_COUNT] == 0.0:
        ring[:] = x
        state[_MEAN] = x
    mean, var = state[_MEAN], state[_VAR]
    inv_std = 1.0 / max(math.sqrt(var), MIN_STD * max(1.0, abs(mean)))
    pos = int(state[_POS])
    for k in range(WINDOW):  # float64 (exact differences even at a large level), then rounded
        windows[i, k] = min(CLIP, max(-CLIP, (ring[pos + k] - mean) * inv_std))
    ring[pos] = x
    ring[pos + WINDOW] = x
    state[_POS] = (pos + 1) % WINDOW
    count = state[_COUNT] + 1.0
    state[_COUNT] = count
    a = 1.0 / count if count <= state[_YOUNG] else state[_ALPHA]
    d = x - mean
    state[_MEAN] = a * x + (1.0 - a) * mean
    state[_VAR] = ((1.0 - a) * a) * (d * d) + (1.0 - a) * var
    return min(CLIP, max(-CLIP, (x - mean) * inv_std))


@compiled_loop
def _rows(state: Floats, ring: Floats, xs: Floats, windows: npt.NDArray[np.float32],
          zs: npt.NDArray[np.float32]) -> None:
    """:func:`_row` for each ``x`` of ``xs``, in order."""
    for i in range(len(xs)):
        zs[i] = _row(state, ring, xs[i], windows, i)


class Normaliser:
    """The preprocessing state of one series: its last ``WINDOW`` values and their statistics."""

    __slots__ = ("ring", "state")

    def __init__(self, halflife: float) -> None:
        alpha = alpha_of(halflife)
        self.state = np.array([alpha, math.floor(1.0 / alpha), 0.0, 0.0, 0.0, 0.0])
        self.ring = np.zeros(2 * WINDOW)
        """The last ``WINDOW`` raw values, each written twice (at ``i`` and ``i + WINDOW``) so
        that the window in time order is always the contiguous slice ``ring[pos:pos + WINDOW]``."""

    @property
    def seen(self) -> int:
        """Points preprocessed so far."""
        return int(self.state[_COUNT])

    @property
    def mean(self) -> float:
        return float(self.state[_MEAN])

    @property
    def var(self) -> float:
        return float(self.state[_VAR])

    def point(self, x: float) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The standardised window before ``x`` (float32[1, WINDOW]) and ``x`` (float32[1]); then
        fold ``x`` in."""
        windows = np.empty((1, WINDOW), dtype=np.float32)
        z = _row(self.state, self.ring, x, windows, 0)
        return windows, np.array((z,), dtype=np.float32)

    def chunk(self, xs: Floats) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """:meth:`point` for every value of ``xs`` in order: float32[N, WINDOW] and float32[N]."""
        n = len(xs)
        windows = np.empty((n, WINDOW), dtype=np.float32)
        z = np.empty(n, dtype=np.float32)
        _rows(self.state, self.ring, np.ascontiguousarray(xs, dtype=np.float64), windows, z)
        return windows, z


# Load (or compile, once after an install) the compiled code now, so that a server has it before it
# reports ready rather than on the first point a client sends (see online.py).
Normaliser(1.0).point(0.0)
Normaliser(1.0).chunk(np.zeros(1))
