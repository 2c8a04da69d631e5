"""Shape novelty: how unlike every recent shape of its series the latest stretch of a series is.

A series that repeats itself (a daily cycle, a periodic job, a noise floor) keeps drawing shapes it
has drawn before; an anomaly often draws a new one while every value stays within the usual range (a
flat stretch where the series always moves, a dip at the wrong moment, denser spikes). Per series:

1. **Downsample**: every ``STEP`` points become one level, their mean (robust to single-point noise,
   and six times fewer comparisons).
2. **Shape**: the last ``LENGTH`` levels, placed in the series' range so far (0 at its minimum, 1 at
   its maximum) and quantised to ``1 / 255`` of it (one byte per level).
3. **Novelty**: the mean absolute distance from the shape to its nearest neighbour among the last
   ``MEMORY`` shapes of the series (the shape just before it, which overlaps it, excluded).
4. The novelty is scored as a record (:class:`~streamserve_anomaly.records.RecordRange`): a shape
   farther from everything seen than any recent shape was is news; a pattern seen once is forgiven
   ever after (it is in the memory), which is what keeps a recurring pattern quiet.

One series costs ``MEMORY * LENGTH`` bytes of shapes (8 KiB) and a few small arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streamserve_anomaly.records import RecordRange

__all__ = ["LENGTH", "MEMORY", "STEP", "ShapeMemory"]

STEP = 6
"""Points per level (30 minutes of 5-minute data)."""
LENGTH = 8
"""Levels per shape (4 hours of 5-minute data)."""
MEMORY = 1024
"""Shapes remembered per series (about 3 weeks of 5-minute data)."""
LEVELS = 255
"""Quantisation of a level within the series' range: one byte each."""


@dataclass(slots=True)
class ShapeMemory:
    """The shape state of one series; :meth:`point` once per point, in order."""

    record: RecordRange
    shapes: npt.NDArray[np.uint8] = field(
        default_factory=lambda: np.zeros((MEMORY, LENGTH), dtype=np.uint8)
    )
    stored: int = 0
    """Shapes stored so far (the ring holds the last ``MEMORY``)."""
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
        span = max(self.high - self.low, 1e-12)
        shape = np.array(levels)
        shape -= self.low
        shape *= LEVELS / span
        quantised = np.rint(shape).astype(np.int16)
        excess = -math.inf
        stored = self.stored
        if stored >= 2:
            # Every remembered shape but the newest one, which overlaps this one.
            newest = (stored - 1) % MEMORY
            count = min(stored, MEMORY)
            distances = np.abs(self.shapes[:count].astype(np.int16) - quantised).sum(axis=1)
            distances[newest] = np.iinfo(np.int16).max
            novelty = float(distances.min()) / (LENGTH * LEVELS)
            excess = self.record.excess(novelty, both=False)
        self.shapes[stored % MEMORY] = quantised
        self.stored = stored + 1
        return excess
