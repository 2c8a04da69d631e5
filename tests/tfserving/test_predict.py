"""Predict through TF Serving's own client: the answers are the SavedModel's own."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.tfserving.conftest import LINEAR, STRINGS, TIMEOUT

RNG = np.random.default_rng(0)


def request(model: str, *outputs: str, **inputs: Any) -> predict_pb2.PredictRequest:
    message = predict_pb2.PredictRequest(output_filter=outputs)
    message.model_spec.name = model
    for name, value in inputs.items():
        message.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return message


async def test_predict_equals_calling_the_savedmodel(stub: Any, linear_model: Any) -> None:
    x = RNG.normal(size=(5, 3)).astype(np.float32)
    n = np.arange(5, dtype=np.int64) - 2
    response = await stub.Predict(request(LINEAR, x=x, n=n), timeout=TIMEOUT)

    expected = linear_model.signatures["serving_default"](x=tf.constant(x), n=tf.constant(n))
    assert sorted(response.outputs) == ["doubled", "score"]
    for name in ("score", "doubled"):
        got = tf.make_ndarray(response.outputs[name])
        assert got.dtype == expected[name].dtype.as_numpy_dtype
        np.testing.assert_allclose(got, expected[name].numpy(), rtol=1e-6)
    assert response.outputs["score"].tensor_content, "numbers travel as tensor_content, as TF Serving's"
    assert response.model_spec.name == LINEAR
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


async def test_one_row_and_explicit_version_and_signature(stub: Any, linear_model: Any) -> None:
    message = request(LINEAR, x=np.array([[1.0, 2.0, 3.0]], np.float32), n=np.array([7], np.int64))
    message.model_spec.version.value = 1
    message.model_spec.signature_name = "serving_default"
    response = await stub.Predict(message, timeout=TIMEOUT)
    # 1 - 4 + 1.5 + 7
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["score"]), [5.5])
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["doubled"]), [14])


async def test_output_filter_returns_only_those_outputs(stub: Any) -> None:
    message = request(LINEAR, "doubled", x=np.zeros((2, 3), np.float32), n=np.array([1, 2], np.int64))
    response = await stub.Predict(message, timeout=TIMEOUT)
    assert list(response.outputs) == ["doubled"]
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["doubled"]), [2, 4])


async def test_typed_value_fields_and_a_value_filling_its_shape(stub: Any) -> None:
    """Clients that fill float_val / int64_val instead of tensor_content; a single value with a bigger
    shape fills it (TensorFlow's rule)."""
    message = request(LINEAR)
    x = message.inputs["x"]
    x.dtype = tf.float32.as_datatype_enum
    x.tensor_shape.dim.add(size=2)
    x.tensor_shape.dim.add(size=3)
    x.float_val.append(2.0)  # all six values are 2.0
    n = message.inputs["n"]
    n.dtype = tf.int64.as_datatype_enum
    n.tensor_shape.dim.add(size=2)
    n.int64_val.extend([10, 20])
    response = await stub.Predict(message, timeout=TIMEOUT)
    # 2 - 4 + 1 + n
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["score"]), [9.0, 19.0])


async def test_strings_in_and_out(stub: Any) -> None:
    words = np.array([b"tf", b"serving", "caf\u00e9".encode()], dtype=object)
    response = await stub.Predict(request(STRINGS, words=words), timeout=TIMEOUT)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["length"]), [2, 7, 5])
    assert list(tf.make_ndarray(response.outputs["upper"])) == [b"TF", b"SERVING", "CAF\u00e9".encode()]
    assert response.outputs["upper"].dtype == tf.string.as_datatype_enum


async def test_concurrent_requests_each_get_their_own_rows(stub: Any) -> None:
    """Requests of many calls are batched into one model call: each must get back its own rows."""
    import asyncio

    async def one(k: int) -> None:
        message = request(LINEAR, "doubled", x=np.zeros((k, 3), np.float32), n=np.full(k, k, np.int64))
        response = await stub.Predict(message, timeout=TIMEOUT)
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs["doubled"]), np.full(k, 2 * k))

    await asyncio.gather(*(one(k) for k in range(1, 21)))


async def test_zero_rows_get_the_empty_outputs_the_savedmodel_gives(stub: Any, linear_model: Any) -> None:
    x, n = np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
    response = await stub.Predict(request(LINEAR, x=x, n=n), timeout=TIMEOUT)
    expected = linear_model.signatures["serving_default"](x=tf.constant(x), n=tf.constant(n))
    assert sorted(response.outputs) == sorted(expected)
    for name, value in expected.items():
        got = tf.make_ndarray(response.outputs[name])
        assert (got.dtype, got.shape) == (value.dtype.as_numpy_dtype, tuple(value.shape)), name
    assert response.model_spec.version.value == 1

    words = request(STRINGS, "upper", words=np.zeros(0, dtype=object))
    upper = (await stub.Predict(words, timeout=TIMEOUT)).outputs
    assert list(upper) == ["upper"]
    assert upper["upper"].dtype == tf.string.as_datatype_enum
    assert tf.make_ndarray(upper["upper"]).shape == (0,)
