"""Every open call of the server: admission (limits, shutdown), idle timeouts, ending streams; and
:class:`Call`, the one record of each call.

Bookkeeping costs O(1) per message: a stream notes the time it last heard from its client, and one
watchdog task per server scans the open streams a few times per idle timeout, rather than each
message arming a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from streamserve.errors import (
    Cancelled,
    DeadlineExceeded,
    ResourceExhausted,
    StreamserveError,
    Unavailable,
)
from streamserve.serving.metrics import MethodMetrics
from streamserve.serving.status import abort

if TYPE_CHECKING:
    from streamserve.serving.stream import Stream

__all__ = ["Call", "Calls", "Endpoint", "send_failed"]

log = logging.getLogger(__name__)

SHUTTING_DOWN = (
    "the server is shutting down: every message it received on this call was answered; "
    "reconnect (to another replica) and resume"
)


class Endpoint(Protocol):
    """What a :class:`Call` needs of the RPC method it serves."""

    where: str
    """``/package.Service/Method``, for statuses and logs."""
    plugin: str
    counted: MethodMetrics
    calls: Calls

    def open_state(self) -> Any: ...

    def close_state(self, state: Any) -> None: ...


class Call:
    """One call of any kind, from admission to its one record.

    ``async with Call(endpoint, context):`` admits the call (or ends it with the reason), and on
    exit closes the plugin's state, turns an error into its status (:func:`abort`), and records the
    status the client received, once: one log line and, unless OK, one count in
    ``streamserve_call_errors_total``. A cancelled call (the client went away, or its deadline
    passed) is recorded as CANCELLED (DEADLINE_EXCEEDED), whichever await it was cancelled in.
    """

    __slots__ = ("_id", "answered", "context", "endpoint", "index", "opened", "started", "state",
                 "status", "stream")

    def __init__(self, endpoint: Endpoint, context: grpc.aio.ServicerContext,
                 *, stream: bool = False) -> None:
        self.endpoint = endpoint
        self.context = context
        self.stream = stream
        """A bidirectional call: logged when it opens, counted in ``streamserve_active_streams``."""
        self._id: str | None = None
        self.index: int | None = None
        """The message that errors from now on concern (None: the call as a whole)."""
        self.state: Any = None
        self.opened = False
        self.answered = 0
        self.status = "OK"
        self.started = time.perf_counter()

    def open_state(self) -> Any:
        """The plugin's state for this call, opened on first use (a stream's first message)."""
        if not self.opened:
            self.state = self.endpoint.open_state()
            self.opened = True
        return self.state

    def at(self, index: int | None) -> None:
        """Errors from now on concern message ``index`` of the call (None: the call as a whole)."""
        self.index = index

    @property
    def failed_at(self) -> str:
        """Where an error happened: the method, and the message index once one is known."""
        if self.index is None:
            return self.endpoint.where
        return f"{self.endpoint.where} message {self.index}"

    @property
    def id(self) -> str:
        """Names the call in log lines; made on first use (most unary calls are never logged)."""
        if self._id is None:
            self._id = secrets.token_hex(4)
        return self._id

    async def __aenter__(self) -> Call:
        endpoint = self.endpoint
        try:
            endpoint.calls.admit()
        except StreamserveError as exc:
            self.status = exc.code.name
            self._record()
            await abort(self.context, exc, where=endpoint.where)
        if self.stream:
            endpoint.counted.active.inc()
            log.info("stream %s opened: %s from %s", self.id, endpoint.where, self.context.peer(),
                     extra={"stream_id": self.id, "plugin": endpoint.plugin, "method": endpoint.where})
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        endpoint = self.endpoint
        endpoint.calls.release()
        if self.stream:
            endpoint.counted.active.dec()
        try:
            if self.opened:
                endpoint.close_state(self.state)
        except Exception as error:  # a plugin's close_state bug: logged, the call's status stands
            log.error("%s: close_state failed", endpoint.where, exc_info=error)
        if exc is None:
            self._record()
            return False
        if isinstance(exc, asyncio.CancelledError | Cancelled):
            remaining = self.context.time_remaining()
            self.status = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
            self._record()
            # Nobody is left to tell: a Cancelled (a failed send) ends the handler quietly.
            return isinstance(exc, Cancelled)
        if not isinstance(exc, Exception):  # GeneratorExit, KeyboardInterrupt: not a call's outcome
            return False
        self.status = (exc.code if isinstance(exc, StreamserveError) else StreamserveError.code).name
        self._record()
        await abort(self.context, exc, where=self.failed_at)
        return False  # unreachable: abort raises

    def _record(self) -> None:
        endpoint = self.endpoint
        if self.status != "OK":
            endpoint.counted.error(self.status)
        # Unary calls can come by the thousand a second: only their failures at INFO.
        if not log.isEnabledFor(logging.INFO if self.stream or self.status != "OK" else logging.DEBUG):
            return
        fields = {"plugin": endpoint.plugin, "method": endpoint.where, "status": self.status,
                  "messages": self.answered}
        elapsed = time.perf_counter() - self.started
        if self.stream:
            log.info("stream %s closed: %s after %d answered message(s) in %.1f s", self.id,
                     self.status, self.answered, elapsed, extra={"stream_id": self.id, **fields})
        else:
            log.log(logging.DEBUG if self.status == "OK" else logging.INFO,
                    "call %s to %s ended: %s in %.3f s", self.id, endpoint.where, self.status,
                    elapsed, extra={"call_id": self.id, **fields})


def send_failed(exc: Exception) -> Cancelled:
    """What a failure of gRPC's ``write`` means: the call is gone on the client's side (grpc's
    ExecuteBatchError, or the server stopping); the call ends quietly, recorded as CANCELLED."""
    return Cancelled(f"sending a response failed: {type(exc).__name__}: {exc}")


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
