"""The plugin as the server presents it: found by its entry point, cheap to import, listed by
reflection (and usable by grpcurl), reported by health."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from streamserve.serving import Server
from tests.tfserving.conftest import LINEAR, TIMEOUT

SERVICE = "tensorflow.serving.PredictionService"
GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def test_entry_point_names_the_plugin_module() -> None:
    (found,) = [ep for ep in entry_points(group="streamserve.plugins") if ep.name == "tfserving"]
    assert found.value == "streamserve_tfserving.plugin"


def test_importing_the_plugin_does_not_import_tensorflow() -> None:
    """The core imports every plugin to list them; TensorFlow would cost seconds. TF Serving's own
    modules imported afterwards then get the very same message classes."""
    code = (
        "import sys, streamserve_tfserving.plugin as p\n"
        "from streamserve_tfserving import apis\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_serving')))\n"
        "from tensorflow_serving.apis import predict_pb2, prediction_service_pb2\n"
        "assert apis.PredictResponse is predict_pb2.PredictResponse\n"
        "assert p.SPEC.service is prediction_service_pb2.DESCRIPTOR.services_by_name['PredictionService']\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == "[]", done.stdout


def test_its_messages_are_tensorflow_servings_own() -> None:
    """The same the other way round: in this process TensorFlow is imported first (at collection)."""
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2

    from streamserve_tfserving import apis

    assert apis.PredictResponse is predict_pb2.PredictResponse
    assert apis.SignatureDefMap is get_model_metadata_pb2.SignatureDefMap
    assert apis.PREDICTION_SERVICE is prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]


async def test_reflection_lists_the_service(channel: grpc.aio.Channel) -> None:
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
    )
    replies = [reply async for reply in call]
    assert SERVICE in [s.name for s in replies[0].list_services_response.service]


async def test_health_reports_the_service_serving(channel: grpc.aio.Channel) -> None:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=SERVICE), timeout=TIMEOUT
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def grpcurl(*args: str) -> str:
    """Run grpcurl without blocking the event loop the in-process server runs on."""
    process = await asyncio.create_subprocess_exec(
        GRPCURL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_grpcurl_predicts_through_reflection(server: Server) -> None:
    body = {
        "model_spec": {"name": LINEAR},
        "inputs": {
            "x": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": 1}, {"size": 3}]},
                  "float_val": [1, 2, 3]},
            "n": {"dtype": "DT_INT64", "tensor_shape": {"dim": [{"size": 1}]}, "int64_val": [7]},
        },
        "output_filter": ["score"],
    }
    out = await grpcurl("-plaintext", "-d", json.dumps(body), server.address, f"{SERVICE}/Predict")
    answer: Any = json.loads(out)
    assert answer["model_spec"] == {"name": LINEAR, "version": "1", "signature_name": "serving_default"}
    assert list(answer["outputs"]) == ["score"]
    score = answer["outputs"]["score"]
    assert score["dtype"] == "DT_FLOAT"
    assert np.frombuffer(base64.b64decode(score["tensor_content"]), "<f4").tolist() == [5.5]  # 1-4+1.5+7
