"""Evaluate the served detector on a NAB-style corpus over gRPC, next to the baseline and the leaders.

Every series of the corpus is streamed through a *running* server (:mod:`.client`), so the numbers
are those of what is served: the model, the pre/postprocessing and the wire. The windowed-Gaussian
baseline is computed locally on the same data; the published detectors' scores are read from the
corpus' ``reference/`` folder when it has them. All are scored by the same code (:mod:`.nab`) in
NAB's three profiles, each at the threshold that maximises its own corpus score (as NAB does), and
with thresholds chosen on other files; ``--leave-out`` adds :func:`.tuning.leave_files_out`.

``--serve CONFIG`` starts ``streamserve serve`` as a child process on an ephemeral loopback port for
the run (what ``make nab`` does), so one command reproduces the published numbers.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from streamserve_anomaly import nab, tuning
from streamserve_anomaly.baseline import windowed_gaussian
from streamserve_anomaly.client import Progress, score_series

__all__ = ["PROFILES", "PUBLISHED", "REFERENCES", "Evaluation", "evaluate", "print_report"]

PUBLISHED = {
    "ARTime": 74.9,
    "Numenta HTM": 70.1,
    "CAD OSE": 69.9,
    "Random Cut Forest": 51.7,
    "Windowed Gaussian": 39.6,
}
"""Published standard-profile scores on the full NAB corpus (58 files): reference only, since a
subset of files scores differently."""

PROFILES = {
    "standard": nab.STANDARD,
    "low FP": nab.CostMatrix(tp=1.0, fp=0.22, fn=1.0),
    "low FN": nab.CostMatrix(tp=1.0, fp=0.11, fn=2.0),
}
"""NAB's three application profiles: its standard one, one that rewards few false positives and
one that rewards few false negatives."""

REFERENCES = {"ARTime": "ARTime", "numenta": "Numenta HTM", "contextOSE": "CAD OSE"}
"""Published detectors whose per-point scores a corpus may hold in ``reference/<folder>/``."""


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """One detector on the whole corpus in one profile, at its optimised threshold."""

    threshold: float
    raw: float
    score: float
    files: list[nab.FileResult]


@dataclass(frozen=True, slots=True)
class DetectorResult:
    """One detector in every profile, and its standard score with thresholds chosen on other files."""

    label: str
    profiles: dict[str, ProfileResult]
    threshold_left_out: float

    @property
    def score(self) -> float:
        return self.profiles["standard"].score


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of one evaluation run: the served detector first, then the others."""

    data: str
    target: str
    model_version: str
    windows: int
    points: int
    seconds: float
    """Wall time of streaming the corpus through the server."""
    detectors: list[DetectorResult]
    left_out: tuple[float, list[tuning.Fold]] | None
    """The served detector's settings and threshold chosen on other files (``--leave-out``)."""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for detector, result in zip(out["detectors"], self.detectors, strict=True):
            for name, profile in result.profiles.items():
                detector["profiles"][name]["files"] = [
                    {**asdict(f), "normalised": f.normalised} for f in profile.files
                ]
        out["published"] = PUBLISHED
        return out


def _profile(corpus: list[nab.LabelledSeries], scores: list[Any], costs: nab.CostMatrix) -> ProfileResult:
    threshold, raw = nab.optimise_threshold(corpus, scores, costs)
    files = [nab.score_file(s, sc, threshold, costs) for s, sc in zip(corpus, scores, strict=True)]
    windows = sum(len(s.windows) for s in corpus)
    return ProfileResult(threshold, raw, nab.normalised(raw, windows, costs), files)


def _threshold_left_out(corpus: list[nab.LabelledSeries], scores: list[Any], folds: int = 4) -> float:
    """Standard score when each group of files is scored at the threshold the others chose (NaN for
    a corpus of one file: there are no others)."""
    groups = tuning.file_groups(len(corpus), folds)
    if not groups:
        return float("nan")
    raw = 0.0
    for held, train in groups:
        threshold, _ = nab.optimise_threshold([corpus[i] for i in train], [scores[i] for i in train])
        raw += sum(nab.score_file(corpus[i], scores[i], threshold).raw for i in held)
    return nab.normalised(raw, sum(len(s.windows) for s in corpus))


def _detector(label: str, corpus: list[nab.LabelledSeries], scores: list[Any]) -> DetectorResult:
    profiles = {name: _profile(corpus, scores, costs) for name, costs in PROFILES.items()}
    return DetectorResult(label, profiles, _threshold_left_out(corpus, scores))


def _references(data: Path, corpus: list[nab.LabelledSeries]) -> list[tuple[str, list[Any]]]:
    """The published detectors' scores the corpus folder holds (those with every file): CSVs of
    ``timestamp,anomaly_score``, one row per point of the series."""
    found = []
    for folder, label in REFERENCES.items():
        paths = [data / "reference" / folder / s.name for s in corpus]
        if all(p.is_file() for p in paths):
            scores = []
            for path, series in zip(paths, corpus, strict=True):
                with path.open(newline="") as f:
                    rows = list(csv.reader(f))[1:]
                if len(rows) != len(series.values):
                    raise ValueError(f"{path}: {len(rows)} scores for {len(series.values)} points")
                scores.append(np.array([float(r[1]) for r in rows]))
            found.append((label, scores))
    return found


def evaluate(
    data: Path,
    target: str,
    *,
    progress: Progress | None = None,
    leave_out_model: Path | None = None,
) -> Evaluation:
    """Stream every series of ``data`` through the server at ``target`` and score the results.

    With ``leave_out_model`` (the served model's directory), also run :func:`tuning.leave_files_out`.
    """
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
    detectors = [_detector("streamserve-anomaly (over gRPC)", corpus, [r.scores for r in served]),
                 _detector("windowed Gaussian baseline", corpus,
                           [windowed_gaussian(s.values) for s in corpus])]
    detectors += [_detector(label, corpus, scores) for label, scores in _references(data, corpus)]
    left_out = None
    if leave_out_model is not None and len(corpus) >= 2:
        left_out = tuning.leave_files_out(corpus, tuning.model_errors(corpus, leave_out_model))
    return Evaluation(
        data=str(data),
        target=target,
        model_version=served[0].model_version,
        windows=sum(len(s.windows) for s in corpus),
        points=sum(len(s.values) for s in corpus),
        seconds=seconds,
        detectors=detectors,
        left_out=left_out,
    )


def print_report(result: Evaluation, out: TextIO = sys.stdout) -> None:
    """Per series (standard profile: windows found, false positives and the file's raw score), then
    the corpus scores."""
    labels = [d.label.split(" (")[0] for d in result.detectors]
    width = max(20, *(len(label) for label in labels))
    print(f"{'series (standard: found/windows, false positives, raw)':<56}"
          + "".join(f" {label:>{width}}" for label in labels), file=out)
    files = [d.profiles["standard"].files for d in result.detectors]
    for row in zip(*files, strict=True):
        cells = "".join(
            f" {f'{f.detected_windows}/{f.windows}  FP {f.false_positives:<3d}{f.raw:+6.2f}':>{width}}"
            for f in row)
        print(f"{row[0].name:<56}{cells}", file=out)
    print("-" * (56 + (width + 1) * len(labels)), file=out)
    print(f"{'detector':<36} {'standard':>9} {'low FP':>8} {'low FN':>8}   threshold chosen on "
          "other files (standard)", file=out)
    for d in result.detectors:
        scores = "".join(f" {d.profiles[p].score:8.1f}" for p in PROFILES)
        print(f"{d.label:<36} {scores}   {d.threshold_left_out:8.1f}", file=out)
    mine = result.detectors[0].profiles["standard"]
    found = sum(f.detected_windows for f in mine.files)
    fps = sum(f.false_positives for f in mine.files)
    print(f"streamserve-anomaly: NAB standard score {mine.score:.1f} at threshold {mine.threshold:.4f} "
          f"({found}/{result.windows} windows found, {fps} false positives)", file=out)
    if result.left_out is not None:
        score, folds = result.left_out
        print(f"leave files out (settings and threshold chosen on the other files, {len(folds)} "
              f"groups): NAB standard score {score:.1f}", file=out)
        for fold in folds:
            chosen = ", ".join(f"{k}={v}" for k, v in fold.settings.items())
            print(f"  held out {len(fold.held_out)} files ({fold.windows} windows): raw "
                  f"{fold.raw:6.2f} with {chosen}, threshold {fold.threshold:.3f}", file=out)
    published = ", ".join(f"{k} {v}" for k, v in PUBLISHED.items())
    print(f"published on the full NAB corpus (standard), for reference: {published}", file=out)
    print(f"{result.points} points, {len(files[0])} series, model version "
          f"{result.model_version!r}, streamed in {result.seconds:.1f} s", file=out)
