"""The batcher on its own, with plain NumPy functions as the model (the real thing, as far as it sees)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from streamserve.config import BatchingConfig
from streamserve.contract import Outputs, Rows, TensorSpec
from streamserve.errors import InvalidArgument, StreamserveError, Unavailable
from streamserve.runtime import Batcher, CallStatistics
from streamserve.runtime import batcher as batcher_module

TIMEOUT = 5.0  # seconds; a hang fails the test instead of stalling the run
ModelOutputs = dict[str, npt.NDArray[Any]]


def affine(rows: Rows) -> ModelOutputs:
    """Two inputs, two outputs of different shapes: y = 2x + 1 per value, s = sum of x and b per row."""
    x, b = rows["x"], rows["b"]
    return {"y": 2 * x + 1, "s": x.sum(axis=1) + b}


AFFINE_OUTPUTS = (TensorSpec("y", "float32", (None, 2)), TensorSpec("s", "float32", (None,)))
"""What :func:`affine` returns, as its signature would declare it."""


def message(first: float, count: int) -> Rows:
    x = np.arange(first, first + 2 * count, dtype=np.float32).reshape(count, 2)
    return {"x": x, "b": np.full(count, first, dtype=np.float32)}


class Recorder:
    """Wraps a model function: records each call's row count, can sleep, can hold calls at a gate."""

    def __init__(self, function: Callable[[Rows], ModelOutputs] = affine, *, sleep: float = 0.0,
                 gated: bool = False) -> None:
        self.function = function
        self.sleep = sleep
        self.sizes: list[int] = []
        self.entered = threading.Semaphore(0)
        self.gate = threading.Semaphore(0) if gated else None

    def __call__(self, rows: Rows) -> ModelOutputs:
        self.sizes.append(len(next(iter(rows.values()))))
        self.entered.release()
        if self.gate is not None and not self.gate.acquire(timeout=TIMEOUT):
            raise TimeoutError("the test never opened the gate")
        if self.sleep:
            time.sleep(self.sleep)
        return self.function(rows)

    def open(self, calls: int = 1) -> None:
        assert self.gate is not None
        self.gate.release(calls)

    async def wait_entered(self, calls: int = 1) -> None:
        """Until ``calls`` more model calls have started (they may be held at the gate)."""
        for _ in range(calls):
            acquired = await asyncio.to_thread(self.entered.acquire, timeout=TIMEOUT)
            assert acquired, "the model was not called"


@asynccontextmanager
async def running(
    model: Callable[[Rows], ModelOutputs], outputs: tuple[TensorSpec, ...] = (), **batching: Any
) -> AsyncIterator[Batcher]:
    batcher = Batcher(model, BatchingConfig(**batching), name="test-model", outputs=outputs)
    batcher.start()
    try:
        yield batcher
    finally:
        if isinstance(model, Recorder) and model.gate is not None:
            model.open(1000)  # close() waits for the running call
        await batcher.close()


async def score(batcher: Batcher, rows: Rows) -> Outputs:
    future = await batcher.submit(rows, len(next(iter(rows.values()))))
    return await asyncio.wait_for(future, TIMEOUT)


def row_by_row(rows: Rows) -> ModelOutputs:
    count = len(rows["x"])
    singles = [affine({k: v[i:i + 1] for k, v in rows.items()}) for i in range(count)]
    return {k: np.concatenate([s[k] for s in singles]) for k in ("y", "s")}


def assert_rows_equal(got: Rows, expected: Rows) -> None:
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def retrieved(future: asyncio.Future[Rows]) -> None:
    """Mark a future's outcome as seen: this test checks other futures, not this one."""
    future.add_done_callback(lambda f: f.cancelled() or f.exception())


# Results -----------------------------------------------------------------------------------------


async def test_results_equal_calling_the_model_row_by_row() -> None:
    model = Recorder(sleep=0.002)
    messages = [message(10 * i, count) for i, count in enumerate([1, 3, 5, 2, 7, 1])]

    async with running(model, max_batch_size=64) as batcher:
        results = await asyncio.gather(*(score(batcher, m) for m in messages))

    for rows, result in zip(messages, results, strict=True):
        assert_rows_equal(result, row_by_row(rows))
    assert sum(model.sizes) == sum(len(m["x"]) for m in messages)
    assert len(model.sizes) < len(messages)  # they really shared model calls


async def test_concurrent_submitters_get_their_own_rows_back() -> None:
    def identify(rows: Rows) -> ModelOutputs:
        return {"id": rows["caller"] * 1000 + rows["index"]}

    model = Recorder(identify, sleep=0.001)

    async def caller(batcher: Batcher, number: int) -> None:
        for i in range(5):
            count = 1 + (number + i) % 4
            index = np.arange(10 * i, 10 * i + count, dtype=np.int64)
            rows = {"caller": np.full(count, number, dtype=np.int64), "index": index}
            result = await score(batcher, rows)
            np.testing.assert_array_equal(result["id"], number * 1000 + index)

    async with running(model, max_batch_size=32) as batcher:
        await asyncio.gather(*(caller(batcher, n) for n in range(50)))
        total = sum(1 + (n + i) % 4 for n in range(50) for i in range(5))
        assert (batcher.statistics.rows, batcher.statistics.calls) == (total, len(model.sizes))
    assert max(model.sizes) > 1


async def test_busy_model_gets_bigger_batches_but_never_above_max_batch_size() -> None:
    model = Recorder(sleep=0.005)
    submits = [message(i, 1 + i % 3) for i in range(120)]

    async with running(model, max_batch_size=8) as batcher:
        results = await asyncio.gather(*(score(batcher, m) for m in submits))
        assert batcher.statistics.calls == len(model.sizes)

    for rows, result in zip(submits, results, strict=True):
        assert_rows_equal(result, row_by_row(rows))
    assert sum(model.sizes) == sum(len(m["x"]) for m in submits)
    assert max(model.sizes) <= 8
    assert len(model.sizes) < len(submits) / 2


async def test_a_big_message_is_fed_in_turns_and_a_small_call_beside_it_waits_one_turn() -> None:
    # Calls take turns at the model: at most max_rows_per_call_turn rows of a call per visit, so
    # the 10-row message is scored in pieces, and the one-row call behind it does not wait for
    # the whole of it. Each caller still gets its own rows' outputs, whole and in order.
    model = Recorder(gated=True)
    async with running(model, max_batch_size=4, max_rows_per_call_turn=3) as batcher:
        blocker = await batcher.submit(message(0, 1), 1, lane="blocker")
        await model.wait_entered()
        big = await batcher.submit(message(10, 10), 10, lane="big")
        small = await batcher.submit(message(5, 1), 1, lane="small")
        later = await batcher.submit(message(30, 2), 2, lane="big")  # the big call's next message
        model.open(10)
        await asyncio.wait_for(asyncio.gather(blocker, big, small, later), TIMEOUT)

    # Batches: [blocker] [3 of big, small] then, the big call alone, its turns fill each batch:
    # [3 + 1 of big] [3 of big, 1 of later] [1 of later].
    assert model.sizes == [1, 4, 4, 4, 1]
    assert_rows_equal(big.result(), row_by_row(message(10, 10)))
    assert_rows_equal(small.result(), row_by_row(message(5, 1)))
    assert_rows_equal(later.result(), row_by_row(message(30, 2)))


async def test_messages_of_one_call_keep_their_order_and_a_fixed_batch_model_gets_whole_ones() -> None:
    model = Recorder(gated=True)
    async with running(model, max_batch_size=1, max_rows_per_call_turn=2) as batcher:
        blocker = await batcher.submit(message(0, 1), 1)
        await model.wait_entered()
        sizes = (2, 10, 1)
        futures = [await batcher.submit(message(s, s), s) for s in sizes]
        model.open(4)
        await asyncio.wait_for(asyncio.gather(blocker, *futures), TIMEOUT)

    assert model.sizes == [1, 2, 10, 1]  # one whole message per model call, first in first out
    for size, future in zip(sizes, futures, strict=True):
        assert_rows_equal(future.result(), row_by_row(message(size, size)))


async def test_a_message_over_max_rows_per_message_is_refused_before_any_work() -> None:
    model = Recorder()
    async with running(model, max_rows_per_message=5) as batcher:
        with pytest.raises(InvalidArgument) as refused:
            await batcher.submit(message(0, 6), 6)
        assert batcher.call_now(message(0, 5), 5) is not None
        with pytest.raises(InvalidArgument):
            batcher.call_now(message(0, 6), 6)
    assert model.sizes == [5]
    assert refused.value.field == "rows"
    assert "6 rows in one message, over the limit of 5" in str(refused.value)
    assert "batching.max_rows_per_message" in str(refused.value)


async def test_a_call_with_nothing_queued_gets_in_beside_a_full_queue() -> None:
    model = Recorder(gated=True)
    async with running(model, max_batch_size=4, max_queued_rows=4, max_rows_per_call_turn=4) as batcher:
        blocker = await batcher.submit(message(0, 1), 1, lane="flood")
        await model.wait_entered()
        flood = await batcher.submit(message(1, 40), 40, lane="flood")  # the queue is over full
        point = await asyncio.wait_for(batcher.submit(message(9, 1), 1, lane="point"), TIMEOUT)
        more = asyncio.create_task(batcher.submit(message(50, 1), 1, lane="flood"))
        await asyncio.sleep(0.05)
        assert not more.done()  # the flood's own next message waits for room
        model.open(100)
        await asyncio.wait_for(asyncio.gather(blocker, flood, point, more), TIMEOUT)
        assert model.sizes[:2] == [1, 4]  # the point rode with the flood's first turn
    assert_rows_equal(point.result(), row_by_row(message(9, 1)))
    assert_rows_equal(flood.result(), row_by_row(message(1, 40)))


async def test_max_delay_lets_a_batch_wait_for_more_rows() -> None:
    async def two_close_submits(delay_ms: float) -> list[int]:
        model = Recorder()
        async with running(model, max_delay_ms=delay_ms) as batcher:
            first = await batcher.submit(message(0, 1), 1)
            await asyncio.sleep(0.01)
            second = await batcher.submit(message(1, 1), 1)
            await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT)
        return model.sizes

    assert await two_close_submits(0) == [1, 1]  # an idle model takes a lone row at once
    assert await two_close_submits(300) == [2]


class CountingCondition(threading.Condition):
    """A condition variable that counts its notifications (the model thread's wake-ups)."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


async def test_rows_queued_while_the_thread_waits_for_a_fuller_batch_do_not_wake_it() -> None:
    """The thread waits for more rows up to its deadline, or until the batch is full. Waking it
    for every loop turn that queued a row only makes it take the interpreter from the loop to go
    back to sleep (under 64 unary callers, seven wake-ups per batch)."""
    model = Recorder()
    batcher = Batcher(model, BatchingConfig(max_batch_size=4, max_delay_ms=3_600_000),
                      name="test-model")
    changed = batcher._changed = CountingCondition(batcher._lock)
    batcher.start()
    try:
        futures = [await batcher.submit(message(0, 1), 1)]
        deadline = time.monotonic() + TIMEOUT
        while not batcher._gathering:  # the thread took the first row and waits for more
            assert time.monotonic() < deadline, "the model thread never waited for a fuller batch"
            await asyncio.sleep(0.001)
        woken = changed.notified
        for first in (1, 2):
            futures.append(await batcher.submit(message(first, 1), 1))
            await asyncio.sleep(0)  # a turn of the loop each
        await asyncio.sleep(0)
        assert changed.notified == woken
        assert model.sizes == []
        futures.append(await batcher.submit(message(3, 1), 1))  # the batch is full: run it now
        await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
        assert model.sizes == [4]
    finally:
        await batcher.close()


async def test_swap_switches_the_model_and_its_version_between_batches() -> None:
    async with running(affine) as batcher:
        before = await score(batcher, message(1, 1))
        batcher.swap(lambda rows: {"y": rows["x"] * 0, "s": rows["b"] * 0}, "7", ())
        after = await score(batcher, message(1, 1))

    np.testing.assert_array_equal(before["y"], [[3, 5]])
    assert before.model_version == ""
    np.testing.assert_array_equal(after["y"], [[0, 0]])
    assert after.model_version == "7"


# Backpressure ------------------------------------------------------------------------------------


async def test_max_queued_rows_makes_submitters_wait() -> None:
    limit, per_message, callers = 10, 2, 14
    model = Recorder(gated=True)
    accepted = 0

    async def caller(batcher: Batcher, number: int) -> Rows:
        nonlocal accepted
        future = await batcher.submit(message(number, per_message), per_message)
        accepted += per_message
        return await future

    async with running(model, max_batch_size=4, max_queued_rows=limit) as batcher:
        tasks = [asyncio.create_task(caller(batcher, n)) for n in range(callers)]
        queued_seen = []
        while sum(model.sizes) < callers * per_message:
            await model.wait_entered()  # the model holds one batch; nothing leaves the queue now
            await asyncio.sleep(0.02)  # let every submitter that can get in, get in
            # Rows accepted but not handed to the model: exactly what waits in the queue.
            queued = accepted - sum(model.sizes)
            queued_seen.append(queued)
            assert queued <= limit, f"{queued} rows queued with max_queued_rows={limit}"
            if accepted < callers * per_message:
                assert queued == limit  # the queue is full and the other submitters really wait
                assert sum(t.done() for t in tasks) < callers
            model.open()
        results = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)

    assert max(queued_seen) == limit
    for number, result in enumerate(results):
        assert_rows_equal(result, row_by_row(message(number, per_message)))


async def test_a_message_bigger_than_the_queue_still_gets_in() -> None:
    async with running(affine, max_batch_size=4, max_queued_rows=4) as batcher:
        result = await score(batcher, message(0, 10))

    assert_rows_equal(result, row_by_row(message(0, 10)))


# Failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected_type", "expected_message"),
    [
        (ValueError("negative input"), StreamserveError, "the model failed: ValueError: negative input"),
        (InvalidArgument("x", "must not be negative"), InvalidArgument, "x: must not be negative"),
    ],
    ids=["unexpected-error", "deliberate-error"],
)
async def test_bad_rows_fail_only_their_own_call(
    error: Exception, expected_type: type[Exception], expected_message: str
) -> None:
    def picky(rows: Rows) -> ModelOutputs:
        if (rows["x"] < 0).any():
            raise error
        return affine(rows)

    model = Recorder(picky, gated=True)
    good_a, bad, good_b = message(1, 2), message(-5, 2), message(7, 1)
    async with running(model, max_batch_size=8) as batcher:
        blocker = await batcher.submit(message(0, 1), 1)
        await model.wait_entered()  # the next three queue up behind it and form one batch
        futures = [await batcher.submit(rows, len(rows["x"])) for rows in (good_a, bad, good_b)]
        model.open(10)
        await asyncio.wait_for(asyncio.gather(blocker, *futures, return_exceptions=True), TIMEOUT)

        assert model.sizes == [1, 5, 2, 2, 1]  # the shared batch failed, then each ran alone
        assert_rows_equal(futures[0].result(), row_by_row(good_a))
        assert_rows_equal(futures[2].result(), row_by_row(good_b))
        failure = futures[1].exception()
        assert type(failure) is expected_type
        assert str(failure) == expected_message
        # And the batcher goes on serving.
        assert_rows_equal(await score(batcher, good_b), row_by_row(good_b))


async def test_model_output_without_the_batch_dimension_is_an_error() -> None:
    async with running(lambda rows: {"y": rows["x"][:1]}) as batcher:
        with pytest.raises(StreamserveError) as error:
            await score(batcher, message(0, 3))

    assert str(error.value) == (
        "model output 'y' has 1 rows for 3 input rows; every output needs the batch dimension first"
    )
    assert error.value.code == grpc.StatusCode.INTERNAL


async def test_a_cancelled_caller_does_not_disturb_its_batch() -> None:
    model = Recorder(gated=True)
    async with running(model) as batcher:
        blocker = await batcher.submit(message(0, 1), 1)
        await model.wait_entered()
        gone = await batcher.submit(message(1, 1), 1)
        kept = await batcher.submit(message(2, 2), 2)
        gone.cancel()
        model.open(10)
        assert_rows_equal(await asyncio.wait_for(kept, TIMEOUT), row_by_row(message(2, 2)))
        await blocker
        assert_rows_equal(await score(batcher, message(3, 1)), row_by_row(message(3, 1)))


async def test_zero_rows_resolve_at_once_to_empty_outputs_without_a_model_call() -> None:
    model = Recorder()
    none = {"x": np.zeros((0, 2), np.float32), "b": np.zeros(0, np.float32)}
    async with running(model, AFFINE_OUTPUTS) as batcher:
        future = await batcher.submit(none, 0)
        assert future.done()
        # What the model itself answers for zero rows, without calling it.
        assert_rows_equal(future.result(), affine(none))
        assert future.result().model_version == ""

        # The outputs of the model swapped in: a string is an object array, an open dimension 0.
        batcher.swap(affine, "2", (TensorSpec("label", "string", (None,)),
                                   TensorSpec("grid", "int64", (None, None, 3))))
        swapped = (await batcher.submit(none, 0)).result()
        assert {k: (v.dtype, v.shape) for k, v in swapped.items()} == {
            "label": (np.dtype(object), (0,)), "grid": (np.dtype(np.int64), (0, 0, 3)),
        }
        assert swapped.model_version == "2"
        assert batcher.statistics.calls == 0
    assert model.sizes == []


# Closing -----------------------------------------------------------------------------------------


async def test_close_fails_waiting_calls_with_unavailable() -> None:
    model = Recorder(gated=True)
    batcher = Batcher(model, BatchingConfig(), name="test-model")
    batcher.start()
    retrieved(await batcher.submit(message(0, 1), 1))  # its fate at close: the next test
    await model.wait_entered()
    waiting = [await batcher.submit(message(i, 1), 1) for i in range(3)]
    threading.Timer(0.05, model.open, args=(10,)).start()  # close() waits for the running call

    await batcher.close()

    for future in waiting:
        assert future.done()
        error = future.exception()
        assert isinstance(error, Unavailable)
        assert error.code == grpc.StatusCode.UNAVAILABLE
        assert "the model was unloaded; retry" in str(error)
    assert model.sizes == [1]


async def test_close_resolves_the_call_whose_batch_is_running() -> None:
    # The batch in the model when close() is called must end one way or the other (its result, or
    # UNAVAILABLE): a caller awaiting it must not hang forever.
    model = Recorder(gated=True)
    batcher = Batcher(model, BatchingConfig(), name="test-model")
    batcher.start()
    running_call = await batcher.submit(message(0, 1), 1)
    await model.wait_entered()
    threading.Timer(0.05, model.open, args=(10,)).start()

    await batcher.close()

    assert running_call.done(), "the call whose rows were in the model at close() never resolves"
    if running_call.exception() is None:
        assert_rows_equal(running_call.result(), row_by_row(message(0, 1)))
    else:
        assert isinstance(running_call.exception(), Unavailable)


async def test_close_fails_calls_waiting_for_queue_room() -> None:
    model = Recorder(gated=True)
    batcher = Batcher(model, BatchingConfig(max_batch_size=2, max_queued_rows=2), name="test-model")
    batcher.start()
    retrieved(await batcher.submit(message(0, 2), 2))
    await model.wait_entered()
    queued = await batcher.submit(message(1, 2), 2)
    blocked = asyncio.create_task(batcher.submit(message(2, 2), 2))  # no room: waits
    await asyncio.sleep(0.01)
    assert not blocked.done()
    threading.Timer(0.05, model.open, args=(10,)).start()

    await batcher.close()

    assert isinstance(queued.exception(), Unavailable)
    try:
        done, _ = await asyncio.wait({blocked}, timeout=1.0)
        assert done, "a submit() waiting for queue room when close() ran waits forever"
        # Either submit() itself fails, or it hands back a future that fails: both say UNAVAILABLE.
        error = blocked.exception()
        if error is None:
            future = blocked.result()
            assert future.done(), "submit() after close() hands back a future that never resolves"
            error = future.exception()
        assert isinstance(error, Unavailable)
    finally:
        blocked.cancel()


# Running a lone call at once ---------------------------------------------------------------------


async def test_call_now_runs_an_idle_model_on_the_callers_thread() -> None:
    seen: list[str] = []

    def model(rows: Rows) -> ModelOutputs:
        seen.append(threading.current_thread().name)
        return affine(rows)

    async with running(model) as batcher:
        rows = message(3, 2)
        result = batcher.call_now(rows, 2)
        assert result is not None
        assert_rows_equal(result, affine(rows))
        assert result.model_version == batcher.version
        assert seen == [threading.current_thread().name]  # no hand-off to the model thread
        assert (batcher.statistics.calls, batcher.statistics.rows) == (1, 2)


# A cheap model's batches on the event loop --------------------------------------------------------
# How cheap is cheap (batcher.INLINE_CALL_SECONDS) is set per test, so a loaded machine's slow call
# cannot change which thread runs a batch.


def threads_seen() -> tuple[list[str], Callable[[Rows], ModelOutputs]]:
    seen: list[str] = []

    def model(rows: Rows) -> ModelOutputs:
        seen.append(threading.current_thread().name)
        return affine(rows)

    return seen, model


async def thread_asleep(batcher: Batcher) -> None:
    """Until the model thread waits for rows (after a batch it gets there on its own time)."""
    deadline = time.monotonic() + TIMEOUT
    while not batcher._sleeping:  # the state the test is about
        assert time.monotonic() < deadline, "the model thread never went back to waiting"
        await asyncio.sleep(0.001)


async def test_a_model_not_known_to_be_cheap_runs_in_its_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batcher_module, "INLINE_CALL_SECONDS", 3600.0)
    seen, model = threads_seen()
    async with running(model) as batcher:
        await score(batcher, message(0, 2))  # no call so far: nothing says it is cheap
    assert seen == ["test-model"]


async def test_a_cheap_model_runs_the_rows_of_one_loop_turn_as_one_batch_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batcher_module, "INLINE_CALL_SECONDS", 3600.0)
    seen, model = threads_seen()
    async with running(model) as batcher:
        await score(batcher, message(0, 1))  # in the thread; now the model is known to be cheap
        await thread_asleep(batcher)
        futures = [await batcher.submit(message(n, 1), 1, lane=n) for n in range(5)]  # one turn
        results = await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
    assert seen == ["test-model", threading.current_thread().name]  # one batch, on the loop
    for n, result in enumerate(results):
        assert_rows_equal(result, affine(message(n, 1)))
    assert sorted(batcher.statistics.snapshot().batches) == [1, 5]


async def test_a_cheap_models_batch_waits_for_more_rows_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """max_delay_ms (and company) for a cheap model: the batch waits on a timer of the loop and
    runs there, not in the thread, where its call would wait for the interpreter the loop holds."""
    monkeypatch.setattr(batcher_module, "INLINE_CALL_SECONDS", 3600.0)
    seen, model = threads_seen()
    loop = threading.current_thread().name
    # Until its deadline ...
    async with running(model, max_delay_ms=50) as batcher:
        await score(batcher, message(0, 1))  # in the thread; now the model is known to be cheap
        await thread_asleep(batcher)
        started = time.monotonic()
        result = await score(batcher, message(1, 1))
        assert time.monotonic() - started >= 0.05
        assert_rows_equal(result, affine(message(1, 1)))
    assert seen == ["test-model", loop]
    # ... or until the batch is full, long before it.
    seen.clear()
    async with running(model, max_delay_ms=3_600_000, max_batch_size=3) as batcher:
        batcher._call_seconds = 0.0  # known to be cheap (as after a call)
        await thread_asleep(batcher)  # else the thread, just started, would take the rows itself
        futures = [await batcher.submit(message(n, 1), 1, lane=n) for n in range(2)]
        await asyncio.sleep(0)
        assert not any(future.done() for future in futures)
        futures.append(await batcher.submit(message(2, 1), 1, lane=2))
        results = await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
    assert seen == [loop]
    for n, result in enumerate(results):
        assert_rows_equal(result, affine(message(n, 1)))


async def test_a_slow_call_sends_the_model_back_to_its_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batcher_module, "INLINE_CALL_SECONDS", 0.3)
    seen, fast = threads_seen()
    slow = False

    def model(rows: Rows) -> ModelOutputs:
        if slow:
            time.sleep(0.8)
        return fast(rows)

    loop = threading.current_thread().name
    async with running(model) as batcher:
        await score(batcher, message(0, 1))
        await thread_asleep(batcher)
        await score(batcher, message(1, 1))
        assert seen[-1] == loop
        slow = True
        await thread_asleep(batcher)
        await score(batcher, message(2, 1))  # on the loop (the model was cheap), and slow
        assert seen[-1] == loop
        slow = False
        await thread_asleep(batcher)
        await score(batcher, message(3, 1))
    assert seen[-1] == "test-model"


async def test_more_rows_than_the_loop_takes_go_to_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batcher_module, "INLINE_CALL_SECONDS", 3600.0)
    seen, model = threads_seen()
    async with running(model) as batcher:
        await score(batcher, message(0, 1))
        await thread_asleep(batcher)
        await score(batcher, message(0, batcher_module.INLINE_MAX_ROWS + 1))
    assert seen == ["test-model", "test-model"]


async def test_call_now_declines_while_the_model_is_busy_so_rows_can_batch() -> None:
    model = Recorder(gated=True)
    async with running(model) as batcher:
        first = await batcher.submit(message(0, 1), 1)
        await model.wait_entered()  # a batch is running
        assert batcher.call_now(message(1, 1), 1) is None
        queued = await batcher.submit(message(1, 1), 1)
        assert batcher.call_now(message(2, 1), 1) is None  # rows are waiting: join them instead
        model.open(2)
        await asyncio.wait_for(asyncio.gather(first, queued), TIMEOUT)


async def test_an_uncertain_lone_call_waits_for_the_batch_when_a_delay_is_configured() -> None:
    """A unary call cannot know it is alone (gRPC hands waiting calls over one at a time): with
    ``max_delay_ms`` it does not take the shortcut, and calls that follow within the delay share
    its model call. Without a delay, or when certain (a lone stream), the rows run at once."""
    model = Recorder()
    async with running(model, max_delay_ms=300) as batcher:
        assert batcher.call_now(message(0, 1), 1, certain=False) is None
        first = await batcher.submit(message(0, 1), 1)
        second = await batcher.submit(message(1, 1), 1)
        await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT)
        assert model.sizes == [2]
        assert batcher.call_now(message(2, 1), 1) is not None  # certain: at once, delay or not
        assert model.sizes == [2, 1]
    async with running(model) as batcher:  # no delay: nothing would wait for it anyway
        assert batcher.call_now(message(3, 1), 1, certain=False) is not None
        assert model.sizes == [2, 1, 1]


async def test_unary_calls_wait_for_company_once_two_shared_a_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Calls of one request cannot see each other (gRPC hands them over one at a time): one call
    per probe period waits ``unary_window_ms`` for company; once two unary calls share a batch,
    every unary call waits for company, for ``TOGETHER_SECONDS``."""
    monkeypatch.setattr(batcher_module, "PROBE_SECONDS", 3600.0)
    monkeypatch.setattr(batcher_module, "TOGETHER_SECONDS", 3600.0)
    model = Recorder()
    # A batch closes at 2 rows, long before its window: nothing here depends on timing.
    async with running(model, max_batch_size=2, unary_window_ms=3_600_000) as batcher:
        assert batcher.wants_company()  # the first call probes
        assert not batcher.wants_company()  # the next ones, within the probe period, do not
        first = await batcher.submit(message(0, 1), 1, unary=True, company=True)
        await asyncio.sleep(0)
        assert not first.done()  # it waits for company ...
        second = await batcher.submit(message(1, 1), 1, unary=True)
        await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT)  # ... and got it
        assert model.sizes == [2]
        assert batcher.wants_company()  # two came together: from now on every one waits
        assert batcher.wants_company()


async def test_a_big_unary_message_fed_in_pieces_is_not_company_for_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message of more rows than one turn goes into one batch as several pieces: still one call,
    so unary calls do not start waiting for company."""
    monkeypatch.setattr(batcher_module, "PROBE_SECONDS", 3600.0)
    model = Recorder()
    async with running(model, max_batch_size=8, max_rows_per_call_turn=2,
                       unary_window_ms=3_600_000) as batcher:
        assert batcher.wants_company()  # the probe of this period, taken
        outputs = await batcher.submit(message(0, 6), 6, unary=True)
        await asyncio.wait_for(outputs, TIMEOUT)
        assert model.sizes == [6]  # three pieces of one message, one model call
        assert not batcher.wants_company()


async def test_a_probe_that_finds_no_company_runs_alone_and_calls_run_at_once_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batcher_module, "PROBE_SECONDS", 3600.0)
    model = Recorder()
    async with running(model, unary_window_ms=1) as batcher:
        assert batcher.wants_company()
        await asyncio.wait_for(
            await batcher.submit(message(0, 1), 1, unary=True, company=True), TIMEOUT
        )
        assert model.sizes == [1]
        assert not batcher.wants_company()  # alone: the next calls do not wait
        assert batcher.call_now(message(1, 1), 1, certain=False) is not None
        assert model.sizes == [1, 1]
    async with running(model, unary_window_ms=0) as batcher:  # 0: never waits for company
        assert not batcher.wants_company()


async def test_call_now_raises_the_models_error_for_its_rows() -> None:
    def failing(rows: Rows) -> ModelOutputs:
        raise InvalidArgument("x", "no such rows")

    async with running(failing) as batcher:
        with pytest.raises(InvalidArgument, match="no such rows"):
            batcher.call_now(message(0, 1), 1)
        assert batcher.statistics.calls == 0  # a failed model call is not counted


# Statistics --------------------------------------------------------------------------------------


async def test_statistics_count_each_model_call_of_both_paths_by_batch_size() -> None:
    model = Recorder(gated=True, sleep=0.002)
    shared = CallStatistics()  # the served model's: it outlives the batcher
    batcher = Batcher(model, BatchingConfig(max_batch_size=8), name="test-model", statistics=shared)
    batcher.start()
    started_ms = time.time() * 1000
    try:
        first = await batcher.submit(message(0, 1), 1)
        await model.wait_entered()  # the model thread is busy: the next two share one call
        second = await batcher.submit(message(1, 2), 2)
        third = await batcher.submit(message(3, 3), 3)
        model.open(3)
        await asyncio.wait_for(asyncio.gather(first, second, third), TIMEOUT)
        assert batcher.call_now(message(6, 2), 2) is not None  # the loop's path counts too
    finally:
        await batcher.close()
    ended_ms = time.time() * 1000

    assert batcher.statistics is shared
    counted = shared.snapshot()
    assert model.sizes == [1, 5, 2]
    assert (counted.rows, counted.calls) == (8, 3)
    assert list(counted.batches) == [1, 2, 5]
    assert [calls for calls, _ in counted.batches.values()] == [1, 1, 1]
    assert all(ns >= 2_000_000 for _, ns in counted.batches.values())  # each call slept 2 ms
    assert counted.call_ns == sum(ns for _, ns in counted.batches.values())
    assert started_ms - 1 <= counted.last_call_ms <= ended_ms + 1


async def test_statistics_count_the_calls_that_succeed_when_a_batch_is_split() -> None:
    def picky(rows: Rows) -> ModelOutputs:
        if (rows["b"] < 0).any():
            raise InvalidArgument("b", "negative")
        return affine(rows)

    model = Recorder(picky, gated=True)
    async with running(model) as batcher:
        first = await batcher.submit(message(0, 1), 1)
        await model.wait_entered()
        good = await batcher.submit(message(1, 2), 2)
        bad = await batcher.submit(message(-5, 3), 3)
        retrieved(bad)
        model.open(4)  # the first call, the shared one that fails, then each alone
        await asyncio.wait_for(asyncio.gather(first, good), TIMEOUT)
        await asyncio.wait_for(asyncio.wait([bad]), TIMEOUT)
        counted = batcher.statistics.snapshot()

    assert model.sizes == [1, 5, 2, 3]
    assert (counted.rows, counted.calls) == (3, 2)
    assert list(counted.batches) == [1, 2]
