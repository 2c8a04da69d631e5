"""The pool of load-generator processes, seen from the harness: start, command, collect, stop.

The processes live for the whole run (spawning one costs about a second of imports, which would
double the length of ``--quick``). Every wait on them is bounded; a pool that misbehaved is
replaced, never reused.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from benchmarks.loadgen import worker_main

__all__ = ["ClientError", "ClientPool", "Worker"]


class ClientError(RuntimeError):
    """A client process failed, answered out of turn, or did not answer in time."""


@dataclass
class Worker:
    process: BaseProcess
    conn: Connection

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def send(self, *message: Any) -> None:
        self.conn.send(message)

    def expect(self, kind: str, timeout: float) -> tuple[Any, ...]:
        """The next message, which must be ``kind``; raises :class:`ClientError` otherwise."""
        try:
            if not self.conn.poll(timeout):
                raise ClientError(f"client {self.pid}: no {kind!r} after {timeout:.0f} s")
            message: tuple[Any, ...] = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise ClientError(f"client {self.pid} is gone ({exc!r})") from exc
        if message[0] == "failed":
            raise ClientError(f"client {self.pid} failed: {message[1]}")
        if message[0] != kind:
            raise ClientError(f"client {self.pid}: expected {kind!r}, got {message[0]!r}")
        return message


class ClientPool:
    """``size`` client processes (spawned: a forked gRPC process is not safe to use)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.workers: list[Worker] = []
        context = multiprocessing.get_context("spawn")
        try:
            for index in range(size):
                parent, child = context.Pipe()
                process = context.Process(
                    target=worker_main, args=(child,), name=f"loadgen-{index}", daemon=True
                )
                process.start()
                child.close()
                self.workers.append(Worker(process, parent))
        except BaseException:
            self.close()
            raise

    def take(self, wanted: int | None, streams: int) -> list[Worker]:
        """The workers for a scenario: ``wanted`` (all if None), never more than there are streams."""
        count = min(wanted or self.size, self.size, streams)
        return self.workers[:count]

    def close(self) -> None:
        """Ask every process to stop, then terminate and kill what is left."""
        for worker in self.workers:
            with contextlib.suppress(OSError, ValueError):
                worker.send("stop")
        for worker in self.workers:
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(2)
            worker.conn.close()
        self.workers = []


def split(items: list[int], parts: int) -> list[list[int]]:
    """``items`` dealt round-robin into ``parts`` nearly equal shares."""
    return [items[i::parts] for i in range(parts)]
