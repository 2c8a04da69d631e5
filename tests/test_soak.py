"""A soak: 200 anomaly streams against a real server process for a bounded time; its memory stays
flat and nothing fails. STREAMSERVE_SOAK_SECONDS sets the length (default 8 s; the figure in
docs/operations.md comes from a longer run)."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from streamserve.testing import ServerProcess
from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2

pytestmark = pytest.mark.e2e

STREAMS = 200
SECONDS = float(os.environ.get("STREAMSERVE_SOAK_SECONDS", "8"))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_200_streams_soak_with_flat_memory_and_no_errors(server_process: ServerProcess) -> None:
    pid = server_process.process.pid
    deadline = time.monotonic() + SECONDS
    sent = [0] * STREAMS

    async def points(k: int) -> AsyncIterator[pb2.DataPoint]:
        for i in range(1_000_000):  # bounded by count and by the deadline
            if time.monotonic() > deadline:
                return
            sent[k] += 1
            yield pb2.DataPoint(value=math.sin(i / 10 + k), timestamp=i)
            await asyncio.sleep(0.02)

    async def stream(k: int) -> list[int]:
        call = channel.stream_stream(
            "/anomaly_detection.AnomalyDetectionService/DetectAnomalyStream",
            request_serializer=pb2.DataPoint.SerializeToString,
            response_deserializer=pb2.AnomalyScore.FromString,
        )
        return [reply.timestamp async for reply in call(points(k))]

    samples: list[float] = []

    async def sample() -> None:
        while time.monotonic() < deadline:
            samples.append(rss_mib(pid))
            await asyncio.sleep(0.5)

    before = rss_mib(pid)
    async with grpc.aio.insecure_channel(server_process.address) as channel:
        results, _ = await asyncio.gather(
            asyncio.gather(*(stream(k) for k in range(STREAMS))), sample()
        )
    await asyncio.sleep(1.0)
    after = rss_mib(pid)

    for k, timestamps in enumerate(results):
        assert timestamps == list(range(sent[k])), f"stream {k} lost or reordered replies"
    warm = samples[len(samples) // 4]  # after the first quarter: buffers and caches have grown
    peak = max(samples)
    print(f"\nsoak {SECONDS:g} s, {STREAMS} streams, {sum(sent)} points: RSS before {before:.0f} MiB, "
          f"warm {warm:.0f}, peak {peak:.0f}, after close {after:.0f}")
    assert peak - warm < 64, f"RSS grew {peak - warm:.0f} MiB while streaming"
    assert after - before < 64, f"RSS {after - before:.0f} MiB higher after the streams closed"
