"""The plugin contract: the one frozen object a plugin hands to the core.

A plugin describes *what* to serve; the core does the serving (gRPC handlers, streams, batching,
model loading, health, reflection, errors). For each RPC method of its protobuf service that it
serves the plugin gives a :class:`Method` (a method it gives none for answers UNIMPLEMENTED):

``open_state(context)``
    called when a call starts (the first message of a stream, or a unary request); the object it
    returns is the per-stream state, passed to every pre/postprocess of that call and dropped (after
    ``close_state``, if given) when the call ends, whether it completed, failed or was cancelled.
    The :class:`Context` carries the plugin's settings (and a protocol plugin's models view).
``preprocess(request, state) -> Rows``
    turns one request message into model input rows: a mapping from each signature input name to a
    NumPy array whose first dimension is the number of rows (1 for a point, N for a chunk of N points,
    0 when the message needs no model call; ``{}``, no model at all: see
    :meth:`Method.without_model`). Raise :class:`streamserve.errors.InvalidArgument` for bad input.
``postprocess(outputs, request, state) -> response``
    turns the model outputs for exactly those rows (an :class:`Outputs` mapping by signature output
    name, whose ``model_version`` says which model version scored them) into the response message;
    for a server-streaming method, an iterable of response messages. A response may also be given
    as its bytes, encoded by the plugin (a protocol plugin that builds them faster than a message
    object is filled and encoded); the core still applies the size limit. For zero rows the core
    makes no model call and answers as the model would: an empty array per output (first
    dimension 0).

Rows from many concurrent calls are concatenated into one model call by the batcher, so pre- and
postprocessing must treat rows independently; anything that depends on earlier messages lives in the
state.

Two kinds of plugin share this contract:

*Model plugins* (the anomaly detector) declare the :class:`Signature` they need and are served one
model, named after the plugin. ``preprocess`` returns :data:`Rows`.

*Protocol plugins* (Open Inference Protocol, TF Serving's API) declare ``signature=None``: they serve
any model of the server's model repository (``model_repository:`` in the YAML), whose signatures are
read from the SavedModels. Their ``open_state`` gets a :class:`Models` view of the repository as
``context.models``, and their ``preprocess`` returns :class:`Infer` (rows for a
model named by the request), or ``{}`` for a request that concerns no model (a liveness call). The
core checks the rows against that model's signature (missing, unexpected, wrong dtype or shape:
INVALID_ARGUMENT naming the input), answers NOT_FOUND for an unknown model or version and UNAVAILABLE
for one not ready, and batches each model on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from pydantic import BaseModel

__all__ = [
    "Context",
    "Infer",
    "Method",
    "ModelInfo",
    "ModelStatistics",
    "Models",
    "Outputs",
    "PluginSpec",
    "Rows",
    "Signature",
    "TensorSpec",
]

Rows = Mapping[str, npt.NDArray[Any]]
"""Model inputs or outputs for some rows: name -> array whose first dimension counts the rows."""


class Outputs(dict[str, npt.NDArray[Any]]):
    """The model outputs of one message's rows, and the version of the model that computed them."""

    __slots__ = ("model_version",)

    def __init__(self, arrays: Mapping[str, npt.NDArray[Any]], model_version: str) -> None:
        super().__init__(arrays)
        self.model_version = model_version
        """The model's version directory name (``"3"`` for ``<base>/3/``), or ``""``."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a SavedModel signature."""

    name: str
    """The key in the signature's inputs or outputs."""
    dtype: str
    """A NumPy/TensorFlow dtype name, for example ``"float32"``."""
    shape: tuple[int | None, ...]
    """The full shape including the leading batch dimension; ``None`` is a dimension of any size."""
    numpy_dtype: np.dtype[Any] = field(init=False, repr=False, compare=False)
    """The dtype of this tensor's NumPy arrays: ``object`` (holding bytes) for ``"string"``. Made
    once, here: rows are checked against it on every request."""
    row_shape: tuple[int, ...] | None = field(init=False, repr=False, compare=False)
    """The shape of one row (the shape without its batch dimension), if the batch dimension is open
    and every other one has a size; else None. (Such rows are checked with one comparison.)"""

    def __post_init__(self) -> None:
        # Fails early, naming the bad dtype. (Frozen: the fields are set as dataclasses do it.)
        object.__setattr__(self, "numpy_dtype", numpy_dtype_of(self.dtype))
        object.__setattr__(self, "row_shape", row_shape_of(self.shape))
        if not self.shape or self.shape[0] is not None:
            raise ValueError(
                f"tensor {self.name!r}: the first dimension is the batch and must be None, "
                f"got shape {self.shape}"
            )

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


def row_shape_of(shape: tuple[int | None, ...]) -> tuple[int, ...] | None:
    """See :attr:`TensorSpec.row_shape`."""
    row = shape[1:]
    if not shape or shape[0] is not None or None in row:
        return None
    return row  # type: ignore[return-value]  # no None in it


def numpy_dtype_of(dtype: str) -> np.dtype[Any]:
    """The NumPy dtype of a signature dtype name: ``object`` (holding bytes) for ``"string"``.
    TypeError for a name NumPy does not know (TensorFlow's ``resource``, ``variant``)."""
    return np.dtype(object if dtype == "string" else dtype)


@dataclass(frozen=True, slots=True)
class Signature:
    """The SavedModel signature a plugin needs, checked against the model's ``signature_def``."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    name: str = "serving_default"

    @property
    def batchable(self) -> bool:
        """Whether rows of many calls can share a model call: every tensor's first dimension is open.
        Declared signatures always are; a repository model read from disk may not be (it then runs
        one request per model call)."""
        return all(spec.shape and spec.shape[0] is None for spec in (*self.inputs, *self.outputs))


@dataclass(slots=True)
class Infer:
    """What a protocol plugin's ``preprocess`` returns: rows for one model of the repository.

    Made for every request, and read once by the core: not frozen, as a frozen dataclass's
    ``__init__`` costs twice as much."""

    model: str
    """The model's name in the repository."""
    rows: Rows
    """Input name -> array, first dimension the rows (empty: no model call, for metadata requests)."""
    version: str = ""
    """The version the request asks for; ``""`` is whichever version is served."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model of the repository as a protocol plugin sees it."""

    name: str
    ready: bool
    """Loaded, checked and warm: requests are answered."""
    version: str = ""
    """The version served (``""`` for an unversioned directory or while none is loaded)."""
    signature: Signature | None = None
    """What the model takes and returns, read from the SavedModel; None until it is loaded."""
    reason: str = ""
    """Why the model is not ready (loading, or its load error)."""
    max_batch_size: int = 0
    """Most rows the core puts in one model call (the model's ``batching.max_batch_size``; 1 when
    its signature is not batchable, so it runs one request per call); 0 until it is loaded."""


@dataclass(frozen=True, slots=True)
class ModelStatistics:
    """What one model's calls have done since the server started, over every version it served.

    Counted per model call (a batch of rows, from one or many requests); failed calls are not
    counted, nor requests that never reached the model."""

    rows: int = 0
    """Rows scored (Triton's ``inference_count``)."""
    calls: int = 0
    """Model calls that succeeded (Triton's ``execution_count``)."""
    call_ns: int = 0
    """Nanoseconds spent in those calls."""
    last_call_ms: int = 0
    """When the last of them ended, in milliseconds since the epoch; 0 before the first."""
    batches: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    """Rows in one call -> (calls of that size, their nanoseconds); sizes ascending."""


class Models(Protocol):
    """A live, read-only view of the model repository (handed to protocol plugins' ``open_state``)."""

    def names(self) -> list[str]:
        """Every model name, sorted."""
        ...

    def get(self, name: str, version: str = "") -> ModelInfo:
        """The model ``name``; raises :class:`streamserve.errors.NotFound` for an unknown name, or
        for a ``version`` that is not the one served (``""`` means whichever is served)."""
        ...

    def statistics(self, name: str, version: str = "") -> ModelStatistics:
        """The calls of model ``name`` so far (all its versions); raises
        :class:`streamserve.errors.NotFound` as :meth:`get` does."""
        ...


@dataclass(frozen=True, slots=True)
class Context:
    """What ``open_state`` gets when a call starts: the same object for every call of a plugin."""

    settings: Any = None
    """The plugin's validated ``settings:`` (an instance of ``PluginSpec.settings``), or None for a
    plugin that takes none."""
    models: Models | None = None
    """For a protocol plugin (``signature=None``): the live view of the model repository. None for a
    model plugin, which is served its one model."""


def _no_state(context: Context) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Method:
    """How one RPC method of the plugin's service turns messages into model rows and back."""

    preprocess: Callable[[Any, Any], Rows | Infer]
    postprocess: Callable[[Outputs, Any, Any], Message | bytes | Iterable[Message | bytes]]
    open_state: Callable[[Context], Any] = _no_state
    """``open_state(context)``: the per-call state (default: None)."""
    close_state: Callable[[Any], None] | None = None
    on_error: Callable[[Exception, Any, Any], Message] | None = None
    """For protocols that report errors in the stream rather than by ending it (Triton's
    ``ModelStreamInfer``): ``on_error(error, request, state)`` turns a request's deliberate error
    (a :class:`streamserve.errors.StreamserveError`: bad input, unknown model, model failure, or one
    raised by ``postprocess``) into its response message, and the stream goes on. Unset: the error
    ends the call with its status."""

    @classmethod
    def without_model(
        cls,
        answer: Callable[[Any, Any], Message | Iterable[Message]],
        *,
        open_state: Callable[[Context], Any] = _no_state,
        close_state: Callable[[Any], None] | None = None,
    ) -> Method:
        """A method that answers without a model call (metadata, liveness, a lookup in the state):
        ``answer(request, state)`` returns the response (an iterable of them for a server-streaming
        method). A model plugin's calls still wait for its model to be ready, as all its calls do;
        a protocol plugin's are answered whatever the state of the repository."""
        def no_model(request: Any, state: Any) -> Rows:
            return {}  # the core's "no model at all"

        def respond(outputs: Outputs, request: Any, state: Any) -> Message | Iterable[Message]:
            return answer(request, state)

        return cls(no_model, respond, open_state=open_state, close_state=close_state)


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """Everything the core needs to serve one plugin. Hand it over with ``register(spec)``."""

    name: str
    """Unique plugin name; also the key of the plugin's section under ``plugins:`` in the YAML."""
    service: ServiceDescriptor
    """The protobuf service, from the generated module: ``DESCRIPTOR.services_by_name["..."]``."""
    methods: Mapping[str, Method]
    """A :class:`Method` per RPC method name of ``service`` that the plugin serves; the others
    answer UNIMPLEMENTED (naming the plugin), so a plugin need not stub what it does not serve."""
    signature: Signature | None
    """The SavedModel signature every method's rows are fed to; None for a protocol plugin, which
    serves the model repository (see the module docstring)."""
    settings: type[BaseModel] | None = None
    """A pydantic model for the plugin's own ``settings:`` in the YAML (use ``extra="forbid"``)."""
    default_model: Callable[[], Path] | None = None
    """Returns the model directory to serve when the config names none (it may build it first)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Free-form metadata shown by ``streamserve plugins``."""
