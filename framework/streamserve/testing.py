"""Helpers for testing plugins against a real in-process server (also used by streamserve's tests).

    async with serve_in_process(config, extra_plugins=[my_plugin_module]) as server:
        async with grpc.aio.insecure_channel(server.address) as channel:
            ...

The server listens on an ephemeral loopback port and every model is loaded and warm on entry.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamserve.config import StreamserveConfig
from streamserve.plugins import discover
from streamserve.serving import Server

__all__ = ["loopback_config", "serve_in_process", "wait_until_serving"]


def loopback_config(config: StreamserveConfig | None = None) -> StreamserveConfig:
    """``config`` (or the defaults) with every port it opens on an ephemeral port of 127.0.0.1."""
    config = config or StreamserveConfig()
    ephemeral = "127.0.0.1:0"
    server = config.server.model_copy(update={
        "address": ephemeral,
        "health_address": config.server.health_address and ephemeral,
    })
    metrics = config.metrics.model_copy(update={"address": config.metrics.address and ephemeral})
    return config.model_copy(update={"server": server, "metrics": metrics})


@asynccontextmanager
async def serve_in_process(
    config: StreamserveConfig | None = None,
    *,
    extra_plugins: Iterable[object] = (),
    installed: bool = True,
) -> AsyncIterator[Server]:
    """A started server with its models loaded; stopped on exit.

    :param extra_plugins: plugin objects (modules with hook implementations) to add to the
        installed ones, as if they were installed.
    :param installed: also load the installed entry-point plugins.
    """
    discovered = discover(extra_plugins, entry_points=installed)
    server = Server(loopback_config(config), discovered)
    await server.start()
    try:
        await server.load_models()
        yield server
    finally:
        await server.stop(0)



def wait_until_serving(
    address: str,
    services: Iterable[str] = ("",),
    timeout: float = 120.0,
    *,
    gone: Callable[[], bool] = lambda: False,
) -> None:
    """Poll the standard health service at ``address`` until every name in ``services`` is SERVING.

    For a server in another process: ``gone`` says whether it died, to fail at once instead of at
    the deadline. Raises TimeoutError naming the service that is not SERVING.
    """
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if gone() or time.monotonic() > deadline:
                    raise TimeoutError(f"{service!r} not SERVING at {address} after {timeout} s")
                time.sleep(0.1)
