"""How far a value lies beyond the range its feature has shown over a recent horizon.

The detector's channels all ask one scale-free question: *is this the most extreme this series has
been lately, and by how much?* :class:`RecordRange` answers it for one feature of one series. Its
answer, the **excess**, is the distance of a value beyond the range ``[low, high]`` of the feature's
earlier values within the horizon, in units of that range: 0.1 means "beyond anything seen lately by
a tenth of the range", negative means inside the range. A series that does what it has done before
sets no records; a spike, a level shift, a new noise level or a pattern that breaks its daily habit
does, in the feature that sees it. Being relative to the series' own range, one threshold serves
series of any level and scale, and no value range has to be known in advance.

The horizon forgets: a record set weeks ago does not hide a smaller excursion today. It is kept as
the extremes of ``BLOCKS`` blocks of ``horizon / BLOCKS`` points each (a ring), so a feature costs a
few hundred bytes whatever the horizon, and the range covers between ``horizon`` and
``horizon * (1 + 1 / BLOCKS)`` earlier points.

:meth:`RecordRange.excess` takes one value (plain floats: the point path); :meth:`RecordRange.chunk`
takes many at once (NumPy, one pass per block) and gives bitwise the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["BLOCKS", "RecordRange"]

Floats = npt.NDArray[np.float64]

BLOCKS = 24
"""Blocks the horizon is kept in: the resolution with which old extremes are forgotten."""

MIN_SPAN = 1e-12
"""Floor of the range, so that a flat feature's first change is a finite (huge) excess."""


@dataclass(slots=True)
class RecordRange:
    """The recent range of one feature of one series, and the excess of a new value beyond it."""

    block_size: int
    highs: list[float] = field(default_factory=list)
    lows: list[float] = field(default_factory=list)
    """Extremes of the completed blocks, oldest first (at most ``BLOCKS``)."""
    done_high: float = -math.inf
    done_low: float = math.inf
    """Extremes over the completed blocks (recomputed once per block, not per point)."""
    high: float = -math.inf
    low: float = math.inf
    """Extremes of the block being filled."""
    filled: int = 0

    @classmethod
    def create(cls, horizon: int) -> RecordRange:
        return cls(max(1, horizon // BLOCKS))

    def excess(self, x: float, *, both: bool = True) -> float:
        """How far ``x`` lies beyond the earlier range, in units of it; then fold ``x`` in.

        Upward only unless ``both``; ``-inf`` while there is no earlier value.
        """
        high = self.high if self.high > self.done_high else self.done_high
        low = self.low if self.low < self.done_low else self.done_low
        if high < low:
            result = -math.inf
        else:
            span = max(high - low, MIN_SPAN)
            result = (x - high) / span
            if both and (low - x) / span > result:
                result = (low - x) / span
        self.fold(x)
        return result

    def fold(self, x: float) -> None:
        """Add ``x`` to the range without scoring it."""
        if x > self.high:
            self.high = x
        if x < self.low:
            self.low = x
        self.filled += 1
        if self.filled == self.block_size:
            self._close_block()

    def _close_block(self) -> None:
        self.highs.append(self.high)
        self.lows.append(self.low)
        if len(self.highs) > BLOCKS:
            del self.highs[0], self.lows[0]
        self.done_high, self.done_low = max(self.highs), min(self.lows)
        self.high, self.low, self.filled = -math.inf, math.inf, 0

    def chunk(self, xs: Floats, *, both: bool = True, scored: npt.NDArray[np.bool_] | None = None
              ) -> Floats:
        """:meth:`excess` of every value of ``xs`` in order (where ``scored`` is False: :meth:`fold`
        only, and -inf)."""
        n = len(xs)
        out = np.full(n, -np.inf)
        start = 0
        while start < n:
            stop = min(n, start + self.block_size - self.filled)  # up to the end of this block
            part = xs[start:stop]
            # The block's extremes before each value: its earlier values, then this part's.
            highs = np.maximum.accumulate(np.concatenate(([self.high], part)))
            lows = np.minimum.accumulate(np.concatenate(([self.low], part)))
            high = np.maximum(highs[:-1], self.done_high)
            low = np.minimum(lows[:-1], self.done_low)
            known = high >= low
            with np.errstate(invalid="ignore", divide="ignore"):
                span = np.maximum(high - low, MIN_SPAN)
                result = (part - high) / span
                if both:
                    result = np.maximum(result, (low - part) / span)
            result[~known] = -np.inf
            out[start:stop] = result
            self.high, self.low = float(highs[-1]), float(lows[-1])
            self.filled += stop - start
            if self.filled == self.block_size:
                self._close_block()
            start = stop
        if scored is not None:
            out[~scored] = -np.inf
        return out
