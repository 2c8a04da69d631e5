"""``python -m benchmarks.servers.peer_model OUT``: the peer benchmark's model, built as a user would.

A small Keras autoencoder trained for a moment on sine windows, wrapped in a ``tf.Module`` whose
``serve`` signature scores a window by its reconstruction error: ``window: float32[?, 32]`` in,
``score: float32[?]`` out, saved with ``tf.saved_model.save`` into ``OUT`` (a version directory).
This is the shape whose Keras 3 variables a plain v1 session restore misses (issue 13); both
servers load this very directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

WIDTH = 32
"""Columns of ``window``."""


def build(out: Path, *, seed: int = 0, epochs: int = 2) -> Path:
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    autoencoder = keras.Sequential([
        keras.layers.Input((WIDTH,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(WIDTH),
    ])
    autoencoder.compile(optimizer="adam", loss="mse")
    start = np.random.default_rng(seed).uniform(0, 100, (2048, 1))
    windows = np.sin(start + np.arange(WIDTH) / 4).astype(np.float32)
    autoencoder.fit(windows, windows, epochs=epochs, batch_size=64, verbose=0)

    class Scorer(tf.Module):
        def __init__(self, model: keras.Model) -> None:
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="window")])
        def serve(self, window: tf.Tensor) -> dict[str, tf.Tensor]:
            error = tf.square(self.model(window) - window)
            return {"score": tf.reduce_mean(error, axis=1)}

    scorer = Scorer(autoencoder)
    serving = {"serving_default": scorer.serve.get_concrete_function()}
    tf.saved_model.save(scorer, str(out), signatures=serving)
    return out


if __name__ == "__main__":
    build(Path(sys.argv[1]))
