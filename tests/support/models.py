"""Tiny SavedModels built by the tests, never committed."""

from __future__ import annotations

from pathlib import Path


def build_affine_model(path: Path, *, scale: float = 2.0, bias: float = 1.0,
                       input_name: str = "x", dtype: str = "float32") -> Path:
    """A SavedModel whose serving_default maps ``x: float32[?]`` to ``y = scale * x + bias``."""
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = tf.Variable(scale, dtype=dtype)
            self.bias = tf.Variable(bias, dtype=dtype)

    module = Affine()

    @tf.function(input_signature=[tf.TensorSpec([None], dtype, name=input_name)])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": x * module.scale + module.bias}

    tf.saved_model.save(module, str(path), signatures={"serving_default": serve.get_concrete_function()})
    return path


def build_fixed_batch_model(path: Path) -> Path:
    """A model whose batch dimension is fixed at 2: ``x: float32[2, 3] -> total: float32[2]``."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"total": tf.reduce_sum(x, axis=1)}

    tf.saved_model.save(tf.Module(), str(path), signatures={"serving_default": serve.get_concrete_function()})
    return path


def build_scalar_model(path: Path) -> Path:
    """A model of one scalar: ``x: float32[] -> y: float32[] = x * x`` (no batch dimension at all)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": x * x}

    tf.saved_model.save(tf.Module(), str(path), signatures={"serving_default": serve.get_concrete_function()})
    return path
