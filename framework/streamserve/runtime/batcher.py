"""The batcher: rows from every concurrent call of one model go into shared model calls.

One worker task per model takes whatever rows are waiting (up to ``max_batch_size``), runs the model
in a worker thread, and resolves each caller's future with its own slice of the outputs. While a batch
runs, the rows that arrive form the next one, so an idle model answers a lone row at once and a busy
model gets bigger batches: latency at low load, throughput at high load, with no tuning.

The queue is bounded in rows: :meth:`Batcher.submit` waits for room, so a call that produces rows
faster than the model scores them stops reading its stream and gRPC flow control slows the client.
A message's rows are never split across batches (a chunk bigger than ``max_batch_size`` runs alone).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamserve.config import BatchingConfig
from streamserve.contract import Outputs, Rows
from streamserve.errors import StreamserveError, Unavailable

__all__ = ["Batcher"]

log = logging.getLogger(__name__)

ModelCall = Callable[[Rows], dict[str, npt.NDArray[Any]]]


@dataclass(slots=True)
class _Pending:
    rows: Rows
    count: int
    future: asyncio.Future[Outputs]


class Batcher:
    """Cross-call batching for one model. Create, :meth:`start`, :meth:`submit`, :meth:`close`."""

    def __init__(
        self,
        call: ModelCall,
        config: BatchingConfig,
        *,
        name: str,
        version: str = "",
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._model = (call, version)
        self._on_batch = on_batch
        """Told the row count of every model call that succeeded (for metrics)."""
        self._config = config
        self._name = name
        self._pending: collections.deque[_Pending] = collections.deque()
        self._queued_rows = 0
        self._has_work = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()
        # One thread: batches of one model run one after another; TF uses its own threads inside.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._worker: asyncio.Task[None] | None = None
        self._running: list[_Pending] = []
        """The batch inside the model right now."""
        self._closed = False
        self.batches = 0
        """Model calls made so far (for tests and metrics)."""
        self.rows = 0
        """Rows scored so far."""

    @property
    def queued_rows(self) -> int:
        """Rows waiting for the model now."""
        return self._queued_rows

    @property
    def version(self) -> str:
        """The version of the model that the next batch runs on."""
        return self._model[1]

    def swap(self, call: ModelCall, version: str) -> None:
        """Run the following batches on another model; the batch in flight finishes on its own."""
        self._model = (call, version)

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def close(self) -> None:
        """Stop the worker; calls waiting for a result or for queue room fail with UNAVAILABLE."""
        self._closed = True
        self._has_room.set()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for item in (*self._running, *self._pending):
            if not item.future.done():
                item.future.set_exception(_unloaded())
        self._pending.clear()
        self._running = []
        # Waits for a model call still in the thread; off the event loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def submit(self, rows: Rows, count: int) -> asyncio.Future[Outputs]:
        """Queue ``count`` rows; returns a future of their outputs. Waits while the queue is full."""
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        if count == 0:
            future.set_result(Outputs({}, self.version))
            return future
        limit = self._config.max_queued_rows
        while self._queued_rows and self._queued_rows + count > limit and not self._closed:
            self._has_room.clear()
            await self._has_room.wait()
        if self._closed:
            raise _unloaded()
        self._pending.append(_Pending(rows, count, future))
        self._queued_rows += count
        self._has_work.set()
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        max_rows = self._config.max_batch_size
        delay = self._config.max_delay_ms / 1000
        while True:
            if not self._pending:
                self._has_work.clear()
                await self._has_work.wait()
            if delay and self._queued_rows < max_rows:
                await asyncio.sleep(delay)
            batch = [self._pending.popleft()]
            size = batch[0].count
            while self._pending and size + self._pending[0].count <= max_rows:
                item = self._pending.popleft()
                batch.append(item)
                size += item.count
            self._queued_rows -= size
            self._has_room.set()
            self._running = batch
            call, version = self._model  # a swap() applies from the next batch on
            try:
                outputs = await loop.run_in_executor(self._executor, _run_model, call, batch, size)
            except Exception as exc:
                if len(batch) == 1:
                    self._fail(batch[0], exc)
                else:
                    # One call's bad rows must not fail every call that shares its batch:
                    # run each alone, so only the culprit gets the error.
                    for item in batch:
                        await self._run_alone(loop, call, version, item)
                continue
            self._count(size)
            offset = 0
            for item in batch:
                end = offset + item.count
                if not item.future.done():  # its call may have been cancelled meanwhile
                    item.future.set_result(
                        Outputs({k: v[offset:end] for k, v in outputs.items()}, version)
                    )
                offset = end

    async def _run_alone(
        self, loop: asyncio.AbstractEventLoop, call: ModelCall, version: str, item: _Pending
    ) -> None:
        try:
            outputs = await loop.run_in_executor(self._executor, _run_model, call, [item], item.count)
        except Exception as exc:
            self._fail(item, exc)
            return
        self._count(item.count)
        if not item.future.done():
            item.future.set_result(Outputs(outputs, version))

    def _count(self, rows: int) -> None:
        self.batches += 1
        self.rows += rows
        if self._on_batch is not None:
            self._on_batch(rows)

    def _fail(self, item: _Pending, exc: Exception) -> None:
        if not isinstance(exc, StreamserveError):
            log.error("model call of %s failed on %d rows: %s: %s",
                      self._name, item.count, type(exc).__name__, exc)
            exc = StreamserveError(f"the model failed: {type(exc).__name__}: {exc}")
        if not item.future.done():
            item.future.set_exception(exc)


def _run_model(call: ModelCall, batch: list[_Pending], size: int) -> dict[str, npt.NDArray[Any]]:
    """Runs in the worker thread: join the rows, call the model, check what came back."""
    if len(batch) == 1:
        inputs = batch[0].rows
    else:
        inputs = {k: np.concatenate([item.rows[k] for item in batch]) for k in batch[0].rows}
    outputs = call(inputs)
    for name, value in outputs.items():
        if len(value) != size:
            raise StreamserveError(
                f"model output {name!r} has {len(value)} rows for {size} input rows; "
                "every output needs the batch dimension first"
            )
    return outputs

def _unloaded() -> Unavailable:
    return Unavailable("the model was unloaded; retry")
