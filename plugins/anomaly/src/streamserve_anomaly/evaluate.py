"""Evaluate the served detector on a NAB-style corpus over gRPC, next to the windowed-Gaussian baseline.

Every series of the corpus is streamed through a *running* server (:mod:`.client`), so the numbers
are those of what is served: the model, the pre/postprocessing and the wire. The baseline is computed
locally on the same data. Both are scored by :mod:`.nab` with the standard profile, each at the
threshold that maximises its own corpus score (as NAB does for every detector).

``--serve CONFIG`` starts ``streamserve serve`` as a child process on an ephemeral loopback port for
the run (what ``make nab`` does), so one command reproduces the published numbers.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from streamserve_anomaly import nab
from streamserve_anomaly.baseline import windowed_gaussian
from streamserve_anomaly.client import Progress, score_series

__all__ = ["PUBLISHED", "Evaluation", "evaluate", "print_report"]

PUBLISHED = {
    "Numenta HTM": 70.5,
    "Random Cut Forest": 51.7,
    "Windowed Gaussian": 39.6,
    "Random": 11.0,
}
"""Published standard-profile scores on the full NAB corpus (58 files): reference only, since a
subset of files scores differently."""


@dataclass(frozen=True, slots=True)
class DetectorResult:
    """One detector on the whole corpus, at its optimised threshold."""

    threshold: float
    raw: float
    score: float
    files: list[nab.FileResult]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of one evaluation run."""

    data: str
    target: str
    model_version: str
    windows: int
    points: int
    seconds: float
    """Wall time of streaming the corpus through the server."""
    detector: DetectorResult
    baseline: DetectorResult

    def to_json(self) -> dict[str, Any]:
        def files(result: DetectorResult) -> list[dict[str, Any]]:
            return [{**asdict(f), "normalised": f.normalised} for f in result.files]

        out = asdict(self)
        out["detector"]["files"] = files(self.detector)
        out["baseline"]["files"] = files(self.baseline)
        out["published"] = PUBLISHED
        return out


def _detector_result(
    corpus: list[nab.LabelledSeries], scores: list[Any], costs: nab.CostMatrix
) -> DetectorResult:
    threshold, raw = nab.optimise_threshold(corpus, scores, costs)
    files = [nab.score_file(s, sc, threshold, costs) for s, sc in zip(corpus, scores, strict=True)]
    windows = sum(len(s.windows) for s in corpus)
    return DetectorResult(threshold, raw, nab.normalised(raw, windows, costs), files)


def evaluate(
    data: Path, target: str, *, progress: Progress | None = None, costs: nab.CostMatrix = nab.STANDARD
) -> Evaluation:
    """Stream every series of ``data`` through the server at ``target`` and score the results."""
    corpus = nab.load_corpus(data)
    if not corpus:
        raise ValueError(f"{data}/windows.json names no series")
    started = time.perf_counter()
    served = score_series(
        target, [(s.name, s.timestamps, s.values) for s in corpus], progress=progress
    )
    seconds = time.perf_counter() - started
    for series, result in zip(corpus, served, strict=True):
        if len(result.scores) != len(series.values):
            raise RuntimeError(f"{series.name}: the server answered {len(result.scores)} of "
                               f"{len(series.values)} points")
    return Evaluation(
        data=str(data),
        target=target,
        model_version=served[0].model_version,
        windows=sum(len(s.windows) for s in corpus),
        points=sum(len(s.values) for s in corpus),
        seconds=seconds,
        detector=_detector_result(corpus, [r.scores for r in served], costs),
        baseline=_detector_result(corpus, [windowed_gaussian(s.values) for s in corpus], costs),
    )


def print_report(result: Evaluation, out: TextIO = sys.stdout) -> None:
    """The per-series and overall table."""
    def cell(f: nab.FileResult) -> str:
        norm = "" if f.normalised is None else f"{f.normalised:6.1f}"
        return f"{f.detected_windows:>3}/{f.windows:<3}{f.false_positives:>4} {f.raw:7.2f} {norm:>6}"

    columns = "found  FP     raw   norm"
    header = f"{'series':<56} {'detector ' + columns:>32}   {'baseline ' + columns:>32}"
    print(header, file=out)
    for mine, theirs in zip(result.detector.files, result.baseline.files, strict=True):
        print(f"{mine.name:<56} {cell(mine):>32}   {cell(theirs):>32}", file=out)
    print("-" * len(header), file=out)
    for label, r in (("streamserve-anomaly (over gRPC)", result.detector),
                     ("windowed Gaussian baseline (local)", result.baseline)):
        found = sum(f.detected_windows for f in r.files)
        fps = sum(f.false_positives for f in r.files)
        print(f"{label:<36} NAB standard score {r.score:5.1f}  (raw {r.raw:6.2f}, threshold "
              f"{r.threshold:.4f}, {found}/{result.windows} windows found, {fps} false positives)",
              file=out)
    published = ", ".join(f"{k} {v}" for k, v in PUBLISHED.items())
    print(f"published on the full NAB corpus, for reference: {published}", file=out)
    print(f"{result.points} points, {len(result.detector.files)} series, model version "
          f"{result.model_version!r}, streamed in {result.seconds:.1f} s", file=out)
