"""Loading a TensorFlow SavedModel and checking it against the plugin's declared signature.

TensorFlow is imported here and only here, on first use: commands that never load a model
(``streamserve plugins``, ``config check``) start in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamserve.config import TensorflowConfig
from streamserve.contract import Rows, Signature, TensorSpec, numpy_dtype_of, row_shape_of
from streamserve.errors import ModelLoadError, SignatureMismatch

__all__ = ["Model", "configure_tensorflow", "load_model", "onednn_enabled", "prepare_tensorflow",
           "resolve_version"]

log = logging.getLogger(__name__)

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
"""TensorFlow reads it once, when it is imported: whether its CPU kernels are oneDNN's."""


@dataclass
class _Setup:
    """TensorFlow's thread pools and kernels are per process and fixed at TF's import and first use:
    :func:`configure_tensorflow` notes them, :func:`prepare_tensorflow` (or the first
    :func:`load_model`) applies them. Thread pools of 0 and oneDNN None: TensorFlow's choice."""

    intra_op: int = 0
    inter_op: int = 0
    onednn: bool | None = None
    applied: bool = False


_SETUP = _Setup()


def configure_tensorflow(settings: TensorflowConfig) -> None:
    """How TensorFlow should run the models this process will load (the ``tensorflow`` section).

    Cheap and TF-free, so a server can call it before it decides to load anything; it takes effect
    when TensorFlow is imported and first used. After that the settings cannot change: a later call
    with others is logged and ignored."""
    wanted = (settings.intra_op_threads, settings.inter_op_threads, settings.onednn)
    if _SETUP.applied and (_SETUP.intra_op, _SETUP.inter_op, _SETUP.onednn) != wanted:
        log.warning("TensorFlow is already in use with intra_op_threads=%d, inter_op_threads=%d, "
                    "onednn=%s; the tensorflow section applies after a restart",
                    _SETUP.intra_op, _SETUP.inter_op, _SETUP.onednn)
        return
    _SETUP.intra_op, _SETUP.inter_op, _SETUP.onednn = wanted


def prepare_tensorflow() -> None:
    """Import TensorFlow with the configured kernels and size its thread pools now: before a plugin's
    ``default_model()`` runs TensorFlow (training its model), after which the pools could no longer
    be sized."""
    _tensorflow()


def _tensorflow() -> Any:
    """TensorFlow, imported and set up as configured (once)."""
    from streamserve.runtime.tfimport import import_tensorflow

    if _SETUP.applied:
        return import_tensorflow()
    if _SETUP.onednn is not None and "tensorflow" not in sys.modules:
        os.environ[ONEDNN_ENV] = "1" if _SETUP.onednn else "0"
    tf = import_tensorflow()
    _SETUP.applied = True
    try:
        tf.config.threading.set_intra_op_parallelism_threads(_SETUP.intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(_SETUP.inter_op)
    except RuntimeError as exc:  # TF ran before streamserve loaded a model (an embedding program)
        log.warning("TensorFlow's thread pools were set before streamserve's first model: %s", exc)
    onednn = onednn_enabled()
    if _SETUP.onednn is not None and onednn is not None and onednn != _SETUP.onednn:
        log.warning("TensorFlow was imported before streamserve could set its kernels: oneDNN is "
                    "%s, not as tensorflow.onednn says", "on" if onednn else "off")
    log.info("TensorFlow %s: oneDNN kernels %s, thread pools intra-op %s, inter-op %s", tf.__version__,
             {True: "on", False: "off", None: "unknown"}[onednn],
             _SETUP.intra_op or "TensorFlow's choice", _SETUP.inter_op or "TensorFlow's choice")
    return tf


def onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow runs oneDNN's kernels (None: this TF cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # what tf.test's helpers ask
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


@dataclass(frozen=True)
class Model:
    """A loaded, checked and warmed-up signature, callable with NumPy rows."""

    path: Path
    """The SavedModel directory that was loaded."""
    version: str
    """The version directory's name (``"1"`` for ``<base>/1/``), or ``""`` for an unversioned path."""
    signature: Signature
    call: Callable[[Rows], dict[str, npt.NDArray[Any]]]
    """Runs the signature on a batch. Blocking: call it from a worker thread."""
    runner: str = "function"
    """How calls reach TensorFlow: ``"session"``, a TF session callable made at load (the fast
    way, as TF Serving runs models), or ``"function"``, the restored tf.function (for a model a
    session cannot run, or runs differently)."""
    runner_reason: str = ""
    """Why a ``"function"`` model could not take the session (``""`` for a session model): shown
    in the log, by ``streamserve plugins --config`` and in ``streamserve_model_runner``."""
    _owner: Any = field(default=None, repr=False)
    """The loaded SavedModel object: its variables must live as long as ``call``."""


def resolve_version(path: Path) -> tuple[Path, str]:
    """``path`` itself if it is a SavedModel, else its highest numbered version subdirectory."""
    if (path / "saved_model.pb").is_file():
        return path, path.name if path.name.isdigit() else ""
    if not path.is_dir():
        raise ModelLoadError(f"model directory {path} does not exist")
    versions = sorted(
        (int(p.name), p)
        for p in path.iterdir()
        if p.name.isdigit() and (p / "saved_model.pb").is_file()
    )
    if not versions:
        raise ModelLoadError(
            f"{path} is neither a SavedModel (no saved_model.pb) nor a folder of numbered "
            "SavedModel versions (<base>/1/saved_model.pb, ...)"
        )
    number, chosen = versions[-1]
    return chosen, str(number)


def load_model(path: Path, signature: Signature | str, *, plugin: str) -> Model:
    """Load the SavedModel at ``path`` (or its newest version), check it, and warm it up once.

    ``signature`` is either what a model plugin declares (checked against the model's
    ``signature_def``: every input exactly, the declared outputs at least) or, for a repository
    model, the name of the signature to serve as the model defines it.
    """
    tf = _tensorflow()  # heavy: imported only when a model is really loaded
    directory, version = resolve_version(path)
    name = signature.name if isinstance(signature, Signature) else signature
    started = time.perf_counter()
    try:
        loaded = tf.saved_model.load(str(directory))
    except Exception as exc:  # TF raises many types for a corrupt or foreign directory
        raise ModelLoadError(f"cannot load SavedModel {directory}: {exc}") from exc
    signatures = dict(loaded.signatures)
    if name not in signatures:
        message = f"model {directory} has no signature {name!r}; it has {sorted(signatures)}"
        if isinstance(signature, Signature):
            raise SignatureMismatch(message, plugin=plugin)
        raise ModelLoadError(message)
    function = signatures[name]
    _, input_specs = function.structured_input_signature
    found_inputs = {key: _spec(key, t) for key, t in input_specs.items()}
    found_outputs = {
        key: _spec(key, t) for key, t in function.structured_outputs.items()
    }
    if isinstance(signature, Signature):
        problems = _compare("input", signature.inputs, found_inputs, exact=True)
        problems += _compare("output", signature.outputs, found_outputs, exact=False)
        if problems:
            raise SignatureMismatch(
                f"model {directory} signature {name!r} does not match the plugin's:\n"
                + "\n".join(f"  {p}" for p in problems),
                plugin=plugin,
            )
        served = signature
    else:
        served = Signature(
            inputs=tuple(found_inputs[key] for key in sorted(found_inputs)),
            outputs=tuple(found_outputs[key] for key in sorted(found_outputs)),
            name=name,
        )

    dtypes = {spec.name: tf.as_dtype(spec.dtype) for spec in served.inputs}
    wanted = [spec.name for spec in served.outputs]

    def through_function(rows: Rows) -> dict[str, npt.NDArray[Any]]:
        outputs = function(**{key: tf.constant(rows[key], dtypes[key]) for key in dtypes})
        return {key: outputs[key].numpy() for key in wanted}

    warmup = _warmup_rows(served.inputs, found_inputs)
    call: Callable[[Rows], dict[str, npt.NDArray[Any]]] = through_function
    owner: Any = loaded
    runner = "function"
    try:
        through_function(warmup)
    except Exception as exc:
        if isinstance(signature, Signature):
            raise ModelLoadError(f"warm-up call of {directory} failed: {exc}") from exc
        # A model served as it is may need real values (a lookup, a minimum length): its first
        # request pays the warm-up instead, through the function (nothing to check a session by).
        reason = (f"the warm-up call with zeros failed ({exc}): served unwarmed, and nothing "
                  "checks a session's answers against the function's")
    else:
        session_call = _session_call(directory, name, served, _probe_rows(warmup), through_function)
        if isinstance(session_call, str):
            reason = session_call
        else:
            (call, owner), runner, reason = session_call, "session", ""
    if reason:
        log.warning("model %s is called through its tf.function, not a TF session (about 0.3 ms "
                    "more CPU per model call): %s", directory, reason)
    log.info(
        "loaded model %s (version %s) for %r in %.1f s, called through a %s",
        directory, version or "-", plugin, time.perf_counter() - started,
        "TF session" if runner == "session" else "tf.function",
    )
    return Model(path=directory, version=version, signature=served, call=call, runner=runner,
                 runner_reason=reason, _owner=owner)


def _session_call(
    directory: Path,
    name: str,
    served: Signature,
    probe: Rows,
    function: Callable[[Rows], dict[str, npt.NDArray[Any]]],
) -> tuple[Callable[[Rows], dict[str, npt.NDArray[Any]]], Any] | str:
    """The signature as a callable of a TF session, as TF Serving runs SavedModels; or why not
    (the model cannot run that way, or answers ``probe`` differently from its tf.function).

    Why: calling a restored tf.function from Python costs ~0.4-0.5 ms of CPU per call on this
    class of machine whatever the batch (argument flattening, eager tensor creation, function
    dispatch); a session callable made once takes NumPy arrays straight to the C++ executor for
    ~0.13 ms. That is most of a lone request's time, and of a 1,024-row chunk's.
    ``_make_callable_from_options`` is the Session::MakeCallable binding Keras used for years;
    private in name, so any failure here falls back to the tf.function.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2, saved_model_pb2

    try:
        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString((directory / "saved_model.pb").read_bytes())
        tags = next(list(m.meta_info_def.tags) for m in saved.meta_graphs if name in m.signature_def)
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=_SETUP.intra_op,
            inter_op_parallelism_threads=_SETUP.inter_op,
        ))
        tf_log, level = tf.get_logger(), tf.get_logger().level
        tf_log.setLevel(logging.ERROR)  # the v1 loader's deprecation notice would read as a fault
        try:
            with graph.as_default():
                meta_graph = tf.compat.v1.saved_model.load(session, tags, str(directory))
        finally:
            tf_log.setLevel(level)
        _restore_by_object_graph(tf, session, meta_graph, directory)
        definition = meta_graph.signature_def[name]
        inputs = [spec.name for spec in served.inputs]
        outputs = [spec.name for spec in served.outputs]
        options = config_pb2.CallableOptions(
            feed=[definition.inputs[key].name for key in inputs],
            fetch=[definition.outputs[key].name for key in outputs],
        )
        if _runs_in_caller_thread(meta_graph.graph_def):
            # The ops run one after another on the calling thread, kernels still use the intra-op
            # pool: no hand-off to the inter-op pool per op, which halves what a small model's call
            # costs (~32 -> ~16 µs for this class of model and machine; TF's RunOptions docs
            # recommend it for simple graphs).
            options.run_options.inter_op_thread_pool = -1
        run = session._make_callable_from_options(options)  # private in name: see the docstring
        kinds = {spec.name: spec.numpy_dtype for spec in served.inputs}

        def call(rows: Rows) -> dict[str, npt.NDArray[Any]]:
            arrays = run(*(np.asarray(rows[key], kinds[key]) for key in inputs))
            return dict(zip(outputs, arrays, strict=True))

        got, expected = call(probe), function(probe)
    except Exception as exc:  # any model TF's v1 loader cannot run: the function serves it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"a TF session cannot run it: {first}"
    for key, want in expected.items():
        if not _same(got[key], want):
            return (f"a TF session answers output {key!r} differently from the tf.function "
                    "(a random or stateful op?)")
    return call, session


_WAITING_OPS = ("Queue", "Barrier", "Dataset", "Iterator", "PyFunc", "Send", "Recv", "Collective",
                "Notification", "Accumulator", "Stage", "Unstage", "MapPeek")
"""Parts of op type names whose kernels may wait for another op of the same step: such a graph
must keep the inter-op pool (on the caller's thread alone the op it waits for would never run)."""


def _runs_in_caller_thread(graph_def: Any) -> bool:
    """Whether every op of the graph and its functions can run on the calling thread alone."""
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types.update(node.op for node in function.node_def)
    return not any(part in op for op in types for part in _WAITING_OPS)


def _restore_by_object_graph(tf: Any, session: Any, meta_graph: Any, directory: Path) -> None:
    """Restore the variables the model's functions read that the v1 restore left unset.

    Why: the v1 loader runs the graph's ``saver_def`` restore op, which writes the checkpoint into
    the variables the *saver* saw. A TF2 SavedModel may capture other handles in its functions: a
    Keras 3 variable is exported as a fresh ``tf.Variable`` (what the checkpoint saves) beside the
    copy of its inner variable (what the functions read), so a ``tf.Module`` wrapping a Keras model
    fails with "Could not find variable sequential/dense/kernel". ``tf.saved_model.load`` does not
    go by graph names: it binds each function's captured inputs (``bound_inputs``) to nodes of the
    object graph and restores each node from its own checkpoint key, as TensorFlow's C++
    ``SavedModelV2Bundle`` does. This does the same for the session: the handle a function call
    node captures -> its object-graph node -> that node's ``VARIABLE_VALUE`` key in the
    checkpoint's object graph -> ``RestoreV2`` into the handle. Only uninitialised handles are
    written, so TF1 models and fully restored TF2 models are left exactly as the v1 loader made them.
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    objects = meta_graph.object_graph_def
    bound = {key: list(f.bound_inputs) for key, f in objects.concrete_functions.items() if f.bound_inputs}
    if not bound:  # a TF1 SavedModel (no object graph), or functions that capture nothing
        return
    captured: dict[str, int] = {}  # handle tensor name -> object graph node id
    for node in meta_graph.graph_def.node:
        ids = bound.get(node.attr["f"].func.name) if node.op.endswith("PartitionedCall") else None
        if not ids:
            continue
        data = [tensor for tensor in node.input if not tensor.startswith("^")]
        if len(data) < len(ids):  # not the call of that function as saved: nothing to map
            continue
        for tensor, node_id in zip(data[len(data) - len(ids):], ids, strict=True):
            if objects.nodes[node_id].WhichOneof("kind") == "variable":
                captured.setdefault(tensor if ":" in tensor else f"{tensor}:0", node_id)
    if not captured:
        return
    graph = session.graph
    handles = {tensor: graph.get_tensor_by_name(tensor) for tensor in captured}
    with graph.as_default():
        checks = [tf.raw_ops.VarIsInitializedOp(resource=h) for h in handles.values()]
    unset = [t for t, ok in zip(handles, session.run(checks), strict=True) if not ok]
    if not unset:
        return
    prefix = str(directory / "variables" / "variables")
    reader = tf.train.load_checkpoint(prefix)
    trackables = trackable_object_graph_pb2.TrackableObjectGraph()
    trackables.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    dtypes = reader.get_variable_to_dtype_map()
    keys = {}
    for tensor in unset:
        attributes = trackables.nodes[captured[tensor]].attributes
        key = next((a.checkpoint_key for a in attributes if a.name == "VARIABLE_VALUE"), None)
        if key is None or key not in dtypes:
            raise ValueError(f"variable {tensor} has no value in the checkpoint's object graph")
        keys[tensor] = key
    with graph.as_default():
        values = tf.raw_ops.RestoreV2(
            prefix=prefix, tensor_names=list(keys.values()), shape_and_slices=[""] * len(keys),
            dtypes=[dtypes[key] for key in keys.values()],
        )
        assigns = [tf.raw_ops.AssignVariableOp(resource=handles[t], value=v)
                   for t, v in zip(keys, values, strict=True)]
    session.run(assigns)
    log.debug("model %s: %d variable(s) restored through the object graph", directory, len(keys))


def _same(have: npt.NDArray[Any], want: npt.NDArray[Any]) -> bool:
    """Equal arrays, floats to within rounding (the session's graph optimiser may fuse ops)."""
    if have.shape != want.shape or have.dtype != want.dtype:
        return False
    if want.dtype.kind in "fc":
        return bool(np.allclose(have, want, rtol=1e-6, atol=1e-6, equal_nan=True))
    return bool(np.array_equal(have, want))


def _spec(name: str, tensor: Any) -> TensorSpec:
    """What the model has, described as a TensorSpec even when it breaks the batch-dimension rule
    that declared specs follow (so the mismatch message can show it)."""
    shape = tuple(tensor.shape.as_list()) if tensor.shape.rank is not None else ()
    spec = object.__new__(TensorSpec)
    for attr, value in (("name", name), ("dtype", tensor.dtype.name), ("shape", shape)):
        object.__setattr__(spec, attr, value)
    with contextlib.suppress(TypeError):  # a resource or variant: no NumPy dtype, never served
        object.__setattr__(spec, "numpy_dtype", numpy_dtype_of(spec.dtype))
    object.__setattr__(spec, "row_shape", row_shape_of(shape))
    return spec


def _compare(
    kind: str, declared: tuple[TensorSpec, ...], found: dict[str, TensorSpec], *, exact: bool
) -> list[str]:
    problems = []
    for spec in declared:
        have = found.get(spec.name)
        if have is None:
            problems.append(
                f"{kind} {spec.name!r}: expected {spec.describe()}, found no such {kind} "
                f"(the model has {sorted(found) or 'none'})"
            )
        elif have.dtype != spec.dtype or not _shapes_agree(spec.shape, have.shape):
            problems.append(f"{kind} {spec.name!r}: expected {spec.describe()}, found "
                            f"{have.describe()}")
    if exact:
        names = {spec.name for spec in declared}
        problems += [
            f"{kind} {name!r}: the model needs {found[name].describe()}, the plugin does not "
            "declare it"
            for name in sorted(set(found) - names)
        ]
    return problems


def _shapes_agree(declared: tuple[int | None, ...], found: tuple[int | None, ...]) -> bool:
    return len(declared) == len(found) and all(
        d is None or f is None or d == f for d, f in zip(declared, found, strict=True)
    )


def _probe_rows(warmup: Rows) -> Rows:
    """``warmup`` with random floats (fixed seed), so a session fed its inputs in the wrong places
    cannot agree with the function by chance, as it could on zeros."""
    random = np.random.default_rng(0)
    return {
        key: random.standard_normal(rows.shape).astype(rows.dtype) if rows.dtype.kind == "f" else rows
        for key, rows in warmup.items()
    }


def _warmup_rows(
    declared: tuple[TensorSpec, ...], found: dict[str, TensorSpec]
) -> dict[str, npt.NDArray[Any]]:
    """One row of zeros per input; each open dimension takes the model's size, else 1."""
    rows = {}
    for spec in declared:
        dims = zip(spec.shape, found[spec.name].shape, strict=True)
        shape = [d if d is not None else f if f is not None else 1 for d, f in dims]
        if spec.dtype == "string":
            rows[spec.name] = np.full(shape, b"", dtype=object)
        else:
            rows[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return rows
