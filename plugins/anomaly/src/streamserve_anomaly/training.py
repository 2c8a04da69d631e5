"""Train and export the anomaly model: a next-value predictor over standardised windows.

The model learns what *normal* looks like: from the standardised window of the ``WINDOW`` previous
values it predicts the standardised next value. Served, its absolute error is large where a
series does something its recent past did not announce; the postprocessor turns that into a score.

Training data is either many short synthetic noisy periodic series or the given
``timestamp,value`` CSVs, standardised by :class:`streamserve_anomaly.normalise.Normaliser` (the
very code that serves), so the model sees in training exactly what it is fed in serving.

Reproducible: the weights are initialised and the batches drawn from
``numpy.random.default_rng(seed)`` and training runs on the CPU in a fixed order, so the same seed
and data give bitwise the same weights. No TensorFlow random op is used, so nothing depends on
TensorFlow's global seed or on ``enable_op_determinism`` (process-wide and irreversible).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamserve_anomaly.normalise import Normaliser
from streamserve_anomaly.series_csv import read_series
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import ERROR, HISTORY, PREDICTION, SIGNATURE, VALUE, WINDOW

__all__ = ["DEFAULT_STEPS", "load_csv", "make_examples", "synthetic_series", "train"]

log = logging.getLogger(__name__)

DEFAULT_STEPS = 300
HIDDEN = 32
BATCH_SIZE = 256
LEARNING_RATE = 1e-2
SYNTHETIC_SERIES = 64
SYNTHETIC_LENGTH = 400

FloatArray = npt.NDArray[np.float32]


def synthetic_series(
    rng: np.random.Generator, count: int = SYNTHETIC_SERIES, length: int = SYNTHETIC_LENGTH
) -> list[npt.NDArray[np.float64]]:
    """Noisy periodic series with random period, phase, shape, level, scale and noise: normal data.

    Periods span 8 to 300 points (a day of NAB's 5-minute data is 288), half the series are smooth
    (a sine plus a harmonic), half square-ish, so the model has seen both slopes and plateaus. Noise
    spans two orders of magnitude, so the model learns from the window itself how much to smooth:
    trained on noisy series only, it smooths clean ones into worse predictions than "no change".
    Many short series beat a few long ones: more periods and noise levels for the same cost.
    """
    t = np.arange(length, dtype=np.float64)
    series = []
    for i in range(count):
        period = math.exp(rng.uniform(math.log(8.0), math.log(300.0)))
        phase = rng.uniform(0.0, 2.0 * math.pi)
        angle = 2.0 * math.pi * t / period + phase
        if i % 2 == 0:
            wave = np.sin(angle) + rng.uniform(0.0, 0.5) * np.sin(2.0 * angle + rng.uniform(0, 6.3))
        else:
            wave = np.tanh(rng.uniform(2.0, 10.0) * np.sin(angle))
        noise = rng.normal(0.0, math.exp(rng.uniform(math.log(1e-3), math.log(0.1))), size=length)
        level, scale = rng.normal(0.0, 100.0), math.exp(rng.uniform(-2.0, 4.0))
        series.append(level + scale * (wave + noise))
    return series


def load_csv(path: Path) -> npt.NDArray[np.float64]:
    """The values of a ``timestamp,value`` CSV (the format ``score`` reads), in file order."""
    values = read_series(path).values
    if len(values) <= WINDOW:
        raise ValueError(f"{path}: needs more than {WINDOW} values to train on, has {len(values)}")
    return values


def make_examples(
    series: Sequence[npt.NDArray[np.float64]], settings: AnomalySettings
) -> tuple[FloatArray, FloatArray]:
    """(windows, next values) of every point with a full window, standardised as in serving."""
    histories: list[FloatArray] = []
    values: list[FloatArray] = []
    for values_of_series in series:
        history, z = Normaliser(settings.normalisation_halflife).chunk(values_of_series)
        histories.append(history[WINDOW:])
        values.append(z[WINDOW:])
    return np.concatenate(histories), np.concatenate(values)


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> FloatArray:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)


def _build_model(rng: np.random.Generator) -> Any:
    """A 2-layer tanh MLP plus a linear skip from the window: the skip alone is an AR(W) model, the
    MLP adds what is not linear (plateaus, turns).

    The skip starts as "the next value is the last one" and the MLP's output layer at zero, so
    training starts from that strong baseline and only has to learn corrections.
    """
    import tensorflow as tf

    class Predictor(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="anomaly_predictor")
            self.w1 = tf.Variable(_glorot(rng, WINDOW, HIDDEN), name="w1")
            self.b1 = tf.Variable(np.zeros(HIDDEN, np.float32), name="b1")
            self.w2 = tf.Variable(_glorot(rng, HIDDEN, HIDDEN), name="w2")
            self.b2 = tf.Variable(np.zeros(HIDDEN, np.float32), name="b2")
            self.w3 = tf.Variable(np.zeros((HIDDEN, 1), np.float32), name="w3")
            persistence = np.zeros((WINDOW, 1), np.float32)
            persistence[-1] = 1.0
            self.skip = tf.Variable(persistence, name="skip")
            self.b3 = tf.Variable(np.zeros(1, np.float32), name="b3")

        def predict(self, history: Any) -> Any:
            hidden = tf.tanh(tf.matmul(history, self.w1) + self.b1)
            hidden = tf.tanh(tf.matmul(hidden, self.w2) + self.b2)
            out = tf.matmul(hidden, self.w3) + tf.matmul(history, self.skip) + self.b3
            return out[:, 0]

        @tf.function(
            input_signature=[
                tf.TensorSpec(SIGNATURE.inputs[0].shape, tf.float32, name=HISTORY),
                tf.TensorSpec(SIGNATURE.inputs[1].shape, tf.float32, name=VALUE),
            ]
        )
        def serve(self, history: Any, value: Any) -> dict[str, Any]:
            prediction = self.predict(history)
            return {PREDICTION: prediction, ERROR: tf.abs(prediction - value)}

    assert [s.name for s in SIGNATURE.inputs] == [HISTORY, VALUE]
    return Predictor()


def _fit(
    model: Any, histories: FloatArray, values: FloatArray, rng: np.random.Generator, steps: int
) -> float:
    """Adam on the mean squared error with batches drawn by ``rng``; returns the final loss."""
    import tensorflow as tf

    variables = model.trainable_variables
    first = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
    second = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
    beta1, beta2, eps = 0.9, 0.999, 1e-7

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, WINDOW), tf.float32),
            tf.TensorSpec((None,), tf.float32),
            tf.TensorSpec((), tf.float32),
        ]
    )
    def step(history: Any, value: Any, t: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model.predict(history) - value))
        grads = tape.gradient(loss, variables)
        # Cosine decay to zero: large steps early, a settled model at the end whatever ``steps`` is.
        lr = LEARNING_RATE * 0.5 * (1.0 + tf.cos(math.pi * t / steps))
        correction = tf.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
        for var, grad, m, v in zip(variables, grads, first, second, strict=True):
            m.assign(beta1 * m + (1.0 - beta1) * grad)
            v.assign(beta2 * v + (1.0 - beta2) * tf.square(grad))
            var.assign_sub(lr * correction * m / (tf.sqrt(v) + eps))
        return loss

    batches = rng.integers(0, len(values), size=(steps, BATCH_SIZE))
    loss = math.nan
    for t, batch in enumerate(batches, start=1):
        loss = float(step(histories[batch], values[batch], np.float32(t)))
    return loss


def train(
    out_dir: Path,
    *,
    seed: int = 0,
    csv_paths: Sequence[Path] = (),
    steps: int = DEFAULT_STEPS,
) -> Path:
    """Train a model and export it as a SavedModel (one model version) into ``out_dir``.

    ``out_dir`` must not exist or be empty: a version directory is never overwritten, since a server
    may be serving it. The model is written to a hidden temporary directory beside it and renamed
    into place at the end, so a watching server never sees half a model.

    :param out_dir: the version directory to create, for example ``models/anomaly/2``.
    :param seed: the same seed and data give bitwise the same weights.
    :param csv_paths: ``timestamp,value`` CSVs of normal behaviour, one series each; when empty,
        synthetic noisy periodic series are used.
    :param steps: optimiser steps of ``BATCH_SIZE`` examples.
    :returns: ``out_dir``.
    """
    out_dir = Path(out_dir)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose a new version directory")
    import tensorflow as tf  # only now: the checks above fail fast, without seconds of import

    started = time.perf_counter()
    settings = AnomalySettings()
    rng = np.random.default_rng(seed)
    csv_paths = [Path(p) for p in csv_paths]
    series = [load_csv(p) for p in csv_paths] if csv_paths else synthetic_series(rng)
    histories, values = make_examples(series, settings)
    model = _build_model(rng)
    loss = _fit(model, histories, values, rng, steps)

    metadata = {
        "window": WINDOW,
        "seed": seed,
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "data": [str(p) for p in csv_paths] if csv_paths else "synthetic",
        "examples": len(values),
        "normalisation_halflife": settings.normalisation_halflife,
        "final_loss": loss,
        "signature": {
            "inputs": [s.describe() for s in SIGNATURE.inputs],
            "outputs": [s.describe() for s in SIGNATURE.outputs],
        },
        "tensorflow": tf.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex}.tmp"
    try:
        tf.saved_model.save(model, str(tmp_dir), signatures={SIGNATURE.name: model.serve})
        (tmp_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above; rename cannot replace a directory otherwise
        os.rename(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    log.info(
        "trained anomaly model in %.1f s (%d steps, %d examples, loss %.4f): %s",
        time.perf_counter() - started,
        steps,
        len(values),
        loss,
        out_dir,
    )
    return out_dir
