"""NAB, the Numenta Anomaly Benchmark: its corpus layout and its scoring, from the published rules.

A corpus is a folder of ``<group>/<name>.csv`` files (``timestamp,value``) and a ``windows.json``
that gives each file's labelled anomaly windows as ``[start, end]`` timestamps.

Scoring (NAB's ``Sweeper``, standard profile ``A_TP = 1``, ``A_FP = -0.11``, ``A_FN = -1``):

- A detection is a point whose score is at least the threshold. The first 15 % of each file (at most
  750 points), the *probationary period*, is not scored at all.
- In a window of ``w`` points ending at index ``e``, a detection at index ``i`` is worth
  ``A_TP * sigma((-(e - i + 1) / w) / sigma(-1)``, with the scaled sigmoid
  ``sigma(x) = 2 / (1 + exp(5x)) - 1`` (and ``-1`` from ``x >= 3``): 1 at the window's first point,
  falling towards 0 at its end. Only the best (earliest) detection of a window counts; a window
  without one costs ``A_FN``.
- A detection outside every window costs ``A_FP``, times ``sigma(|i - e| / (w - 1))`` relative to the
  end ``e`` and width ``w`` of the window before it (so a detection just after a window costs little),
  or the full ``A_FP`` before the first window.
- A file's raw score is the sum; the corpus' is the sum over files, normalised to
  ``100 * (raw - null) / (perfect - null)``: the null detector (never fires) has ``-A_FN`` per window,
  the perfect one ``A_TP`` per window. The threshold is the one that maximises the corpus score
  (NAB's optimiser), the same for every file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "STANDARD",
    "CostMatrix",
    "FileResult",
    "LabelledSeries",
    "load_corpus",
    "normalised",
    "optimise_threshold",
    "probation_length",
    "scaled_sigmoid",
    "score_file",
]

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class CostMatrix:
    """The weights of an application profile (the magnitudes; false positives and negatives cost)."""

    tp: float
    fp: float
    fn: float


STANDARD = CostMatrix(tp=1.0, fp=0.11, fn=1.0)
"""NAB's standard profile."""

PROBATION_FRACTION = 0.15


def scaled_sigmoid(x: Floats) -> Floats:
    """NAB's ``scaledSigmoid``: ``2 / (1 + exp(5x)) - 1``, and ``-1`` from ``x >= 3``."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * np.minimum(x, 3.0))) - 1.0)


def probation_length(n: int) -> int:
    """Points at the start of a file of ``n`` points that are not scored."""
    return int(min(math.floor(PROBATION_FRACTION * n), PROBATION_FRACTION * 5000))


@dataclass(frozen=True, slots=True)
class LabelledSeries:
    """One file of a corpus."""

    name: str
    """``<group>/<name>.csv``, the key in ``windows.json``."""
    timestamps: npt.NDArray[np.int64]
    """Unix seconds."""
    values: Floats
    windows: tuple[tuple[int, int], ...]
    """Each window as (first index, last index), inclusive, in time order."""


def load_corpus(folder: Path) -> list[LabelledSeries]:
    """Every series of a NAB-style folder that ``windows.json`` labels, sorted by name."""
    from streamserve_anomaly.series_csv import parse_timestamp, read_series

    labels = json.loads((folder / "windows.json").read_text())
    corpus = []
    for name in sorted(labels):
        series = read_series(folder / name)
        windows = []
        for start, end in labels[name]:
            inside = np.flatnonzero(
                (series.timestamps >= parse_timestamp(start)) & (series.timestamps <= parse_timestamp(end))
            )
            if not len(inside):
                raise ValueError(f"{name}: window [{start}, {end}] holds no point")
            windows.append((int(inside[0]), int(inside[-1])))
        corpus.append(LabelledSeries(name, series.timestamps, series.values, tuple(windows)))
    return corpus


def _point_weights(
    n: int, windows: Sequence[tuple[int, int]], costs: CostMatrix
) -> tuple[Floats, npt.NDArray[np.int64]]:
    """What a detection at each index is worth, and the window it is in (-1 outside any)."""
    weight = np.empty(n)
    window_of = np.full(n, -1, dtype=np.int64)
    index = np.arange(n, dtype=np.float64)
    # Before the first window: the full false-positive cost.
    weight[:] = -costs.fp
    max_tp = float(scaled_sigmoid(np.array(-1.0)))
    for k, (first, last) in enumerate(windows):
        width = last - first + 1
        inside = slice(first, last + 1)
        weight[inside] = scaled_sigmoid(-(last - index[inside] + 1) / width) * costs.tp / max_tp
        window_of[inside] = k
        following = windows[k + 1][0] if k + 1 < len(windows) else n
        after = slice(last + 1, following)
        if width > 1:
            weight[after] = scaled_sigmoid(np.abs(last - index[after]) / (width - 1)) * costs.fp
        else:
            weight[after] = -costs.fp
    return weight, window_of


@dataclass(frozen=True, slots=True)
class FileResult:
    """One file scored at one threshold."""

    name: str
    windows: int
    raw: float
    detected_windows: int
    false_positives: int

    @property
    def normalised(self) -> float | None:
        """This file's own normalised score (None for a file without windows)."""
        return normalised(self.raw, self.windows) if self.windows else None


def score_file(
    series: LabelledSeries, scores: Floats, threshold: float, costs: CostMatrix = STANDARD
) -> FileResult:
    """Score one file's detector scores at ``threshold``."""
    n = len(series.values)
    if len(scores) != n:
        raise ValueError(f"{series.name}: {len(scores)} scores for {n} points")
    weight, window_of = _point_weights(n, series.windows, costs)
    detected = np.asarray(scores) >= threshold
    detected[: probation_length(n)] = False
    raw = 0.0
    found = 0
    for k in range(len(series.windows)):
        hits = weight[detected & (window_of == k)]
        if len(hits):
            raw += float(hits.max())
            found += 1
        else:
            raw -= costs.fn
    outside = detected & (window_of < 0)
    raw += float(weight[outside].sum())
    return FileResult(series.name, len(series.windows), raw, found, int(outside.sum()))


def normalised(raw: float, windows: int, costs: CostMatrix = STANDARD) -> float:
    """``100 * (raw - null) / (perfect - null)`` for a corpus (or file) with ``windows`` windows."""
    null = -costs.fn * windows
    perfect = costs.tp * windows
    return 100.0 * (raw - null) / (perfect - null)


def optimise_threshold(
    corpus: Sequence[LabelledSeries], scores: Sequence[Floats], costs: CostMatrix = STANDARD
) -> tuple[float, float]:
    """The threshold that maximises the corpus' raw score, and that score (NAB's optimiser).

    Every distinct score is a candidate (plus one above them all: never fire). Computed for all
    candidates at once: per file, the false-positive costs summed over the points at or above each
    candidate, and per window the best detection at or above it.
    """
    candidates = np.unique(np.concatenate([np.asarray(s, dtype=np.float64) for s in scores]))
    candidates = np.append(candidates, np.inf)  # ascending; inf: the null detector
    total = np.zeros(len(candidates))
    for series, file_scores in zip(corpus, scores, strict=True):
        n = len(series.values)
        weight, window_of = _point_weights(n, series.windows, costs)
        s = np.asarray(file_scores, dtype=np.float64)
        scored = np.arange(n) >= probation_length(n)
        for k in range(-1, len(series.windows)):
            mine = scored & (window_of == k)
            order = np.argsort(-s[mine], kind="stable")
            sorted_scores = s[mine][order]  # descending
            # How many of these points are detected at each candidate (score >= candidate).
            count = np.searchsorted(-sorted_scores, -candidates, side="right")
            if k < 0:
                total += np.concatenate(([0.0], np.cumsum(weight[mine][order])))[count]
            else:
                best = np.concatenate(([-costs.fn], np.maximum.accumulate(weight[mine][order])))
                total += best[count]
    best_index = int(np.argmax(total[::-1]))  # the highest threshold among equals
    best_index = len(candidates) - 1 - best_index
    return float(candidates[best_index]), float(total[best_index])
