"""What a model's calls have done: rows, calls, their time, by batch size (Triton's statistics).

The batcher adds one entry per model call that succeeded: a few integer adds per batch, never per
row. Both paths that resolve a batch (the loop callback of the model thread, and
:meth:`~streamserve.runtime.Batcher.call_now`) run on the event loop, as do the readers, so the
counts need no lock. One object lives as long as the served model, so a version reload keeps them.
"""

from __future__ import annotations

import time
from types import MappingProxyType

from streamserve.contract import ModelStatistics

__all__ = ["CallStatistics"]


class CallStatistics:
    """The running counts of one model's calls; :meth:`snapshot` gives the frozen contract view."""

    __slots__ = ("_batches", "calls", "last", "ns", "rows")

    def __init__(self) -> None:
        self.rows = 0
        """Rows scored by the calls that succeeded."""
        self.calls = 0
        """Model calls that succeeded."""
        self.ns = 0
        """Nanoseconds spent in them."""
        self.last = 0.0
        """``time.perf_counter()`` when the last one ended (0.0: none yet)."""
        self._batches: dict[int, list[int]] = {}
        """Batch size -> [calls, nanoseconds]."""

    def add(self, rows: int, started: float, ended: float) -> None:
        """Count one model call of ``rows`` rows that ran from ``started`` to ``ended`` (perf_counter)."""
        ns = int((ended - started) * 1e9)
        self.rows += rows
        self.calls += 1
        self.ns += ns
        self.last = ended
        entry = self._batches.get(rows)
        if entry is None:
            self._batches[rows] = [1, ns]
        else:
            entry[0] += 1
            entry[1] += ns

    def snapshot(self) -> ModelStatistics:
        last_ms = 0
        if self.calls:
            # perf_counter has no epoch: place it on the wall clock now, not once at start-up, so
            # a clock corrected meanwhile is followed.
            last_ms = int((self.last + time.time() - time.perf_counter()) * 1000)
        batches = {size: (calls, ns) for size, (calls, ns) in sorted(self._batches.items())}
        return ModelStatistics(rows=self.rows, calls=self.calls, call_ns=self.ns,
                               last_call_ms=last_ms, batches=MappingProxyType(batches))
