"""Per-stream state and the pre/postprocessing of ``DetectAnomalyStream``.

This is the per-message hot path (about 5 µs per point): plain Python floats, one preallocated
buffer per stream, three small arrays per message, no TensorFlow and no logging.

Preprocessing is causal. For point ``t`` the window holds the raw values ``t-W .. t-1`` and both the
window and the current value are standardised with the running statistics of the points before
``t``; only then is ``t`` folded into the window and the statistics. A young stream's window is
padded with its first value (which standardises to 0).

Preprocessing state (window, statistics) and postprocessing state (error scale) are kept apart and
each side keeps its own point count, so the core may preprocess a stream's next message before the
previous one is postprocessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamserve import InvalidArgument, Rows
from streamserve_anomaly._proto.anomaly_detection_pb2 import AnomalyScore
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import ERROR, HISTORY, VALUE, WINDOW

__all__ = ["CLIP", "DetectorState", "open_state", "postprocess", "preprocess", "standardise"]

CLIP = 10.0
"""Standardised values are clipped to [-CLIP, CLIP]: a huge outlier still gets a huge error, but
the model is never fed values far outside what it was trained on."""

_MIN_STD = 1e-6
"""Floor of the standard deviation, relative to ``max(1, |mean|)``: a flat series has none."""

_MIN_ERROR_SCALE = 1e-2
"""Floor of the typical error (in standard deviations): a perfectly predicted series would otherwise
make any rounding error an anomaly."""


class _HasValue(Protocol):
    value: float


def _alpha(halflife: float) -> float:
    """The per-point weight of an exponential average whose weights halve every ``halflife``."""
    return 1.0 - 0.5 ** (1.0 / halflife)


@dataclass(slots=True)
class DetectorState:
    """Everything one stream remembers. Created by :func:`open_state`, dropped with the stream."""

    norm_alpha: float
    error_alpha: float
    warmup_points: int
    half_score_ratio: float
    ring: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(2 * WINDOW))
    """The last ``WINDOW`` raw values, each written twice (at ``i`` and ``i + WINDOW``) so that the
    window in time order is always the contiguous slice ``ring[pos:pos + WINDOW]``."""
    pos: int = 0
    seen: int = 0
    """Points preprocessed so far."""
    mean: float = 0.0
    var: float = 0.0
    scored: int = 0
    """Points postprocessed so far (kept apart from ``seen``, see the module docstring)."""
    errors: int = 0
    error_scale: float = 0.0
    """Running mean of recent (clipped) prediction errors, in standard deviations."""


def open_state(settings: AnomalySettings | None) -> DetectorState:
    """Start a stream with an empty window; called by the core on the stream's first message."""
    settings = settings or AnomalySettings()
    return DetectorState(
        norm_alpha=_alpha(settings.normalisation_halflife),
        error_alpha=_alpha(settings.error_halflife),
        warmup_points=settings.warmup_points,
        half_score_ratio=settings.half_score_ratio,
    )


def standardise(state: DetectorState, x: float) -> tuple[npt.NDArray[np.float32], float]:
    """Standardise the window before ``x`` and ``x`` itself, then fold ``x`` into ``state``.

    Returns the window as float32[1, WINDOW] (oldest first) and the standardised ``x``. Shared by
    :func:`preprocess` and the trainer so the model learns from exactly what it is served.
    """
    if state.seen == 0:
        state.ring.fill(x)
        state.mean = x
    mean = state.mean
    inv_std = 1.0 / max(math.sqrt(state.var), _MIN_STD * max(1.0, abs(mean)))

    pos = state.pos
    # In float64 (exact differences even for a large level), cast once at the end. np.clip has a
    # slow Python wrapper; np.minimum/np.maximum are plain ufuncs.
    window = state.ring[pos : pos + WINDOW] - mean
    window *= inv_std
    np.minimum(window, CLIP, out=window)
    np.maximum(window, -CLIP, out=window)
    history = window.astype(np.float32)[np.newaxis]
    z = min(CLIP, max(-CLIP, (x - mean) * inv_std))

    state.ring[pos] = x
    state.ring[pos + WINDOW] = x
    state.pos = (pos + 1) % WINDOW
    state.seen += 1
    # Exponentially weighted mean and variance (West's update); 1/n while the stream is young makes
    # the first points a plain average instead of a bias towards the first value.
    alpha = max(state.norm_alpha, 1.0 / state.seen)
    diff = x - mean
    incr = alpha * diff
    state.mean = mean + incr
    state.var = (1.0 - alpha) * (state.var + diff * incr)
    return history, z


def preprocess(point: _HasValue, state: DetectorState) -> Rows:
    """One model row for one point: its standardised window and value."""
    x = point.value
    if not math.isfinite(x):
        raise InvalidArgument("value", f"must be a finite number, got {x}")
    history, z = standardise(state, x)
    return {HISTORY: history, VALUE: np.array((z,), dtype=np.float32)}


def score_error(error: float, scale: float, half_score_ratio: float) -> float:
    """Squash an error into [0, 1]: 0.5 when it is ``half_score_ratio`` times the typical error."""
    ratio = error / (max(scale, _MIN_ERROR_SCALE) * half_score_ratio)
    q = ratio * ratio
    q *= q
    return q / (1.0 + q)


def postprocess(outputs: Rows, point: Any, state: DetectorState) -> AnomalyScore:
    """Turn the model's error for one point into its score, relative to the typical error."""
    index = state.scored
    state.scored = index + 1
    error = float(outputs[ERROR][0])
    if index < WINDOW:
        # The window is still padded: the error says more about the padding than about the point.
        return AnomalyScore(score=0.0, timestamp=point.timestamp)

    scale = state.error_scale
    score = 0.0
    if state.errors:
        if index >= state.warmup_points:
            score = score_error(error, scale, state.half_score_ratio)
        # Clip what enters the typical error, so an anomaly does not hide the ones right after it.
        error = min(error, state.half_score_ratio * max(scale, _MIN_ERROR_SCALE))
    state.errors += 1
    alpha = max(state.error_alpha, 1.0 / state.errors)
    state.error_scale = scale + alpha * (error - scale)
    return AnomalyScore(score=score, timestamp=point.timestamp)
