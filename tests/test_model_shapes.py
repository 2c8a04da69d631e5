"""Every SavedModel shape a user brings is called through a TF session, served through both standard
protocols with the answers of the SavedModel called with TensorFlow; a model that cannot take the
session says why, once, in the log, in ``streamserve plugins --config`` and in a metric."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import streamserve_oip.plugin
import streamserve_tfserving.plugin
from streamserve.cli import main
from streamserve.config import parse_config
from streamserve.serving import Server
from streamserve.testing import serve_in_process
from tests.support.models import SHAPES, WINDOW, build_lookup

TIMEOUT = 30.0  # seconds per call: a hang fails the test instead of stalling the run
WORDS = np.array([b"banana", b"kiwi", b"apple", b"cherry"], dtype=object)
FALLBACK = "positive"
"""The one model that is not called through a session (its warm-up with zeros fails)."""


def build_positive_only(path: Path) -> Path:
    """``window`` must be positive (``tf.debugging`` assertion): ``log_sum = sum(log(window))``.
    The warm-up with zeros fails, so nothing can check a session against the function: served
    through the function, and documented so."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, WINDOW], tf.float32, name="window")])
    def serve(window: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.control_dependencies([tf.debugging.assert_positive(window)]):
            return {"log_sum": tf.reduce_sum(tf.math.log(window), axis=1)}

    tf.saved_model.save(tf.Module(), str(path), signatures={"serving_default": serve.get_concrete_function()})
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding each shape as ``<shape>/1``."""
    root = tmp_path_factory.mktemp("shapes")
    repository = root / "repo"
    for name, build in SHAPES.items():
        build(repository / name / "1")
    build_lookup(repository / "lookup" / "1", root)
    build_positive_only(repository / FALLBACK / "1")
    return repository


@pytest.fixture(scope="module")
def inputs() -> dict[str, dict[str, np.ndarray]]:
    """What each model is sent."""
    window = np.random.default_rng(7).standard_normal((5, WINDOW)).astype(np.float32)
    sent: dict[str, dict[str, np.ndarray]] = {name: {"window": window} for name in SHAPES}
    sent["lookup"] = {"words": WORDS}
    sent[FALLBACK] = {"window": np.abs(window) + 0.5}
    return sent


@pytest.fixture(scope="module")
def expected(shapes: Path, inputs: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """Each SavedModel's own answer, called with TensorFlow (its restored tf.function)."""
    import tensorflow as tf

    answers = {}
    for name, sent in inputs.items():
        loaded = tf.saved_model.load(str(shapes / name / "1"))
        outputs = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in sent.items()})
        answers[name] = {key: value.numpy() for key, value in outputs.items()}
    return answers


@pytest.fixture(scope="module")
async def server(shapes: Path, caplog_module: list[logging.LogRecord]) -> AsyncIterator[Server]:
    config = parse_config(f"model_repository:\n  path: {shapes}\n  poll_seconds: null\n", env={})
    async with serve_in_process(
        config, extra_plugins=[streamserve_oip.plugin, streamserve_tfserving.plugin], installed=False,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def caplog_module() -> Iterator[list[logging.LogRecord]]:
    """Every log record of the module's server, from before its models load."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.INFO)
    logger = logging.getLogger("streamserve")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(previous)


def runner_of(server: Server, model: str, runner: str, reason: str = "") -> float | None:
    return server.metrics.registry.get_sample_value(
        "streamserve_model_runner", {"model": model, "runner": runner, "reason": reason})


MODELS = [*SHAPES, "lookup"]


@pytest.mark.parametrize("model", [*MODELS, FALLBACK])
async def test_each_shape_takes_the_session_and_answers_as_tensorflow_over_oip(
    server: Server, inputs: dict[str, Any], expected: dict[str, Any], model: str
) -> None:
    from streamserve_oip._proto import grpc_inference_pb2 as pb2
    from streamserve_oip._proto import grpc_inference_pb2_grpc as pb2_grpc
    from streamserve_oip.tensors import decode_inputs

    runner = "function" if model == FALLBACK else "session"  # FALLBACK: documented, tested below
    assert server.repository.public[model].model.runner == runner  # type: ignore[union-attr]
    if runner == "session":
        assert runner_of(server, model, "session") == 1.0
    request = pb2.ModelInferRequest(model_name=model)
    for name, array in inputs[model].items():
        datatype = "BYTES" if array.dtype == object else "FP32"
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(
            b"".join(len(b).to_bytes(4, "little") + b for b in array) if datatype == "BYTES"
            else array.tobytes())
    async with grpc.aio.insecure_channel(server.address) as channel:
        response = await pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=TIMEOUT)
    # the response's raw outputs decode as a request's inputs do
    as_request = pb2.ModelInferRequest(inputs=[pb2.ModelInferRequest.InferInputTensor(
        name=o.name, datatype=o.datatype, shape=o.shape) for o in response.outputs],
        raw_input_contents=response.raw_output_contents)
    got = decode_inputs(as_request)
    assert sorted(got) == sorted(expected[model])
    for name, want in expected[model].items():
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("model", [*MODELS, FALLBACK])
async def test_each_shape_answers_as_tensorflow_over_tf_serving(
    server: Server, inputs: dict[str, Any], expected: dict[str, Any], model: str
) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for name, array in inputs[model].items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = await stub.Predict(request, timeout=TIMEOUT)
    assert sorted(response.outputs) == sorted(expected[model])
    for name, want in expected[model].items():
        got = tf.make_ndarray(response.outputs[name])
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


async def test_a_model_off_the_session_says_why_once(
    server: Server, caplog_module: list[logging.LogRecord]
) -> None:
    """The model whose warm-up fails is served through its function (answers: the test above) and
    says so: one log line, the metric, with the same reason."""
    model = server.repository.public[FALLBACK].model
    assert model is not None and model.runner == "function"
    assert "warm-up call with zeros failed" in model.runner_reason
    assert runner_of(server, FALLBACK, "function", model.runner_reason) == 1.0
    assert runner_of(server, FALLBACK, "session") is None
    said = [r.getMessage() for r in caplog_module
            if r.levelno == logging.WARNING and "not a TF session" in r.getMessage()]
    assert len(said) == 1 and FALLBACK in said[0] and model.runner_reason in said[0]


def test_plugins_command_shows_how_each_model_is_called(
    shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "shapes.yaml"
    config.write_text(f"plugins:\n  anomaly:\n    enabled: false\n  tfserving:\n    enabled: false\n"
                      f"model_repository:\n  path: {shapes}\n  poll_seconds: null\n")
    assert main(["plugins", "--json", "--config", str(config)]) == 0
    (oip,) = [row for row in json.loads(capsys.readouterr().out) if row["name"] == "oip"]
    models = oip["model"]["models"]
    assert sorted(models) == sorted([*MODELS, FALLBACK])
    assert {name: m["runner"] for name, m in models.items()} == {
        **{name: "session" for name in MODELS}, FALLBACK: "function"}
    assert "warm-up call with zeros failed" in models[FALLBACK]["runner_reason"]

    assert main(["plugins", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"    {FALLBACK}: ok, version 1" in text
    assert "its tf.function, not a TF session: the warm-up" in text
    assert "    module_keras: ok, version 1" in text and "called through a TF session" in text
