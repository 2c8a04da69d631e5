"""SIGTERM on a real `streamserve serve` process with 100 streams mid-flight."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.process import serve_subprocess
from tests.test_lifecycle import Feed, read, scale_stream

pytestmark = pytest.mark.e2e

SCALER = "streamserve_test.Scaler"
GRACE = 1.0


async def test_sigterm_drains_100_streams_and_exits_0_within_the_grace(
    tmp_path: Path, subprocess_env: dict[str, str], scaler_plugin: ModuleType, scaler_model: Path,
    anomaly_model: Path,
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    config = tmp_path / "server.yaml"
    config.write_text(
        f"server:\n  shutdown_grace_seconds: {GRACE}\n"
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
    assert elapsed < GRACE + 1.0, f"exited {elapsed:.2f} s after SIGTERM (grace {GRACE} s)\n{server.output()}"
    assert "stopped" in server.output()
