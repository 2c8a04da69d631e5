"""The SavedModels the TF Serving plugin's tests serve, built into temp dirs, never committed."""

from __future__ import annotations

from pathlib import Path


def build_linear_model(path: Path) -> Path:
    """``serving_default``: ``x: float32[?, 3]``, ``n: int64[?]`` -> ``score = x . w + n`` (float32[?])
    and ``doubled = 2 n`` (int64[?]). A second signature, ``scaled``, exists but is not served."""
    import tensorflow as tf

    class Linear(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([1.0, -2.0, 0.5])

    module = Linear()

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.int64)])
    def serve(x: tf.Tensor, n: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"score": tf.linalg.matvec(x, module.w) + tf.cast(n, tf.float32), "doubled": 2 * n}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def scaled(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": x * module.w}

    signatures = {"serving_default": serve.get_concrete_function(), "scaled": scaled.get_concrete_function()}
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def build_strings_model(path: Path) -> Path:
    """``serving_default``: ``words: string[?]`` -> ``length`` (int32[?]) and ``upper`` (string[?])."""
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(words: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"length": tf.strings.length(words), "upper": tf.strings.upper(words)}

    tf.saved_model.save(module, str(path), signatures={"serving_default": serve.get_concrete_function()})
    return path
