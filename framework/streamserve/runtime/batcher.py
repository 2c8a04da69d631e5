"""The batcher: rows from every concurrent call of one model go into shared model calls.

One model thread per model takes whatever rows are waiting (up to ``max_batch_size``), calls the
model, and hands the outputs back to the event loop in one callback per batch, which resolves each
caller's future with its own slice. While a batch runs, the rows that arrive form the next one, so an
idle model answers a lone row at once and a busy model gets bigger batches: latency at low load,
throughput at high load, with no tuning. The thread is fed directly (a condition variable), not
through an executor and a worker task: a lone row crosses into the thread and back once each.

Model time is shared fairly between calls. Each call has its own lane (FIFO), and batches are
filled by visiting the lanes in turn, taking at most ``max_rows_per_call_turn`` rows from a lane per
visit: a message with more rows is fed to the model in pieces, taking turns with the other calls,
and its outputs are joined once the last piece is scored. So a client streaming 400,000-row chunks
holds the model for one piece at a time, and a point stream beside it waits for about one piece,
not for the whole chunk. (A model whose batch dimension is fixed, ``max_batch_size`` 1, gets whole
messages, one per call.) A message of more than ``max_rows_per_message`` rows is refused before
any of it is queued (INVALID_ARGUMENT naming the limit).

The queue is bounded in rows: :meth:`Batcher.submit` waits for room (:meth:`Batcher.offer` says
there is none), so a call that produces rows faster than the model scores them stops reading its
stream and gRPC flow control slows the client.
A call with nothing queued may always queue one message of up to one turn: a point stream is never
kept out by a flood that filled the queue.
A message of zero rows makes no model call: it gets one empty array per output of the model's
signature, as the model itself would answer, so plugins need no case of their own for it.

Each model call that succeeds is counted, once per batch, in :attr:`Batcher.statistics` (rows,
time, batch size: what Triton's ``ModelStatistics`` reports).

The per-message path is plain Python on the event loop: a submit takes the lock and appends. If the
model thread sleeps, the rows queued in one turn of the event loop are handled once, at its end: a
cheap model (recent calls under ``INLINE_CALL_SECONDS``, a batch of at most ``INLINE_MAX_ROWS``)
runs them right there on the loop, since handing them to the thread and the results back (a futex
wake, a thread switch, the GIL changing hands twice, a self-pipe write) costs more than the call;
a batch of a cheap model that waits for more rows waits on a timer of the loop (see
:meth:`Batcher._end_of_turn`); otherwise the thread is woken (under load it is busy and needs no
wake). A caller that waits for many
futures (a stream's writer) passes ``wake``, called where its future is resolved, instead of adding
a done callback to each future, which would cost a turn of the event loop per message.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamserve.config import BatchingConfig
from streamserve.contract import Outputs, Rows, TensorSpec
from streamserve.errors import InvalidArgument, StreamserveError, Unavailable
from streamserve.runtime.statistics import CallStatistics

__all__ = ["Batcher"]

log = logging.getLogger(__name__)

ModelCall = Callable[[Rows], dict[str, npt.NDArray[Any]]]


@dataclass(slots=True)
class _Pending:
    """One message's rows in its call's lane; fed to the model in one or more pieces."""

    rows: Rows
    count: int
    future: asyncio.Future[Outputs]
    wake: Callable[[], None] | None = None
    """Called on the event loop right after ``future`` is resolved (see :meth:`Batcher.offer`)."""
    unary: bool = False
    """The request of a unary call (two in one batch: unary calls are coming concurrently)."""
    taken: int = 0
    """Rows handed to the model so far (model thread)."""
    scored: int = 0
    """Rows whose outputs are back (event loop)."""
    parts: list[Outputs] | None = None
    """The outputs of the pieces scored so far, in order (event loop); made for a message fed in
    more than one piece only."""


_Piece = tuple[_Pending, int, int]
"""Rows ``start:stop`` of a message, in one batch: ``(item, start, stop)``. (A tuple: one is made
per message and batch, and a class's ``__init__`` is a Python call.)"""


def _part(item: _Pending, start: int, stop: int) -> Rows:
    """Rows ``start:stop`` of a message that is fed to the model in more than one piece."""
    return {k: v[start:stop] for k, v in item.rows.items()}


_new_outputs = dict.__new__
"""An empty :class:`Outputs`, without its ``__init__``, from ``_new_outputs(Outputs)``."""

_NO_FUTURE: Any = None
"""The future of a row run by :meth:`Batcher.call_now`: there is none, the caller gets the result."""

_Call = tuple[int, float, float]
"""A model call that succeeded: its row count, and when it started and ended (perf_counter)."""

_Results = tuple[list[tuple[_Piece, "Outputs | Exception"]], list[_Call]]
"""One batch's outcome per piece, and the model calls that succeeded."""

INLINE_CALL_SECONDS = 0.001
"""A model whose recent calls took less than this runs small batches on the event loop (see the
module docstring). The thread's hand-offs cost ~50-100 µs of CPU per batch on a busy 2-core machine
(measured on 1-row batches of unary calls), and a call's time as measured (wall clock) is several
times its CPU time under load: at 0.2 ms, batches of 20-40 rows of a ~50 µs model went to the thread
under 64 streams (measured: 0.25 ms per call). A model that is not known to be cheap yet (no call so
far) uses its thread."""

INLINE_MAX_ROWS = 256
"""Most rows run on the event loop at once: more go to the model thread, so a burst of rows never
holds the loop for long, whatever the model's recent calls cost."""

PROBE_SECONDS = 0.5
"""While unary calls seem to come one at a time, one unary call in this long waits for company
(``batching.unary_window_ms``), to find out whether others are in fact waiting in gRPC."""

TOGETHER_SECONDS = 1.0
"""How long unary calls keep waiting for company after two last shared a batch."""

_ANONYMOUS: Any = object()
"""The lane of submits that name none (one lane for all of them, first in first out)."""


class Batcher:
    """Cross-call batching for one model. Create, :meth:`start`, :meth:`submit`, :meth:`close`."""

    def __init__(
        self,
        call: ModelCall,
        config: BatchingConfig,
        *,
        name: str,
        version: str = "",
        outputs: Sequence[TensorSpec] = (),
        on_batch: Callable[[int], None] | None = None,
        statistics: CallStatistics | None = None,
    ) -> None:
        self._model = (call, version, tuple(outputs))
        """The model call, its version and its signature's outputs (a message of zero rows gets
        them empty): one tuple, so :meth:`swap` replaces them together."""
        self._on_batch = on_batch
        """Told the row count of every model call that succeeded (for metrics)."""
        self.statistics = statistics if statistics is not None else CallStatistics()
        """Every model call that succeeded, counted (the served model's, which outlives this)."""
        self._config = config
        self._name = name
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        """Rows were queued, or the batcher closed: the model thread waits on it. (The event loop
        takes ``_lock`` itself: a Condition's ``with`` costs two Python calls per message.)"""
        # Guarded by _lock: shared by the event loop (submit) and the model thread.
        self._lanes: collections.OrderedDict[Any, collections.deque[_Pending]] = (
            collections.OrderedDict()
        )
        """Each call's queued messages, by lane, in the order the lanes get their next turn."""
        self._queued_rows = 0
        self._running: list[_Piece] = []
        """The batch the model runs now (its messages fail if the batcher closes meanwhile)."""
        self._closed = False
        self._sleeping = False
        """The model thread waits for rows: only then does a submit need to wake it."""
        self._wake_pending = False
        """Rows queued for a sleeping model thread are handled at the end of this loop turn."""
        self._deferred = False
        """A cheap model's :meth:`_end_of_turn` waits one more turn (see there); only the loop
        touches it."""
        self._gathering = False
        """The model thread has rows and waits up to its deadline for more (see
        :meth:`_gathering_more`)."""
        self._timer: asyncio.TimerHandle | None = None
        """The event loop waits so for a cheap model (see :meth:`_end_of_turn`); only the loop
        touches it."""
        self._waited = False
        """The queued batch waited its deadline on the loop: the thread runs it without waiting."""
        self._call_seconds: float | None = None
        """How long the model's recent calls took (a moving average; None: none yet)."""
        self._window = config.unary_window_ms / 1000
        self._company = False
        """Guarded by _lock: a row that waits for company is queued, so the next batch waits
        ``_window`` for more rows (see :meth:`wants_company`)."""
        self._together_until = 0.0
        """Until then (monotonic) unary calls come concurrently: each waits for company."""
        self._next_probe = 0.0
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._room_waiters = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def queued_rows(self) -> int:
        """Rows waiting for the model now."""
        return self._queued_rows

    @property
    def version(self) -> str:
        """The version of the model that the next batch runs on."""
        return self._model[1]

    def swap(self, call: ModelCall, version: str, outputs: Sequence[TensorSpec]) -> None:
        """Run the following batches on another model; the batch in flight finishes on its own."""
        self._model = (call, version, tuple(outputs))

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Stop the model thread; calls waiting for a result or for room fail with UNAVAILABLE."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._has_room.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)  # a model call in progress finishes first
        with self._lock:
            left = [*(item for item, _, _ in self._running),
                    *(item for lane in self._lanes.values() for item in lane)]
            self._lanes.clear()
            self._running = []
            self._queued_rows = 0
        for item in left:
            if not item.future.done():
                item.future.set_exception(_unloaded())
                if item.wake is not None:
                    item.wake()

    async def submit(
        self, rows: Rows, count: int, lane: object = _ANONYMOUS,
        wake: Callable[[], None] | None = None, *, unary: bool = False, company: bool = False,
    ) -> asyncio.Future[Outputs]:
        """Queue ``count`` rows of one message; returns a future of their outputs.

        ``lane`` names the call the message belongs to (messages of one lane are fed in order; lanes
        take turns). Waits while the queue is full, except for a call with nothing queued sending a
        message of at most one turn. ``wake``, ``unary``, ``company``: see :meth:`offer`."""
        while (future := self.offer(rows, count, lane, wake, unary=unary, company=company)) is None:
            self._has_room.clear()
            self._room_waiters += 1
            try:
                await self._has_room.wait()
            finally:
                self._room_waiters -= 1
        return future

    def offer(
        self, rows: Rows, count: int, lane: object = _ANONYMOUS,
        wake: Callable[[], None] | None = None, *, unary: bool = False, company: bool = False,
    ) -> asyncio.Future[Outputs] | None:
        """:meth:`submit` without the wait: None, and nothing queued, if the queue has no room now.

        ``wake``, if given, is called on the event loop right after the future is resolved, when
        that happens later (a message of zero rows gets a future resolved already, and no call).
        ``unary``: the rows of a unary call; ``company``: their batch waits for more rows
        (:meth:`wants_company`)."""
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        if count == 0:
            _, version, outputs = self._model
            future.set_result(Outputs(_no_rows(outputs), version))
            return future
        config = self._config
        if count > config.max_rows_per_message:
            raise self._too_many(count)
        queued = self._queued_rows
        if (queued and queued + count > config.max_queued_rows and not self._closed
                and (lane is _ANONYMOUS or lane in self._lanes
                     or count > config.max_rows_per_call_turn)):
            return None
        with self._lock:
            if self._closed:
                raise _unloaded()
            queue = self._lanes.get(lane)
            if queue is None:
                queue = self._lanes[lane] = collections.deque()
            queue.append(_Pending(rows, count, future, wake, unary))
            self._queued_rows += count
            if company:
                self._company = True
            if self._sleeping and not self._wake_pending and not self._gathering_more():
                # At the end of this turn of the event loop every message read in it is queued (one
                # batch), and a woken thread does not take the interpreter from the loop midway.
                self._wake_pending = True
                loop.call_soon(self._end_of_turn)
        return future

    def _gathering_more(self) -> bool:
        """(Under the lock.) The batch waits for more rows (``max_delay_ms``, or company), in the
        model thread or on the loop's timer, and is not full: it runs at its deadline. Waking the
        thread sooner only costs it (and the loop, whose interpreter it takes) a wake-up to go
        back to sleep."""
        return ((self._gathering or self._timer is not None)
                and self._queued_rows < self._config.max_batch_size)

    def _wait_seconds(self) -> float:
        """(Under the lock.) How long the next batch may wait for more rows."""
        delay = self._config.max_delay_ms / 1000
        return max(delay, self._window) if self._company else delay

    def _cheap(self) -> bool:
        return self._call_seconds is not None and self._call_seconds < INLINE_CALL_SECONDS

    def _end_of_turn(self) -> None:
        """The rows queued in a turn of the loop, for a sleeping model thread: run them on the loop
        if the model is cheap, else wake the thread. A batch that waits for more rows
        (``max_delay_ms``, or company) waits on a timer of the loop if the model is cheap: in the
        thread, its call would then wait for the interpreter, which the busy loop holds for up to
        its switch interval (5 ms), and spend several times its own CPU doing so (measured: a
        30 µs model call took 340-420 µs of CPU in a thread beside a busy loop).

        A cheap model's rows wait one more turn of the loop first: the messages whose reads
        complete meanwhile join the batch: under many streams a third fewer model calls per message
        (each mostly a fixed cost in TensorFlow; ~31 rows per call instead of ~20 at 64 streams),
        for a wait of one turn. (Measured at 64 OIP streams on the peer model: 6 of 8 alternating
        runs ahead, a median +3 % msg/s, 7 of 8 with less server CPU per message.) A call alone on
        the server never gets here (:meth:`call_now`)."""
        if not self._deferred and self._cheap():
            self._deferred = True
            assert self._loop is not None
            self._loop.call_soon(self._end_of_turn)
            return
        self._deferred = False
        self._wake_pending = False
        with self._lock:
            if not self._sleeping or self._closed or not self._lanes or self._gathering_more():
                return  # the thread is at work, or nothing to do, or the batch waits its deadline
            wait = self._wait_seconds()
            if (wait and self._timer is None and self._queued_rows < self._config.max_batch_size
                    and self._cheap()):
                assert self._loop is not None
                self._timer = self._loop.call_later(wait, self._gathered)
                return
        self._run_queued()

    def _gathered(self) -> None:
        """The loop's wait for a fuller batch is over: run it."""
        self._timer = None
        self._run_queued(waited=True)

    def _run_queued(self, *, waited: bool = False) -> None:
        """Run the queued rows on the loop if the model is cheap and idle; else wake its thread
        (``waited``: the batch waited for more rows already)."""
        with self._lock:
            if self._timer is not None:  # the batch filled up before its deadline
                self._timer.cancel()
                self._timer = None
                waited = True
            if not self._sleeping or self._closed or not self._lanes:
                return  # the thread is at work (it takes the rows) or there is nothing to do
            if self._gathering:  # the thread waits for this batch, which is full now
                self._changed.notify()
                return
            if not self._cheap() or self._queued_rows > INLINE_MAX_ROWS:
                self._waited = waited
                self._changed.notify()
                return
            self._company = False
            batch, size = self._take(self._config.max_batch_size)
            self._running = batch
        try:
            if batch:
                call, version, _ = self._model
                self._deliver(self._run(call, version, batch, size))
        finally:
            with self._lock:
                self._running = []
                if self._lanes:  # more than one batch was queued: the thread takes the rest
                    self._changed.notify()

    def _too_many(self, count: int) -> InvalidArgument:
        """The error for a message of ``count`` rows, over ``max_rows_per_message``."""
        limit = self._config.max_rows_per_message
        return InvalidArgument(
            "rows", f"{count} rows in one message, over the limit of {limit} of model "
            f"{self._name.removeprefix('model-')!r} (batching.max_rows_per_message); "
            "send them in smaller messages"
        )

    def wants_company(self) -> bool:
        """Whether a unary call's rows should wait for other calls' (``batching.unary_window_ms``).

        gRPC hands the server its calls one at a time, and a call that runs at once is answered
        before the next is handed over: run so, concurrent unary callers never meet, and each gets
        a model call of its own. So while unary calls come concurrently (two shared a batch in the
        last ``TOGETHER_SECONDS``) each waits for company; and while they seem to come one at a
        time, one call per ``PROBE_SECONDS`` waits anyway, to find out."""
        if not self._window:
            return False
        now = time.monotonic()
        if now < self._together_until:
            return True
        if now >= self._next_probe:
            self._next_probe = now + PROBE_SECONDS
            return True
        return False

    def call_now(self, rows: Rows, count: int, *, certain: bool = True) -> Outputs | None:
        """Run ``rows`` on the calling (event loop) thread if the model is idle; None if it is not.

        For a server with a single client waiting on its answer: there is nothing to batch with,
        and the two thread hand-offs (into the model thread and back to the loop) are most of what
        a lone message costs beyond the model itself. Only the loop submits, so while this runs
        nothing can queue behind it; the caller decides when being alone is certain.

        ``certain``: whether the caller knows that no other call is about to submit. A stream that is
        the server's only open call knows. A unary call does not: gRPC hands the calls that arrived to
        their handlers one at a time, and each one runs to its answer before the next starts, so
        under many concurrent callers every one of them looks alone. When not certain and the model
        waits for fuller batches (``max_delay_ms``), None: the rows queue and wait, as configured.
        """
        if not certain and self._config.max_delay_ms:
            return None
        if count > self._config.max_rows_per_message:
            raise self._too_many(count)
        if count > self._config.max_rows_per_call_turn:
            return None  # more than one turn: it would hold the event loop; pieces take turns
        with self._lock:
            if self._lanes or self._running or self._closed or count == 0:
                return None
        call, version, _ = self._model
        piece = (_Pending(rows, count, _NO_FUTURE), 0, count)
        results, calls = self._run(call, version, [piece], count)
        self._count(calls)
        result = results[0][1]
        if isinstance(result, Exception):
            raise result
        return result

    def _work(self) -> None:
        """The model thread: take a batch, run it, hand the results to the loop; until closed."""
        max_rows = self._config.max_batch_size
        lock, changed = self._lock, self._changed
        while True:
            with lock:
                self._sleeping = True
                changed.wait_for(lambda: self._lanes or self._closed)
                if self._closed:
                    return
                wait = 0 if self._waited else self._wait_seconds()
                self._waited = False
                if wait:
                    self._gathering = True
                    changed.wait_for(lambda: self._queued_rows >= max_rows or self._closed, wait)
                    self._gathering = False
                self._company = False
                self._sleeping = False
                batch, size = self._take(max_rows)
                self._running = batch
            if self._room_waiters:  # else nobody to wake; _deliver sets it in any case
                self._post(self._has_room.set)
            if not batch:  # every queued message was of a call that failed or went away
                continue
            call, version, _ = self._model  # a swap() applies from the next batch on
            results = self._run(call, version, batch, size)
            with lock:
                self._running = []
            if not self._post(self._deliver, results):
                return

    def _take(self, max_rows: int) -> tuple[list[_Piece], int]:
        """The next batch (under the lock): lanes visited in turn, at most one turn of rows from
        each visit, until ``max_rows``. With ``max_rows`` 1 (a model that takes one request per
        call), one whole message."""
        turn = min(self._config.max_rows_per_call_turn, max_rows)
        lanes = self._lanes
        if self._queued_rows <= turn:
            return self._take_all()
        batch: list[_Piece] = []
        size = 0
        while lanes and size < max_rows:
            lane, queue = next(iter(lanes.items()))
            item = queue[0]
            left = item.count - item.taken
            if item.future is not _NO_FUTURE and item.future.done():
                take = 0  # failed or cancelled meanwhile: its other pieces are not worth running
                queue.popleft()
            else:
                take = left if max_rows == 1 else min(left, turn, max_rows - size)
                batch.append((item, item.taken, item.taken + take))
                item.taken += take
                if item.taken == item.count:
                    queue.popleft()
            self._queued_rows -= take if take else left
            size += take
            if queue:
                lanes.move_to_end(lane)
            else:
                del lanes[lane]
        return batch, size

    def _take_all(self) -> tuple[list[_Piece], int]:
        """(Under the lock.) Every queued row, when they all fit one batch in one turn: what the
        visits in turn would take, whole, in one pass (the usual batch under many streams)."""
        batch: list[_Piece] = []
        size = 0
        for queue in self._lanes.values():
            for item in queue:
                if not item.future.done():  # else failed or cancelled meanwhile: not worth running
                    batch.append((item, item.taken, item.count))
                    size += item.count - item.taken
                    item.taken = item.count
        self._lanes.clear()
        self._queued_rows = 0
        return batch, size

    def _post(self, callback: Callable[..., None], *args: Any) -> bool:
        """Run ``callback`` on the event loop; False if the loop is gone (nobody left to answer)."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            return False
        return True

    def _run(self, call: ModelCall, version: str, batch: list[_Piece], size: int) -> _Results:
        started = time.perf_counter()
        try:
            outputs = _run_model(call, batch, size)
        except Exception as exc:
            if len(batch) == 1:
                _, start, stop = batch[0]
                return [(batch[0], _as_error(exc, stop - start, self._name))], []
            # One call's bad rows must not fail every call that shares its batch:
            # run each alone, so only the culprit gets the error.
            calls: list[_Call] = []
            return [self._run_alone(call, version, piece, calls) for piece in batch], calls
        done: list[_Call] = [(size, started, time.perf_counter())]
        if len(batch) == 1:  # nothing to split (and a model's scalar outputs stay as they are)
            return [(batch[0], Outputs(outputs, version))], done
        results: list[tuple[_Piece, Outputs | Exception]] = []
        offset = 0
        arrays = list(outputs.items())
        for piece in batch:
            _, start, stop = piece
            end = offset + stop - start
            # Made without Outputs.__init__ (a Python call, with a dict comprehension's on top):
            # this runs for every message.
            result = _new_outputs(Outputs)
            for name, array in arrays:
                result[name] = array[offset:end]
            result.model_version = version
            results.append((piece, result))
            offset = end
        return results, done

    def _run_alone(
        self, call: ModelCall, version: str, piece: _Piece, calls: list[_Call]
    ) -> tuple[_Piece, Outputs | Exception]:
        """Run one piece on its own; if the model call succeeds, add it to ``calls``."""
        _, start, stop = piece
        rows = stop - start
        started = time.perf_counter()
        try:
            outputs = _run_model(call, [piece], rows)
        except Exception as exc:
            return piece, _as_error(exc, rows, self._name)
        calls.append((rows, started, time.perf_counter()))
        return piece, Outputs(outputs, version)

    def _deliver(self, results: _Results) -> None:
        """On the event loop: resolve the futures of one batch, count its model calls."""
        self._has_room.set()
        answers, calls = results
        unary = 0
        for (item, start, stop), result in answers:
            if stop == item.count:  # one count per message, however many pieces it came in
                unary += item.unary
            future = item.future
            if future.done():  # its call was cancelled meanwhile, or an earlier piece failed
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            elif start == 0 and stop == item.count:  # the whole message (the usual case)
                future.set_result(result)
            else:  # one piece of a message fed in several
                item.scored += stop - start
                if item.scored < item.count:
                    if item.parts is None:
                        item.parts = []
                    item.parts.append(result)
                    continue
                if item.parts:
                    item.parts.append(result)
                    result = _joined(item.parts)
                future.set_result(result)
            if item.wake is not None:
                item.wake()
        if unary > 1:
            self._together_until = time.monotonic() + TOGETHER_SECONDS
        self._count(calls)

    def _count(self, calls: list[_Call]) -> None:
        """Count the model calls that succeeded, for statistics and metrics (on the loop)."""
        for rows, started, ended in calls:
            seconds, recent = ended - started, self._call_seconds
            if recent is None or seconds > recent:
                # One slow call is enough to leave the loop: most of the way up at once.
                self._call_seconds = seconds if recent is None else (recent + 3 * seconds) / 4
            else:
                self._call_seconds = 0.9 * recent + 0.1 * seconds
            self.statistics.add(rows, started, ended)
            if self._on_batch is not None:
                self._on_batch(rows)


def _joined(parts: list[Outputs]) -> Outputs:
    """The outputs of a message scored in pieces, as one."""
    return Outputs({k: np.concatenate([part[k] for part in parts]) for k in parts[0]},
                   parts[-1].model_version)


def _as_error(exc: Exception, rows: int, name: str) -> StreamserveError:
    if isinstance(exc, StreamserveError):
        return exc
    log.error("model call of %s failed on %d rows: %s: %s", name, rows, type(exc).__name__, exc)
    return StreamserveError(f"the model failed: {type(exc).__name__}: {exc}")


def _run_model(call: ModelCall, batch: list[_Piece], size: int) -> dict[str, npt.NDArray[Any]]:
    """Runs in the worker thread: join the rows, call the model, check what came back."""
    pieces = [item.rows if start == 0 and stop == item.count else _part(item, start, stop)
              for item, start, stop in batch]
    if len(batch) == 1:
        inputs = pieces[0]
    else:
        inputs = {k: np.concatenate([rows[k] for rows in pieces]) for k in pieces[0]}
    outputs = call(inputs)
    for name, value in outputs.items():
        if np.ndim(value) == 0 and len(batch) == 1 and inputs is batch[0][0].rows:  # whole
            continue  # a model that is not batchable may return a scalar for its one request
        if np.ndim(value) == 0 or len(value) != size:
            raise StreamserveError(
                f"model output {name!r} has {len(value) if np.ndim(value) else 'no'} rows for "
                f"{size} input rows; "
                "every output needs the batch dimension first"
            )
    return outputs


def _no_rows(outputs: tuple[TensorSpec, ...]) -> dict[str, npt.NDArray[Any]]:
    """What a model answers for zero rows: an empty array per output (a dimension of any size is 0)."""
    return {
        spec.name: np.empty((0, *(size or 0 for size in spec.shape[1:])), spec.numpy_dtype)
        for spec in outputs
    }


def _unloaded() -> Unavailable:
    return Unavailable("the model was unloaded; retry")
