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

from streamserve_anomaly.records import RecordRange

__all__ = ["BUCKET_SECONDS", "DAYS_KEPT", "LAG_DAYS", "SeasonalProfile"]

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
