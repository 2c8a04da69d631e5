"""The windowed-Gaussian baseline detector of NAB, causal, computed locally (no model, no server).

As NAB's ``windowedGaussian`` detector does: each point is judged against the mean and (population)
standard deviation of a window of earlier points. The window grows with the series up to ``WINDOW``
(6,400, the size NAB tuned) points; after that it moves forward ``STEP`` (100) points at a time, so
point ``i`` sees ``x[100k : 6400 + 100k]`` with ``k = (i - 6400) // 100``. Its score is a monotone map
of ``|z|``, the distance from that mean in standard deviations, to [0, 1): ``|z| / (1 + |z|)``.
NAB's detector reports ``1 - Q(|z|)`` (the Gaussian tail) instead; both rank points the same way,
and NAB's scoring only compares scores with a threshold optimised over the corpus, so both score the
same on it, except that the tail rounds to exactly 1 for large ``|z|`` (ties) where this map does
not. The first point scores 0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["WINDOW", "windowed_gaussian"]

WINDOW = 6400
"""The window NAB tuned for this detector."""
STEP = 100
"""Once full, NAB's window moves this many points at a time."""


def windowed_gaussian(
    values: npt.NDArray[np.float64], window: int = WINDOW, step: int = STEP
) -> npt.NDArray[np.float64]:
    """The baseline score of every point of a series, each from the points before it only."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    scores = np.zeros(n)
    if n < 2:
        return scores
    shifted = x - x[0]  # sums of squares stay exact-ish at any level
    s1 = np.concatenate(([0.0], np.cumsum(shifted)))
    s2 = np.concatenate(([0.0], np.cumsum(shifted * shifted)))
    point = np.arange(1, n)
    moves = np.maximum(0, point - window) // step  # how far the full window has moved
    start = moves * step
    end = np.minimum(point, window) + start  # growing: [0, i); full: [100k, 6400 + 100k)
    count = end - start
    mean = (s1[end] - s1[start]) / count
    var = np.maximum((s2[end] - s2[start]) / count - mean * mean, 0.0)
    std = np.sqrt(var)
    std[std == 0.0] = 1e-6
    z = np.abs(shifted[1:] - mean) / std
    scores[1:] = z / (1.0 + z)
    return scores
