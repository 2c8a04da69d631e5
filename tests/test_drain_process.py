"""Signals on a real `streamserve serve` process: SIGTERM drains, SIGHUP reloads models."""

from __future__ import annotations

import asyncio
import queue
import shutil
import signal
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamserve.testing import serve_subprocess
from tests.support.models import build_affine_model
from tests.test_lifecycle import Feed, read, scale_stream

pytestmark = pytest.mark.e2e

SCALER = "streamserve_test.Scaler"
GRACE = 1.0


@pytest.mark.parametrize(("event_loop", "runs_on"), [("auto", "uvloop"), ("asyncio", "asyncio")])
async def test_sigterm_drains_100_streams_and_exits_0_within_the_grace(
    tmp_path: Path, subprocess_env: dict[str, str], scaler_plugin: ModuleType, scaler_model: Path,
    anomaly_model: Path, event_loop: str, runs_on: str,
) -> None:
    # On either event loop (uvloop, installed with streamserve, is the default): signals, the
    # drain, the exit.
    pb2 = scaler_plugin.scaler_pb2
    config = tmp_path / "server.yaml"
    config.write_text(
        f"server:\n  shutdown_grace_seconds: {GRACE}\n  event_loop: {event_loop}\n"
        f"plugins:\n  scaler:\n    model_path: {scaler_model}\n"
        f"  anomaly:\n    model_path: {anomaly_model}\n"
    )
    with serve_subprocess(config, env=subprocess_env, services=["", SCALER]) as server:
        async with grpc.aio.insecure_channel(server.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SCALER)
            )
            first = await asyncio.wait_for(watch.read(), 10)
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            feeds = [Feed(pb2) for _ in range(100)]
            calls = [scale_stream(channel, pb2)(aiter(feed)) for feed in feeds]
            for i, feed in enumerate(feeds):
                feed.send(i)
            assert [await read(call) for call in calls] == [[2 * i + 1] for i in range(100)]
            for i, feed in enumerate(feeds):  # in flight when the signal arrives
                feed.send(i, 1)
                feed.send(-i)
            await asyncio.sleep(0.05)  # let the client hand them to the transport

            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            flipped = await asyncio.wait_for(watch.read(), 10)
            assert flipped.status == health_pb2.HealthCheckResponse.NOT_SERVING

            for i, call in enumerate(calls):
                assert await read(call) == [2 * i + 1, 3]
                assert await read(call) == [-2 * i + 1]
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await asyncio.wait_for(call.read(), 10)
                assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "shutting down" in (ended.value.details() or "")
            code = await asyncio.to_thread(server.process.wait, 10)
            elapsed = time.monotonic() - signalled
    assert code == 0, server.output()
    assert not server.ready_file.exists()  # removed as the drain began: the server was going away
    assert elapsed < GRACE + 1.0, f"exited {elapsed:.2f} s after SIGTERM (grace {GRACE} s)\n{server.output()}"
    assert "stopped" in server.output()
    assert f"event loop: {runs_on}" in server.output()


def test_sighup_loads_a_new_model_version_without_dropping_a_stream(
    tmp_path: Path, subprocess_env: dict[str, str], scaler_plugin: ModuleType, scaler_model: Path,
    anomaly_model: Path,
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    base = tmp_path / "scaler"
    shutil.copytree(scaler_model, base)
    config = tmp_path / "server.yaml"
    config.write_text(
        f"plugins:\n  scaler:\n    model_path: {base}\n    model_poll_seconds: null\n"
        f"  anomaly:\n    model_path: {anomaly_model}\n"
    )
    build_affine_model(tmp_path / "staging", scale=3.0)  # before any deadline starts
    with serve_subprocess(config, env=subprocess_env, services=[SCALER]) as server, \
            grpc.insecure_channel(server.address) as channel:
        scale = channel.stream_stream(
            f"/{SCALER}/ScaleStream", request_serializer=pb2.Values.SerializeToString,
            response_deserializer=pb2.Values.FromString,
        )
        sent: queue.Queue[Any] = queue.Queue()
        # The deadline is only a backstop against a hung server: the wait for the reload below is
        # bounded on its own, and a slow machine may take long to load a model.
        replies = scale(iter(sent.get, None), timeout=300)
        sent.put(pb2.Values(values=[1]))
        assert list(next(replies).values) == [3]  # version 1: y = 2x + 1

        (tmp_path / "staging").rename(base / "2")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 120  # bounded; normally a second or two
        while "is SERVING version 2" not in server.output():
            assert time.monotonic() < deadline, f"version 2 was not served:\n{server.output()}"
            time.sleep(0.05)
        sent.put(pb2.Values(values=[1]))
        assert list(next(replies).values) == [4]  # the same stream, now on version 2
        sent.put(None)
        assert list(replies) == []
    assert "SIGHUP: looking for new model versions" in server.output()
