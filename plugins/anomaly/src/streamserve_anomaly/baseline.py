"""The windowed-Gaussian baseline detector of NAB, causal, computed locally (no model, no server).

Each point is judged against a Gaussian fitted to the ``window`` points before it (NAB tuned 1,000):
its score is a monotone map of ``|z|``, the distance from that window's mean in standard deviations,
to [0, 1): ``|z| / (1 + |z|)``. NAB's detector reports the Gaussian tail probability of ``|z|``
instead; both rank points the same way, and NAB's scoring only compares scores with a threshold
optimised over the corpus, so both score the same on it. The map avoids the tail probability's
rounding to exactly 0 (ties) for large ``|z|``. The first point scores 0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["WINDOW", "windowed_gaussian"]

WINDOW = 1000
"""The window NAB tuned for this detector."""


def windowed_gaussian(values: npt.NDArray[np.float64], window: int = WINDOW) -> npt.NDArray[np.float64]:
    """The baseline score of every point of a series, each from the points before it only."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    scores = np.zeros(n)
    if n < 2:
        return scores
    shifted = x - x[0]  # sums of squares stay exact-ish at any level
    s1 = np.concatenate(([0.0], np.cumsum(shifted)))
    s2 = np.concatenate(([0.0], np.cumsum(shifted * shifted)))
    end = np.arange(1, n)  # judging point i uses points [max(0, i - window), i)
    start = np.maximum(0, end - window)
    count = end - start
    mean = (s1[end] - s1[start]) / count
    var = np.maximum((s2[end] - s2[start]) / count - mean * mean, 0.0)
    std = np.sqrt(var)
    std[std == 0.0] = 1e-6
    z = np.abs(shifted[1:] - mean) / std
    scores[1:] = z / (1.0 + z)
    return scores
