"""Bad requests end with TF Serving's status codes, and say what is wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from streamserve.config import parse_config
from streamserve.serving import Server
from streamserve.testing import serve_in_process
from streamserve_tfserving import plugin
from tests.tfserving.conftest import LINEAR, TIMEOUT, rpc_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND

X = np.zeros((2, 3), np.float32)
N = np.array([1, 2], np.int64)


def good() -> predict_pb2.PredictRequest:
    message = predict_pb2.PredictRequest()
    message.model_spec.name = LINEAR
    message.inputs["x"].CopyFrom(tf.make_tensor_proto(X))
    message.inputs["n"].CopyFrom(tf.make_tensor_proto(N))
    return message


def changed(change: Callable[[predict_pb2.PredictRequest], object]) -> predict_pb2.PredictRequest:
    message = good()
    change(message)
    return message


def short_content(message: predict_pb2.PredictRequest) -> None:
    message.inputs["x"].tensor_content = message.inputs["x"].tensor_content[:-4]


def too_many_values() -> Any:
    tensor = tf.make_tensor_proto(np.array([1], np.int64))  # one value: in int64_val
    tensor.tensor_shape.dim[0].size = 2
    tensor.int64_val.extend([2, 3])
    return tensor


# name: (request, status, the field an INVALID_ARGUMENT names, words the message must contain)
CASES: dict[str, tuple[Callable[[], predict_pb2.PredictRequest], grpc.StatusCode, str, list[str]]] = {
    "unknown model": (
        lambda: changed(lambda m: setattr(m.model_spec, "name", "nope")), NOT_FOUND, "", ["'nope'"]),
    "version not served": (
        lambda: changed(lambda m: setattr(m.model_spec.version, "value", 2)), NOT_FOUND, "", ["'2'"]),
    "version label": (
        lambda: changed(lambda m: setattr(m.model_spec, "version_label", "stable")),
        INVALID, "model_spec.version_label", ["Unrecognized servable version label: stable"]),
    "no model spec": (
        lambda: changed(lambda m: m.ClearField("model_spec")), INVALID, "model_spec", ["Missing ModelSpec"]),
    "no model name": (
        lambda: changed(lambda m: setattr(m.model_spec, "name", "")),
        INVALID, "model_spec.name", ["no name"]),
    "signature not served": (
        lambda: changed(lambda m: setattr(m.model_spec, "signature_name", "scaled")),
        grpc.StatusCode.FAILED_PRECONDITION, "", ['Serving signature key "scaled" not found.']),
    "wrong dtype": (
        lambda: changed(lambda m: m.inputs["x"].CopyFrom(tf.make_tensor_proto(X.astype(np.float64)))),
        INVALID, "x", ["float32", "float64"]),
    "wrong shape": (
        lambda: changed(lambda m: m.inputs["x"].CopyFrom(tf.make_tensor_proto(np.zeros((2, 4), np.float32)))),
        INVALID, "x", ["[2, 4]"]),
    "missing input": (lambda: changed(lambda m: m.inputs.pop("n")), INVALID, "n", ["needs input"]),
    "unexpected input": (
        lambda: changed(lambda m: m.inputs["z"].CopyFrom(tf.make_tensor_proto(N))),
        INVALID, "z", ["no such"]),
    "no inputs": (lambda: changed(lambda m: m.ClearField("inputs")), INVALID, "inputs", ["no inputs"]),
    "inputs with different row counts": (
        lambda: changed(lambda m: m.inputs["n"].CopyFrom(tf.make_tensor_proto(N[:1]))),
        INVALID, "", ["batch"]),
    "content that does not fit the shape": (
        lambda: changed(short_content), INVALID, "x", ["tensor_content has 20 bytes"]),
    "more values than the shape holds": (
        lambda: changed(lambda m: m.inputs["n"].CopyFrom(too_many_values())),
        INVALID, "n", ["int64_val has 3 values"]),
    "unsupported dtype": (
        lambda: changed(lambda m: m.inputs["x"].CopyFrom(tf.make_tensor_proto(X, dtype=tf.bfloat16))),
        INVALID, "x", ["DT_BFLOAT16"]),
    "unknown output_filter": (
        lambda: changed(lambda m: m.output_filter.append("y")),
        INVALID, "output_filter", ["alias not found in signature: y"]),
    "duplicate output_filter": (
        lambda: changed(lambda m: m.output_filter.extend(["score", "score"])),
        INVALID, "output_filter", ["duplicate output tensor alias: score"]),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_predict_requests(stub: Any, case: str) -> None:
    make, code, field, words = CASES[case]
    error = await rpc_error(stub.Predict(make(), timeout=TIMEOUT))
    assert error.code() == code, error.details()
    if field:  # the core's message is "<method>: <field>: <reason>"
        assert f"/Predict: {field}: " in str(error.details()), error.details()
    for word in words:
        assert word in str(error.details()), (word, error.details())


async def test_the_good_request_of_those_cases_is_answered(stub: Any) -> None:
    """So each case above fails for its one change only."""
    response = await stub.Predict(good(), timeout=TIMEOUT)
    assert sorted(response.outputs) == ["doubled", "score"]


@pytest.mark.parametrize("garbage", [b"\xff\xfe\xfd", b"\x0a\x40model"])
async def test_a_predict_request_that_does_not_parse_is_invalid_argument(
    server: Server, channel: grpc.aio.Channel, garbage: bytes
) -> None:
    """Bytes that are no PredictRequest (random; a length that overruns) are the client's error,
    named and counted, not an UNKNOWN from inside gRPC."""
    method = "/tensorflow.serving.PredictionService/Predict"
    labels = {"service": "tensorflow.serving.PredictionService", "method": "Predict",
              "code": "INVALID_ARGUMENT"}

    def counted() -> float:
        return server.metrics.registry.get_sample_value("streamserve_call_errors_total", labels) or 0

    before = counted()
    error = await rpc_error(channel.unary_unary(method)(garbage, timeout=TIMEOUT))
    assert error.code() == INVALID, error.details()
    assert str(error.details()).startswith(
        f"{method} message 0: request: not a valid tensorflow.serving.PredictRequest message"
    ), error.details()
    assert counted() == before + 1


@pytest.mark.parametrize("method, message", [
    ("Classify", classification_pb2.ClassificationRequest()),
    ("Regress", regression_pb2.RegressionRequest()),
    ("MultiInference", inference_pb2.MultiInferenceRequest()),
])
async def test_methods_not_served_are_unimplemented(stub: Any, method: str, message: Any) -> None:
    error = await rpc_error(getattr(stub, method)(message, timeout=TIMEOUT))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Predict" in str(error.details())


@pytest.fixture(scope="module")
async def broken_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """A repository whose only model cannot load, served anyway (on_plugin_error: continue)."""
    repository = tmp_path_factory.mktemp("broken") / "repo"
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    config = parse_config(
        f"on_plugin_error: continue\nmodel_repository:\n  path: {repository}\n  poll_seconds: null\n", env={}
    )
    async with serve_in_process(config, extra_plugins=[plugin], installed=False) as running:
        yield running


async def test_a_model_that_failed_to_load_is_unavailable(broken_server: Server) -> None:
    async with grpc.aio.insecure_channel(broken_server.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        message = changed(lambda m: setattr(m.model_spec, "name", "broken"))
        error = await rpc_error(stub.Predict(message, timeout=TIMEOUT))
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
        assert "broken" in str(error.details())
        metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        metadata.model_spec.name = "broken"
        error = await rpc_error(stub.GetModelMetadata(metadata, timeout=TIMEOUT))
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
