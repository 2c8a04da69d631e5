"""Leave-files-out: how the detector's settings do on files they were not chosen on.

The detector's defaults were chosen by looking at NAB's files, as every NAB detector's were. To say
honestly what that choice is worth on data it was not made on, :func:`leave_files_out` splits the
corpus into ``folds`` groups of files; for each group it picks, on the *other* files only, the
best of a small grid of settings and its optimal threshold, then scores the held-out group with
them. The held-out raw scores add up to a corpus score made entirely of files that chose nothing.

It runs in process, with the very code the server runs (:class:`~.normalise.Normaliser`, the
SavedModel, :class:`~.online.OnlineDetector`), since a server serves one set of settings at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamserve_anomaly import nab
from streamserve_anomaly.normalise import Normaliser
from streamserve_anomaly.online import OnlineDetector
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import ERROR, HISTORY, SIGNATURE, VALUE

__all__ = ["GRID", "Fold", "file_groups", "leave_files_out", "model_errors", "score_corpus"]

Floats = npt.NDArray[np.float64]

GRID: Mapping[str, Sequence[Any]] = {
    "horizon_points": (3000, 6000, 12000),
    "time_weight": (0.125, 0.25, 0.5),
    "rest_points": (15, 30, 60),
}
"""The settings a fold may choose among: the ones the defaults were chosen by, around them."""


@dataclass(frozen=True, slots=True)
class Fold:
    """One held-out group: the files, what the other files chose, and how the group scored."""

    held_out: list[str]
    settings: dict[str, Any]
    threshold: float
    raw: float
    windows: int


def file_groups(count: int, folds: int) -> list[tuple[list[int], list[int]]]:
    """``(held out, the others)`` file indices for each of ``folds`` groups (file ``i`` in group
    ``i % folds``; at most one group per file, and none for fewer than two files)."""
    folds = min(folds, count)
    if folds < 2:
        return []
    return [([i for i in range(count) if i % folds == k], [i for i in range(count) if i % folds != k])
            for k in range(folds)]


def model_errors(corpus: Sequence[nab.LabelledSeries], model_dir: Path) -> list[Floats]:
    """The model's error on every point of every series, as the server computes it."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir)).signatures[SIGNATURE.name]
    errors = []
    for series in corpus:
        history, z = Normaliser(AnomalySettings().normalisation_halflife).chunk(
            np.asarray(series.values, dtype=np.float32).astype(np.float64)
        )
        out = serve(**{HISTORY: tf.constant(history), VALUE: tf.constant(z)})
        errors.append(out[ERROR].numpy().astype(np.float64))
    return errors


def score_corpus(
    corpus: Sequence[nab.LabelledSeries], errors: Sequence[Floats], settings: AnomalySettings
) -> list[Floats]:
    """Every series scored point by point with ``settings``, as a stream of it would be."""
    scores = []
    for series, error in zip(corpus, errors, strict=True):
        detector = OnlineDetector(settings)
        values = np.asarray(series.values, dtype=np.float32).tolist()  # what the wire carries
        scores.append(np.array(list(map(detector.point, values, series.timestamps.tolist(),
                                        np.asarray(error, np.float32).tolist()))))
    return scores


def leave_files_out(
    corpus: Sequence[nab.LabelledSeries],
    errors: Sequence[Floats],
    *,
    folds: int = 4,
    grid: Mapping[str, Sequence[Any]] = GRID,
    costs: nab.CostMatrix = nab.STANDARD,
) -> tuple[float, list[Fold]]:
    """The corpus score of held-out files, each group scored with what the others chose (in at most
    as many groups as there are files; at least two files are needed)."""
    groups = file_groups(len(corpus), folds)
    if not groups:
        raise ValueError("leaving files out needs at least two files")
    names = list(grid)
    candidates = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]
    scored = [score_corpus(corpus, errors, AnomalySettings(**c)) for c in candidates]
    results = []
    for held, train in groups:
        files = [corpus[i] for i in train]
        # Each candidate's best threshold and raw score on the other files; the best candidate.
        (threshold, _), best = max(
            ((nab.optimise_threshold(files, [scored[c][i] for i in train], costs), c)
             for c in range(len(candidates))),
            key=lambda found: found[0][1],
        )
        raw = sum(nab.score_file(corpus[i], scored[best][i], threshold, costs).raw for i in held)
        results.append(Fold([corpus[i].name for i in held], candidates[best], threshold, raw,
                            sum(len(corpus[i].windows) for i in held)))
    windows = sum(len(s.windows) for s in corpus)
    return nab.normalised(sum(f.raw for f in results), windows, costs), results
