"""The SavedModels of the OIP tests' model repository, built into temp dirs, never committed."""

from __future__ import annotations

from pathlib import Path

from tests.support.models import build_fixed_batch_model, build_scalar_model


def build_adder(path: Path) -> Path:
    """``adder``: x float32[?, 3] and k int64[?] -> sum = x . [1, 2, 3] + k, twice = 2k, label = "k"."""
    import tensorflow as tf

    class Adder(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable([1.0, 2.0, 3.0])

    module = Adder()

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x"),
                                  tf.TensorSpec([None], tf.int64, name="k")])
    def serve(x: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        total = tf.linalg.matvec(x, module.weights) + tf.cast(k, tf.float32)
        return {"sum": total, "twice": k * 2, "label": tf.strings.as_string(k)}

    tf.saved_model.save(module, str(path), signatures={"serving_default": serve.get_concrete_function()})
    return path


def build_words(path: Path) -> Path:
    """``words``: text string[?] -> length int32[?], upper string[?], half float16[?] (length / 2)."""
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(text: tf.Tensor) -> dict[str, tf.Tensor]:
        length = tf.strings.length(text)
        return {"length": length, "upper": tf.strings.upper(text),
                "half": tf.cast(length, tf.float16) / 2}

    tf.saved_model.save(module, str(path), signatures={"serving_default": serve.get_concrete_function()})
    return path


def build_repository(root: Path) -> Path:
    """``root/adder/1``, ``root/words/3``, and two models that cannot batch: ``fixed/1`` (batch fixed
    at 2) and ``scalar/1`` (no batch dimension); a model repository as ``model_repository.path``
    names it."""
    build_adder(root / "adder" / "1")
    build_words(root / "words" / "3")
    build_fixed_batch_model(root / "fixed" / "1")
    build_scalar_model(root / "scalar" / "1")
    return root
