"""The anomaly plugin's pre/postprocessing: causal, independent per row and per stream."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from streamserve import InvalidArgument
from streamserve_anomaly import detector
from streamserve_anomaly._proto.anomaly_detection_pb2 import DataPoint
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import ERROR, HISTORY, SIGNATURE, VALUE, WINDOW
from tests.anomaly.helpers import call_model, noisy_sine, points, row, score_stream


def preprocess_all(values: list[float], settings: AnomalySettings | None = None) -> list[Any]:
    state = detector.open_state(settings or AnomalySettings())
    return [detector.preprocess(p, state) for p in points(values)]


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
    assert rows[400][VALUE][0] == detector.CLIP  # the jump itself: far out, clipped
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
    detector.preprocess(DataPoint(value=1.0, timestamp=1), state)
    with pytest.raises(InvalidArgument) as caught:
        detector.preprocess(DataPoint(value=bad, timestamp=2), state)
    assert caught.value.field == "value"
    assert caught.value.reason == f"must be a finite number, got {bad}"
    assert str(caught.value).startswith("value: ")
    # The bad point left the stream as it was.
    assert state.seen == 1 and math.isfinite(state.mean) and math.isfinite(state.var)


def test_streams_do_not_share_state() -> None:
    a_values, b_values = noisy_sine(120, seed=3), [1000.0 + 5 * v for v in noisy_sine(120, seed=4)]
    alone_a, alone_b = preprocess_all(a_values), preprocess_all(b_values)
    state_a, state_b = detector.open_state(None), detector.open_state(None)
    for i, (pa, pb) in enumerate(zip(points(a_values), points(b_values), strict=True)):
        ra, rb = detector.preprocess(pa, state_a), detector.preprocess(pb, state_b)
        for name in (HISTORY, VALUE):
            np.testing.assert_array_equal(ra[name], alone_a[i][name])
            np.testing.assert_array_equal(rb[name], alone_b[i][name])
    assert state_a.ring is not state_b.ring


def test_rows_are_fresh_arrays() -> None:
    """The core may hold a row until its batch runs: later points must not overwrite it."""
    state = detector.open_state(None)
    first = detector.preprocess(DataPoint(value=1.0), state)
    kept = {name: array.copy() for name, array in first.items()}
    for v in range(50):
        detector.preprocess(DataPoint(value=float(v)), state)
    for name in kept:
        np.testing.assert_array_equal(first[name], kept[name])


def errors_row(error: float) -> dict[str, Any]:
    return {ERROR: np.array([error], np.float32), "prediction": np.array([0.0], np.float32)}


def test_scores_are_in_unit_interval_zero_in_warmup_and_echo_the_timestamp() -> None:
    settings = AnomalySettings(warmup_points=40)
    state = detector.open_state(settings)
    rng = np.random.default_rng(0)
    errors = np.concatenate([rng.exponential(0.2, 300), [0.0, 1e-9, 5.0, 50.0, 1e30, 0.0]])
    for i, error in enumerate(errors):
        reply = detector.postprocess(errors_row(float(error)), DataPoint(timestamp=-7 * i), state)
        assert reply.timestamp == -7 * i
        assert 0.0 <= reply.score <= 1.0
        if i < settings.warmup_points:
            assert reply.score == 0.0
    assert reply.score == 0.0  # an exact prediction is not anomalous
    assert detector.postprocess(errors_row(1e30), DataPoint(), state).score == 1.0


def test_score_is_relative_to_the_streams_typical_error() -> None:
    def last_score(typical: float, error: float) -> float:
        state = detector.open_state(AnomalySettings())
        for _ in range(200):
            detector.postprocess(errors_row(typical), DataPoint(), state)
        return detector.postprocess(errors_row(error), DataPoint(), state).score

    half = AnomalySettings().half_score_ratio
    assert last_score(0.1, 0.1) < 0.01
    assert last_score(0.1, 0.1 * half) == pytest.approx(0.5, abs=0.01)
    assert last_score(0.1, 0.1 * 2 * half) > 0.9
    assert last_score(1.0, 0.4) < last_score(0.1, 0.4)  # the same error in a noisier stream


def test_settings_defaults_and_validation() -> None:
    settings = AnomalySettings()
    assert settings.warmup_points > WINDOW
    with pytest.raises(ValidationError, match="warmup_points"):
        AnomalySettings(warmup_points=WINDOW)
    with pytest.raises(ValidationError, match="normalisation_halflife"):
        AnomalySettings(normalisation_halflife=0)
    with pytest.raises(ValidationError, match="half_score_ratio"):
        AnomalySettings(half_score_ratio=1.0)
    with pytest.raises(ValidationError, match="extra_forbidden"):
        AnomalySettings.model_validate({"window": 64})


def test_spike_in_a_sine_scores_clearly_above_its_neighbours(loaded_model: Any) -> None:
    values = noisy_sine(400)
    values[300] += 3.0
    scores = [reply.score for reply in score_stream(loaded_model, values)]
    before = max(scores[AnomalySettings().warmup_points : 300])
    assert scores[300] > 0.95
    assert before < 0.6 and scores[300] - before > 0.4
    assert max(scores[300 + WINDOW + 8 :]) < 0.6  # once the spike has left the window


def test_batched_rows_of_many_streams_score_as_each_stream_alone(loaded_model: Any) -> None:
    """The core concatenates rows of concurrent streams into one model call."""
    series = [noisy_sine(150, seed=s, period=20 + 10 * s) for s in range(3)]
    alone = [[r.score for r in score_stream(loaded_model, values)] for values in series]

    states = [detector.open_state(None) for _ in series]
    streams = [points(values) for values in series]
    together: list[list[float]] = [[] for _ in series]
    for i in range(150):
        rows = [
            detector.preprocess(stream[i], st) for stream, st in zip(streams, states, strict=True)
        ]
        outputs = call_model(loaded_model, rows)
        for k, (stream, st) in enumerate(zip(streams, states, strict=True)):
            together[k].append(detector.postprocess(row(outputs, k), stream[i], st).score)
    np.testing.assert_allclose(together, alone, atol=1e-5)
