"""The detector of one series: channels that each ask "is this a record?", one score, one alarm per event.

Per point, in order, each channel gives an **excess**: how far the point lies beyond what the series
has shown lately, in units of that range (see *Records* below).

- ``value``: the raw value (a spike, a level never reached lately, in either direction);
- ``level``: the value smoothed over ``LEVEL_HALFLIFE`` points (a shift too small for any single
  point to stand out, sustained);
- ``shape``: the novelty of the latest stretch's shape (*Shapes*);
- ``time``: the level's distance from where it was at this time 1, 2 or 7 days ago (*Time of day*),
  counted at ``time_weight`` of its excess (the clock's habits are looser than the range's);
- ``prediction``: the calibrated likelihood of the TensorFlow model's prediction error
  (*Prediction*), as an excess of at most ``prediction_weight``.

The score is ``e / (e + SCALE)`` of the largest excess ``e`` (0 when nothing is beyond its range), so
scores lie in [0, 1) and order points as their excess does. After a score of at least
``rest_score``, the next ``rest_points`` points score 0: the first point of an event is the one that
matters, the rest of a burst would only repeat it. The first ``warmup_points`` points score 0 while
every channel learns the series.

**How it runs.** A series' whole state is four arrays: one vector of floats (the settings it is judged
by, its scalars, and each channel's state at the channel's offset), its remembered shapes, and its
time profile's levels and bucket numbers. The step for one point is compiled with Numba
(:func:`_step`): :meth:`OnlineDetector.point` runs it once, :meth:`OnlineDetector.chunk` runs it for
each point of a chunk in one compiled loop, so the two methods are one code, give the same scores, and
a chunk costs about 0.2 µs a point. The compiled code is kept in Numba's cache (the package's
``__pycache__``); a process loads it on first use, or compiles it there once (a few seconds).
Every compiled function lives in this one module because Numba's cache is invalidated by a change of
the file of the function it compiled, not of the functions that one calls.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from streamserve_anomaly.jit import compiled, compiled_loop
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import WINDOW
from streamserve_anomaly.stats import alpha_of

__all__ = [
    "BLOCKS", "BUCKET_SECONDS", "LAG_DAYS", "LENGTH", "LEVEL_HALFLIFE", "MEMORY", "SCALE", "STEP",
    "OnlineDetector",
]

Floats = npt.NDArray[np.float64]
Shapes = npt.NDArray[np.uint8]
Buckets = npt.NDArray[np.int64]

LEVEL_HALFLIFE = 6.0
"""Points after which a value weighs half in the smoothed level: enough to ignore one noisy point."""

SCALE = 0.02
"""The excess that scores 0.5."""


# --- Records -------------------------------------------------------------------------------------
# How far a value lies beyond the range its feature has shown over a recent horizon.
#
# Every channel asks one scale-free question: *is this the most extreme this series has been lately,
# and by how much?* The answer, the excess, is the distance of a value beyond the range [low, high]
# of the feature's earlier values within the horizon, in units of that range: 0.1 means "beyond
# anything seen lately by a tenth of the range", negative means inside it. A series that does what
# it has done before sets no records; a spike, a level shift, a new noise level or a pattern that
# breaks its daily habit does, in the feature that sees it. Being relative to the series' own range,
# one threshold serves series of any level and scale, and no value range has to be known in advance.
#
# The horizon forgets: a record set weeks ago does not hide a smaller excursion today. It is kept as
# the extremes of BLOCKS blocks of horizon / BLOCKS points each (a ring), so a feature costs
# RECORD_FLOATS floats whatever the horizon, and the range covers between horizon and
# horizon * (1 + 1 / BLOCKS) earlier points.

BLOCKS = 24
"""Blocks the horizon is kept in: the resolution with which old extremes are forgotten."""
MIN_SPAN = 1e-12
"""Floor of the range, so that a flat feature's first change is a finite (huge) excess."""

# The layout from a record's offset: block size, points in the block being filled, blocks closed,
# the extremes of the block being filled and of the completed blocks, then the ring of completed
# blocks' highs and lows.
_R_SIZE, _R_FILLED, _R_CLOSED, _R_HIGH, _R_LOW, _R_DONE_HIGH, _R_DONE_LOW = range(7)
_R_HIGHS = 7
_R_LOWS = _R_HIGHS + BLOCKS
RECORD_FLOATS = _R_LOWS + BLOCKS


def record_init(state: Floats, at: int, horizon: int) -> None:
    """Lay an empty record range over ``horizon`` points at ``state[at:]``."""
    state[at : at + RECORD_FLOATS] = 0.0
    state[at + _R_SIZE] = max(1, horizon // BLOCKS)
    state[at + _R_HIGH] = state[at + _R_DONE_HIGH] = -math.inf
    state[at + _R_LOW] = state[at + _R_DONE_LOW] = math.inf


@compiled
def record_excess(state: Floats, at: int, x: float, both: bool) -> float:
    """How far ``x`` lies beyond the earlier range, in units of it; then fold ``x`` in.

    Upward only unless ``both``; ``-inf`` while there is no earlier value.
    """
    high = max(state[at + _R_HIGH], state[at + _R_DONE_HIGH])
    low = min(state[at + _R_LOW], state[at + _R_DONE_LOW])
    result = -math.inf
    if high >= low:
        span = max(high - low, MIN_SPAN)
        result = (x - high) / span
        if both:
            result = max(result, (low - x) / span)
    record_fold(state, at, x)
    return result


@compiled
def record_fold(state: Floats, at: int, x: float) -> None:
    """Add ``x`` to the range without scoring it."""
    if x > state[at + _R_HIGH]:
        state[at + _R_HIGH] = x
    if x < state[at + _R_LOW]:
        state[at + _R_LOW] = x
    state[at + _R_FILLED] += 1.0
    if state[at + _R_FILLED] < state[at + _R_SIZE]:
        return
    # The block is complete: it replaces the oldest in the ring, and the completed blocks' range is
    # recomputed (once per block, not per point).
    slot = int(state[at + _R_CLOSED]) % BLOCKS
    state[at + _R_HIGHS + slot] = state[at + _R_HIGH]
    state[at + _R_LOWS + slot] = state[at + _R_LOW]
    state[at + _R_CLOSED] += 1.0
    high, low = -math.inf, math.inf
    for k in range(min(int(state[at + _R_CLOSED]), BLOCKS)):
        high = max(high, state[at + _R_HIGHS + k])
        low = min(low, state[at + _R_LOWS + k])
    state[at + _R_DONE_HIGH], state[at + _R_DONE_LOW] = high, low
    state[at + _R_HIGH], state[at + _R_LOW], state[at + _R_FILLED] = -math.inf, math.inf, 0.0


# --- Shapes --------------------------------------------------------------------------------------
# Shape novelty: how unlike every recent shape of its series the latest stretch of a series is.
#
# A series that repeats itself (a daily cycle, a periodic job, a noise floor) keeps drawing shapes it
# has drawn before; an anomaly often draws a new one while every value stays within the usual range
# (a flat stretch where the series always moves, a dip at the wrong moment, denser spikes):
#
# 1. Downsample: every STEP points become one level, their mean (robust to single-point noise, and
#    six times fewer comparisons).
# 2. Shape: the last LENGTH levels, placed in the series' range so far (0 at its minimum, 255 at its
#    maximum) and rounded to integers (one byte per level).
# 3. Novelty: the root-mean-square distance from the shape to its nearest neighbour among the last
#    MEMORY shapes of the series (the shape just before it, which overlaps it, excluded), in units
#    of the range. Distances between byte vectors are integers: exact, whatever the order of sums.
# 4. The novelty is scored as a record: a shape farther from everything seen than any recent shape
#    was is news; a pattern seen once is forgiven ever after (it is in the memory), which is what
#    keeps a recurring pattern quiet.

STEP = 6
"""Points per level (30 minutes of 5-minute data)."""
LENGTH = 8
"""Levels per shape (4 hours of 5-minute data)."""
MEMORY = 1024
"""Shapes remembered per series (about 3 weeks of 5-minute data): 8 KiB."""
LEVELS = 255
"""Quantisation of a level within the series' range: one byte each."""
_UNIT = math.sqrt(LENGTH) * LEVELS
"""The distance between a shape at the bottom of the range and one at its top."""

# The layout from the shapes' offset: shapes stored so far (shape g is in row g % MEMORY until
# g + MEMORY replaces it), the running sum and count of the block being filled, the series' range,
# levels held (up to LENGTH), the last LENGTH levels oldest first, then the record of novelties.
_S_STORED, _S_BLOCK_SUM, _S_BLOCK_COUNT, _S_LOW, _S_HIGH, _S_HAVE = range(6)
_S_LEVELS = 6
_S_RECORD = _S_LEVELS + LENGTH
SHAPE_FLOATS = _S_RECORD + RECORD_FLOATS


def shape_init(state: Floats, at: int, horizon: int) -> None:
    """An empty shape state at ``state[at:]``; the novelty record over ``horizon`` points."""
    state[at : at + _S_RECORD] = 0.0
    state[at + _S_LOW], state[at + _S_HIGH] = math.inf, -math.inf
    record_init(state, at + _S_RECORD, max(1, horizon // STEP))


def new_shape_memory() -> Shapes:
    """The remembered shapes of one series: ``MEMORY`` rows of ``LENGTH`` bytes."""
    return np.zeros((MEMORY, LENGTH), dtype=np.uint8)


@compiled
def shape_novelty(state: Floats, at: int, memory: Shapes, x: float) -> float:
    """Fold ``x`` in; at the end of a block, the excess of the new shape's novelty (else -inf)."""
    if x < state[at + _S_LOW]:
        state[at + _S_LOW] = x
    if x > state[at + _S_HIGH]:
        state[at + _S_HIGH] = x
    state[at + _S_BLOCK_SUM] += x
    state[at + _S_BLOCK_COUNT] += 1.0
    if state[at + _S_BLOCK_COUNT] < STEP:
        return -math.inf
    level = state[at + _S_BLOCK_SUM] / STEP
    state[at + _S_BLOCK_SUM], state[at + _S_BLOCK_COUNT] = 0.0, 0.0
    have = int(state[at + _S_HAVE])
    if have < LENGTH:
        state[at + _S_LEVELS + have] = level
        state[at + _S_HAVE] = have + 1
        if have + 1 < LENGTH:
            return -math.inf
    else:
        for k in range(LENGTH - 1):
            state[at + _S_LEVELS + k] = state[at + _S_LEVELS + k + 1]
        state[at + _S_LEVELS + LENGTH - 1] = level
    low = state[at + _S_LOW]
    scale = LEVELS / max(state[at + _S_HIGH] - low, 1e-12)
    shape = np.empty(LENGTH, dtype=np.int32)
    for k in range(LENGTH):
        shape[k] = int(np.rint((state[at + _S_LEVELS + k] - low) * scale))

    stored = int(state[at + _S_STORED])
    result = -math.inf
    if stored >= 2:
        count = min(stored, MEMORY)
        # All distances first, then their minimum: two loops the compiler vectorises, where one
        # loop keeping a running minimum is four times slower.
        distances = np.empty(count, dtype=np.int32)
        flat = memory.reshape(-1)
        for row in range(count):
            distance = np.int32(0)
            for k in range(LENGTH):
                d = shape[k] - np.int32(flat[row * LENGTH + k])
                distance += d * d
            distances[row] = distance
        distances[(stored - 1) % MEMORY] = np.iinfo(np.int32).max  # the newest overlaps this one
        nearest = distances[0]
        for row in range(1, count):
            if distances[row] < nearest:
                nearest = distances[row]
        result = record_excess(state, at + _S_RECORD, math.sqrt(nearest) / _UNIT, False)
    slot = stored % MEMORY
    for k in range(LENGTH):
        memory[slot, k] = shape[k]
    state[at + _S_STORED] = stored + 1
    return result


# --- Time of day ---------------------------------------------------------------------------------
# How far a series is from where it was at this time before.
#
# Much of what is measured follows the clock: traffic, load, temperature, taxi rides. A value that
# is perfectly ordinary for the series can be wrong for the hour (a Monday that looks like a Sunday,
# a holiday, a daily job that did not run):
#
# 1. The series' level is written into a ring of time buckets, BUCKET_SECONDS wide and DAYS_KEPT
#    days long, keyed by the point's timestamp (Unix seconds; they need not be regular nor ordered;
#    a series sampled more often than the bucket width keeps the last level of each bucket).
# 2. The deviation of the level now is its distance to the level in the same bucket 1, 2 and 7 days
#    ago, the *closest* of those that exist: the series only has to resemble one of its recent habits
#    (yesterday, the day before, or the same day last week), so a weekly rhythm does not make every
#    weekend an anomaly and a one-off change of the weekly rhythm is forgiven the day after.
# 3. The deviation is scored as a record once the series is a week old: every lag exists then, and
#    the record holds a week of deviations, weekends included. Before, a series that has not yet
#    shown its weekly rhythm would find its first weekend (or any weekday's own habit) news.

DAY = 86_400
BUCKET_SECONDS = 600
"""Resolution of the remembered profile: 10 minutes."""
LAG_DAYS = (1, 2, 7)
"""The earlier days the level is compared with."""
DAYS_KEPT = 8
"""Enough for the longest lag."""
RING = DAYS_KEPT * DAY // BUCKET_SECONDS
"""Buckets per series (1,152: 18 KiB of levels and bucket numbers)."""
_LAG_BUCKETS = np.array([days * DAY // BUCKET_SECONDS for days in LAG_DAYS], dtype=np.int64)
_LEARNING_SECONDS = max(LAG_DAYS) * DAY
"""From its first point, how long a series' time channel learns before it scores."""

# The layout from the profile's offset: the timestamp from which deviations are scored (a week
# after the series' first point; inf before that point), then the record of deviations.
_T_SCORED_FROM = 0
_T_RECORD = 1
TIME_FLOATS = _T_RECORD + RECORD_FLOATS


def time_init(state: Floats, at: int, horizon: int) -> None:
    """An empty profile's state at ``state[at:]``; the deviation record over ``horizon`` points."""
    state[at + _T_SCORED_FROM] = math.inf
    record_init(state, at + _T_RECORD, horizon)


def new_time_profile() -> tuple[Floats, Buckets]:
    """The levels of one series' ring, and the bucket number each slot holds (-1: none), so that a
    stale slot is never read."""
    return np.zeros(RING), np.full(RING, -1, dtype=np.int64)


@compiled
def time_deviation(state: Floats, at: int, levels: Floats, buckets: Buckets, level: float,
                   timestamp: int) -> float:
    """Fold the series' ``level`` at ``timestamp`` in; the excess of its deviation (-inf while
    unscored)."""
    bucket = timestamp // BUCKET_SECONDS
    slot = bucket % RING
    deviation = math.inf
    for lag in _LAG_BUCKETS:  # (lag < RING: a subtraction, not a division, finds the slot)
        then_slot = slot - lag if slot >= lag else slot - lag + RING
        if buckets[then_slot] == bucket - lag:
            deviation = min(deviation, abs(level - levels[then_slot]))
    levels[slot] = level
    buckets[slot] = bucket
    if state[at + _T_SCORED_FROM] == math.inf:
        state[at + _T_SCORED_FROM] = timestamp + _LEARNING_SECONDS
    if deviation == math.inf:
        return -math.inf
    if timestamp < state[at + _T_SCORED_FROM]:
        record_fold(state, at + _T_RECORD, deviation)
        return -math.inf
    return record_excess(state, at + _T_RECORD, deviation, False)


# --- Prediction ----------------------------------------------------------------------------------
# The TensorFlow model's prediction error, calibrated into a likelihood score in [0, 1].
#
# A raw error means little on its own: a noisy series always has large ones. Like Numenta's anomaly
# likelihood, the score asks how unusual the *recent* errors are given the series' own history:
#
# 1. avg: a short exponential average of the errors (averaging_halflife), so that a burst of
#    moderate errors counts, and one lucky prediction does not reset it.
# 2. The long-term mean and variance of avg (error_halflife), of the points *before* this one;
#    while they are young, a plain average (weight 1 / n, as normalise.py's statistics).
# 3. z = (avg - mean) / std; the likelihood that avg is normal is the upper tail q = Q(z) of the
#    normal distribution, and the score is log(q + 1e-30) / log(1e-30): 0 for an ordinary error,
#    0.2 at q = 1e-6 (z about 4.8), 0.5 at q = 1e-15 (z about 8), 1 at q <= 1e-30.
#
# The first WINDOW points of a series have a padded window, so their errors are ignored.

LIKELIHOOD_FLOOR = 1e-30
"""The likelihood that scores 1: anything this unlikely is as anomalous as it gets."""
_LOG_FLOOR = math.log(LIKELIHOOD_FLOOR)
_SQRT2 = math.sqrt(2.0)
MIN_ERROR_STD = 1e-3
"""Floor of the spread of averaged errors (in standard deviations of the series): a series that is
predicted perfectly would otherwise make any rounding error an anomaly."""
REL_ERROR_STD = 0.1
"""Floor of that spread relative to the mean averaged error: errors are never assumed more regular
than this."""

# The layout from the calibration's offset: its settings (constant per series), then the points
# scored, the short average, and the long-term count, mean and variance of that average.
_P_AVG_ALPHA, _P_ALPHA, _P_YOUNG, _P_WARMUP, _P_SCORED, _P_AVG, _P_COUNT, _P_MEAN, _P_VAR = range(9)
PREDICTION_FLOATS = 9


def prediction_init(state: Floats, at: int, *, error_halflife: float, averaging_halflife: float,
                    warmup_points: int) -> None:
    """An empty calibration at ``state[at:]``."""
    state[at : at + PREDICTION_FLOATS] = 0.0
    state[at + _P_AVG_ALPHA] = alpha_of(averaging_halflife)
    alpha = alpha_of(error_halflife)
    state[at + _P_ALPHA] = alpha
    state[at + _P_YOUNG] = math.floor(1.0 / alpha)
    state[at + _P_WARMUP] = warmup_points


@compiled
def prediction_score(state: Floats, at: int, error: float) -> float:
    """The likelihood score of the series' next model ``error``."""
    index = int(state[at + _P_SCORED])
    state[at + _P_SCORED] = index + 1
    if index < WINDOW:
        return 0.0  # the window is still padded: the error says more about the padding
    if index == WINDOW:
        state[at + _P_AVG] = error
    a = state[at + _P_AVG_ALPHA]
    avg = a * error + (1.0 - a) * state[at + _P_AVG]
    state[at + _P_AVG] = avg
    mean, var = state[at + _P_MEAN], state[at + _P_VAR]
    score = 0.0
    if index >= state[at + _P_WARMUP]:
        std = max(math.sqrt(var), REL_ERROR_STD * mean, MIN_ERROR_STD)
        q = 0.5 * math.erfc((avg - mean) / std / _SQRT2)
        score = min(1.0, max(0.0, math.log(q + LIKELIHOOD_FLOOR) / _LOG_FLOOR))
    count = state[at + _P_COUNT] + 1.0
    state[at + _P_COUNT] = count
    w = 1.0 / count if count <= state[at + _P_YOUNG] else state[at + _P_ALPHA]
    d = avg - mean
    state[at + _P_MEAN] = w * avg + (1.0 - w) * mean
    state[at + _P_VAR] = ((1.0 - w) * w) * (d * d) + (1.0 - w) * var
    return score


# --- The detector --------------------------------------------------------------------------------

# The state vector: settings, scalars, then each channel's state at its offset.
(_WARMUP, _REST_POINTS, _REST_SCORE, _TIME_WEIGHT, _PREDICTION_WEIGHT, _LEVEL_ALPHA,
 _LEVEL, _INDEX, _QUIET_UNTIL) = range(9)
_VALUE = 9
_LEVEL_RECORD = _VALUE + RECORD_FLOATS
_SHAPES = _LEVEL_RECORD + RECORD_FLOATS
_TIME = _SHAPES + SHAPE_FLOATS
_PREDICTION = _TIME + TIME_FLOATS
FLOATS = _PREDICTION + PREDICTION_FLOATS


@compiled
def _step(state: Floats, memory: Shapes, levels: Floats, buckets: Buckets,
          value: float, timestamp: int, error: float) -> float:
    """The score of the series' next point: its value, timestamp and model error."""
    a = state[_LEVEL_ALPHA]
    level = state[_LEVEL]
    level = value if level != level else a * value + (1.0 - a) * level  # NaN: the first point
    state[_LEVEL] = level
    excess = record_excess(state, _VALUE, value, True)
    excess = max(excess, record_excess(state, _LEVEL_RECORD, level, True))
    excess = max(excess, shape_novelty(state, _SHAPES, memory, value))
    found = time_deviation(state, _TIME, levels, buckets, level, timestamp)
    if state[_TIME_WEIGHT] > 0.0:  # (-inf * 0 would be NaN)
        excess = max(excess, found * state[_TIME_WEIGHT])
    found = prediction_score(state, _PREDICTION, error)
    if state[_PREDICTION_WEIGHT] > 0.0:
        excess = max(excess, found * state[_PREDICTION_WEIGHT])
    index = state[_INDEX]
    state[_INDEX] = index + 1.0
    if index < state[_WARMUP] or index < state[_QUIET_UNTIL] or excess <= 0.0:
        return 0.0
    score = excess / (excess + SCALE)
    if score >= state[_REST_SCORE]:
        state[_QUIET_UNTIL] = index + 1.0 + state[_REST_POINTS]
    return score


@compiled_loop
def _chunk(state: Floats, memory: Shapes, levels: Floats, buckets: Buckets,
           values: Floats, timestamps: Buckets, errors: Floats, out: Floats) -> None:
    """:func:`_step` for each point, in order; the scores into ``out``."""
    for i in range(len(values)):
        out[i] = _step(state, memory, levels, buckets, values[i], timestamps[i], errors[i])


class OnlineDetector:
    """Everything the postprocessor remembers of one series; :meth:`point` once per point, or
    :meth:`chunk` for many, in order."""

    __slots__ = ("buckets", "levels", "shapes", "state")

    def __init__(self, settings: AnomalySettings) -> None:
        state = np.zeros(FLOATS)
        state[_WARMUP] = settings.warmup_points
        state[_REST_POINTS] = settings.rest_points
        state[_REST_SCORE] = settings.rest_score
        state[_TIME_WEIGHT] = settings.time_weight
        state[_PREDICTION_WEIGHT] = settings.prediction_weight
        state[_LEVEL_ALPHA] = alpha_of(LEVEL_HALFLIFE)
        state[_LEVEL] = math.nan
        horizon = settings.horizon_points
        record_init(state, _VALUE, horizon)
        record_init(state, _LEVEL_RECORD, horizon)
        shape_init(state, _SHAPES, horizon)
        time_init(state, _TIME, horizon)
        prediction_init(state, _PREDICTION, error_halflife=settings.error_halflife,
                        averaging_halflife=settings.averaging_halflife,
                        warmup_points=settings.warmup_points)
        self.state = state
        self.shapes = new_shape_memory()
        self.levels, self.buckets = new_time_profile()

    @property
    def nbytes(self) -> int:
        """Bytes in the series' arrays: what one series costs, but for a few Python objects."""
        return sum(a.nbytes for a in (self.state, self.shapes, self.levels, self.buckets))

    @property
    def shapes_stored(self) -> int:
        """Shapes the series has drawn so far (the memory keeps the last ``MEMORY``)."""
        return int(self.state[_SHAPES + _S_STORED])

    def point(self, value: float, timestamp: int, error: float) -> float:
        """The score of the series' next point: its value, timestamp and model error."""
        return _step(self.state, self.shapes, self.levels, self.buckets, float(value), timestamp,
                     float(error))

    def chunk(self, values: Floats, timestamps: Buckets, errors: Floats) -> Floats:
        """:meth:`point` for every point of a chunk, in order, in one compiled loop."""
        out = np.empty(len(values))
        _chunk(self.state, self.shapes, self.levels, self.buckets,
               np.ascontiguousarray(values, dtype=np.float64),
               np.ascontiguousarray(timestamps, dtype=np.int64),
               np.ascontiguousarray(errors, dtype=np.float64), out)
        return out


def _load_compiled_code() -> None:
    """Run both compiled paths once, so that a server has its compiled code (about 0.2 s from
    Numba's cache, a few seconds the first time after an install) before it reports ready, not on
    the first point a client sends."""
    detector = OnlineDetector(AnomalySettings())
    detector.point(0.0, 0, 0.0)
    detector.chunk(np.zeros(1), np.zeros(1, dtype=np.int64), np.zeros(1))


_load_compiled_code()
