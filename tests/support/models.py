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


# The SavedModel shapes a user brings (tests/test_model_shapes.py) -------------------------------
# Each takes ``window: float32[?, 4]`` (``words: string[?]`` for the lookup one) and is built the
# way its users build it; the session runner must take every one of them.

WINDOW = 4
"""Columns of the ``window`` input of the shapes below."""


def _autoencoder(seed: int) -> object:
    """A small Keras autoencoder with fixed, non-trivial weights (Keras 3, TensorFlow backend)."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.layers.Input((WINDOW,), name="window"),
        keras.layers.Dense(3, activation="relu"),
        keras.layers.Dense(WINDOW),
    ])


def build_keras_export(path: Path) -> Path:
    """Keras 3 ``model.export()``: the Keras way to a SavedModel for serving."""
    model = _autoencoder(1)
    model.export(str(path), verbose=False)  # type: ignore[attr-defined]
    return path


def build_keras_saved(path: Path) -> Path:
    """``tf.saved_model.save`` of a Keras model with a serving function of its own."""
    import tensorflow as tf

    model = _autoencoder(2)

    @tf.function(input_signature=[tf.TensorSpec([None, WINDOW], tf.float32, name="window")])
    def serve(window: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"reconstruction": model(window)}  # type: ignore[operator]

    tf.saved_model.save(model, str(path), signatures={"serving_default": serve.get_concrete_function()})
    return path


def build_module_wrapping_keras(path: Path) -> Path:
    """A ``tf.Module`` whose ``serve`` wraps a Keras autoencoder (the issue-13 shape: its Keras 3
    variables are exported twice, and the v1 restore fills only the copies the functions do not
    read)."""
    import tensorflow as tf

    class Scorer(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = _autoencoder(3)

        @tf.function(input_signature=[tf.TensorSpec([None, WINDOW], tf.float32, name="window")])
        def serve(self, window: tf.Tensor) -> dict[str, tf.Tensor]:
            error = tf.square(self.model(window) - window)
            return {"score": tf.reduce_mean(error, axis=1)}

    module = Scorer()
    serving = {"serving_default": module.serve.get_concrete_function()}
    tf.saved_model.save(module, str(path), signatures=serving)
    return path


def build_module_variables(path: Path) -> Path:
    """A ``tf.Module`` with plain ``tf.Variable`` s of its own, and a counter it never updates."""
    import tensorflow as tf

    class Linear(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([WINDOW, 2], seed=[1, 2]))
            self.b = tf.Variable([0.5, -0.25])

        @tf.function(input_signature=[tf.TensorSpec([None, WINDOW], tf.float32, name="window")])
        def serve(self, window: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.matmul(window, self.w) + self.b}

    module = Linear()
    serving = {"serving_default": module.serve.get_concrete_function()}
    tf.saved_model.save(module, str(path), signatures=serving)
    return path


def build_lookup(path: Path, scratch: Path) -> Path:
    """A vocabulary asset (``scratch`` is deleted after saving) feeding a lookup table, and a
    variable: ``words: string[?]`` -> ``ids: int64[?]``, ``weight: float32[?]``."""
    import tensorflow as tf

    vocabulary = scratch / "vocabulary.txt"
    vocabulary.write_text("apple\nbanana\ncherry\n")

    class Lookup(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            lines = tf.lookup.TextFileInitializer(
                str(vocabulary), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            )
            self.table = tf.lookup.StaticHashTable(lines, default_value=-1)
            self.weights = tf.Variable([0.5, 1.5, 2.5, -1.0])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
        def serve(self, words: tf.Tensor) -> dict[str, tf.Tensor]:
            ids = self.table.lookup(words)
            known = tf.where(ids < 0, tf.constant(3, tf.int64), ids)  # unknown words: the last weight
            return {"ids": ids, "weight": tf.gather(self.weights, known)}

    module = Lookup()
    serving = {"serving_default": module.serve.get_concrete_function()}
    tf.saved_model.save(module, str(path), signatures=serving)
    vocabulary.unlink()
    return path


def build_tf1(path: Path) -> Path:
    """A TF1-style SavedModel: a graph, variables initialised in a session, SavedModelBuilder."""
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        window = v1.placeholder(tf.float32, [None, WINDOW], name="window")
        start = np.arange(WINDOW * 2, dtype=np.float32).reshape(WINDOW, 2) / 7
        weights = v1.get_variable("w", initializer=start)
        total = tf.nn.tanh(tf.matmul(window, weights), name="total")
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(path))
        signature = v1.saved_model.predict_signature_def(inputs={"window": window}, outputs={"total": total})
        builder.add_meta_graph_and_variables(
            session, [v1.saved_model.tag_constants.SERVING],
            signature_def_map={"serving_default": signature},
        )
        builder.save()
    return path


SHAPES = {
    "keras_export": build_keras_export,
    "keras_saved": build_keras_saved,
    "module_keras": build_module_wrapping_keras,
    "module_variables": build_module_variables,
    "tf1": build_tf1,
}
"""name -> builder(path) of every shape taking ``window``; ``build_lookup`` takes a scratch dir too."""
