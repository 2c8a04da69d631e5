"""The two RPC methods' pre/postprocessing over per-(stream, series) state.

A stream's state is a :class:`StreamState`: one :class:`Series` per ``series_id`` seen on the stream,
created on its first point and dropped with the stream. Each series keeps its preprocessing state
(:class:`~streamserve_anomaly.normalise.Normaliser`, which builds the model's rows) apart from its
postprocessing state (:class:`~streamserve_anomaly.online.OnlineDetector`, which scores), since the
core may preprocess a stream's next message before the previous one is postprocessed.

``DetectAnomalyStream`` (one point per message) is the per-message hot path; ``DetectAnomalyChunks``
turns a chunk of N points into N model rows and N scores. Both run the same compiled steps
(:meth:`Normaliser.chunk` / :meth:`~Normaliser.point`, :meth:`OnlineDetector.chunk` /
:meth:`~OnlineDetector.point`), once per point, so the same data gives the same scores through either
method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from streamserve import InvalidArgument, Outputs, Rows
from streamserve_anomaly._proto.anomaly_detection_pb2 import (
    AnomalyScore,
    DataChunk,
    DataPoint,
    ScoreChunk,
)
from streamserve_anomaly.normalise import Normaliser
from streamserve_anomaly.online import OnlineDetector
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import ERROR, HISTORY, VALUE

__all__ = [
    "Series",
    "StreamState",
    "open_state",
    "postprocess_chunk",
    "postprocess_point",
    "preprocess_chunk",
    "preprocess_point",
]


@dataclass(slots=True)
class Series:
    """Everything one series of one stream remembers."""

    normaliser: Normaliser
    detector: OnlineDetector


@dataclass(slots=True)
class StreamState:
    """The state of one call: its series by id. Created by :func:`open_state`."""

    settings: AnomalySettings
    series: dict[str, Series] = field(default_factory=dict)

    def get(self, series_id: str) -> Series:
        """The series' state, created on its first point."""
        found = self.series.get(series_id)
        if found is not None:
            return found
        settings = self.settings
        if len(self.series) >= settings.max_series_per_stream:
            raise InvalidArgument(
                "series_id",
                f"{series_id!r} would be series number {len(self.series) + 1} of this stream; "
                f"at most {settings.max_series_per_stream} are allowed (max_series_per_stream)",
            )
        created = Series(
            Normaliser(settings.normalisation_halflife),
            OnlineDetector(settings),
        )
        self.series[series_id] = created
        return created


def open_state(settings: AnomalySettings | None) -> StreamState:
    """Start a stream with no series; called by the core on the stream's first message."""
    return StreamState(settings or AnomalySettings())


def preprocess_point(point: DataPoint, state: StreamState) -> Rows:
    """One model row for one point: the standardised window of its series, and its value."""
    x = point.value
    if not math.isfinite(x):
        raise InvalidArgument("value", f"must be a finite number, got {x}")
    history, z = state.get(point.series_id).normaliser.point(x)
    return {HISTORY: history, VALUE: z}


def postprocess_point(outputs: Outputs, point: DataPoint, state: StreamState) -> AnomalyScore:
    """The score of one point, from its value, its time and its model error."""
    detector = state.series[point.series_id].detector
    score = detector.point(point.value, point.timestamp, float(outputs[ERROR][0]))
    return AnomalyScore(
        score=score,
        timestamp=point.timestamp,
        series_id=point.series_id,
        is_anomaly=score >= state.settings.threshold,
        model_version=outputs.model_version,
    )


def preprocess_chunk(chunk: DataChunk, state: StreamState) -> Rows:
    """N model rows for a chunk of N points of one series, computed over the whole chunk at once."""
    values = np.asarray(chunk.values, dtype=np.float64)
    if len(chunk.timestamps) != len(values):
        raise InvalidArgument(
            "timestamps",
            f"has {len(chunk.timestamps)} entries but values has {len(values)}; "
            "a chunk needs one timestamp per value",
        )
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise InvalidArgument("values", f"entry {bad} must be a finite number, got {values[bad]}")
    history, z = state.get(chunk.series_id).normaliser.chunk(values)
    return {HISTORY: history, VALUE: z}


def postprocess_chunk(outputs: Outputs, chunk: DataChunk, state: StreamState) -> ScoreChunk:
    """The scores of a chunk's points, in order."""
    reply = ScoreChunk(series_id=chunk.series_id, model_version=outputs.model_version)
    if not chunk.values:
        return reply  # no rows: the core made no model call, there is nothing to score
    values = np.asarray(chunk.values, dtype=np.float64)  # each float32 widened as a DataPoint's
    timestamps = np.asarray(chunk.timestamps, dtype=np.int64)
    errors = outputs[ERROR].astype(np.float64)
    scores = state.series[chunk.series_id].detector.chunk(values, timestamps, errors)
    reply.scores.extend(scores.tolist())
    reply.timestamps.extend(chunk.timestamps)
    reply.is_anomaly.extend((scores >= state.settings.threshold).tolist())
    return reply
