"""Shape novelty: how unlike every recent shape of its series the latest stretch of a series is.

A series that repeats itself (a daily cycle, a periodic job, a noise floor) keeps drawing shapes it
has drawn before; an anomaly often draws a new one while every value stays within the usual range (a
flat stretch where the series always moves, a dip at the wrong moment, denser spikes). Per series:

1. **Downsample**: every ``STEP`` points become one level, their mean (robust to single-point noise,
   and six times fewer comparisons).
2. **Shape**: the last ``LENGTH`` levels, placed in the series' range so far (0 at its minimum, 255
   at its maximum) and rounded to integers (one byte per level).
3. **Novelty**: the root-mean-square distance from the shape to its nearest neighbour among the last
   ``MEMORY`` shapes of the series (the shape just before it, which overlaps it, excluded), in units
   of the range.
4. The novelty is scored as a record (:class:`~streamserve_anomaly.records.RecordRange`): a shape
   farther from everything seen than any recent shape was is news; a pattern seen once is forgiven
   ever after (it is in the memory), which is what keeps a recurring pattern quiet.

Distances are squared Euclidean between byte vectors, computed as ``|a|^2 + |b|^2 - 2 a.b`` with one
matrix product: every term is an integer below 2^24, exact in float32 whatever the order of the sums,
so the point path (one shape against the memory) and the chunk path (all of a chunk's shapes against
the memory and each other at once) find bitwise the same novelties. One series costs ``MEMORY *
LENGTH`` bytes of shapes (8 KiB) and a few small arrays.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from streamserve_anomaly.records import RecordRange

__all__ = ["LENGTH", "MEMORY", "STEP", "ShapeMemory"]

Floats = npt.NDArray[np.float64]

STEP = 6
"""Points per level (30 minutes of 5-minute data)."""
LENGTH = 8
"""Levels per shape (4 hours of 5-minute data)."""
MEMORY = 1024
"""Shapes remembered per series (about 3 weeks of 5-minute data)."""
LEVELS = 255
"""Quantisation of a level within the series' range: one byte each."""
_UNIT = math.sqrt(LENGTH) * LEVELS
"""The distance between a shape at the bottom of the range and one at its top."""


_scratch = threading.local()


def _scratch_matrix(rows: int, columns: int) -> npt.NDArray[np.float32]:
    """A reused float32 matrix for this thread: a chunk's distance matrix is ~0.7 MB, and a fresh
    one each time costs more in page faults (~0.5 ms) than the arithmetic that fills it."""
    buffer: npt.NDArray[np.float32] | None = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.size < rows * columns:
        buffer = np.empty(rows * columns, dtype=np.float32)
        _scratch.buffer = buffer
    return buffer[: rows * columns].reshape(rows, columns)


def _squared_distances(shapes: npt.NDArray[np.float32], memory: npt.NDArray[np.float32],
                       out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
    """Squared distances between every row of ``shapes`` and every row of ``memory``, less each
    row's own ``|shape|^2`` (the same for the whole row: add it to the row's minimum). Exact."""
    out = np.matmul(2.0 * shapes, memory.T, out=out)
    return np.subtract(np.einsum("ij,ij->i", memory, memory)[np.newaxis, :], out, out=out)


def _norms(shapes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.einsum("ij,ij->i", shapes, shapes)


def _quantise(levels: Floats, low: Floats | float, high: Floats | float) -> Floats:
    """Levels (one shape, or a shape per row) placed in their range ``[low, high]``, as 0..255."""
    span = np.maximum(np.asarray(high) - low, 1e-12)
    return np.rint((levels - np.asarray(low)[..., np.newaxis]) * (LEVELS / span)[..., np.newaxis])


@dataclass(slots=True)
class ShapeMemory:
    """The shape state of one series; :meth:`point` once per point, or :meth:`chunk`, in order."""

    record: RecordRange
    shapes: npt.NDArray[np.uint8] = field(
        default_factory=lambda: np.zeros((MEMORY, LENGTH), dtype=np.uint8)
    )
    stored: int = 0
    """Shapes stored so far (shape ``g`` is in slot ``g % MEMORY`` until ``g + MEMORY`` replaces it)."""
    levels: list[float] = field(default_factory=list)
    """The last ``LENGTH`` levels, oldest first."""
    block_sum: float = 0.0
    block_count: int = 0
    low: float = math.inf
    high: float = -math.inf

    @classmethod
    def create(cls, horizon: int) -> ShapeMemory:
        """``horizon``: in points, over which the novelty record is kept."""
        return cls(RecordRange.create(max(1, horizon // STEP)))

    def point(self, x: float) -> float:
        """Fold ``x`` in; at the end of a block, the excess of the new shape's novelty (else -inf)."""
        if x < self.low:
            self.low = x
        if x > self.high:
            self.high = x
        self.block_sum += x
        self.block_count += 1
        if self.block_count < STEP:
            return -math.inf
        levels = self.levels
        levels.append(self.block_sum / STEP)
        self.block_sum, self.block_count = 0.0, 0
        if len(levels) < LENGTH:
            return -math.inf
        if len(levels) > LENGTH:
            del levels[0]
        shape = _quantise(np.array(levels), self.low, self.high).astype(np.float32)
        excess = -math.inf
        stored = self.stored
        if stored >= 2:
            count = min(stored, MEMORY)
            distances = _squared_distances(shape[np.newaxis], self.shapes[:count].astype(np.float32))[0]
            distances[(stored - 1) % MEMORY] = np.inf  # the newest shape overlaps this one
            nearest = distances.min() + _norms(shape[np.newaxis])[0]
            novelty = math.sqrt(float(nearest)) / _UNIT
            excess = self.record.excess(novelty, both=False)
        self.shapes[stored % MEMORY] = shape
        self.stored = stored + 1
        return excess

    def chunk(self, xs: Floats) -> Floats:
        """:meth:`point` for every value of ``xs``, in order, with NumPy over the whole chunk."""
        n = len(xs)
        out = np.full(n, -np.inf)
        if n == 0:
            return out
        highs = np.maximum.accumulate(np.concatenate(([self.high], xs)))[1:]
        lows = np.minimum.accumulate(np.concatenate(([self.low], xs)))[1:]
        self.high, self.low = float(highs[-1]), float(lows[-1])
        # Block sums added one value at a time from 0.0, as the point path does (np.cumsum is a
        # sequential accumulation; the first block goes on from the sum carried over).
        first_end = STEP - self.block_count - 1  # index in xs of the first block's last value
        if first_end >= n:
            self.block_sum = float(np.cumsum(np.concatenate(([self.block_sum], xs)))[-1])
            self.block_count += n
            return out
        ends = np.arange(first_end, n, STEP)
        first_sum = float(np.cumsum(np.concatenate(([self.block_sum], xs[: first_end + 1])))[-1])
        full = len(ends) - 1
        body = xs[first_end + 1 : first_end + 1 + full * STEP].reshape(full, STEP)
        new_levels = [first_sum / STEP, *(np.cumsum(body, axis=1)[:, -1] / STEP).tolist()]
        tail = xs[first_end + 1 + full * STEP :]
        self.block_sum = float(np.cumsum(tail)[-1]) if len(tail) else 0.0
        self.block_count = len(tail)
        history = self.levels + new_levels
        self.levels = history[-LENGTH:]
        # The shapes completed in this chunk: those of the new levels with LENGTH levels behind them.
        have = len(history) - len(new_levels)  # levels before this chunk's first block end
        start = max(0, LENGTH - 1 - have)  # the first new level that completes a shape
        if start >= len(new_levels):
            return out
        windows = sliding_window_view(np.array(history), LENGTH)[have + start + 1 - LENGTH:]
        at = ends[start:]
        shapes = _quantise(windows, lows[at], highs[at]).astype(np.float32)
        count = len(shapes)
        first = self.stored  # the global number of shapes[0]
        numbers = first + np.arange(count)
        # Against the memory as it was: old shape g is visible to new shape j while g >= s_j - MEMORY,
        # and never the newest (g == s_j - 1).
        novelty = np.full(count, np.inf, dtype=np.float32)
        old = min(first, MEMORY)
        if old:
            # The remembered shapes oldest first: column c is shape number first - old + c. New
            # shape j no longer sees the columns a later shape pushed out of the ring (c < evicted
            # [j]), nor (j == 0) the newest one, which overlaps it. Columns from `common` on are seen
            # by every new shape: one min over them; the few columns before are masked per row.
            memory = self.shapes[(first - old + np.arange(old)) % MEMORY].astype(np.float32)
            d = _squared_distances(shapes, memory, out=_scratch_matrix(count, old))
            d[0, old - 1] = np.inf
            evicted = np.maximum(0, np.arange(count) - (MEMORY - old))
            common = min(old, int(evicted[-1]))
            if common < old:
                novelty = np.minimum(novelty, d[:, common:].min(axis=1))
            if common:
                head = d[:, :common]
                head[np.arange(common)[np.newaxis, :] < evicted[:, np.newaxis]] = np.inf
                novelty = np.minimum(novelty, head.min(axis=1))
        if count > 2:
            d = _squared_distances(shapes, shapes)
            k = np.arange(count)
            visible = (k[np.newaxis, :] <= k[:, np.newaxis] - 2) & (
                numbers[np.newaxis, :] >= (numbers - MEMORY)[:, np.newaxis])
            d[~visible] = np.inf
            novelty = np.minimum(novelty, d.min(axis=1))
        scored = numbers >= 2
        nearest = novelty + _norms(shapes)  # the rows' own |shape|^2, left out above
        values = np.sqrt(nearest[scored].astype(np.float64)) / _UNIT
        excess = self.record.chunk(values, both=False)
        at_ends = np.full(count, -np.inf)
        at_ends[scored] = excess
        out[at] = at_ends
        keep = slice(max(0, count - MEMORY), count)  # a huge chunk: only the last MEMORY stay
        self.shapes[(numbers[keep] % MEMORY)] = shapes[keep].astype(np.uint8)
        self.stored = first + count
        return out
