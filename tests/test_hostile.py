"""Hostile and unlucky clients against a real server: each call ends with a status that names the
reason, is recorded once (log line, metrics) as its client saw it, and nobody else notices.

docs/operations.md ("Hostile clients") has the table these tests prove.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

from streamserve.config import parse_config
from streamserve.serving import Server
from streamserve.testing import serve_in_process
from tests.support.counted import call_errors

SCALER = "streamserve_test.Scaler"
TIMEOUT = 30.0  # on every call: a hang fails the test instead of stalling the run

GARBAGE = {
    "random bytes": b"\xff\xfe\xfd\xfc\xfb",
    "a truncated varint": b"\x0d\xff\xff",  # field 1 as a 32-bit float, cut short
    "a length that overruns": b"\x0a\x40\x00\x00\x80\x3f",  # 64 bytes announced, 4 sent
}


def values(*numbers: float) -> bytes:
    """A scaler ``Values`` message, encoded by hand (packed repeated float, field 1)."""
    body = struct.pack(f"<{len(numbers)}f", *numbers)
    return bytes([0x0A, len(body)]) + body if len(body) < 128 else _long(body)


def _long(body: bytes) -> bytes:
    length = len(body)
    varint = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            return b"\x0a" + bytes(varint) + body


def raw(channel: grpc.aio.Channel, kind: str, method: str) -> Any:
    """A method stub that sends and receives bytes as they are (no serializers)."""
    return getattr(channel, kind)(f"/{SCALER}/{method}")


@pytest.fixture
async def scaler_server(scaler_plugin: ModuleType, scaler_model: Path) -> AsyncIterator[Server]:
    text = (
        "server:\n  max_receive_message_bytes: 2000\n  max_send_message_bytes: 1000\n"
        f"plugins:\n  scaler:\n    model_path: {scaler_model}\n"
    )
    async with serve_in_process(
        parse_config(text, env={}), extra_plugins=[scaler_plugin], installed=False
    ) as server:
        yield server


async def wait_for(condition: Any, what: str) -> None:
    """Wait (bounded) until ``condition()`` holds: the server records a call once it has ended."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_garbage_is_invalid_argument_for_every_kind_of_method(
    scaler_server: Server, garbage: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = GARBAGE[garbage]
    async with grpc.aio.insecure_channel(scaler_server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await raw(channel, "unary_unary", "Scale")(data, timeout=TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as streaming:
            async for _ in raw(channel, "unary_stream", "Expand")(data, timeout=TIMEOUT):
                pass
        # In a stream, the messages before the bad one are answered, then the call ends.
        replies = []
        with pytest.raises(grpc.aio.AioRpcError) as bidi:
            async for reply in raw(channel, "stream_stream", "ScaleStream")(
                iter([values(1.0), values(2.0), data, values(3.0)]), timeout=TIMEOUT
            ):
                replies.append(reply)
        # The server goes on serving, this channel included.
        assert await raw(channel, "unary_unary", "Scale")(values(1.0), timeout=TIMEOUT) == values(3.0)
    assert replies == [values(3.0), values(5.0)]
    for error, where in ((unary, "Scale message 0"), (streaming, "Expand message 0"),
                         (bidi, "ScaleStream message 2")):
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value
        details = error.value.details() or ""
        assert details.startswith(f"/{SCALER}/{where}: request: not a valid streamserve_test.Values"), details
    await wait_for(lambda: scaler_server.calls.open == 0, "the calls to end")
    assert call_errors(scaler_server) == {"INVALID_ARGUMENT": 3}
    assert "unexpected error" not in caplog.text and "Traceback" not in caplog.text


async def test_invalid_utf8_in_a_string_field_is_invalid_argument(anomaly_model: Path) -> None:
    config = parse_config(f"plugins:\n  anomaly:\n    model_path: {anomaly_model}\n", env={})
    point = b"\x0d\x00\x00\x80\x3f\x10\x01"  # value 1.0, timestamp 1
    bad = point + b"\x1a\x02\xff\xfe"  # series_id: two bytes that are not UTF-8
    async with serve_in_process(config, installed=True) as server, \
            grpc.aio.insecure_channel(server.address) as channel:
        stream = channel.stream_stream("/anomaly_detection.AnomalyDetectionService/DetectAnomalyStream")
        replies = []
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            async for reply in stream(iter([point, bad]), timeout=TIMEOUT):
                replies.append(reply)
        assert len(replies) == 1
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = failure.value.details() or ""
        assert "message 1: request: not a valid anomaly_detection.DataPoint" in details
        await wait_for(lambda: server.calls.open == 0, "the call to end")
        assert call_errors(server) == {"INVALID_ARGUMENT": 1}


@pytest.mark.parametrize(
    ("payload", "limit"),
    [
        # 2403 bytes in; the receive limit is 2000.
        (values(*([1.0] * 600)), "2000 (server.max_receive_message_bytes)"),
        # 1203 bytes in, as many out; the send limit is 1000.
        (values(*([1.0] * 300)), "1000 (server.max_send_message_bytes)"),
    ],
    ids=["request", "response"],
)
async def test_a_message_over_a_size_limit_is_resource_exhausted_and_counted(
    scaler_server: Server, caplog: pytest.LogCaptureFixture, payload: bytes, limit: str
) -> None:
    async with grpc.aio.insecure_channel(scaler_server.address) as channel:
        with caplog.at_level(logging.INFO):
            replies = []
            with pytest.raises(grpc.aio.AioRpcError) as bidi:
                async for reply in raw(channel, "stream_stream", "ScaleStream")(
                    iter([values(1.0), payload]), timeout=TIMEOUT
                ):
                    replies.append(reply)
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await raw(channel, "unary_unary", "Scale")(payload, timeout=TIMEOUT)
            await wait_for(lambda: scaler_server.calls.open == 0, "the calls to end")
    assert replies == [values(3.0)]
    for error in (bidi, unary):
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"over the limit of {limit}" in (error.value.details() or "")
    assert call_errors(scaler_server) == {"RESOURCE_EXHAUSTED": 2}
    assert "closed: RESOURCE_EXHAUSTED after 1 answered" in caplog.text
    assert "Traceback" not in caplog.text and "ExecuteBatchError" not in caplog.text


KILLED_CLIENT = """
import queue, struct, sys, time
import grpc
address, streams = sys.argv[1], int(sys.argv[2])
point = b"\\x0a\\x04" + struct.pack("<f", 1.0)
held = []
for _ in range(streams):
    channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    sent = queue.Queue()
    sent.put(point)
    replies = channel.stream_stream("/streamserve_test.Scaler/ScaleStream")(iter(sent.get, None))
    next(replies)  # the stream is open and answered
    held.append((channel, sent, replies))
print("ready", flush=True)
time.sleep(300)
"""


async def test_clients_killed_mid_stream_are_counted_cancelled(
    scaler_plugin: ModuleType, scaler_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    processes, streams = 10, 5
    text = f"plugins:\n  scaler:\n    model_path: {scaler_model}\n"
    async with serve_in_process(
        parse_config(text, env={}), extra_plugins=[scaler_plugin], installed=False
    ) as server:
        clients = [
            subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, server.address, str(streams)],
                             stdout=subprocess.PIPE, text=True, env={**os.environ})
            for _ in range(processes)
        ]
        try:
            for client in clients:
                assert client.stdout is not None
                line = await asyncio.wait_for(asyncio.to_thread(client.stdout.readline), 120)
                assert line.strip() == "ready"
            assert server.calls.open == processes * streams
            with caplog.at_level(logging.INFO):
                for client in clients:
                    client.kill()
                await wait_for(lambda: server.calls.open == 0, "the killed clients' calls to end")
        finally:
            for client in clients:
                client.kill()
                client.wait(10)
                assert client.stdout is not None
                client.stdout.close()
        assert call_errors(server) == {"CANCELLED": processes * streams}
        assert caplog.text.count("closed: CANCELLED after 1 answered") == processes * streams
        assert "closed: OK" not in caplog.text


async def test_a_second_server_on_a_taken_address_refuses_to_start(
    scaler_plugin: ModuleType, scaler_model: Path, tmp_path: Path, subprocess_env: dict[str, str],
) -> None:
    text = f"plugins:\n  scaler:\n    model_path: {scaler_model}\n"
    async with serve_in_process(
        parse_config(text, env={}), extra_plugins=[scaler_plugin], installed=False
    ) as first:
        config = tmp_path / "server.yaml"
        config.write_text(text)
        second = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "streamserve", "serve", "--config", str(config),
             "--address", first.address],
            env={**os.environ, **subprocess_env}, capture_output=True, text=True, timeout=120,
        )
        # The first one still has every call: nothing was split off to the second.
        async with grpc.aio.insecure_channel(first.address) as channel:
            assert await raw(channel, "unary_unary", "Scale")(values(1.0), timeout=TIMEOUT) == values(3.0)
    assert second.returncode == 1, second.stderr
    lines = [line for line in second.stderr.splitlines() if "start-up failed" in line]
    assert len(lines) == 1, second.stderr
    assert f"server.address: cannot listen on {first.address}: the address is in use" in lines[0]
    assert "listening" not in second.stderr and "Traceback" not in second.stderr


def test_a_taken_metrics_address_is_one_line_and_exit_1(
    scaler_model: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = tmp_path / "server.yaml"
        config.write_text(f"metrics:\n  address: {address}\n"
                          f"plugins:\n  scaler:\n    model_path: {scaler_model}\n")
        result = subprocess.run(
            [sys.executable, "-m", "streamserve", "serve", "--config", str(config),
             "--address", "127.0.0.1:0"],
            env={**os.environ, **subprocess_env}, capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 1, result.stderr
    assert f"metrics.address: cannot listen on {address}: the address is in use" in result.stderr
    for noise in ("Traceback", "OSError", "Event loop is closed", "listening on"):
        assert noise not in result.stderr, result.stderr


async def test_reuse_port_lets_two_servers_share_an_address_when_asked(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    text = f"server:\n  reuse_port: true\nplugins:\n  scaler:\n    model_path: {scaler_model}\n"
    async with serve_in_process(
        parse_config(text, env={}), extra_plugins=[scaler_plugin], installed=False
    ) as first:
        shared = parse_config("server:\n  reuse_port: true\n",
                              env={"STREAMSERVE_ADDRESS": first.address})
        server = Server(shared, [])
        await server.start()
        try:
            assert server.port == first.port
        finally:
            await server.stop(0)


async def test_a_point_stream_beside_a_chunk_flood_is_answered(anomaly_model: Path) -> None:
    """One client streams 100,000-point chunks back to back; a point stream beside it sends a
    point every 50 ms and is answered throughout. Its latency is printed (run with -s), not
    asserted: docs/operations.md quotes it."""
    import numpy as np

    from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2
    from streamserve_anomaly._proto import anomaly_detection_pb2_grpc as pb2_grpc

    chunk_points, chunks, canary_points = 100_000, 12, 40
    values = np.sin(np.arange(chunk_points) / 8).astype(np.float32).tolist()
    config = parse_config(f"plugins:\n  anomaly:\n    model_path: {anomaly_model}\n", env={})
    async with serve_in_process(config, installed=True) as server, \
            grpc.aio.insecure_channel(server.address) as channel:
        stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
        flooding = asyncio.Event()

        async def flood_messages() -> AsyncIterator[pb2.DataChunk]:
            for k in range(chunks):
                yield pb2.DataChunk(series_id="flood", values=values,
                                    timestamps=range(k * chunk_points, (k + 1) * chunk_points))
                flooding.set()

        async def flood() -> int:
            return sum([len(r.scores) async for r in stub.DetectAnomalyChunks(flood_messages(),
                                                                                timeout=300)])

        flooded = asyncio.create_task(flood())
        await asyncio.wait_for(flooding.wait(), TIMEOUT)
        latencies = []
        call = stub.DetectAnomalyStream(timeout=120)
        for i in range(canary_points):
            sent = time.perf_counter()
            await call.write(pb2.DataPoint(value=float(np.sin(i / 8)), timestamp=i))
            reply = await call.read()
            latencies.append(time.perf_counter() - sent)
            assert reply.timestamp == i
            await asyncio.sleep(0.05)
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await flooded == chunks * chunk_points
    latencies.sort()
    print(f"\npoint stream beside a flood of {chunks} x {chunk_points:,}-point chunks: "
          f"p50 {1000 * latencies[len(latencies) // 2]:.1f} ms, max {1000 * latencies[-1]:.1f} ms "
          f"over {canary_points} points")


def test_sigterm_while_a_model_loads_stops_at_once_and_logs_in_order(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    # A model whose saved_model.pb is a named pipe nobody writes to: its load never finishes.
    version = tmp_path / "slow" / "1"
    version.mkdir(parents=True)
    os.mkfifo(version / "saved_model.pb")
    config = tmp_path / "server.yaml"
    config.write_text(f"plugins:\n  scaler:\n    model_path: {version.parent}\n"
                      "  anomaly:\n    enabled: false\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamserve", "serve", "--config", str(config),
         "--address", "127.0.0.1:0"],
        env={**os.environ, **subprocess_env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    lines = []
    try:
        for line in process.stdout:  # bounded: the server prints a few lines, then waits
            lines.append(line)
            if "loading model 'scaler'" in line:
                break
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)  # the load would never end
        stopped_in = time.monotonic() - signalled
        lines.extend(process.stdout)
    finally:
        process.kill()
        process.wait(10)
        process.stdout.close()
    output = "".join(lines)
    assert code == 0, output
    print(f"\nstopped {stopped_in:.2f} s after SIGTERM, in the middle of a model load")
    events = [event for line in lines for event in (
        "listening on", "loading model 'scaler'", "stopping:", "abandoning the load of model(s) 'scaler'",
        "stopped", "is SERVING version", "loaded model") if event in line]
    assert events == ["listening on", "loading model 'scaler'", "stopping:",
                      "abandoning the load of model(s) 'scaler'", "stopped"], output


async def test_two_thousand_streams_opened_at_once_by_one_client_are_all_served(
    scaler_server: Server,
) -> None:
    """gRPC's own default refuses some calls once more than 1,000 wait to be picked up by the
    handlers ("Too many pending requests"; a grpc.aio client writing first sees INTERNAL). The
    server raises that to server.max_concurrent_streams."""
    async def one(channel: grpc.aio.Channel, k: int) -> bytes:
        call = raw(channel, "stream_stream", "ScaleStream")(timeout=120)
        await call.write(values(float(k)))
        reply = await call.read()
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        return bytes(reply)

    async with grpc.aio.insecure_channel(scaler_server.address) as channel:
        replies = await asyncio.gather(*(one(channel, k) for k in range(2000)))
    assert replies == [values(2.0 * k + 1) for k in range(2000)]
    await wait_for(lambda: scaler_server.calls.open == 0, "the streams to end")
    assert call_errors(scaler_server) == {}
