"""Loading SavedModels: version folders, unusable directories, and signature checks with clear messages."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from streamserve.contract import Signature, TensorSpec
from streamserve.errors import ModelLoadError, PluginError, SignatureMismatch
from streamserve.runtime import load_model, resolve_version
from tests.support.models import build_affine_model, build_lookup

SCALER = Signature(
    inputs=(TensorSpec("x", "float32", (None,)),),
    outputs=(TensorSpec("y", "float32", (None,)),),
)
MATRIX = Signature(
    inputs=(TensorSpec("x", "float32", (None, 3)),),
    outputs=(TensorSpec("y", "float32", (None,)),),
)


def build_matrix_model(path: Path) -> Path:
    """``x: float32[?, 3]`` -> ``y = x @ [1, 2, 3]`` and ``z = 2x``; a second signature ``double``
    gives ``y = 2 (x @ [1, 2, 3])``. The matmul really needs 3 columns."""
    import tensorflow as tf

    class Matrix(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([[1.0], [2.0], [3.0]])

    module = Matrix()
    spec = tf.TensorSpec([None, 3], tf.float32, name="x")

    @tf.function(input_signature=[spec])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": tf.matmul(x, module.w)[:, 0], "z": x * 2}

    @tf.function(input_signature=[spec])
    def double(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": 2 * tf.matmul(x, module.w)[:, 0]}

    tf.saved_model.save(module, str(path), signatures={
        "serving_default": serve.get_concrete_function(),
        "double": double.get_concrete_function(),
    })
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every model these tests load, built once."""
    root = tmp_path_factory.mktemp("models")
    versioned = root / "versioned"
    build_affine_model(versioned / "1", scale=2.0, bias=1.0)
    build_affine_model(versioned / "2", scale=5.0, bias=0.0)
    (versioned / "3").mkdir()  # a version still being copied: no saved_model.pb yet
    return {
        "affine": build_affine_model(root / "affine", scale=3.0, bias=-1.0),
        "versioned": versioned,
        "float64": build_affine_model(root / "float64", dtype="float64"),
        "renamed": build_affine_model(root / "renamed", input_name="inp"),
        "matrix": build_matrix_model(root / "matrix"),
    }


def mismatch(path: Path, declared: Signature) -> str:
    with pytest.raises(SignatureMismatch) as error:
        load_model(path, declared, plugin="scaler")
    assert isinstance(error.value, PluginError)
    assert error.value.plugin == "scaler"
    return str(error.value)


# Loading -----------------------------------------------------------------------------------------


def test_matching_model_loads_and_computes(models: dict[str, Path]) -> None:
    model = load_model(models["affine"], SCALER, plugin="scaler")

    assert (model.path, model.version, model.signature) == (models["affine"], "", SCALER)
    outputs = model.call({"x": np.array([0.0, 1.0, 2.5], dtype=np.float32)})
    assert list(outputs) == ["y"]
    assert outputs["y"].dtype == np.float32
    np.testing.assert_allclose(outputs["y"], [-1.0, 2.0, 6.5])


def test_versioned_base_serves_the_highest_complete_version(models: dict[str, Path]) -> None:
    model = load_model(models["versioned"], SCALER, plugin="scaler")

    assert (model.path, model.version) == (models["versioned"] / "2", "2")
    np.testing.assert_allclose(model.call({"x": np.array([1.0, 2.0], np.float32)})["y"], [5.0, 10.0])


def test_only_declared_outputs_are_returned(models: dict[str, Path]) -> None:
    model = load_model(models["matrix"], MATRIX, plugin="scaler")

    outputs = model.call({"x": np.array([[1, 1, 1], [1, 0, 2]], dtype=np.float32)})

    assert list(outputs) == ["y"]  # the model's extra output z is not the plugin's business
    np.testing.assert_allclose(outputs["y"], [6.0, 7.0])


def test_another_signature_by_name(models: dict[str, Path]) -> None:
    model = load_model(models["matrix"], dataclasses.replace(MATRIX, name="double"), plugin="scaler")

    np.testing.assert_allclose(model.call({"x": np.array([[1, 1, 1]], np.float32)})["y"], [12.0])


def test_open_declared_dimension_accepts_the_models_fixed_one(models: dict[str, Path]) -> None:
    # The declared (None, None) agrees with the model's (None, 3), so the model must load: the
    # warm-up call has to respect the model's own shape, not feed it a [1, 1] tensor.
    declared = Signature(inputs=(TensorSpec("x", "float32", (None, None)),), outputs=MATRIX.outputs)

    model = load_model(models["matrix"], declared, plugin="scaler")

    np.testing.assert_allclose(model.call({"x": np.array([[0, 0, 1]], np.float32)})["y"], [3.0])


# Versions ----------------------------------------------------------------------------------------


def test_resolve_version_orders_versions_as_numbers(tmp_path: Path) -> None:
    for version in ("2", "9", "10", "latest"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "saved_model.pb").touch()
    (tmp_path / "11").mkdir()  # incomplete: ignored
    (tmp_path / "12").touch()  # a file, not a version directory

    assert resolve_version(tmp_path) == (tmp_path / "10", "10")


def test_resolve_version_of_a_savedmodel_directory(tmp_path: Path) -> None:
    for name in ("7", "model"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").touch()

    assert resolve_version(tmp_path / "7") == (tmp_path / "7", "7")
    assert resolve_version(tmp_path / "model") == (tmp_path / "model", "")


# Unusable directories ----------------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "model"

    with pytest.raises(ModelLoadError) as error:
        load_model(path, SCALER, plugin="scaler")

    assert str(error.value) == f"model directory {path} does not exist"


def test_directory_without_saved_model(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "variables").mkdir()

    with pytest.raises(ModelLoadError) as error:
        load_model(tmp_path, SCALER, plugin="scaler")

    message = str(error.value)
    assert message.startswith(f"{tmp_path} is neither a SavedModel (no saved_model.pb)")
    assert "<base>/1/saved_model.pb" in message


@pytest.mark.parametrize("versioned", [False, True], ids=["plain", "in-a-version-folder"])
def test_corrupt_saved_model(tmp_path: Path, versioned: bool) -> None:
    directory = tmp_path / "4" if versioned else tmp_path
    directory.mkdir(exist_ok=True)
    (directory / "saved_model.pb").write_bytes(b"\x00garbage, not a protobuf\xff\xfe")

    with pytest.raises(ModelLoadError) as error:
        load_model(tmp_path, SCALER, plugin="scaler")

    assert str(error.value).startswith(f"cannot load SavedModel {directory}: ")
    assert not isinstance(error.value, PluginError)


# Signature mismatches: expected vs found ---------------------------------------------------------


def test_wrong_input_name(models: dict[str, Path]) -> None:
    message = mismatch(models["renamed"], SCALER)

    assert f"model {models['renamed']} signature 'serving_default' does not match the plugin's" in message
    assert "input 'x': expected x: float32[?], found no such input (the model has ['inp'])" in message
    assert "input 'inp': the model needs inp: float32[?], the plugin does not declare it" in message


def test_wrong_dtype(models: dict[str, Path]) -> None:
    message = mismatch(models["float64"], SCALER)

    assert "input 'x': expected x: float32[?], found x: float64[?]" in message


def test_wrong_rank(models: dict[str, Path]) -> None:
    message = mismatch(models["matrix"], SCALER)

    assert "input 'x': expected x: float32[?], found x: float32[?, 3]" in message


def test_wrong_fixed_dimension(models: dict[str, Path]) -> None:
    declared = dataclasses.replace(MATRIX, inputs=(TensorSpec("x", "float32", (None, 4)),))

    message = mismatch(models["matrix"], declared)

    assert "input 'x': expected x: float32[?, 4], found x: float32[?, 3]" in message


def test_missing_output(models: dict[str, Path]) -> None:
    declared = dataclasses.replace(
        SCALER, outputs=(*SCALER.outputs, TensorSpec("score", "float32", (None,)))
    )

    message = mismatch(models["affine"], declared)

    assert "output 'score': expected score: float32[?], found no such output (the model has ['y'])" in message
    assert "output 'y'" not in message


def test_every_problem_is_listed(models: dict[str, Path]) -> None:
    declared = dataclasses.replace(
        SCALER, outputs=(TensorSpec("y", "float32", (None,)), TensorSpec("score", "float32", (None,)))
    )

    message = mismatch(models["float64"], declared)

    problems = [line.strip() for line in message.splitlines()[1:]]
    assert problems == [
        "input 'x': expected x: float32[?], found x: float64[?]",
        "output 'y': expected y: float32[?], found y: float64[?]",
        "output 'score': expected score: float32[?], found no such output (the model has ['y'])",
    ]


def test_unknown_signature_lists_the_available_ones(models: dict[str, Path]) -> None:
    message = mismatch(models["matrix"], dataclasses.replace(MATRIX, name="predict"))

    assert f"model {models['matrix']} has no signature 'predict'; it has ['double', 'serving_default']" in (
        message
    )


def build_two_input_model(path: Path, *, noisy: bool = False) -> Path:
    """``a - b`` for two inputs of one shape (swapping them changes the answer); ``noisy`` adds
    fresh random noise on every call, so no two runs of it agree."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, 2], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def serve(a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        difference = a - b
        if noisy:
            difference += tf.random.uniform(tf.shape(a))
        return {"d": difference}

    module = tf.Module()
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve.get_concrete_function()})
    return path


TWO_INPUTS = Signature(
    inputs=(TensorSpec("a", "float32", (None, 2)), TensorSpec("b", "float32", (None, 2))),
    outputs=(TensorSpec("d", "float32", (None, 2)),),
)


def test_a_model_is_called_through_a_session_with_the_functions_results(tmp_path: Path) -> None:
    import tensorflow as tf

    path = build_two_input_model(tmp_path / "m")
    model = load_model(path, TWO_INPUTS, plugin="p")
    assert model.runner == "session"
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((5, 2)).astype(np.float32) for _ in range(2))
    want = tf.saved_model.load(str(path)).signatures["serving_default"](a=a, b=b)["d"].numpy()
    got = model.call({"a": a, "b": b})["d"]
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32
    # rows of another float type are converted, as the function path converts them
    np.testing.assert_allclose(model.call({"a": a.astype(np.float64), "b": b})["d"], want)


def test_a_model_whose_session_disagrees_is_called_through_its_function(tmp_path: Path) -> None:
    model = load_model(build_two_input_model(tmp_path / "m", noisy=True), TWO_INPUTS, plugin="p")
    assert model.runner == "function"
    zeros = np.zeros((3, 2), np.float32)
    noise = model.call({"a": zeros, "b": zeros})["d"]
    assert noise.shape == (3, 2) and ((noise >= 0) & (noise < 1)).all()


def test_tensorflow_thread_pools_follow_the_config(models: dict[str, Path]) -> None:
    """The YAML's ``tensorflow`` sizes reach TF's own pools and the model's session. In a fresh
    process: TF fixes its pools at its first use, which in this one happened long ago."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from streamserve.config import StreamserveConfig
        from streamserve.contract import Signature, TensorSpec
        from streamserve.runtime import load_model
        from streamserve.serving import Server
        import tensorflow as tf

        config = StreamserveConfig(tensorflow={{"intra_op_threads": 1, "inter_op_threads": 3}})
        Server(config, [])  # only notes the sizes: no model, no TF work yet
        spec = Signature(inputs=(TensorSpec("x", "float32", (None,)),),
                         outputs=(TensorSpec("y", "float32", (None,)),))
        model = load_model(Path({str(models["versioned"])!r}), spec, plugin="p")
        session = model._owner
        print(json.dumps([tf.config.threading.get_intra_op_parallelism_threads(),
                          tf.config.threading.get_inter_op_parallelism_threads(),
                          model.runner, session._config.intra_op_parallelism_threads,
                          session._config.inter_op_parallelism_threads]))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [1, 3, "session", 1, 3]


@pytest.mark.parametrize(("onednn", "environment"), [(False, "1"), (True, "0")])
def test_tensorflow_kernels_follow_the_config(
    models: dict[str, Path], onednn: bool, environment: str
) -> None:
    """``tensorflow.onednn`` decides TensorFlow's kernels, over what the environment says; the log
    says which ran, and the model computes the same either way. In a fresh process: TensorFlow
    reads the switch once, when it is imported."""
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import json, logging
        from pathlib import Path
        import numpy as np
        from streamserve.config import StreamserveConfig
        from streamserve.runtime import load_model
        from streamserve.runtime.model import onednn_enabled
        from streamserve.serving import Server

        logging.basicConfig(level=logging.INFO)
        Server(StreamserveConfig(tensorflow={{"onednn": {onednn}}}), [])  # notes it: no TF yet
        model = load_model(Path({str(models["matrix"])!r}), "serving_default", plugin="p")
        y = model.call({{"x": np.array([[1, 1, 1], [0, 1, -2]], np.float32)}})["y"]
        print(json.dumps([onednn_enabled(), y.tolist()]))
    """)
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": environment}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [onednn, [6.0, -4.0]]
    assert f"oneDNN kernels {'on' if onednn else 'off'}" in done.stderr


def test_a_model_with_a_vocabulary_asset_runs_through_a_session(tmp_path: Path) -> None:
    """A lookup table initialised from a vocabulary file: the session must run the SavedModel's
    initialiser and find the file among the model's own assets (the original is gone)."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    build_lookup(tmp_path / "m" / "1", scratch)  # deletes its vocabulary file after saving
    assert not (scratch / "vocabulary.txt").exists()
    model = load_model(tmp_path / "m", "serving_default", plugin="p")
    assert model.runner == "session"
    ids = model.call({"words": np.array([b"banana", b"kiwi", b"cherry"], dtype=object)})["ids"]
    np.testing.assert_array_equal(ids, [1, -1, 2])


def test_only_graphs_without_waiting_ops_run_on_the_callers_thread() -> None:
    """A session callable runs a graph's ops on the caller's thread (cheaper for small models)
    unless some op may wait for another op of the same step (queues, datasets, py_func...): on
    one thread the op it waits for would never run."""
    from tensorflow.core.framework import graph_pb2

    from streamserve.runtime.model import _runs_in_caller_thread

    graph = graph_pb2.GraphDef()
    graph.node.add(name="x", op="Placeholder")
    graph.node.add(name="y", op="MatMul")
    graph.node.add(name="call", op="StatefulPartitionedCall")
    body = graph.library.function.add()
    body.node_def.add(name="relu", op="Relu")
    assert _runs_in_caller_thread(graph)
    body.node_def.add(name="take", op="QueueDequeueV2")
    assert not _runs_in_caller_thread(graph)
    graph.library.ClearField("function")
    graph.node.add(name="py", op="EagerPyFunc")
    assert not _runs_in_caller_thread(graph)
