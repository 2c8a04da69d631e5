"""The installed anomaly plugin served by the core in process, over real gRPC on loopback."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from streamserve.serving import Server
from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2
from streamserve_anomaly._proto import anomaly_detection_pb2_grpc as pb2_grpc
from tests.support.counted import active_streams


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
    batcher = server.plugins[0].model.batcher
    assert batcher is not None and batcher.statistics.calls > 0


async def test_nan_ends_only_its_stream_after_answering_earlier_points(server: Server) -> None:
    bad = [*points(5), pb2.DataPoint(value=float("nan"), timestamp=99), *points(5)]
    answered = []

    def stream_bad() -> None:
        # The sync client, in a thread: grpc.aio's client reports INTERNAL ("Internal error from
        # Core") instead of the server's status when the server ends the call while the client is
        # still writing the points after the bad one, a race in the client library.
        with grpc.insecure_channel(server.address) as channel:
            stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
            for reply in stub.DetectAnomalyStream(iter(bad), timeout=30):
                answered.append(reply.timestamp)

    with pytest.raises(grpc.RpcError) as failure:
        await asyncio.to_thread(stream_bad)
    async with grpc.aio.insecure_channel(server.address) as channel:
        good = await scores(pb2_grpc.AnomalyDetectionServiceStub(channel), points(50))
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
        assert active_streams(server) == 20
        for call in calls:
            call.cancel()
        for _ in range(200):
            if active_streams(server) == 0:
                break
            await asyncio.sleep(0.01)
    assert active_streams(server) == 0


def sine(count: int, *, phase: float = 0.0, spike_at: int = -1, level: float = 0.0) -> list[float]:
    return [
        level + math.sin(i / 8 + phase) + (6.0 if i == spike_at else 0.0) for i in range(count)
    ]


def chunks_of(series_id: str, values: list[float], size: int, start: int = 0) -> list[pb2.DataChunk]:
    return [
        pb2.DataChunk(
            series_id=series_id,
            values=values[i : i + size],
            timestamps=range(start + i, start + i + len(values[i : i + size])),
        )
        for i in range(0, len(values), size)
    ]


async def point_replies(
    stub: pb2_grpc.AnomalyDetectionServiceStub, series_id: str, values: list[float]
) -> list[pb2.AnomalyScore]:
    stream = [pb2.DataPoint(value=v, timestamp=i, series_id=series_id) for i, v in enumerate(values)]
    return [reply async for reply in stub.DetectAnomalyStream(iter(stream))]


async def test_chunks_score_as_points_with_several_series_on_one_stream(server: Server) -> None:
    series = {
        "a": sine(700, spike_at=500),
        "b": sine(900, phase=1.0, level=50.0),
        "c": sine(300, phase=2.0, spike_at=250),
    }
    sizes = {"a": 64, "b": 300, "c": 1}
    queues = {name: chunks_of(name, values, sizes[name]) for name, values in series.items()}
    interleaved = []
    while any(queues.values()):  # round robin: every series' chunks in order, series mixed
        for queue in queues.values():
            if queue:
                interleaved.append(queue.pop(0))
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
        replies = [r async for r in stub.DetectAnomalyChunks(iter(interleaved))]
        by_point = {name: await point_replies(stub, name, values) for name, values in series.items()}
    assert [r.series_id for r in replies] == [c.series_id for c in interleaved]
    assert all(len(r.scores) == len(c.values) for r, c in zip(replies, interleaved, strict=True))
    for name, values in series.items():
        mine = [r for r in replies if r.series_id == name]
        points = by_point[name]
        assert [t for r in mine for t in r.timestamps] == [p.timestamp for p in points]
        assert [f for r in mine for f in r.is_anomaly] == [p.is_anomaly for p in points]
        scores = [s for r in mine for s in r.scores]
        assert scores == pytest.approx([p.score for p in points], abs=1e-6)
        assert len(scores) == len(values)
    assert next(p.timestamp for p in by_point["a"] if p.is_anomaly) == 500
    assert next(p.timestamp for p in by_point["c"] if p.is_anomaly) == 250


async def test_replies_echo_the_series_and_name_the_model_version(
    server: Server, anomaly_model_dir: Path
) -> None:
    threshold = server.plugins[0].settings.threshold  # type: ignore[union-attr]
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
        points = await point_replies(stub, "pump-7", sine(400, spike_at=300))
        (chunk,) = [r async for r in stub.DetectAnomalyChunks(iter(chunks_of("fan", sine(400), 400)))]
        (empty,) = [r async for r in stub.DetectAnomalyChunks(iter([pb2.DataChunk(series_id="x")]))]
    assert {p.series_id for p in points} == {"pump-7"} and chunk.series_id == "fan"
    assert {p.model_version for p in points} == {anomaly_model_dir.name} == {chunk.model_version}
    assert all(p.is_anomaly == (p.score >= threshold) for p in points)
    assert list(chunk.is_anomaly) == [s >= threshold for s in chunk.scores]
    assert any(p.is_anomaly for p in points) and points[300].is_anomaly
    assert (empty.series_id, list(empty.scores), empty.model_version) == ("x", [], anomaly_model_dir.name)


async def test_mismatched_chunk_lengths_end_the_call_naming_the_field(server: Server) -> None:
    good = chunks_of("s", sine(10), 10)
    bad = pb2.DataChunk(series_id="s", values=[1.0, 2.0, 3.0], timestamps=[1, 2])
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
        answered = []
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            async for reply in stub.DetectAnomalyChunks(iter([*good, bad])):
                answered.append(reply.series_id)
    assert answered == ["s"]
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "timestamps" in failure.value.details() and "message 1" in failure.value.details()
