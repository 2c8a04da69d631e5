"""What a server's metrics say, read from its registry (no HTTP endpoint needed)."""

from __future__ import annotations

import collections

from streamserve.serving import Server


def call_errors(server: Server) -> dict[str, float]:
    """``streamserve_call_errors_total`` summed over methods, by status code (codes never seen
    are absent)."""
    totals: collections.Counter[str] = collections.Counter()
    for family in server.metrics.registry.collect():
        if family.name == "streamserve_call_errors":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value:
                    totals[sample.labels["code"]] += int(sample.value)
    return dict(totals)


def active_streams(server: Server) -> float:
    """``streamserve_active_streams`` summed over methods."""
    return sum(
        sample.value
        for family in server.metrics.registry.collect()
        if family.name == "streamserve_active_streams"
        for sample in family.samples
    )
