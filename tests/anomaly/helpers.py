"""Streams through the plugin's pre/postprocessing and a real model, as the core runs them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streamserve import Outputs
from streamserve_anomaly import detector
from streamserve_anomaly._proto.anomaly_detection_pb2 import AnomalyScore, DataPoint
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import SIGNATURE

Arrays = Mapping[str, npt.NDArray[Any]]

FIXTURE_STEPS = 60
"""Steps of the test model: enough to predict a noisy sine well (a default training runs 300)."""


def call_model(loaded: Any, rows: Sequence[Arrays]) -> dict[str, npt.NDArray[Any]]:
    """Concatenate rows (as the core's batcher does) into one ``serving_default`` call."""
    import tensorflow as tf

    inputs = {
        spec.name: tf.constant(np.concatenate([row[spec.name] for row in rows]))
        for spec in SIGNATURE.inputs
    }
    outputs = loaded.signatures[SIGNATURE.name](**inputs)
    return {name: tensor.numpy() for name, tensor in outputs.items()}


def row(outputs: Arrays, index: int, version: str = "1") -> Outputs:
    """The outputs of one row, split off a batch as the core does."""
    return Outputs({name: array[index : index + 1] for name, array in outputs.items()}, version)


def points(values: Sequence[float]) -> list[DataPoint]:
    return [DataPoint(value=v, timestamp=1_700_000_000 + i) for i, v in enumerate(values)]


def score_stream(
    loaded: Any, values: Sequence[float], settings: AnomalySettings | None = None
) -> list[AnomalyScore]:
    """One stream: preprocess every point, one batched model call, postprocess in order."""
    state = detector.open_state(settings or AnomalySettings())
    stream = points(values)
    rows = [detector.preprocess_point(point, state) for point in stream]
    outputs = call_model(loaded, rows)
    return [detector.postprocess_point(row(outputs, i), point, state) for i, point in enumerate(stream)]


def noisy_sine(
    length: int, *, period: float = 50.0, noise: float = 0.05, seed: int = 1
) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return (np.sin(2 * np.pi * t / period) + rng.normal(0.0, noise, length)).tolist()
