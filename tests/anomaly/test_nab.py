"""The NAB scorer on small hand-computed cases, its threshold optimiser, and the baseline detector."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from streamserve_anomaly import nab
from streamserve_anomaly.baseline import windowed_gaussian

N = 100
WINDOW = (50, 59)  # ten points; the probationary period is the first 15 points


def series(windows: tuple[tuple[int, int], ...] = (WINDOW,), n: int = N) -> nab.LabelledSeries:
    return nab.LabelledSeries("g/f.csv", np.arange(n, dtype=np.int64), np.zeros(n), windows)


def raw(detections: list[int], labelled: nab.LabelledSeries | None = None) -> float:
    labelled = labelled or series()
    scores = np.zeros(len(labelled.values))
    scores[detections] = 1.0
    return nab.score_file(labelled, scores, 0.5).raw


def sigma(x: float) -> float:
    """NAB's scaled sigmoid, written out."""
    return -1.0 if x >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def test_a_detection_at_the_start_of_a_window_is_worth_one() -> None:
    assert raw([50]) == pytest.approx(1.0)


def test_a_late_detection_is_worth_less() -> None:
    # The last point of a 10-point window: relative position -(59 - 59 + 1) / 10 = -0.1.
    assert raw([59]) == pytest.approx(sigma(-0.1) / sigma(-1.0))
    assert raw([59]) == pytest.approx(0.2482, abs=1e-4)
    assert raw([54]) == pytest.approx(sigma(-0.6) / sigma(-1.0))


def test_only_the_earliest_detection_of_a_window_counts() -> None:
    assert raw([52, 50, 57]) == pytest.approx(1.0)
    assert raw([55, 58]) == pytest.approx(sigma(-0.5) / sigma(-1.0))


def test_a_missed_window_costs_one() -> None:
    assert raw([]) == -1.0


def test_false_positives_cost_by_their_distance_from_the_previous_window() -> None:
    assert raw([30]) == pytest.approx(-1.0 - 0.11)  # before any window: the full cost
    # Eleven points after the end of a 10-point window: 11 / (10 - 1) widths.
    assert raw([50, 70]) == pytest.approx(1.0 + 0.11 * sigma(11 / 9))
    assert raw([50, 60]) == pytest.approx(1.0 + 0.11 * sigma(1 / 9))  # just after: costs less
    assert raw([50, 95]) == pytest.approx(1.0 - 0.11)  # three widths or more: the full cost
    result = nab.score_file(series(), np.isin(np.arange(N), [30, 50, 70]).astype(float), 0.5)
    assert (result.detected_windows, result.false_positives) == (1, 2)


def test_the_probationary_period_is_not_scored() -> None:
    assert nab.probation_length(100) == 15
    assert nab.probation_length(10_000) == 750  # 15 % of at most 5,000 points
    assert raw([0, 5, 14]) == -1.0
    assert raw([15]) == pytest.approx(-1.0 - 0.11)


def test_null_detector_scores_0_and_perfect_detector_100() -> None:
    windows = ((30, 39), (60, 79))
    labelled = series(windows)
    assert nab.normalised(raw([], labelled), len(windows)) == 0.0
    assert nab.normalised(raw([30, 60], labelled), len(windows)) == pytest.approx(100.0)
    # One of two windows found at its start, nothing else: half way.
    assert nab.normalised(raw([30], labelled), len(windows)) == pytest.approx(50.0)


def test_optimiser_picks_the_corpus_best_threshold() -> None:
    files = [series(), series(((20, 29),))]
    first = np.zeros(N)
    first[[50, 80]] = [0.6, 0.9]  # the window at 0.6, a false positive at 0.9
    second = np.zeros(N)
    second[[20, 40]] = [0.7, 0.65]
    threshold, best = nab.optimise_threshold(files, [first, second])
    # At 0.6 both windows are found at their start, with two false positives, 21 and 11 points
    # after their 10-point windows. Every other threshold does worse (0.65: one window missed).
    assert threshold == 0.6
    assert best == pytest.approx(2.0 + 0.11 * (sigma(21 / 9) + sigma(11 / 9)))
    total = sum(nab.score_file(f, s, threshold).raw for f, s in zip(files, [first, second], strict=True))
    assert total == pytest.approx(best)
    # A detector that never fires: the threshold above every score, raw -1 per window.
    assert nab.optimise_threshold(files, [np.zeros(N), np.zeros(N) - 1.0])[1] <= -1.0


def test_corpus_windows_are_found_by_timestamp(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    lines = ["timestamp,value"] + [f"2024-01-01 00:{m:02d}:00,{m}" for m in range(60)]
    (tmp_path / "g" / "s.csv").write_text("\n".join(lines) + "\n")
    windows = {"g/s.csv": [["2024-01-01 00:10:00.000000", "2024-01-01 00:19:00.000000"]]}
    (tmp_path / "windows.json").write_text(json.dumps(windows))
    (loaded,) = nab.load_corpus(tmp_path)
    assert loaded.name == "g/s.csv" and loaded.windows == ((10, 19),)
    assert loaded.timestamps[0] == 1_704_067_200 and loaded.values[59] == 59.0


def test_windowed_gaussian_is_causal_and_flags_outliers() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=3000)
    values[2500] = 8.0
    scores = windowed_gaussian(values)
    assert scores[0] == 0.0 and np.all((scores >= 0) & (scores < 1))
    assert int(np.argmax(scores[100:])) + 100 == 2500  # (a 1-point window has no spread: NAB too)
    changed = values.copy()
    changed[2000] = 100.0
    np.testing.assert_array_equal(windowed_gaussian(changed)[:2000], scores[:2000])
    # The point's own window: still growing (under 6,400 points), so every point before it.
    window = values[:2500]
    z = abs(values[2500] - window.mean()) / window.std()
    assert scores[2500] == pytest.approx(z / (1 + z), rel=1e-9)


def test_windowed_gaussian_follows_nabs_growing_then_stepping_window() -> None:
    """Against a plain re-telling of NAB's detector loop (window grows, then moves in steps)."""
    window, step = 50, 10
    values = np.random.default_rng(3).normal(size=400).cumsum()

    expected, data, buffer, mean, std = [], [], [], 0.0, 1.0
    for value in values:
        z = abs(value - mean) / std
        expected.append(z / (1 + z) if data else 0.0)
        if len(data) < window:
            data.append(value)
            mean, std = float(np.mean(data)), float(np.std(data)) or 1e-6
        else:
            buffer.append(value)
            if len(buffer) == step:
                data = data[step:] + buffer
                buffer = []
                mean, std = float(np.mean(data)), float(np.std(data)) or 1e-6

    np.testing.assert_allclose(windowed_gaussian(values, window, step), expected, rtol=1e-7, atol=1e-9)
