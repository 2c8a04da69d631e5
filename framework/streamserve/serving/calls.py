"""Every open call of the server: admission (limits, shutdown), idle timeouts, ending streams.

Bookkeeping costs O(1) per message: a stream notes the time it last heard from its client, and one
watchdog task per server scans the open streams a few times per idle timeout, rather than each
message arming a timer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from typing import Any

from streamserve.errors import DeadlineExceeded, ResourceExhausted, StreamserveError, Unavailable

__all__ = ["END", "READ_AHEAD", "Calls", "Stream"]

END = object()
"""The marker a stream's reader adds when its client closed the request side."""

log = logging.getLogger(__name__)

READ_AHEAD = 64
"""Messages of one stream that may be read but not yet answered. When that many are waiting, the
stream stops reading and HTTP/2 flow control slows its client down."""

SHUTTING_DOWN = (
    "the server is shutting down: every message it received on this call was answered; "
    "reconnect (to another replica) and resume"
)


class Stream:
    """One bidirectional call: plugin state, and the ordered items between reader and writer.

    ``items`` holds, in arrival order, ``(request, future, heard)`` for each message read and at the
    end a marker: ``(index, exception)`` or ``END``. The writer sleeps on ``ready`` until the first
    item can be answered: the model's results wake it (one wake per batch, not per message), and so
    do markers.
    """

    __slots__ = (
        "ended_by",
        "id",
        "items",
        "last_heard",
        "opened",
        "reader",
        "ready",
        "room",
        "started",
        "state",
        "waiting",
    )

    def __init__(self) -> None:
        self.id = secrets.token_hex(4)
        """Names the stream in log lines."""
        self.opened = False
        self.state: Any = None
        self.items: collections.deque[Any] = collections.deque()
        self.ready = asyncio.Event()
        self.room = asyncio.Semaphore(READ_AHEAD)
        self.reader: asyncio.Task[None] | None = None
        self.waiting = False
        """True while the reader waits for the client's next message (the only place it may be
        cancelled without losing a message it already took)."""
        self.started = self.last_heard = time.perf_counter()
        self.ended_by: StreamserveError | None = None

    def add(self, request: Any, future: asyncio.Future[Any], heard: float) -> None:
        """A message read: answered once its future is done and every earlier one is answered."""
        self.items.append((request, future, heard))
        future.add_done_callback(self.wake)

    def finish(self, marker: Any) -> None:
        """The last item: ``END``, or ``(index, exception)`` to end the call with after the rest."""
        self.items.append(marker)
        self.ready.set()

    def wake(self, _: object = None) -> None:
        self.ready.set()

    def end(self, reason: StreamserveError) -> None:
        """Stop reading: messages already read are answered, then the call ends with ``reason``."""
        if self.ended_by is None:
            self.ended_by = reason
            if self.waiting and self.reader is not None:
                self.reader.cancel()


class Calls:
    """Admission and lifecycle of all calls, shared by every plugin service of one server."""

    def __init__(self, limit: int, idle_timeout: float | None) -> None:
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.open = 0
        """Calls open now (unary and streaming)."""
        self.streams: set[Stream] = set()
        self.shutting_down = False
        self._idle = asyncio.Event()
        self._idle.set()

    def admit(self) -> None:
        """Count a new call in, or refuse it with the reason."""
        if self.shutting_down:
            raise Unavailable("the server is shutting down; reconnect (to another replica)")
        if self.open >= self.limit:
            raise ResourceExhausted(
                f"too many concurrent calls: the limit is {self.limit} "
                "(server.max_concurrent_streams); retry later or on another replica"
            )
        self.open += 1
        self._idle.clear()

    def release(self) -> None:
        self.open -= 1
        if self.open == 0:
            self._idle.set()

    async def drain(self, grace: float) -> None:
        """Refuse new calls; give open ones ``grace`` seconds, then end the streams still open.

        Returns once every call is over, or shortly after the grace if some call (a unary one stuck
        in a model, say) is not: the caller then cancels what is left."""
        self.shutting_down = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
            return
        except TimeoutError:
            log.info("drain: grace over, ending %d open stream(s) with UNAVAILABLE", len(self.streams))
        for stream in list(self.streams):
            stream.end(Unavailable(SHUTTING_DOWN))
        with contextlib.suppress(TimeoutError):
            # Ended streams answer what they have read, then close: normally milliseconds.
            await asyncio.wait_for(self._idle.wait(), 0.5)

    async def watch_idle(self) -> None:
        """End streams whose client sent nothing for ``idle_timeout`` seconds. Runs until cancelled."""
        if self.idle_timeout is None:
            return
        timeout = self.idle_timeout
        while True:
            await asyncio.sleep(min(timeout / 4, 5.0))
            cutoff = time.perf_counter() - timeout
            for stream in list(self.streams):
                if stream.waiting and stream.last_heard < cutoff:
                    stream.end(DeadlineExceeded(
                        f"no message for {timeout:g} s (server.stream_idle_timeout_seconds); "
                        "every message received was answered"
                    ))
