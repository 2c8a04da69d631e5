"""One scenario against one server: drive the clients, read the server's CPU and memory, sum up.

The harness samples CPU (server and every client process) at the start and the end of the measured
window itself, from ``/proc``, so server CPU and load-generator CPU cover exactly the same seconds as
the message counts. CPU is in cores (CPU seconds per wall second): 1.0 is one core busy, the most a
GIL-bound Python thread can use; this machine's 2 cores are shared by server and clients.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from benchmarks.clients import ClientPool, split
from benchmarks.loadgen import Job
from benchmarks.procstat import cpu_seconds, machine_cpu, memory, reset_peak_rss, tree_cpu_seconds
from benchmarks.profile import Profiler
from benchmarks.scenarios import Scenario, Timing
from benchmarks.servers.launch import ServerProcess

__all__ = ["Target", "run_idle", "run_timed"]

MiB = 2**20
_READY_TIMEOUT = 60.0
_ANSWER_TIMEOUT = 180.0
"""Longest wait for clients to report, beyond the time the scenario itself takes."""


def _sleep_until(deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


def _cpu(pids: list[int]) -> list[float]:
    return [cpu_seconds(pid) for pid in pids]


def _server_cpu(pid: int | None) -> float:
    """The server's CPU, its worker processes' included."""
    return tree_cpu_seconds(pid) if pid is not None else 0.0


class Target(Protocol):
    """What a scenario is run against: a server the harness started, or any server's address
    (``pid`` None: another machine's or process tree's, so its CPU and memory are not read)."""

    @property
    def address(self) -> str: ...

    @property
    def pid(self) -> int | None: ...


def run_timed(
    pool: ClientPool, server: Target, scenario: Scenario, timing: Timing,
    profile: Path | None = None, *, gil: bool = False, model: str = "anomaly",
    stream_response: str = "ModelStreamInferResponse",
) -> dict[str, Any]:
    """Load ``server`` for warm-up + duration seconds; messages, latency, CPU and peak RSS.

    :param profile: record the server with py-spy during the measured window into this file
        (``gil``: only samples of the thread holding the GIL).
    :param model: the model an OIP scenario's requests name.
    :param stream_response: what the server's ModelStreamInfer answers with (see ``loadgen.Job``).
    """
    pid = server.pid
    workers = pool.take(scenario.clients, scenario.streams)
    shares = split(list(range(scenario.streams)), len(workers))
    for worker, share in zip(workers, shares, strict=True):
        worker.send("timed", Job(server.address, share, scenario.inflight, scenario.points,
                                 protocol=scenario.protocol, model=model,
                                 stream_response=stream_response))
    for worker in workers:
        worker.expect("ready", _READY_TIMEOUT)
    peak_reset = pid is not None and reset_peak_rss(pid)
    client_pids = [w.pid for w in workers]
    t0 = time.monotonic() + 0.1
    t1 = t0 + timing.warmup
    t2 = t1 + timing.duration
    for worker in workers:
        worker.send("go", t0, t1, t2)
    _sleep_until(t1)
    wall1, server1, clients1 = time.monotonic(), _server_cpu(pid), _cpu(client_pids)
    machine1 = machine_cpu()
    profiler = Profiler(pid, timing.duration, profile, gil=gil) if profile and pid else None
    _sleep_until(t2)
    wall2, server2, clients2 = time.monotonic(), _server_cpu(pid), _cpu(client_pids)
    machine = machine_cpu() - machine1
    results = [w.expect("result", _ANSWER_TIMEOUT)[1] for w in workers]
    mem = memory(pid) if pid is not None else None
    profiled = {"profile": str(profile), "profile_summary": profiler.finish()} if profiler else {}

    wall = wall2 - wall1
    per_client = [(b - a) / wall for a, b in zip(clients1, clients2, strict=True)]
    latencies = np.concatenate([r["latencies"] for r in results]) * 1000.0
    p50, p99, p999 = (
        np.percentile(latencies, [50, 99, 99.9]).tolist() if latencies.size else [None] * 3
    )
    window = t2 - t1
    return {
        "messages_per_s": sum(r["window_messages"] for r in results) / window,
        "points_per_s": sum(r["window_points"] for r in results) / window,
        "p50_ms": p50,
        "p99_ms": p99,
        "p999_ms": p999,
        "latency_samples": int(latencies.size),
        "server_cpu": (server2 - server1) / wall if pid is not None else None,
        "client_cpu": sum(per_client),
        "client_cpu_max": max(per_client),
        "client_processes": len(workers),
        "machine_busy": machine.busy / wall,
        "machine_steal": machine.steal / wall,
        # Everything else that ran: other processes, interrupts, loopback TCP in soft interrupts.
        "other_cpu": max(0.0, (machine.busy - (server2 - server1) - sum(clients2) + sum(clients1))
                         / wall),
        "peak_rss_mb": mem.peak / MiB if mem else None,
        "peak_rss_scope": "scenario" if peak_reset else "process lifetime",
        "rss_mb": mem.rss / MiB if mem else None,
        **_counts(results),
        **profiled,
    }


def run_idle(
    pool: ClientPool, server: ServerProcess, scenario: Scenario, timing: Timing
) -> dict[str, Any]:
    """Open ``streams`` streams (one message each), read RSS, close them, read RSS; ``rounds`` times.

    Memory is RSS above the server's RSS just before the first round. After a close it need not fall
    back to that (allocators keep freed memory for reuse); what matters is that it does not grow from
    round to round: a leak per stream would.
    """
    workers = pool.take(scenario.clients, scenario.streams)
    shares = split(list(range(scenario.streams)), len(workers))
    for worker, share in zip(workers, shares, strict=True):
        worker.send("idle", Job(server.address, share))
    for worker in workers:
        worker.expect("ready", _READY_TIMEOUT)
    time.sleep(timing.settle)
    idle = memory(server.pid).rss
    rounds = []
    answers: list[dict[str, Any]] = []
    try:
        for _ in range(timing.rounds):
            for worker in workers:
                worker.send("open")
            opened = [w.expect("opened", _ANSWER_TIMEOUT)[1] for w in workers]
            time.sleep(timing.settle)
            open_rss = memory(server.pid).rss
            for worker in workers:
                worker.send("close")
            closed = [w.expect("closed", _ANSWER_TIMEOUT)[1] for w in workers]
            time.sleep(timing.settle)
            closed_rss = memory(server.pid).rss
            answers += closed  # cumulative per round: "closed" counts include "opened"
            rounds.append({
                "streams_open": sum(o["received"] for o in opened),
                "open_mb": (open_rss - idle) / MiB,
                "closed_mb": (closed_rss - idle) / MiB,
            })
    finally:
        for worker in workers:
            worker.send("end")
    counts = _counts(answers)
    if any(r["streams_open"] != scenario.streams for r in rounds):
        counts["ok"] = False
        counts["errors"].append("not every stream was answered before the memory reading")
    return {
        "streams": scenario.streams,
        "idle_rss_mb": idle / MiB,
        "open_mb": max(r["open_mb"] for r in rounds),
        "closed_mb": rounds[-1]["closed_mb"],
        "growth_mb": rounds[-1]["closed_mb"] - rounds[0]["closed_mb"],
        "rounds": rounds,
        "peak_rss_mb": memory(server.pid).peak / MiB,
        **counts,
    }


def _counts(results: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [e for r in results for e in r["errors"]]
    sent = sum(r["sent"] for r in results)
    received = sum(r["received"] for r in results)
    mismatched = sum(r["mismatched"] for r in results)
    return {
        "sent": sent,
        "received": received,
        "mismatched": mismatched,
        "errors": errors,
        "ok": sent == received and mismatched == 0 and not errors,
    }
