"""Time-of-day and day-of-week context: how far a series is from where it was at this time before.

Much of what is measured follows the clock: traffic, load, temperature, taxi rides. A value that is
perfectly ordinary for the series can be wrong for the hour (a Monday that looks like a Sunday, a
holiday, a daily job that did not run). Per series:

1. The series' **level** (its values smoothed, see :mod:`~streamserve_anomaly.online`) is written
   into a ring of time buckets, ``BUCKET_SECONDS`` wide and ``DAYS_KEPT`` days long, keyed by the
   point's timestamp.
2. The **deviation** of the level now is its distance to the level in the same bucket 1, 2 and 7
   days ago, the *closest* of those that exist: the series only has to resemble one of its recent
   habits (yesterday, the day before, or the same day last week), so a weekly rhythm does not make
   every weekend an anomaly and a one-off change of the weekly rhythm is forgiven the day after.
3. The deviation is scored as a record (:class:`~streamserve_anomaly.records.RecordRange`), once
   the series has a day of deviations to compare with.

Timestamps are Unix seconds and need not be regular; a series sampled more often than the bucket
width keeps the last level of each bucket. One series costs ``DAYS_KEPT * 86400 / BUCKET_SECONDS``
levels and bucket numbers (1,152 of each: 13.5 KiB).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streamserve_anomaly.records import RecordRange

__all__ = ["BUCKET_SECONDS", "DAYS_KEPT", "LAG_DAYS", "SeasonalProfile"]

Floats = npt.NDArray[np.float64]

DAY = 86_400
BUCKET_SECONDS = 600
"""Resolution of the remembered profile: 10 minutes."""
LAG_DAYS = (1, 2, 7)
"""The earlier days the level is compared with."""
DAYS_KEPT = 8
"""Enough for the longest lag."""
RING = DAYS_KEPT * DAY // BUCKET_SECONDS
_LAG_BUCKETS = tuple(days * DAY // BUCKET_SECONDS for days in LAG_DAYS)


@dataclass(slots=True)
class SeasonalProfile:
    """The time context of one series; :meth:`point` once per point, in time order."""

    record: RecordRange
    # Plain arrays, not NumPy's: reading one element of these is a Python float or int at once.
    levels: array[float] = field(default_factory=lambda: array("d", bytes(8 * RING)))
    buckets: array[int] = field(default_factory=lambda: array("q", [-1]) * RING)
    """The bucket number each slot of the ring holds (-1: none), so stale slots are never read."""
    scored_from: float = math.inf
    """The timestamp from which deviations are scored: a day after the first one."""

    @classmethod
    def create(cls, horizon: int) -> SeasonalProfile:
        """``horizon``: in points, over which the deviation record is kept."""
        return cls(RecordRange.create(horizon))

    def point(self, level: float, timestamp: int) -> float:
        """Fold the series' ``level`` at ``timestamp`` in; the excess of its deviation (-inf while
        unscored)."""
        bucket = timestamp // BUCKET_SECONDS
        buckets, levels = self.buckets, self.levels
        deviation = math.inf
        for lag in _LAG_BUCKETS:
            then = bucket - lag
            slot = then % RING
            if buckets[slot] == then:
                distance = abs(level - levels[slot])
                if distance < deviation:
                    deviation = distance
        slot = bucket % RING
        levels[slot] = level
        buckets[slot] = bucket
        if deviation == math.inf:
            return -math.inf
        if self.scored_from == math.inf:
            self.scored_from = timestamp + DAY
        if timestamp < self.scored_from:
            self.record.fold(deviation)
            return -math.inf
        return self.record.excess(deviation, both=False)

    def chunk(self, levels: Floats, timestamps: npt.NDArray[np.int64]) -> Floats:
        """:meth:`point` for every (level, timestamp) in order, with NumPy over the whole chunk.

        Needs timestamps in non-decreasing order (a chunk's points are in time order); otherwise it
        runs :meth:`point` one by one.
        """
        n = len(levels)
        if n == 0:
            return np.zeros(0)
        if np.any(np.diff(timestamps) < 0):
            pairs = zip(levels.tolist(), timestamps.tolist(), strict=True)
            return np.array([self.point(level, timestamp) for level, timestamp in pairs])
        buckets = timestamps // BUCKET_SECONDS
        ring_buckets = np.frombuffer(self.buckets, dtype=np.int64)
        ring_levels = np.frombuffer(self.levels, dtype=np.float64)
        deviation = np.full(n, np.inf)
        for lag in _LAG_BUCKETS:
            then = buckets - lag
            # Written earlier in this chunk? Its last write comes before this point (then < bucket,
            # and buckets do not decrease). Else the ring as it was: no point of this chunk can
            # have overwritten that slot yet (it would be RING buckets later than `then`, later
            # than this point).
            last = np.searchsorted(buckets, then, side="right") - 1
            inside = (last >= 0) & (buckets[np.maximum(last, 0)] == then)
            slots = then % RING
            before = ~inside & (ring_buckets[slots] == then)
            found = np.full(n, np.inf)
            found[inside] = levels[last[inside]]
            found[before] = ring_levels[slots[before]]
            distance = np.abs(levels - found)
            distance[~(inside | before)] = np.inf
            deviation = np.minimum(deviation, distance)
        # Then the writes: each slot keeps the last level of its last bucket.
        slots = buckets % RING
        order = np.unique(slots[::-1], return_index=True)[1]
        last_of_slot = n - 1 - order
        ring_levels[slots[last_of_slot]] = levels[last_of_slot]
        ring_buckets[slots[last_of_slot]] = buckets[last_of_slot]
        found_any = np.isfinite(deviation)
        if self.scored_from == math.inf and found_any.any():
            self.scored_from = int(timestamps[np.argmax(found_any)]) + DAY
        out = np.full(n, -np.inf)
        values = deviation[found_any]
        scored = timestamps[found_any] >= self.scored_from
        out[found_any] = self.record.chunk(values, both=False, scored=scored)
        return out
