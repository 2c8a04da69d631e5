"""A bidirectional call: its reader, its writer, and the ordered items between them.

The reader takes messages off the wire, decodes and preprocesses them and submits their rows, up to
``READ_AHEAD`` messages ahead; the writer (the handler's own task) answers them strictly in order.
A stream is so not limited to one model call per round trip, and when that many wait the reader
stops reading: HTTP/2 flow control slows a client that sends faster than the model scores (bounded
memory, no errors).

Per message the two tasks meet through plain fields and one future at a time, not asyncio's Event
and Semaphore (each wait there asks for the running loop, a system call on Linux): the writer sleeps
on a future of its own, which the batcher resolves directly when the model's results are in (its
``wake``), so the writer runs in the next turn of the event loop, once per batch.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.protobuf.message import Message

from streamserve.contract import Outputs
from streamserve.errors import StreamserveError
from streamserve.serving.calls import Call, send_failed

if TYPE_CHECKING:
    from streamserve.serving.handlers import MethodEndpoint

__all__ = ["READ_AHEAD", "Stream"]

READ_AHEAD = 64
"""Messages of one stream that may be read but not yet answered. When that many are waiting, the
stream stops reading and HTTP/2 flow control slows its client down."""

SETTLE_SECONDS = 0.05
"""How long a stream whose request side ended waits before it ends OK (longer on a busy server).

gRPC tells the reader "no more messages" alike for a client that closed its side and for one that
went away (cancelled, killed, or sent a message over gRPC's size cap); only a moment later does it
cancel the handler's task for the latter. That moment is gRPC's poller thread handing the event to
the event loop: microseconds when idle, but each hand-over needs the interpreter, so under a burst
of cancellations on a busy machine it grows (measured: ~10 ms for 100 at once on an idle machine,
over 0.5 s at load average 7). Waiting lets the cancellation arrive, so the call is recorded as
CANCELLED, as its client saw it; a clean stream's OK status leaves this much later."""

SETTLE_MAX_SECONDS = 2.0
"""The longest a stream waits so (see :func:`settle`)."""


@dataclass(slots=True)
class Answer:
    """A message read: answered once its outputs are in and every earlier message is answered."""

    index: int
    request: Message
    outputs: asyncio.Future[Outputs]
    heard: float
    """When it was read (perf_counter), for the latency metric."""


@dataclass(slots=True)
class Stop:
    """The last item: the client closed its side (``error`` None), or the call ends with ``error``
    once every message before ``index`` is answered."""

    index: int
    error: BaseException | None = None


class Stream:
    """One bidirectional call. :meth:`run` serves it; :meth:`end` stops it from outside (drain, idle)."""

    __slots__ = ("_loop", "_no_room", "_writer_waits", "call", "ended_by", "endpoint", "items",
                 "last_heard", "reader", "requests", "unanswered", "waiting")

    def __init__(self, endpoint: MethodEndpoint, call: Call, requests: AsyncIterable[bytes]) -> None:
        self.endpoint = endpoint
        self.call = call
        self.requests = requests
        self.items: collections.deque[Answer | Stop] = collections.deque()
        self._loop = asyncio.get_running_loop()
        self._writer_waits: asyncio.Future[None] | None = None
        """The writer sleeps on it until the first item may have become answerable (:meth:`_wake`)."""
        self.unanswered = 0
        """Messages read and not yet answered: the reader stops at ``READ_AHEAD``."""
        self._no_room: asyncio.Future[None] | None = None
        """The reader sleeps on it while ``READ_AHEAD`` messages are unanswered."""
        self.waiting = False
        """True while the reader waits for the client's next message (the only place it may be
        cancelled without losing a message it already took)."""
        self.last_heard = time.perf_counter()
        self.ended_by: StreamserveError | None = None
        self.reader: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Serve the call until the client closes its side (then return) or it fails (raise)."""
        self.endpoint.ready()  # refuse at once, before reading anything
        streams = self.endpoint.calls.streams
        streams.add(self)
        reader = self.reader = asyncio.get_running_loop().create_task(self._read())
        try:
            await self._write()
        finally:
            reader.cancel()
            streams.discard(self)

    def end(self, reason: StreamserveError) -> None:
        """Stop reading: messages already read are answered, then the call ends with ``reason``."""
        if self.ended_by is None:
            self.ended_by = reason
            if self.waiting and self.reader is not None:
                self.reader.cancel()

    # -- the reader -----------------------------------------------------------------------------

    async def _read(self) -> None:
        """Take messages off the wire, decode, preprocess and submit them, in order."""
        endpoint, call = self.endpoint, self.call
        calls = endpoint.calls
        received = endpoint.counted.received
        now = time.perf_counter
        wake = self._wake  # one bound method for every message
        index = 0
        messages = aiter(self.requests)
        try:
            while self.ended_by is None:
                while self.unanswered >= READ_AHEAD:
                    self._no_room = self._loop.create_future()
                    await self._no_room
                if self.ended_by is not None:
                    break
                self.waiting = True
                try:
                    data = await anext(messages)
                except StopAsyncIteration:
                    self._finish(Stop(index))
                    return
                finally:
                    self.waiting = False
                heard = self.last_heard = now()
                received.value += 1  # Tally.inc(), without a Python call per message
                request = endpoint.decode(data, index)
                state = call.state if call.opened else call.open_state()  # on the first message
                try:
                    outputs = await endpoint.submit(request, state, lane=call, wake=wake,
                                                    alone=calls.open == 1 and not self.items)
                except StreamserveError as exc:
                    if endpoint.on_error is None:
                        raise
                    # Answered in-band, in its turn; the stream goes on.
                    outputs = self._loop.create_future()
                    outputs.set_exception(exc)
                self.items.append(Answer(index, request, outputs, heard))
                self.unanswered += 1
                if outputs.done():  # resolved already: nobody else wakes the writer for it
                    wake()
                index += 1
        except asyncio.CancelledError:
            if self.ended_by is None:  # cancelled because the call itself is over
                raise
        except Exception as exc:
            # Answer everything read before the bad message, then end the call with this error.
            self._finish(Stop(index, exc))
            return
        assert self.ended_by is not None
        self._finish(Stop(index, self.ended_by))

    def _finish(self, stop: Stop) -> None:
        self.items.append(stop)
        self._wake()

    def _wake(self) -> None:
        """The first item may have become answerable: wake the writer if it sleeps."""
        waiter = self._writer_waits
        if waiter is not None:
            self._writer_waits = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the writer -----------------------------------------------------------------------------

    async def _write(self) -> None:
        """Answer the items in order, as their outputs come in."""
        endpoint, call = self.endpoint, self.call
        sent, latency = endpoint.counted.sent, endpoint.counted.latency
        items = self.items
        write = call.context.write
        now = time.perf_counter
        while True:
            if not items or (type(items[0]) is Answer and not items[0].outputs.done()):
                # Nothing to answer yet: the first item is a message whose outputs are not in.
                self._writer_waits = self._loop.create_future()
                await self._writer_waits
                continue
            item = items.popleft()
            if isinstance(item, Stop):
                if item.error is not None:
                    call.at(item.index)
                    raise item.error
                await settle()
                return
            try:
                data = endpoint.respond(item.outputs, item.request, call.state, item.index)
            except Exception:
                call.at(item.index)
                raise
            self.unanswered -= 1
            no_room = self._no_room
            if no_room is not None:
                self._no_room = None
                if not no_room.done():
                    no_room.set_result(None)
            sent.value += 1  # Tally.inc(), without a Python call per message
            latency.observe(now() - item.heard)
            try:
                await write(data)
            except Exception as exc:  # not CancelledError: that ends the call as it is
                raise send_failed(exc) from exc
            call.answered += 1


async def settle() -> None:
    """Let a cancellation that gRPC has already decided reach this task (see ``SETTLE_SECONDS``).

    Waits ``SETTLE_SECONDS``, and again while the event loop runs late (up to
    ``SETTLE_MAX_SECONDS``): a loop that is late is busy, and then so is the hand-over of gRPC's
    events to it."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + SETTLE_MAX_SECONDS
    while True:
        started = loop.time()
        await asyncio.sleep(SETTLE_SECONDS)
        now = loop.time()
        if now - started < 1.5 * SETTLE_SECONDS or now >= give_up:
            return
