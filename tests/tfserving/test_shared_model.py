"""A model plugin's model shared into the repository (``models: {name: {plugin: ...}}``) answers TF
Serving's Predict with that model's own outputs, next to the plugin's own service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from streamserve.config import parse_config
from streamserve.serving import Server
from streamserve.testing import serve_in_process
from tests.tfserving.conftest import TIMEOUT


@pytest.fixture(scope="module")
async def shared_server(anomaly_model: Path) -> AsyncIterator[Server]:
    from streamserve_anomaly import plugin as anomaly
    from streamserve_tfserving import plugin as tfserving

    config = parse_config(
        f"plugins:\n  anomaly:\n    model_path: {anomaly_model}\n"
        "model_repository:\n  poll_seconds: null\n  models:\n    detector: {plugin: anomaly}\n",
        env={},
    )
    async with serve_in_process(config, extra_plugins=[anomaly, tfserving], installed=False) as running:
        yield running


async def test_predict_on_the_shared_model_equals_the_savedmodel(
    shared_server: Server, anomaly_model_dir: Path
) -> None:
    rng = np.random.default_rng(1)
    history = rng.normal(size=(3, 32)).astype(np.float32)
    value = rng.normal(size=3).astype(np.float32)
    message = predict_pb2.PredictRequest()
    message.model_spec.name = "detector"
    message.inputs["history"].CopyFrom(tf.make_tensor_proto(history))
    message.inputs["value"].CopyFrom(tf.make_tensor_proto(value))
    async with grpc.aio.insecure_channel(shared_server.address) as channel:
        stub: Any = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = await stub.Predict(message, timeout=TIMEOUT)
        metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        metadata.model_spec.name = "detector"
        described = await stub.GetModelMetadata(metadata, timeout=TIMEOUT)

    expected = tf.saved_model.load(str(anomaly_model_dir)).signatures["serving_default"](
        history=tf.constant(history), value=tf.constant(value)
    )
    for name in ("prediction", "error"):
        np.testing.assert_allclose(tf.make_ndarray(response.outputs[name]), expected[name].numpy(), rtol=1e-5)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    described.metadata["signature_def"].Unpack(signatures)
    history_info = signatures.signature_def["serving_default"].inputs["history"]
    assert [dim.size for dim in history_info.tensor_shape.dim] == [-1, 32]
