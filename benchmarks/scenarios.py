"""The scenarios: what load each server gets, in the full run and in ``--quick`` mode.

Each scenario isolates one question. *latency*: what one message costs end to end when nothing else
happens. *concurrency*: many clients that each wait for their answer (cross-stream batching is the
only way to go faster than one model call per message). *throughput*: the same streams pipelined
(read-ahead and bigger batches). *chunked*: many points per message (vectorised work per message).
*idle*: what an open stream costs in memory, and whether closing it gives that back. *oip-unary* and
*oip-stream*: the concurrency scenario's load through the Open Inference Protocol (tritonclient's
messages, the model named ``anomaly``), unary ``ModelInfer`` and streaming ``ModelStreamInfer``: what
the standard protocol costs next to the native service, and a load any OIP server can be given.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NAMES", "Scenario", "Timing", "scenarios", "timing"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    streams: int
    """Streams open at once, spread over the client processes."""
    inflight: int = 1
    """Messages each stream keeps sent but not yet answered (1: wait for each answer)."""
    points: int = 1
    """Points per message: 1 uses DetectAnomalyStream, more uses DetectAnomalyChunks."""
    idle: bool = False
    """Open the streams, send one message each, hold them, measure memory, close; no timing."""
    clients: int | None = None
    """Client processes to use; None: all of them (``--clients``)."""
    protocol: str = "native"
    """``native``: the anomaly service; ``oip-unary`` / ``oip-stream``: the Open Inference Protocol."""

    @property
    def chunked(self) -> bool:
        return self.points > 1

    def describe(self) -> str:
        if self.idle:
            return f"{self.streams} open streams, one message each, then closed"
        what = f"{self.points:,} points/message" if self.chunked else "1 point/message"
        if self.protocol == "oip-unary":
            return f"{self.streams} concurrent ModelInfer callers (OIP), 1 row per request"
        if self.protocol == "oip-stream":
            return f"{self.streams} ModelStreamInfer streams (OIP), {self.inflight} in flight each, 1 row"
        return f"{self.streams} stream(s), {self.inflight} in flight each, {what}"


NAMES = ("latency", "concurrency", "throughput", "chunked", "idle", "oip-unary", "oip-stream")

_FULL = {
    "latency": Scenario("latency", streams=1, inflight=1, clients=1),
    "concurrency": Scenario("concurrency", streams=64, inflight=1),
    "throughput": Scenario("throughput", streams=64, inflight=32),
    # Two chunks in flight per stream: the next chunk is at the server while the answer to the
    # previous one travels back, as a real producer of chunks would do.
    "chunked": Scenario("chunked", streams=8, inflight=2, points=1024),
    "idle": Scenario("idle", streams=1000, idle=True),
    "oip-unary": Scenario("oip-unary", streams=64, protocol="oip-unary"),
    "oip-stream": Scenario("oip-stream", streams=64, protocol="oip-stream"),
}

_QUICK = {
    "latency": Scenario("latency", streams=1, inflight=1, clients=1),
    "concurrency": Scenario("concurrency", streams=8, inflight=1),
    "throughput": Scenario("throughput", streams=8, inflight=8),
    "chunked": Scenario("chunked", streams=2, inflight=2, points=1024),
    "idle": Scenario("idle", streams=100, idle=True),
    "oip-unary": Scenario("oip-unary", streams=8, protocol="oip-unary"),
    "oip-stream": Scenario("oip-stream", streams=8, protocol="oip-stream"),
}


def scenarios(names: list[str], *, quick: bool) -> list[Scenario]:
    """The named scenarios, sized for a full run or for ``--quick``."""
    table = _QUICK if quick else _FULL
    return [table[name] for name in names]


@dataclass(frozen=True, slots=True)
class Timing:
    warmup: float
    """Seconds of load before measuring: connections, TF kernels and batch sizes settle."""
    duration: float
    """Seconds measured."""
    settle: float
    """Idle scenario: seconds to wait before reading memory after opening or closing streams."""
    rounds: int
    """Idle scenario: open-then-close rounds; memory after the last must match the first."""


def timing(*, quick: bool, duration: float | None) -> Timing:
    if quick:
        return Timing(warmup=0.3, duration=duration or 1.0, settle=0.5, rounds=2)
    return Timing(warmup=2.0, duration=duration or 10.0, settle=2.0, rounds=3)
