"""The anomaly plugin's pre/postprocessing: causal, independent per row, per stream and per series."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from streamserve import InvalidArgument, Outputs
from streamserve_anomaly import detector
from streamserve_anomaly._proto.anomaly_detection_pb2 import DataChunk, DataPoint
from streamserve_anomaly.normalise import CLIP
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import ERROR, HISTORY, SIGNATURE, VALUE, WINDOW
from tests.anomaly.helpers import call_model, noisy_sine, points, row, score_stream


def preprocess_all(values: list[float], settings: AnomalySettings | None = None) -> list[Any]:
    state = detector.open_state(settings or AnomalySettings())
    return [detector.preprocess_point(p, state) for p in points(values)]


def test_rows_have_the_signature_names_dtypes_and_one_row() -> None:
    (rows,) = preprocess_all([3.0])
    assert set(rows) == {spec.name for spec in SIGNATURE.inputs}
    for spec in SIGNATURE.inputs:
        assert rows[spec.name].dtype == np.dtype(spec.dtype)
        assert rows[spec.name].shape == (1, *spec.shape[1:])


def test_young_stream_is_padded_with_its_first_value() -> None:
    first, second = preprocess_all([5.0, 7.0])
    assert np.all(first[HISTORY] == 0.0) and first[VALUE][0] == 0.0
    # The padding is the first value: the whole window still equals it, the new value is above it.
    assert np.all(second[HISTORY] == second[HISTORY][0, 0])
    assert second[VALUE][0] > second[HISTORY][0, -1]


def test_window_holds_the_previous_values_oldest_first() -> None:
    values = [float(i) for i in range(3 * WINDOW)]
    rows = preprocess_all(values)
    history, value = rows[-1][HISTORY][0], rows[-1][VALUE][0]
    assert np.all(np.diff(history) > 0), "a rising ramp must stay rising, oldest first"
    assert value > history[-1]
    steps = np.diff(np.append(history, value))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-4)  # standardising is affine per point


def test_preprocessing_is_causal() -> None:
    """A point's window depends only on earlier points: changing a point changes no earlier row."""
    base = noisy_sine(200)
    changed = [*base[:150], 40.0, *base[151:]]
    rows_base, rows_changed = preprocess_all(base), preprocess_all(changed)
    for i in range(150):
        for name in (HISTORY, VALUE):
            np.testing.assert_array_equal(rows_base[i][name], rows_changed[i][name], f"row {i}")
    np.testing.assert_array_equal(rows_base[150][HISTORY], rows_changed[150][HISTORY])
    assert rows_changed[150][VALUE][0] > rows_base[150][VALUE][0] + 3.0
    assert not np.array_equal(rows_base[151][HISTORY], rows_changed[151][HISTORY])


def test_standardisation_ignores_level_and_scale() -> None:
    base = noisy_sine(300)
    shifted = [1e4 + 250.0 * v for v in base]
    for a, b in zip(preprocess_all(base), preprocess_all(shifted), strict=True):
        np.testing.assert_allclose(a[HISTORY], b[HISTORY], atol=1e-3)
        np.testing.assert_allclose(a[VALUE], b[VALUE], atol=1e-3)


def test_normalisation_adapts_to_a_level_shift() -> None:
    values = noisy_sine(400) + [10.0 + v for v in noisy_sine(2000, seed=2)]
    rows = preprocess_all(values)
    assert rows[400][VALUE][0] == CLIP  # the jump itself: far out, clipped
    settled = np.array([r[VALUE][0] for r in rows[-300:]])
    assert abs(settled.mean()) < 0.5 and 0.5 < settled.std() < 2.0


def test_flat_stream_stays_finite() -> None:
    rows = preprocess_all([2.5] * 100 + [2.5000002])
    for r in rows:
        assert np.all(np.isfinite(r[HISTORY])) and np.isfinite(r[VALUE][0])
    assert rows[-1][VALUE][0] > 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_value_is_an_invalid_argument_naming_the_field(bad: float) -> None:
    state = detector.open_state(AnomalySettings())
    detector.preprocess_point(DataPoint(value=1.0, timestamp=1), state)
    with pytest.raises(InvalidArgument) as caught:
        detector.preprocess_point(DataPoint(value=bad, timestamp=2), state)
    assert caught.value.field == "value"
    assert caught.value.reason == f"must be a finite number, got {bad}"
    assert str(caught.value).startswith("value: ")
    # The bad point left the stream as it was.
    normaliser = state.series[""].normaliser
    assert normaliser.seen == 1 and math.isfinite(normaliser.mean) and math.isfinite(normaliser.var)


def test_streams_do_not_share_state() -> None:
    a_values, b_values = noisy_sine(120, seed=3), [1000.0 + 5 * v for v in noisy_sine(120, seed=4)]
    alone_a, alone_b = preprocess_all(a_values), preprocess_all(b_values)
    state_a, state_b = detector.open_state(None), detector.open_state(None)
    for i, (pa, pb) in enumerate(zip(points(a_values), points(b_values), strict=True)):
        ra, rb = detector.preprocess_point(pa, state_a), detector.preprocess_point(pb, state_b)
        for name in (HISTORY, VALUE):
            np.testing.assert_array_equal(ra[name], alone_a[i][name])
            np.testing.assert_array_equal(rb[name], alone_b[i][name])
    assert state_a.series[""].normaliser.ring is not state_b.series[""].normaliser.ring


def test_rows_are_fresh_arrays() -> None:
    """The core may hold a row until its batch runs: later points must not overwrite it."""
    state = detector.open_state(None)
    first = detector.preprocess_point(DataPoint(value=1.0), state)
    kept = {name: array.copy() for name, array in first.items()}
    for v in range(50):
        detector.preprocess_point(DataPoint(value=float(v)), state)
    for name in kept:
        np.testing.assert_array_equal(first[name], kept[name])


def errors_row(error: float) -> Outputs:
    return Outputs({ERROR: np.array([error], np.float32), "prediction": np.array([0.0], np.float32)}, "7")


def test_scores_are_in_unit_interval_zero_in_warmup_and_echo_the_request() -> None:
    settings = AnomalySettings(warmup_points=40)
    state = detector.open_state(settings)
    rng = np.random.default_rng(0)
    errors = np.concatenate([rng.exponential(0.2, 300), [0.0, 1e-9, 1e30, 0.0]])
    replies = []
    for i, error in enumerate(errors):
        point = DataPoint(timestamp=-7 * i, series_id="pump-3", value=float(rng.normal()) * 0.01)
        state.get("pump-3")  # the preprocessor creates the series; here there is none
        reply = detector.postprocess_point(errors_row(float(error)), point, state)
        assert reply.timestamp == -7 * i and reply.series_id == "pump-3"
        assert reply.model_version == "7"
        assert 0.0 <= reply.score < 1.0
        assert reply.is_anomaly == (reply.score >= settings.threshold)
        if i < settings.warmup_points:
            assert reply.score == 0.0
        replies.append(reply)
    assert replies[300].score < 0.05  # an exact prediction is not anomalous
    assert replies[302].is_anomaly  # a prediction missed by far is, even with an ordinary value
    far = detector.postprocess_point(errors_row(0.0), DataPoint(series_id="pump-3", value=1e6), state)
    # The model's channel alone stays below rest_score, so that alarm silenced nothing after it.
    assert far.score > 0.99 and far.is_anomaly


def chunk_of(values: np.ndarray, start: int, series_id: str = "") -> DataChunk:
    return DataChunk(
        series_id=series_id, values=values.tolist(), timestamps=list(range(start, start + len(values)))
    )


def test_a_chunk_gives_the_rows_and_scores_of_its_points(loaded_model: Any) -> None:
    values = np.asarray(noisy_sine(900), dtype=np.float32)
    values[600] += 4.0
    by_point = score_stream(loaded_model, values.tolist())
    state = detector.open_state(None)
    point_state = detector.open_state(None)
    scores: list[float] = []
    flags: list[bool] = []
    start = 0
    for size in (1, 31, 1, 100, 300, 467):
        part = values[start : start + size]
        chunk = chunk_of(part, start)
        rows = detector.preprocess_chunk(chunk, state)
        point_rows = [detector.preprocess_point(p, point_state) for p in points(part.tolist())]
        for name in (HISTORY, VALUE):
            np.testing.assert_array_equal(rows[name], np.concatenate([r[name] for r in point_rows]))
        reply = detector.postprocess_chunk(Outputs(call_model(loaded_model, [rows]), "1"), chunk, state)
        assert list(reply.timestamps) == list(range(start, start + size))
        scores += reply.scores
        flags += reply.is_anomaly
        start += size
    np.testing.assert_allclose(scores, [r.score for r in by_point], atol=1e-6)
    assert flags == [r.is_anomaly for r in by_point]
    assert flags[600]


def test_chunk_with_mismatched_lengths_or_bad_values_names_the_field() -> None:
    state = detector.open_state(None)
    with pytest.raises(InvalidArgument) as caught:
        detector.preprocess_chunk(DataChunk(values=[1.0, 2.0], timestamps=[1]), state)
    assert caught.value.field == "timestamps"
    assert "has 1 entries but values has 2" in caught.value.reason
    with pytest.raises(InvalidArgument) as caught:
        detector.preprocess_chunk(DataChunk(values=[1.0, math.inf], timestamps=[1, 2]), state)
    assert caught.value.field == "values" and "entry 1" in caught.value.reason
    assert state.series == {}  # nothing was folded in


def test_series_of_one_stream_do_not_share_state(loaded_model: Any) -> None:
    """Interleaving two series on one stream scores each as if it were alone."""
    a = noisy_sine(400, seed=3)
    b = [1000.0 + 5 * v for v in noisy_sine(400, seed=4, period=23.0)]
    b[300] += 40.0
    alone_a = [r.score for r in score_stream(loaded_model, a)]
    alone_b = [r.score for r in score_stream(loaded_model, b)]
    state = detector.open_state(None)
    mixed = [
        DataPoint(value=v, timestamp=i, series_id=name)
        for i, pair in enumerate(zip(a, b, strict=True))
        for name, v in zip(("a", "b"), pair, strict=True)
    ]
    outputs = call_model(loaded_model, [detector.preprocess_point(p, state) for p in mixed])
    replies = [detector.postprocess_point(row(outputs, i), p, state) for i, p in enumerate(mixed)]
    np.testing.assert_allclose([r.score for r in replies[0::2]], alone_a, atol=1e-6)
    np.testing.assert_allclose([r.score for r in replies[1::2]], alone_b, atol=1e-6)
    assert {r.series_id for r in replies[1::2]} == {"b"}
    assert set(state.series) == {"a", "b"}


def test_a_stream_has_at_most_max_series_per_stream() -> None:
    state = detector.open_state(AnomalySettings(max_series_per_stream=2))
    for name in ("x", "y", "x"):
        detector.preprocess_point(DataPoint(value=1.0, series_id=name), state)
    with pytest.raises(InvalidArgument) as caught:
        detector.preprocess_point(DataPoint(value=1.0, series_id="z"), state)
    assert caught.value.field == "series_id" and "max_series_per_stream" in caught.value.reason


def test_settings_defaults_and_validation() -> None:
    settings = AnomalySettings()
    assert settings.warmup_points > WINDOW
    with pytest.raises(ValidationError, match="warmup_points"):
        AnomalySettings(warmup_points=WINDOW)
    with pytest.raises(ValidationError, match="normalisation_halflife"):
        AnomalySettings(normalisation_halflife=0)
    with pytest.raises(ValidationError, match="threshold"):
        AnomalySettings(threshold=1.5)
    with pytest.raises(ValidationError, match="extra_forbidden"):
        AnomalySettings.model_validate({"window": 64})


def clean_periodic(length: int, *, period: float = 50.0, seed: int = 1) -> list[float]:
    """A sine with bounded noise: after its first period it never leaves the range it has shown.

    (Gaussian noise sets a new record now and then, which can be flagged once: see docs/anomaly.md,
    known limits.)
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return (np.sin(2 * np.pi * t / period) + rng.uniform(-0.05, 0.05, length)).tolist()


def test_clean_periodic_data_raises_no_flag_after_its_first_period(loaded_model: Any) -> None:
    """A cycle longer than the warm-up sets records until it has shown its range once."""
    for seed, period in ((1, 50.0), (2, 288.0), (3, 17.0)):
        replies = score_stream(loaded_model, clean_periodic(3000, period=period, seed=seed))
        flagged = [i for i, r in enumerate(replies) if r.is_anomaly and i >= period]
        assert not flagged, (period, flagged[:10])


def test_injected_spike_is_flagged_at_once_and_only_there(loaded_model: Any) -> None:
    values = clean_periodic(1500)
    values[1000] += 3.0
    replies = score_stream(loaded_model, values)
    flagged = [i for i, r in enumerate(replies) if r.is_anomaly]
    assert flagged and flagged[0] == 1000
    assert all(1000 <= i < 1000 + 2 * WINDOW for i in flagged), flagged


def test_spike_within_the_range_is_flagged_by_the_model(loaded_model: Any) -> None:
    """A dip to the series' own minimum at the top of a wave: only the prediction error sees it."""
    values = clean_periodic(1500)
    peak = 1000 + int(np.argmax(values[1000:1050]))
    values[peak] = -0.9
    replies = score_stream(loaded_model, values)
    flagged = [i for i, r in enumerate(replies) if r.is_anomaly]
    assert flagged and flagged[0] == peak, flagged


def test_level_shift_is_flagged_where_it_happens(loaded_model: Any) -> None:
    values = clean_periodic(1200, seed=5) + [6.0 + v for v in clean_periodic(800, seed=6)]
    replies = score_stream(loaded_model, values)
    flagged = [i for i, r in enumerate(replies) if r.is_anomaly]
    assert flagged and 1200 <= flagged[0] < 1205, flagged[:5]
    assert not any(r.is_anomaly for r in replies[:1200])


def test_batched_rows_of_many_streams_score_as_each_stream_alone(loaded_model: Any) -> None:
    """The core concatenates rows of concurrent streams into one model call."""
    series = [noisy_sine(150, seed=s, period=20 + 10 * s) for s in range(3)]
    alone = [[r.score for r in score_stream(loaded_model, values)] for values in series]

    states = [detector.open_state(None) for _ in series]
    streams = [points(values) for values in series]
    together: list[list[float]] = [[] for _ in series]
    for i in range(150):
        rows = [
            detector.preprocess_point(stream[i], st) for stream, st in zip(streams, states, strict=True)
        ]
        outputs = call_model(loaded_model, rows)
        for k, (stream, st) in enumerate(zip(streams, states, strict=True)):
            together[k].append(detector.postprocess_point(row(outputs, k), stream[i], st).score)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_a_young_series_is_standardised_by_its_plain_mean_and_variance() -> None:
    """Until 1 / alpha values, every value weighs the same: no bias towards the first one."""
    from streamserve_anomaly.normalise import Normaliser

    values = np.random.default_rng(5).normal(40.0, 3.0, 200)
    normaliser = Normaliser(256.0)
    normaliser.chunk(values)
    assert normaliser.seen == 200
    assert normaliser.mean == pytest.approx(values.mean(), rel=1e-12)
    assert normaliser.var == pytest.approx(values.var(), rel=1e-9)
