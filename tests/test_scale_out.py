"""Scale-out: long-lived streams spread over replicas, and moved when a replica goes away.

Three `streamserve serve` processes on loopback, each serving a copy of the same anomaly model under
a different version directory (1, 2, 3), so every score names the replica that computed it
(``AnomalyScore.model_version``): the servers themselves say who served which stream. One client
channel balances with ``round_robin`` over the three addresses, as a headless Kubernetes Service
would let it. Then one replica gets SIGTERM: its streams are answered through the drain grace, end
with UNAVAILABLE, and ``streamserve.client.resilient_stream`` re-opens them on the others.

Also: ``resilient_stream`` against a server that cuts connections by age (max_connection_age).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

from streamserve.client import ROUND_ROBIN, resilient_stream
from streamserve.config import parse_config
from streamserve.testing import ServerProcess, serve_in_process, serve_subprocess

pytestmark = pytest.mark.e2e

ANOMALY = "anomaly_detection.AnomalyDetectionService"
REPLICAS = 3
STREAMS = 30
BEFORE = 30  # points each stream sends before the replica is stopped
AFTER = 90  # points each stream sends after
PACE = 0.02  # seconds between points after the stop: the streams outlive the drain grace
GRACE = 1.0  # server.shutdown_grace_seconds of every replica
TIMEOUT = 60.0  # seconds; bounds every wait below


@dataclass
class StreamLog:
    """What one client stream saw: the replica (model version) of each score, and its retries."""

    versions: list[str] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    retries: list[tuple[grpc.StatusCode, float]] = field(default_factory=list)
    error: BaseException | None = None


def replica_configs(root: Path, model_dir: Path) -> list[Path]:
    """One config per replica; replica i serves the model as version ``i + 1``."""
    configs = []
    for i in range(REPLICAS):
        base = root / f"replica{i + 1}"
        shutil.copytree(model_dir, base / "models" / str(i + 1))
        config = base / "server.yaml"
        config.write_text(
            f"server:\n  shutdown_grace_seconds: {GRACE}\n"
            "plugins:\n  anomaly:\n    model_path: models\n    model_poll_seconds: null\n",
            encoding="utf-8",
        )
        configs.append(config)
    return configs


def start_all(stack: ExitStack, configs: list[Path]) -> list[ServerProcess]:
    """Start every replica at once (each imports TensorFlow: in parallel, start-up takes one's time)."""
    managers: list[AbstractContextManager[ServerProcess]] = [
        serve_subprocess(c, services=["", ANOMALY], timeout=TIMEOUT) for c in configs
    ]
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(m.__enter__) for m in managers]
    started = []
    for manager, future in zip(managers, futures, strict=True):
        if future.exception() is None:
            stack.push(manager.__exit__)
            started.append(future.result())
    for future in futures:
        if (error := future.exception()) is not None:
            raise error
    return started


def detect_stream(channel: grpc.Channel, pb2: Any) -> Any:
    """``DetectAnomalyStream`` on ``channel``, with the anomaly plugin's messages."""
    return channel.stream_stream(
        f"/{ANOMALY}/DetectAnomalyStream", request_serializer=pb2.DataPoint.SerializeToString,
        response_deserializer=pb2.AnomalyScore.FromString,
    )


def run_stream(channel: grpc.Channel, pb2: Any, index: int, stopped: threading.Event,
               log: StreamLog) -> None:
    """One client stream: BEFORE points, a wait for the stop, AFTER paced points; all answered."""

    def points() -> Iterator[Any]:
        for t in range(BEFORE + AFTER):
            if t == BEFORE and not stopped.wait(TIMEOUT):
                raise TimeoutError("the replica was never stopped")
            if t >= BEFORE:
                time.sleep(PACE)
            yield pb2.DataPoint(value=float((t * 7 + index) % 11), timestamp=t)

    method = detect_stream(channel, pb2)
    try:
        for score in resilient_stream(
            lambda requests: method(requests, timeout=TIMEOUT), points(), max_attempts=8,
            on_retry=lambda error, _: log.retries.append((error.code(), time.monotonic())),
        ):
            log.versions.append(score.model_version)
            log.timestamps.append(score.timestamp)
    except BaseException as exc:  # reported by the test, with the others
        log.error = exc


def wait_until_every_replica_answers(channel: grpc.Channel, pb2: Any) -> None:
    """One-point streams until every replica has answered one: round_robin picks among the replicas
    it is connected to, so streams opened while one is still connecting would all go to the others
    (seen on a busy machine: 6, 3 and 21 of 30)."""
    method = detect_stream(channel, pb2)
    seen: set[str] = set()
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < REPLICAS:
        assert time.monotonic() < deadline, f"only replicas {sorted(seen)} answered"
        for score in method(iter([pb2.DataPoint(value=0.0, timestamp=0)]), timeout=TIMEOUT):
            seen.add(score.model_version)


def test_streams_spread_over_replicas_and_move_when_one_stops(
    tmp_path: Path, anomaly_model_dir: Path
) -> None:
    from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2

    configs = replica_configs(tmp_path, anomaly_model_dir)
    with ExitStack() as stack:
        replicas = start_all(stack, configs)
        target = "ipv4:" + ",".join(r.address for r in replicas)
        channel = stack.enter_context(
            grpc.insecure_channel(target, options=[("grpc.service_config", ROUND_ROBIN)])
        )
        wait_until_every_replica_answers(channel, pb2)
        stopped = threading.Event()
        logs = [StreamLog() for _ in range(STREAMS)]
        threads = [threading.Thread(target=run_stream, args=(channel, pb2, i, stopped, logs[i]),
                                    daemon=True) for i in range(STREAMS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + TIMEOUT
        while any(len(log.versions) < BEFORE and log.error is None for log in logs):
            assert time.monotonic() < deadline, "the streams did not get their first scores"
            time.sleep(0.05)
        assert [log.error for log in logs if log.error] == []

        # Every replica is serving some of the streams: round_robin spread them.
        first = [log.versions[0] for log in logs]
        per_replica = {v: first.count(v) for v in sorted(set(first))}
        assert set(per_replica) == {"1", "2", "3"}, per_replica
        assert min(per_replica.values()) >= STREAMS // REPLICAS // 2, per_replica

        # Stop replica 1; its clients carry on.
        victim = replicas[0]
        victim.process.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()
        stopped.set()
        for thread in threads:
            thread.join(max(0.0, deadline + TIMEOUT - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), "a stream did not finish"
        assert victim.process.wait(TIMEOUT) == 0, victim.output()

    errors = [f"stream {i}: {log.error!r}" for i, log in enumerate(logs) if log.error]
    assert errors == []
    for i, log in enumerate(logs):
        # Every point answered once, in order, whatever happened on the way.
        assert log.timestamps == list(range(BEFORE + AFTER)), f"stream {i}"
        moved = log.versions[0] == "1"
        if moved:
            # Answered by replica 1 during its drain, then UNAVAILABLE, then by another replica.
            assert log.versions.count("1") > BEFORE, f"stream {i}: nothing answered during the drain"
            assert log.versions[-1] in ("2", "3"), f"stream {i}"
            assert log.retries and log.retries[0][0] == grpc.StatusCode.UNAVAILABLE, f"stream {i}"
            waited = log.retries[0][1] - sigterm_at
            assert waited >= 0.8 * GRACE, f"stream {i} ended {waited:.2f} s after SIGTERM"
        else:
            assert set(log.versions) == {log.versions[0]}, f"stream {i} moved: {log.versions}"
            assert log.retries == [], f"stream {i}"
    assert "stopping" in victim.output()


# resilient_stream and max_connection_age -----------------------------------------------------------


def paced_scale_stream(address: str, pb2: Any, messages: int, pace: float, replay: int) -> tuple[
        list[list[float]], list[grpc.StatusCode]]:
    """Scale ``messages`` values, one a message every ``pace`` s, through resilient_stream."""
    retries: list[grpc.StatusCode] = []

    def values() -> Iterator[Any]:
        for i in range(messages):
            time.sleep(pace)
            yield pb2.Values(values=[float(i)])

    with grpc.insecure_channel(address) as channel:
        method = channel.stream_stream("/streamserve_test.Scaler/ScaleStream",
                                       request_serializer=pb2.Values.SerializeToString,
                                       response_deserializer=pb2.Values.FromString)
        replies = [list(reply.values) for reply in resilient_stream(
            lambda requests: method(requests, timeout=TIMEOUT), values(), replay=replay,
            on_retry=lambda error, _: retries.append(error.code()),
        )]
    return replies, retries


@pytest.mark.parametrize("replay", [0, 3])
async def test_resilient_stream_survives_connections_cut_by_age(
    scaler_plugin: ModuleType, scaler_model: Path, replay: int
) -> None:
    """max_connection_age ends a long stream's connection after the grace (UNAVAILABLE):
    resilient_stream re-opens it each time, and every message is answered once, in order."""
    config = parse_config(
        "server:\n  max_connection_age_seconds: 0.5\n  max_connection_age_grace_seconds: 0.3\n"
        f"plugins:\n  scaler:\n    model_path: {scaler_model}\n", env={},
    )
    messages = 100
    async with serve_in_process(config, extra_plugins=[scaler_plugin], installed=False) as server:
        replies, retries = await asyncio.wait_for(asyncio.to_thread(
            paced_scale_stream, server.address, scaler_plugin.scaler_pb2, messages, 0.02, replay,
        ), TIMEOUT)
    assert replies == [[2.0 * i + 1] for i in range(messages)]
    assert retries and set(retries) == {grpc.StatusCode.UNAVAILABLE}, retries


async def test_resilient_stream_raises_errors_it_must_not_retry(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    """INVALID_ARGUMENT is the client's fault: re-sending would fail again, so it is raised at once."""
    pb2 = scaler_plugin.scaler_pb2
    config = parse_config(f"plugins:\n  scaler:\n    model_path: {scaler_model}\n", env={})
    retries: list[int] = []
    replies: list[list[float]] = []

    def call(address: str) -> None:
        requests = [pb2.Values(values=[1.0]), pb2.Values(values=[float("nan")]), pb2.Values(values=[2.0])]
        with grpc.insecure_channel(address) as channel:
            method = channel.stream_stream("/streamserve_test.Scaler/ScaleStream",
                                           request_serializer=pb2.Values.SerializeToString,
                                           response_deserializer=pb2.Values.FromString)
            for reply in resilient_stream(lambda r: method(r, timeout=TIMEOUT), requests,
                                          on_retry=lambda error, n: retries.append(n)):
                replies.append(list(reply.values))

    async with serve_in_process(config, extra_plugins=[scaler_plugin], installed=False) as server:
        with pytest.raises(grpc.RpcError) as error:
            await asyncio.wait_for(asyncio.to_thread(call, server.address), TIMEOUT)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert replies == [[3.0]]  # the message before the bad one was answered
    assert retries == []
