"""The installed anomaly plugin served by the core in process, over real gRPC on loopback."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from streamserve.config import parse_config
from streamserve.serving import Server
from streamserve.testing import serve_in_process
from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2
from streamserve_anomaly._proto import anomaly_detection_pb2_grpc as pb2_grpc


@pytest.fixture
async def server(anomaly_model: Path) -> AsyncIterator[Server]:
    config = parse_config(f"plugins:\n  anomaly:\n    model_path: {anomaly_model}\n")
    async with serve_in_process(config) as running:
        yield running


def points(count: int, phase: float = 0.0, spike_at: int = -1) -> list[pb2.DataPoint]:
    return [
        pb2.DataPoint(value=math.sin(i / 8 + phase) + (6.0 if i == spike_at else 0.0), timestamp=10 * i)
        for i in range(count)
    ]


async def scores(
    stub: pb2_grpc.AnomalyDetectionServiceStub, stream: list[pb2.DataPoint]
) -> list[tuple[int, float]]:
    return [(s.timestamp, s.score) async for s in stub.DetectAnomalyStream(iter(stream))]


async def test_a_thousand_points_give_a_thousand_scores_in_order(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        result = await scores(pb2_grpc.AnomalyDetectionServiceStub(channel), points(1000, spike_at=700))
    assert [t for t, _ in result] == [10 * i for i in range(1000)]
    assert all(0.0 <= s <= 1.0 for _, s in result)
    assert result[700][1] > 0.9 > max(s for _, s in result[100:700])


async def test_concurrent_streams_score_as_each_would_alone(server: Server) -> None:
    """Batching across streams changes nothing: each stream's state is its own, in its order."""
    feeds = [points(300, phase=k, spike_at=100 + 10 * k) for k in range(16)]
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
        alone = [await scores(stub, feed) for feed in feeds]
        together = await asyncio.gather(*(scores(stub, feed) for feed in feeds))
    # Same timestamps in the same order; scores equal up to float32 rounding, since TensorFlow's
    # matmul kernels may sum in another order for another batch size (measured: < 1e-7).
    for mixed, own in zip(together, alone, strict=True):
        assert [t for t, _ in mixed] == [t for t, _ in own]
        assert [s for _, s in mixed] == pytest.approx([s for _, s in own], abs=1e-6)
    assert server.plugins[0].batcher is not None and server.plugins[0].batcher.batches > 0


async def test_nan_ends_only_its_stream_after_answering_earlier_points(server: Server) -> None:
    bad = [*points(5), pb2.DataPoint(value=float("nan"), timestamp=99), *points(5)]
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
        answered = []
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            async for reply in stub.DetectAnomalyStream(iter(bad)):
                answered.append(reply.timestamp)
        good = await scores(stub, points(50))
    assert answered == [0, 10, 20, 30, 40]
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "message 5" in failure.value.details() and "value" in failure.value.details()
    assert len(good) == 50


async def test_empty_stream_ends_ok_with_no_scores(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        assert await scores(pb2_grpc.AnomalyDetectionServiceStub(channel), []) == []


async def test_cancelled_streams_free_their_state(server: Server) -> None:
    async def endless() -> AsyncIterator[pb2.DataPoint]:
        for i in range(100_000):  # bounded; cancelled long before the end
            yield pb2.DataPoint(value=float(i % 5), timestamp=i)
            await asyncio.sleep(0.001)

    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
        calls = [stub.DetectAnomalyStream(endless()) for _ in range(20)]
        for call in calls:
            await call.read()  # every stream is open and has been answered once
        assert server.plugins[0].active_streams == 20
        for call in calls:
            call.cancel()
        for _ in range(200):
            if server.plugins[0].active_streams == 0:
                break
            await asyncio.sleep(0.01)
    assert server.plugins[0].active_streams == 0
