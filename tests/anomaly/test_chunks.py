"""The online detector's chunk path computes what its point path computes, point after point."""

from __future__ import annotations

import numpy as np
import pytest

from streamserve_anomaly.online import OnlineDetector
from streamserve_anomaly.records import RecordRange
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.shapes import MEMORY, ShapeMemory

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
    one = OnlineDetector.create(settings)
    by_point = np.array([one.point(v, t, e) for v, t, e in
                         zip(values.tolist(), timestamps.tolist(), errors.tolist(), strict=True)])
    many = OnlineDetector.create(settings)
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
    np.testing.assert_allclose(by_chunk, by_point, rtol=0, atol=1e-12)
    assert ((by_chunk >= settings.threshold) == (by_point >= settings.threshold)).all()
    # Without the prediction channel (NumPy's erfc may round differently), bitwise.
    exact = AnomalySettings(horizon_points=2400, prediction_weight=0.0)
    one, many = OnlineDetector.create(exact), OnlineDetector.create(exact)
    points = [one.point(v, t, e) for v, t, e in zip(values.tolist(), timestamps.tolist(),
                                                     errors.tolist(), strict=True)]
    assert many.chunk(values, timestamps, errors).tolist() == points


def test_record_range_and_shapes_chunk_bitwise() -> None:
    values, _, _ = series(5, seed=9)
    one, many = RecordRange.create(480), RecordRange.create(480)
    points = [one.excess(v) for v in values.tolist()]
    chunks = np.concatenate([many.chunk(part) for part in np.array_split(values, [3, 50, 777])])
    assert chunks.tolist() == points
    # Long enough for the ring of shapes to forget (more than MEMORY shapes), within one chunk too.
    values = np.concatenate([series(14, seed=s)[0] for s in (9, 10)])
    one_s, many_s = ShapeMemory.create(6000), ShapeMemory.create(6000)
    points = [one_s.point(v) for v in values.tolist()]
    parts = np.array_split(values, [5, 6, 13, 900, 7000])
    chunks = np.concatenate([many_s.chunk(part) for part in parts])
    assert one_s.stored > MEMORY + 300
    assert chunks.tolist() == points
    assert np.isfinite(chunks).sum() > MEMORY  # shapes were scored


def test_out_of_order_timestamps_in_a_chunk_still_score_as_points() -> None:
    values, timestamps, errors = series(3, seed=4)
    timestamps[100:110] = timestamps[100:110][::-1]
    settings = AnomalySettings(prediction_weight=0.0)
    one, many = OnlineDetector.create(settings), OnlineDetector.create(settings)
    points = [one.point(v, t, e) for v, t, e in zip(values.tolist(), timestamps.tolist(),
                                                     errors.tolist(), strict=True)]
    assert many.chunk(values, timestamps, errors).tolist() == points
