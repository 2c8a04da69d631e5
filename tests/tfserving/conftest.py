"""Fixtures of the TF Serving plugin's tests: a model repository of two SavedModels, served in process
by the tfserving plugin alone, and a TF Serving client (the real generated stub) on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from streamserve.config import parse_config
from streamserve.serving import Server
from streamserve.testing import serve_in_process
from tests.tfserving.models import build_linear_model, build_strings_model

LINEAR = "linear"
STRINGS = "strings"
TIMEOUT = 10.0  # seconds, on every call: a hang fails the test instead of stalling the run


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<repo>/linear/1`` and ``<repo>/strings/1``."""
    root = tmp_path_factory.mktemp("tfserving") / "repo"
    build_linear_model(root / LINEAR / "1")
    build_strings_model(root / STRINGS / "1")
    return root


@pytest.fixture(scope="session")
def linear_model(repository: Path) -> Any:
    """The linear model loaded with plain TensorFlow, to compare the server's answers with."""
    import tensorflow as tf

    return tf.saved_model.load(str(repository / LINEAR / "1"))


@pytest.fixture(scope="package")
async def server(repository: Path) -> AsyncIterator[Server]:
    """Only the tfserving plugin (as if installed), on the repository; polling off. One server for
    every module of this package: loading the models is most of its start-up."""
    from streamserve_tfserving import plugin

    config = parse_config(f"model_repository:\n  path: {repository}\n  poll_seconds: null\n", env={})
    async with serve_in_process(config, extra_plugins=[plugin], installed=False) as running:
        yield running


@pytest.fixture
async def channel(server: Server) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as opened:
        yield opened


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Any:
    """TF Serving's own client stub, on the asyncio channel."""
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """The error a call ends with (the test fails if it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value
