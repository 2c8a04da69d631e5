"""``timestamp,value`` CSV files, as NAB ships them: read them for the wire, write scores back.

Timestamps are ``YYYY-MM-DD HH:MM:SS`` (optionally with fractions of a second, or a ``T``), taken as
UTC. On the wire they are int64 Unix seconds; output files turn them back into the same text form.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["Series", "format_timestamp", "parse_timestamp", "read_series", "write_scores"]


def parse_timestamp(text: str) -> int:
    """Unix seconds of a ``YYYY-MM-DD HH:MM:SS[.ffffff]`` UTC timestamp (fractions dropped)."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def format_timestamp(seconds: int) -> str:
    """The ``YYYY-MM-DD HH:MM:SS`` UTC text of Unix seconds."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class Series:
    """The rows of one CSV file, in file order."""

    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    value_texts: tuple[str, ...]
    """The values as written in the file, so that output files repeat them exactly."""


def read_series(path: Path) -> Series:
    """Read a ``timestamp,value`` CSV; errors name the file and line."""
    timestamps: list[int] = []
    values: list[float] = []
    texts: list[str] = []
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"timestamp", "value"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected a header 'timestamp,value', got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                timestamps.append(parse_timestamp(row["timestamp"]))
            except (TypeError, ValueError):
                raise ValueError(
                    f"{path}:{line}: timestamp {row['timestamp']!r} is not YYYY-MM-DD HH:MM:SS"
                ) from None
            try:
                value = float(row["value"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: value {row['value']!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"{path}:{line}: value {value} is not finite")
            values.append(value)
            texts.append(row["value"].strip())
    # Rows are taken in file order, which is the series' order; timestamps are not checked for it
    # (NAB's own machine_temperature file steps back an hour once).
    return Series(np.asarray(timestamps, dtype=np.int64), np.asarray(values, dtype=np.float64), tuple(texts))


def write_scores(
    path: Path,
    series: Series,
    timestamps: Sequence[int],
    scores: Sequence[float],
    is_anomaly: Sequence[bool],
) -> None:
    """Write ``timestamp,value,score,is_anomaly``, one row per point (timestamps from the server)."""
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["timestamp", "value", "score", "is_anomaly"])
        for stamp, text, score, flag in zip(timestamps, series.value_texts, scores, is_anomaly, strict=True):
            writer.writerow([format_timestamp(int(stamp)), text, f"{score:.6f}", int(flag)])
