"""configs/protocols.yaml as a user runs it: one model, three protocols, equal answers.

``streamserve serve --config configs/protocols.yaml`` in a subprocess, with a private
STREAMSERVE_HOME (the anomaly plugin trains its default model there on start): the anomaly
service answers, and the same model answers under the name ``anomaly`` through TF Serving's
PredictionService and the Open Inference Protocol, each equal to calling the SavedModel directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from streamserve.testing import ServerProcess, serve_subprocess

REPO = Path(__file__).resolve().parent.parent
SERVICES = [
    "anomaly_detection.AnomalyDetectionService",
    "inference.GRPCInferenceService",
    "tensorflow.serving.PredictionService",
    "model/anomaly",
]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    home = tmp_path_factory.mktemp("protocols_home")
    env = {"STREAMSERVE_HOME": str(home), "STREAMSERVE_ADDRESS": "127.0.0.1:0"}
    with serve_subprocess(REPO / "configs" / "protocols.yaml", env=env, services=SERVICES) as server:
        yield server, home / "models" / "anomaly" / "1"


@pytest.fixture(scope="module")
def rows() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"history": rng.normal(0, 1, (3, 32)).astype(np.float32),
            "value": rng.normal(0, 1, 3).astype(np.float32)}


@pytest.fixture(scope="module")
def expected(served: tuple[ServerProcess, Path], rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The served SavedModel, called directly."""
    import tensorflow as tf

    _, model_dir = served
    function = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    return {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in rows.items()}).items()}


def test_the_anomaly_service_answers(served: tuple[ServerProcess, Path]) -> None:
    from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2
    from streamserve_anomaly._proto import anomaly_detection_pb2_grpc as pb2_grpc

    server, _ = served
    points = [pb2.DataPoint(value=float(np.sin(t / 5)), timestamp=t) for t in range(50)]
    with grpc.insecure_channel(server.address) as channel:
        replies = list(pb2_grpc.AnomalyDetectionServiceStub(channel).DetectAnomalyStream(
            iter(points), timeout=30))
    assert [r.timestamp for r in replies] == list(range(50))
    assert {r.model_version for r in replies} == {"1"}


def test_tf_serving_predict_equals_the_model(
    served: tuple[ServerProcess, Path], rows: dict[str, np.ndarray], expected: dict[str, np.ndarray]
) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    server, _ = served
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "anomaly"
    for name, value in rows.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    with grpc.insecure_channel(server.address) as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert reply.model_spec.version.value == 1
    for name, value in expected.items():
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs[name]), value, rtol=1e-6)


def test_open_inference_protocol_infer_equals_the_model(
    served: tuple[ServerProcess, Path], rows: dict[str, np.ndarray], expected: dict[str, np.ndarray]
) -> None:
    from streamserve_oip._proto import grpc_inference_pb2 as pb2
    from streamserve_oip._proto import grpc_inference_pb2_grpc as pb2_grpc

    server, _ = served
    request = pb2.ModelInferRequest(model_name="anomaly", id="42")
    for name, value in rows.items():
        request.inputs.add(name=name, datatype="FP32", shape=list(value.shape))
        request.raw_input_contents.append(value.tobytes())
    with grpc.insecure_channel(server.address) as channel:
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ModelReady(pb2.ModelReadyRequest(name="anomaly"), timeout=10).ready
        reply = stub.ModelInfer(request, timeout=30)
    assert reply.id == "42" and reply.model_version == "1"
    outputs = {o.name: np.frombuffer(raw, np.float32).reshape(o.shape)
               for o, raw in zip(reply.outputs, reply.raw_output_contents, strict=True)}
    assert set(outputs) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(outputs[name], value, rtol=1e-6)


def test_the_oip_benchmark_runs_against_the_address_it_is_given(
    served: tuple[ServerProcess, Path], tmp_path: Path
) -> None:
    """`python -m benchmarks.oip` needs only an address and a model: any OIP server will do."""
    import json
    import subprocess
    import sys

    server, _ = served
    out = tmp_path / "oip.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.oip", "--target", server.address, "--model", "anomaly",
         "--quick", "--duration", "0.5", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    records = {r["scenario"]: r for r in json.loads(out.read_text())}
    assert set(records) == {"oip-unary", "oip-stream"}
    for record in records.values():
        assert record["ok"] and record["mismatched"] == 0 and not record["errors"]
        assert record["sent"] == record["received"] > 0
        assert record["server_cpu"] is None  # not ours to read
    assert "infer/s" in done.stdout
