"""The online detector's chunk path computes what its point path computes, point after point."""

from __future__ import annotations

import numpy as np
import pytest

from streamserve_anomaly.online import MEMORY, OnlineDetector
from streamserve_anomaly.settings import AnomalySettings

DAY_POINTS = 288


def series(days: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five-minute data: a daily and weekly rhythm, noise, a spike, a shift and a flat stretch."""
    rng = np.random.default_rng(seed)
    n = days * DAY_POINTS
    t = np.arange(n)
    values = (np.sin(2 * np.pi * t / DAY_POINTS) + 0.3 * (t // DAY_POINTS % 7 >= 5)
              + rng.normal(0, 0.05, n))
    values[n // 2] += 4.0
    values[2 * n // 3 :] += 1.5
    values[n // 3 : n // 3 + 40] = values[n // 3]
    values = values.astype(np.float32).astype(np.float64)  # what the wire carries
    timestamps = 1_700_006_400 + 300 * t
    errors = np.abs(rng.normal(0, 0.1, n)).astype(np.float32).astype(np.float64)
    return values, timestamps.astype(np.int64), errors


@pytest.mark.parametrize("sizes", [(1,), (7, 1, 300), (1024,), (5000,)])
def test_chunks_of_any_size_score_as_points(sizes: tuple[int, ...]) -> None:
    values, timestamps, errors = series(12, seed=len(sizes))
    settings = AnomalySettings(horizon_points=2400)  # several forgotten blocks in 12 days
    one = OnlineDetector(settings)
    by_point = np.array([one.point(v, t, e) for v, t, e in
                         zip(values.tolist(), timestamps.tolist(), errors.tolist(), strict=True)])
    many = OnlineDetector(settings)
    got = []
    start, k = 0, 0
    while start < len(values):
        size = sizes[k % len(sizes)]
        got.append(many.chunk(values[start:start + size], timestamps[start:start + size],
                              errors[start:start + size]))
        start += size
        k += 1
    by_chunk = np.concatenate(got)
    assert (by_point >= settings.threshold).sum() >= 3  # the test data raises alarms
    assert by_chunk.tolist() == by_point.tolist()  # one compiled step: bitwise the same


def test_a_chunk_longer_than_the_shape_memory_scores_as_points() -> None:
    """The ring of shapes forgets within one chunk as it does point by point."""
    values = np.concatenate([series(14, seed=s)[0] for s in (9, 10)])
    timestamps = 1_700_006_400 + 300 * np.arange(len(values), dtype=np.int64)
    errors = np.zeros(len(values))
    one, many = OnlineDetector(AnomalySettings()), OnlineDetector(AnomalySettings())
    points = [one.point(v, t, 0.0) for v, t in zip(values.tolist(), timestamps.tolist(), strict=True)]
    parts = np.array_split(np.arange(len(values)), [5, 6, 13, 900, 7000])
    chunks = np.concatenate([many.chunk(values[p], timestamps[p], errors[p]) for p in parts])
    assert one.shapes_stored > MEMORY + 300 and many.shapes_stored == one.shapes_stored
    assert chunks.tolist() == points
    assert (one.shapes == many.shapes).all() and (one.state == many.state).all()


def test_out_of_order_timestamps_in_a_chunk_still_score_as_points() -> None:
    values, timestamps, errors = series(3, seed=4)
    timestamps[100:110] = timestamps[100:110][::-1]
    settings = AnomalySettings(prediction_weight=0.0)
    one, many = OnlineDetector(settings), OnlineDetector(settings)
    points = [one.point(v, t, e) for v, t, e in zip(values.tolist(), timestamps.tolist(),
                                                     errors.tolist(), strict=True)]
    assert many.chunk(values, timestamps, errors).tolist() == points
