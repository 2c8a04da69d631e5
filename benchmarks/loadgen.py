"""The load generator: client processes, each driving a share of the streams with grpc.aio.

Several processes, because one Python process tops out at a few thousand gRPC messages per second
(about what the server can do): a single client would measure itself. The parent
(:mod:`benchmarks.run`) talks to each process over a pipe:

timed scenarios
    ``("timed", job)`` → the client connects and answers ``("ready",)``; ``("go", t0, t1, t2)`` →
    every stream sends from ``t0`` (monotonic clock, shared by all processes on Linux) until ``t2``,
    then half-closes and drains; answers received in ``[t1, t2)`` are measured. Reply
    ``("result", dict)``.
idle scenario
    ``("idle", job)`` → connect, ``("ready",)``; then ``("open",)`` opens the streams and sends one
    point on each (reply ``("opened", dict)``), ``("close",)`` half-closes them and waits for the
    server to end each (reply ``("closed", dict)``), ``("end",)`` leaves.

Latency is per message, client-measured: from just before ``write`` to the arrival of its answer
(answers come in order, so a FIFO of send times per stream pairs them). Every answer is checked
against its request (timestamp; for a chunk, length and first timestamp), and the counts of sent and
received messages go back to the parent, which requires them to match.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import grpc
import numpy as np

from benchmarks.procstat import die_with_parent

__all__ = ["Job", "worker_main"]

POINT_METHOD = "/anomaly_detection.AnomalyDetectionService/DetectAnomalyStream"
CHUNK_METHOD = "/anomaly_detection.AnomalyDetectionService/DetectAnomalyChunks"
_CONNECT_TIMEOUT = 20.0
_DRAIN_TIMEOUT = 60.0
"""Longest wait, after the send window, for the answers still in flight."""
_COMMAND_TIMEOUT = 900.0
"""A client waits this long for the parent's next command before concluding it is gone."""
_MAX_ERRORS = 5


@dataclass(frozen=True, slots=True)
class Job:
    """One process's share of a scenario."""

    address: str
    streams: list[int]
    """Global indices of this process's streams (they seed each stream's data)."""
    inflight: int = 1
    points: int = 1
    protocol: str = "native"
    """``native`` (the anomaly service), ``oip-unary`` (ModelInfer) or ``oip-stream`` (ModelStreamInfer)."""
    model: str = "anomaly"
    """The model an OIP request names."""
    stream_response: str = "ModelStreamInferResponse"
    """The message a ModelStreamInfer stream answers with: Triton's (and streamserve's)
    ``ModelStreamInferResponse``, or a bare ``ModelInferResponse`` (MLServer's)."""


@dataclass
class _Stats:
    """What one client process saw; single event loop, so shared by its streams without locks."""

    t1: float = 0.0
    t2: float = 0.0
    sent: int = 0
    received: int = 0
    mismatched: int = 0
    window_messages: int = 0
    window_points: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def answer(self, sent_at: float, now: float, points: int) -> None:
        self.received += 1
        if self.t1 <= now < self.t2:
            self.window_messages += 1
            self.window_points += points
            self.latencies.append(now - sent_at)

    def error(self, exc: BaseException) -> None:
        if len(self.errors) < _MAX_ERRORS:
            detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            self.errors.append(f"{type(exc).__name__}: {detail}")

    def result(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "received": self.received,
            "mismatched": self.mismatched,
            "window_messages": self.window_messages,
            "window_points": self.window_points,
            "latencies": np.asarray(self.latencies, dtype=np.float64),
            "errors": self.errors,
        }


class _Source:
    """The messages of one stream and how to check their answers.

    Values are a noisy sine (the detector does its real work, no shortcut for constant input);
    points are built per message, chunks are built once and cycled (building 1,024-value messages
    would cost the client more than the server spends on them).
    """

    def __init__(self, stream: int, points: int) -> None:
        from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2

        rng = np.random.default_rng(stream)
        period = 50 + stream % 17
        t = np.arange(16 * max(points, 64))
        wave = np.sin(2 * np.pi * t / period) + rng.normal(0, 0.05, t.size)
        self.points = points
        self.values = wave.tolist()
        if points > 1:
            sid = f"series-{stream}"
            self.chunks = [
                pb2.DataChunk(
                    series_id=sid,
                    values=self.values[k * points : (k + 1) * points],
                    timestamps=range(k * points, (k + 1) * points),
                )
                for k in range(16)
            ]
        self._point = pb2.DataPoint

    def message(self, index: int) -> tuple[Any, int]:
        """The ``index``-th message and the first timestamp its answer must carry."""
        if self.points > 1:
            k = index % len(self.chunks)
            return self.chunks[k], k * self.points
        return self._point(value=self.values[index % len(self.values)], timestamp=index), index

    def check(self, answer: Any, first_timestamp: int) -> bool:
        if self.points > 1:
            return len(answer.scores) == self.points and answer.timestamps[0] == first_timestamp
        return bool(answer.timestamp == first_timestamp)


def _open(channel: grpc.aio.Channel, points: int) -> Callable[[], grpc.aio.StreamStreamCall]:
    from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2

    if points > 1:
        return channel.stream_stream(
            CHUNK_METHOD,
            request_serializer=pb2.DataChunk.SerializeToString,
            response_deserializer=pb2.ScoreChunk.FromString,
        )
    return channel.stream_stream(
        POINT_METHOD,
        request_serializer=pb2.DataPoint.SerializeToString,
        response_deserializer=pb2.AnomalyScore.FromString,
    )


async def _lockstep(open_call: Callable[[], Any], source: Any, stats: _Stats) -> None:
    """One message in flight: send, wait for its answer, repeat until ``t2``."""
    call = open_call()
    index = 0
    clock = time.monotonic
    try:
        while clock() < stats.t2:
            message, expected = source.message(index)
            sent_at = clock()
            await call.write(message)
            stats.sent += 1
            answer = await call.read()
            if answer is grpc.aio.EOF:
                raise RuntimeError("the server ended the stream early")
            stats.answer(sent_at, clock(), source.points)
            if not source.check(answer, expected):
                stats.mismatched += 1
            index += 1
        await call.done_writing()
        if await call.read() is not grpc.aio.EOF:
            raise RuntimeError("an answer nobody asked for")
    except (grpc.aio.AioRpcError, RuntimeError, asyncio.InvalidStateError) as exc:
        stats.error(exc)
        call.cancel()


async def _unary_lockstep(call: Any, source: Any, stats: _Stats) -> None:
    """One unary call at a time, until ``t2``: a caller that waits for each answer."""
    index = 0
    clock = time.monotonic
    try:
        while clock() < stats.t2:
            message, expected = source.message(index)
            sent_at = clock()
            stats.sent += 1
            answer = await call(message)
            stats.answer(sent_at, clock(), source.points)
            if not source.check(answer, expected):
                stats.mismatched += 1
            index += 1
    except (grpc.aio.AioRpcError, RuntimeError) as exc:
        stats.error(exc)


async def _pipelined(
    open_call: Callable[[], Any], source: Any, stats: _Stats, inflight: int
) -> None:
    """``inflight`` messages outstanding: a writer refills as a reader takes answers in order."""
    call = open_call()
    pending: deque[tuple[float, int]] = deque()
    slots = asyncio.Semaphore(inflight)
    clock = time.monotonic

    async def read() -> None:
        try:
            while (answer := await call.read()) is not grpc.aio.EOF:
                now = clock()
                sent_at, expected = pending.popleft()
                slots.release()
                stats.answer(sent_at, now, source.points)
                if not source.check(answer, expected):
                    stats.mismatched += 1
        finally:
            for _ in range(inflight + 1):  # a reader that failed must not leave the writer waiting
                slots.release()

    reader = asyncio.get_running_loop().create_task(read())
    index = 0
    try:
        while True:
            await slots.acquire()
            if clock() >= stats.t2 or reader.done():
                break
            message, expected = source.message(index)
            pending.append((clock(), expected))
            await call.write(message)
            stats.sent += 1
            index += 1
        if not reader.done():
            await call.done_writing()
        await reader
        if pending:
            raise RuntimeError(f"{len(pending)} message(s) never answered")
    except (grpc.aio.AioRpcError, RuntimeError, asyncio.InvalidStateError, IndexError) as exc:
        stats.error(exc)
        call.cancel()
        reader.cancel()


def _channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )


async def _recv(conn: Connection, timeout: float = _COMMAND_TIMEOUT) -> tuple[Any, ...]:
    """The parent's next command, without blocking the event loop."""
    ready = await asyncio.to_thread(conn.poll, timeout)
    if not ready:
        raise TimeoutError(f"no command from the harness for {timeout} s")
    message: tuple[Any, ...] = conn.recv()
    return message


async def _timed(conn: Connection, job: Job) -> None:
    async with _channel(job.address) as channel:
        await asyncio.wait_for(channel.channel_ready(), _CONNECT_TIMEOUT)
        sources: list[Any]
        if job.protocol == "native":
            open_call = _open(channel, job.points)
            sources = [_Source(stream, job.points) for stream in job.streams]
        else:
            from benchmarks import oip_source

            metadata = await oip_source.load(channel, job.model)
            ids = job.protocol == "oip-unary" or job.stream_response == "ModelStreamInferResponse"
            sources = [oip_source.OipSource(stream, metadata, ids=ids) for stream in job.streams]
            open_call = (oip_source.unary_call(channel) if job.protocol == "oip-unary"
                         else oip_source.stream_call(channel, job.stream_response))
        conn.send(("ready",))
        _, t0, t1, t2 = await _recv(conn)
        stats = _Stats(t1=t1, t2=t2)
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        if job.protocol == "oip-unary":
            runs = [_unary_lockstep(open_call, source, stats) for source in sources]
        elif job.inflight == 1:
            runs = [_lockstep(open_call, source, stats) for source in sources]
        else:
            runs = [_pipelined(open_call, source, stats, job.inflight) for source in sources]
        deadline = t2 - time.monotonic() + _DRAIN_TIMEOUT
        try:
            await asyncio.wait_for(asyncio.gather(*runs), deadline)
        except TimeoutError:
            stats.errors.append(f"streams still open {_DRAIN_TIMEOUT} s after the send window")
        conn.send(("result", stats.result()))


async def _idle(conn: Connection, job: Job) -> None:
    async with _channel(job.address) as channel:
        await asyncio.wait_for(channel.channel_ready(), _CONNECT_TIMEOUT)
        open_call = _open(channel, 1)
        conn.send(("ready",))
        while (command := (await _recv(conn))[0]) != "end":
            if command != "open":
                raise ValueError(f"unexpected command {command!r}")
            stats = _Stats(t1=-math.inf, t2=math.inf)
            calls = [open_call() for _ in job.streams]

            async def first(call: Any, index: int, stats: _Stats = stats) -> None:
                sent_at = time.monotonic()
                await call.write(_point(index))
                stats.sent += 1
                answer = await call.read()
                if answer is grpc.aio.EOF or answer.timestamp != index:
                    stats.mismatched += 1
                stats.answer(sent_at, time.monotonic(), 1)

            await _bounded(stats, [first(c, i) for i, c in zip(job.streams, calls, strict=True)])
            conn.send(("opened", _counts(stats)))
            await _recv(conn)  # ("close",)

            async def close(call: Any, stats: _Stats = stats) -> None:
                await call.done_writing()
                if await call.read() is not grpc.aio.EOF:
                    stats.mismatched += 1

            await _bounded(stats, [close(c) for c in calls])
            del calls
            conn.send(("closed", _counts(stats)))


def _point(index: int) -> Any:
    from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2

    return pb2.DataPoint(value=math.sin(index / 10), timestamp=index)


async def _bounded(stats: _Stats, runs: list[Any]) -> None:
    """Run ``runs`` together, recording failures instead of raising, for at most a drain timeout."""
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*runs, return_exceptions=True), _DRAIN_TIMEOUT
        )
    except TimeoutError:
        stats.errors.append(f"streams not done after {_DRAIN_TIMEOUT} s")
        return
    for result in results:
        if isinstance(result, BaseException):
            stats.error(result)


def _counts(stats: _Stats) -> dict[str, Any]:
    result = stats.result()
    del result["latencies"]
    return result


def worker_main(conn: Connection) -> None:
    """A client process: run the parent's jobs until told to stop (or the parent is gone)."""
    die_with_parent()
    while True:
        try:
            if not conn.poll(_COMMAND_TIMEOUT):
                return
            command, *rest = conn.recv()
        except (EOFError, OSError):
            return
        if command == "stop":
            return
        try:
            if command == "timed":
                asyncio.run(_timed(conn, rest[0]))
            elif command == "idle":
                asyncio.run(_idle(conn, rest[0]))
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as exc:  # the parent reports it; this process stays usable
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
