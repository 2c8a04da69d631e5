"""The online detector of one series on small hand-made cases: records, shapes, the clock, rests."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from streamserve_anomaly import online
from streamserve_anomaly.jit import compiled
from streamserve_anomaly.online import BLOCKS, LENGTH, MEMORY, SCALE, STEP, OnlineDetector
from streamserve_anomaly.settings import AnomalySettings

FIVE_MINUTES = 300
DAY_POINTS = 288
START = 1_700_006_400  # a midnight (UTC)


def scores(values: list[float], settings: AnomalySettings | None = None, step: int = 1) -> list[float]:
    """Score a series point by point (model error 0: only the detector's own channels speak)."""
    detector = OnlineDetector(settings or AnomalySettings())
    return [detector.point(v, START + i * step, 0.0) for i, v in enumerate(values)]


class RecordRange:
    """One record range on its own, in a state vector of its own."""

    def __init__(self, horizon: int) -> None:
        self.state = np.empty(online.RECORD_FLOATS)
        online.record_init(self.state, 0, horizon)

    def excess(self, x: float, *, both: bool = True) -> float:
        return online.record_excess(self.state, 0, x, both)


def flagged(values: list[float], settings: AnomalySettings | None = None, step: int = 1) -> list[int]:
    threshold = (settings or AnomalySettings()).threshold
    return [i for i, s in enumerate(scores(values, settings, step)) if s >= threshold]


def daily(days: int, *, noise: float = 0.02, seed: int = 0) -> list[float]:
    """Five-minute data with a daily cycle and bounded noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY_POINTS)
    return (np.sin(2 * np.pi * t / DAY_POINTS) + rng.uniform(-noise, noise, len(t))).tolist()


def test_excess_is_the_distance_beyond_the_range_in_units_of_it() -> None:
    record = RecordRange(BLOCKS * 10)
    assert record.excess(1.0) == -math.inf  # nothing to compare with yet
    for x in (0.0, 2.0, 1.0):
        record.excess(x)
    assert record.excess(2.5) == 0.25  # range [0, 2]: 0.5 above, a quarter of it
    assert record.excess(-1.0) == 1.0 / 2.5  # range [0, 2.5]: 1 below
    assert record.excess(-2.0, both=False) < 0  # upward only: a new low is no excess


def test_the_range_forgets_what_is_older_than_the_horizon() -> None:
    record = RecordRange(BLOCKS * 10)
    record.excess(100.0)  # an old excursion
    for i in range(BLOCKS * 10 + 10):
        record.excess(float(i % 2))
    assert record.excess(1.5) == 0.5  # judged against [0, 1] only: 100 is forgotten


def test_warm_up_scores_zero() -> None:
    values = [0.0] * 149 + [1e6] + [0.0] * 10
    got = scores(values)
    assert got[:150] == [0.0] * 150
    assert got[150] < AnomalySettings().threshold  # back to 0 is within the range [0, 1e6]


def test_level_shift_and_spike_are_caught_within_a_few_points() -> None:
    rng = np.random.default_rng(3)
    base = (np.sin(np.arange(2000) / 8.0) + rng.uniform(-0.1, 0.1, 2000)).tolist()
    spike = base.copy()
    spike[1500] += 2.0
    assert flagged(spike)[:1] == [1500]
    shift = base[:1500] + [v + 3.0 for v in base[1500:]]
    first = flagged(shift)
    assert first and 1500 <= first[0] < 1505, first[:5]


def test_a_burst_raises_one_alarm() -> None:
    rng = np.random.default_rng(4)
    values = rng.uniform(-1.0, 1.0, 2000)
    values[1500:1520] = np.linspace(3.0, 6.0, 20)  # twenty points, each a new record
    hits = flagged(values.tolist())
    assert [i for i in hits if 1500 <= i < 1520] == [1500], hits


def test_a_repeated_pattern_is_forgiven_after_its_first_occurrence() -> None:
    """A flat stretch in a daily wave is news once; the same stretch every day after is not."""
    values = daily(12)
    # From day 8 on (the time channel scores from day 7), the same two hours of every day are flat at
    # the level they start at.
    for day in range(8, 12):
        start = day * DAY_POINTS + 132  # where the wave falls steepest
        values[start : start + 24] = [values[start]] * 24
    # (The first day sets records while the cycle shows its range for the first time.)
    hits = [i for i in flagged(values, step=FIVE_MINUTES) if i >= DAY_POINTS]
    first_flat = 8 * DAY_POINTS + 132
    assert hits and first_flat <= hits[0] < first_flat + 24 + STEP * LENGTH, hits
    assert not [i for i in hits if i >= 9 * DAY_POINTS], hits


def test_the_time_channel_learns_a_week_before_it_scores() -> None:
    """A series' first weekend is no news to the clock: it has not seen a week yet."""
    state = np.empty(online.TIME_FLOATS)
    online.time_init(state, 0, 6000)
    levels, buckets = online.new_time_profile()
    start = 1_700_006_400
    excess = [online.time_deviation(state, 0, levels, buckets, 5.0 if day in (2, 3) else 0.0,
                                    start + day * 86_400 + hour * 3600)
              for day in range(9) for hour in range(24)]
    assert excess[: 7 * 24] == [-math.inf] * (7 * 24)  # the "weekend" on days 2 and 3 included
    assert all(math.isfinite(e) for e in excess[7 * 24 :])


def test_a_day_unlike_the_days_before_it_is_flagged_by_the_clock() -> None:
    """Half a day shifted down within the series' range: no value, level or shape record alone."""
    values = daily(10, seed=5)
    anomalous = 8 * DAY_POINTS
    for i in range(anomalous, anomalous + DAY_POINTS // 2):
        values[i] -= 0.6
    hits = flagged(values, step=FIVE_MINUTES)
    assert [i for i in hits if anomalous <= i < anomalous + DAY_POINTS // 2], hits
    assert not [i for i in hits if DAY_POINTS <= i < anomalous], hits
    quiet = flagged(values, AnomalySettings(time_weight=0), step=FIVE_MINUTES)
    assert not [i for i in quiet if anomalous <= i < anomalous + DAY_POINTS // 2], quiet


def test_time_profile_compares_with_the_closest_earlier_day() -> None:
    state = np.empty(online.TIME_FLOATS)
    online.time_init(state, 0, 6000)
    levels, buckets = online.new_time_profile()

    # Hourly levels: 0 every day but day 6 (a "Sunday" at 5), with a little daily wobble.
    def run(day: int, level: float) -> list[float]:
        return [online.time_deviation(state, 0, levels, buckets, level + 0.1 * (k % 2),
                                      day * 86_400 + k * 3600) for k in range(24)]

    for day in range(13):
        run(day, 5.0 if day == 6 else 0.0)
    # Day 13 at 5 is 7 days after the Sunday: like one of its earlier days, so no excess.
    assert max(run(13, 5.0)) <= 0.0
    # Day 14 at 20 is like no earlier day (15 from the closest): the deviation is a record.
    assert max(run(14, 20.0)) > 0.0


def test_shape_memory_remembers_shapes_and_stays_bounded() -> None:
    state = np.empty(online.SHAPE_FLOATS)
    online.shape_init(state, 0, 6000)
    memory = online.new_shape_memory()
    pattern = [0.0, 1.0, 0.0, 2.0, 0.0, 1.0] * 40
    novelty = [online.shape_novelty(state, 0, memory, x) for x in pattern * 40]
    assert memory.nbytes == 8192 and len(novelty) // STEP - LENGTH + 1 > MEMORY
    assert max(novelty[len(novelty) // 2 :]) <= 0.0  # the pattern is remembered
    novelty = [online.shape_novelty(state, 0, memory, x) for x in [0.5] * (STEP * LENGTH)]
    assert max(novelty) > 0.0  # a flat stretch at a new shape is a record novelty


def test_calibrated_prediction_error_is_relative_to_the_series_typical_error() -> None:
    def last(typical: float, error: float) -> float:
        state = np.empty(online.PREDICTION_FLOATS)
        online.prediction_init(state, 0, error_halflife=8192.0, averaging_halflife=1.0,
                               warmup_points=64)
        for e in np.random.default_rng(1).uniform(0.5 * typical, 1.5 * typical, 500):
            online.prediction_score(state, 0, float(e))
        return online.prediction_score(state, 0, error)

    assert last(0.1, 0.1) < 0.05
    assert last(0.1, 1.0) > 0.9
    assert last(1.0, 1.5) < last(0.1, 1.5)  # the same error in a noisier series


def test_a_larger_excess_scores_higher() -> None:
    base = daily(2, seed=6)
    got = [scores([*base, 1.0 + jump])[-1] for jump in (SCALE, 0.2, 2.0, 20.0)]
    assert got == sorted(got) and got[0] < got[-1] < 1.0


def test_two_detectors_are_independent() -> None:
    a, b = daily(3, seed=1), [100.0 * v for v in daily(3, seed=2)]
    alone = scores(a), scores(b)
    first, second = OnlineDetector(AnomalySettings()), OnlineDetector(AnomalySettings())
    mixed = [(first.point(x, START + i, 0.0), second.point(y, START + i, 0.0))
             for i, (x, y) in enumerate(zip(a, b, strict=True))]
    assert [m[0] for m in mixed] == alone[0] and [m[1] for m in mixed] == alone[1]


def test_the_plot_finds_the_labelled_windows_of_a_nab_file(tmp_path: Path) -> None:
    """`score --plot` shades the windows `windows.json` labels for the CSV, in NAB's layout (the
    labels one folder up, keyed by `<group>/<name>.csv`) or beside the file."""
    from streamserve_anomaly.plot import labelled_windows, plot_scores

    csv = tmp_path / "realTraffic" / "speed.csv"
    csv.parent.mkdir()
    csv.write_text("timestamp,value\n2024-03-01 00:00:00,1\n")
    assert labelled_windows(csv) == []  # no labels anywhere
    (tmp_path / "windows.json").write_text(
        '{"realTraffic/speed.csv": [["2024-03-01 00:05:00", "2024-03-01 00:20:00"]]}')
    assert labelled_windows(csv) == [(1709251500, 1709252400)]
    times = np.arange(1709251200, 1709251200 + 300 * 10, 300, dtype=np.int64)
    picture = tmp_path / "plot.png"
    plot_scores(picture, times, np.arange(10.0), np.linspace(0, 0.9, 10), np.arange(10) > 7,
                threshold=0.48, windows=labelled_windows(csv), title="speed")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_series_costs_a_fixed_few_tens_of_kilobytes() -> None:
    """The state is four arrays of fixed size: it does not grow with the series."""
    detector = OnlineDetector(AnomalySettings())
    values = np.asarray(daily(30))  # 8,640 points: every ring has wrapped
    timestamps = START + FIVE_MINUTES * np.arange(len(values), dtype=np.int64)
    detector.chunk(values[:100], timestamps[:100], np.zeros(100))
    young = detector.nbytes
    detector.chunk(values[100:], timestamps[100:], np.zeros(len(values) - 100))
    assert detector.nbytes == young < 32_000


def _add_one(x: float) -> float:
    return x + 1.0


def test_without_a_writable_cache_folder_the_steps_still_compile(monkeypatch: Any) -> None:
    """A read-only install with no writable home: Numba refuses to cache; the plugin compiles."""
    import numba.core.caching

    def read_only(*_: object) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(numba.core.caching._CacheLocator, "ensure_cache_path", read_only)
    assert compiled(_add_one)(1.0) == 2.0
