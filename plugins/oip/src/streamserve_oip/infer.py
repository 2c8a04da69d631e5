"""ModelInfer and ModelStreamInfer: request tensors in, the model's rows through the core, outputs out.

The core resolves the model the request names (NOT_FOUND, UNAVAILABLE), checks the input arrays
against its signature (INVALID_ARGUMENT naming the input), batches and runs it; this module only
translates. A ModelInfer call's state is the repository's :class:`streamserve.Models` view; a
ModelStreamInfer call's is a :class:`StreamState` around it.

Outputs go back raw (``raw_output_contents``) when the request sent its inputs raw, or asks for it
(``binary_data_output`` on the request, ``binary_data`` on a requested output: Triton's and KServe's
names), or an output is a 16-bit float, which has no typed field; otherwise typed, in
``contents``. Triton's clients send raw and read raw.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy.typing as npt

from streamserve import Infer, InvalidArgument, ModelInfo, Models, Outputs
from streamserve.errors import StreamserveError
from streamserve_oip._proto import grpc_inference_pb2 as pb2
from streamserve_oip.datatypes import RAW_ONLY
from streamserve_oip.tensors import (
    RawLayout,
    decode_inputs,
    decode_like,
    fill_typed,
    is_native,
    output_datatype,
    raw_contents,
    raw_layout,
)

__all__ = [
    "StreamState",
    "postprocess",
    "preprocess",
    "preprocess_stream",
    "stream_error",
]


def preprocess(request: Any, models: Models) -> Infer:
    """A ``ModelInferRequest`` -> the rows for the model it names.

    The model itself (NOT_FOUND, UNAVAILABLE) and the rows against its signature are the core's
    checks, when it routes the rows; only requested outputs need the model's signature here."""
    if not request.model_name:
        raise InvalidArgument("model_name", "is empty: name the model to run")
    if not request.outputs:
        # Positional: keywords make a dataclass's __init__ cost twice as much, on every request.
        return Infer(request.model_name, decode_inputs(request), request.model_version)
    info = models.get(request.model_name, request.model_version)  # NotFound: unknown model/version
    rows = decode_inputs(request)
    _check_requested_outputs(request, info)
    return Infer(request.model_name, rows, request.model_version)


class StreamState:
    """A ModelStreamInfer call's state: the repository view, and how its last request's inputs
    decoded. A stream's requests usually differ only in their contents and id, so a request whose
    ``inputs`` equal the last one's is decoded as it was (:func:`decode_like`)."""

    __slots__ = ("inputs", "layout", "models")

    def __init__(self, models: Models) -> None:
        self.models = models
        self.inputs: Any = None
        """The ``inputs`` of the last request that decoded with a layout (a protobuf container)."""
        self.layout: RawLayout = ()


def preprocess_stream(request: Any, state: StreamState) -> Infer:
    """:func:`preprocess` for a message of a stream; one like the last decodes as it did."""
    inputs = request.inputs
    if inputs == state.inputs and not request.outputs:
        arrays = decode_like(request.raw_input_contents, state.layout)
        if arrays is not None:
            return Infer(request.model_name, arrays, request.model_version)
    infer = preprocess(request, state.models)
    layout = raw_layout(request, infer.rows)
    state.inputs, state.layout = (inputs, layout) if layout is not None else (None, ())
    return infer


def postprocess(outputs: Outputs, request: Any, state: Models | StreamState) -> bytes | Any:
    """The model's outputs for the request -> its ``ModelInferResponse``; for a message of a
    ModelStreamInfer call (whose state is a :class:`StreamState`), in a
    ``ModelStreamInferResponse`` (an error here is then reported in-band: the core hands it to
    :func:`stream_error`). The outputs are those the request asks for; the response is encoded
    already when they go back raw.

    What does not change from one response to the next (the model's name and version, each
    output's name, datatype and shape) is encoded once (:func:`_header`). A raw response is those
    bytes with the id and the contents appended: protobuf's encoding of a message is that of its
    fields one after the other, in any order, so no message object is made, filled and encoded
    per response. A typed one starts as a parse of them. Every field read of the request builds a
    Python object, so each is read once, and the usual response (one output, the request choosing
    nothing) takes no loop."""
    stream = type(state) is StreamState
    asked = request.outputs
    parameters = request.parameters
    arrays = _selected(outputs, asked) if asked else outputs
    if len(arrays) == 1:
        ((name, array),) = arrays.items()
        layout: tuple[tuple[str, Any, tuple[int, ...]], ...] = ((name, array.dtype, array.shape),)
    else:
        layout = tuple([(name, array.dtype, array.shape) for name, array in arrays.items()])
    header, form = _header(request.model_name, outputs.model_version, layout)
    raw = (_asks_raw(request, asked, parameters) if asked or parameters
           else bool(request.raw_input_contents))  # as the inputs came
    if form is _Form.NATIVE and raw and len(arrays) == 1:
        contents: Sequence[bytes] = (array.tobytes(),)  # C order
    elif raw or form is _Form.RAW_ONLY:
        contents = [raw_contents(array) for array in arrays.values()]
    else:
        return _typed(stream, header, request.id, arrays)
    # The header's fields, the id, the raw contents (lengths under 128 are one byte: no call).
    parts = [header]
    id = request.id
    if id:  # proto3 leaves an empty string out
        data = id.encode()
        size = len(data)
        parts += (_ID, _ONE_BYTE[size] if size < 0x80 else _varint(size), data)
    for data in contents:
        size = len(data)
        parts += (_RAW_OUTPUT, _ONE_BYTE[size] if size < 0x80 else _varint(size), data)
    response = b"".join(parts)
    if not stream:
        return response
    size = len(response)
    return b"".join((_INFER_RESPONSE, _ONE_BYTE[size] if size < 0x80 else _varint(size), response))


def _typed(stream: bool, header: bytes, id: str, arrays: Mapping[str, npt.NDArray[Any]]) -> Any:
    """A response with typed contents, as a message (in a ``ModelStreamInferResponse`` if
    ``stream``)."""
    message: Any
    if stream:
        message = pb2.ModelStreamInferResponse()
        response = message.infer_response
        response.MergeFromString(header)
    else:
        message = response = pb2.ModelInferResponse.FromString(header)
    response.id = id
    tensors = response.outputs
    for index, array in enumerate(arrays.values()):
        tensor = tensors[index]
        fill_typed(tensor.contents, tensor.datatype, array)
    return message


_ID = b"\x1a"
"""The key of ``ModelInferResponse.id`` on the wire (field 3, length-delimited)."""
_RAW_OUTPUT = b"\x32"
"""The key of one ``ModelInferResponse.raw_output_contents`` (field 6, length-delimited)."""
_INFER_RESPONSE = b"\x12"
"""The key of ``ModelStreamInferResponse.infer_response`` (field 2, length-delimited)."""
_ONE_BYTE = [bytes((size,)) for size in range(0x80)]
"""The varints of 0-127: one byte each."""


def _varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf varint: seven bits a byte, least significant first."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _Form(enum.Enum):
    """How a response's outputs may travel."""

    TYPED = "typed or raw, as the request asks"
    NATIVE = "typed or raw; raw is NumPy's own bytes (little-endian numbers)"
    RAW_ONLY = "raw only: an output has no typed field (16-bit floats)"


@functools.lru_cache(maxsize=1024)
def _header(
    model: str, version: str, layout: tuple[tuple[str, Any, tuple[int, ...]], ...]
) -> tuple[bytes, _Form]:
    """The bytes of a ``ModelInferResponse`` with only the fields that are the same for every
    response of this model, version and output layout (name, NumPy dtype, shape per output); and
    how its outputs may travel. (Cached: a stream's responses share one.)"""
    response = pb2.ModelInferResponse(model_name=model, model_version=version)
    datatypes = []
    for name, dtype, shape in layout:
        datatype = output_datatype(name, dtype)  # UNIMPLEMENTED, not cached: raised every time
        response.outputs.add(name=name, datatype=datatype, shape=shape)
        datatypes.append(datatype)
    if any(datatype in RAW_ONLY for datatype in datatypes):
        form = _Form.RAW_ONLY
    elif all(is_native(dtype) for _, dtype, _ in layout):
        form = _Form.NATIVE
    else:
        form = _Form.TYPED
    return response.SerializeToString(), form


def stream_error(error: Exception, request: Any, state: StreamState) -> Any:
    """A request of a ModelStreamInfer stream that failed: Triton reports it in the response's
    ``error_message`` and the stream goes on. The message starts with the gRPC status name the same
    error would have had on ModelInfer, and the response echoes the request's id to match it."""
    code = error.code.name if isinstance(error, StreamserveError) else "INTERNAL"
    return pb2.ModelStreamInferResponse(
        error_message=f"{code}: {error}",
        infer_response=pb2.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        ),
    )


def _check_requested_outputs(request: Any, info: ModelInfo) -> None:
    known = {spec.name for spec in info.signature.outputs} if info.signature else None
    for index, output in enumerate(request.outputs):
        name = output.name or f"outputs[{index}]"
        if known is not None and output.name not in known:
            raise InvalidArgument(name, f"model {info.name!r} has no such output; its outputs are "
                                        f"{', '.join(sorted(known))}")
        if "classification" in output.parameters:
            raise InvalidArgument(name, "parameter 'classification' is not supported: ask for the "
                                        "output itself")
        if "shared_memory_region" in output.parameters:
            raise InvalidArgument(name, "parameter 'shared_memory_region': shared memory is not "
                                        "supported; outputs come back in the response")


def _selected(outputs: Outputs, asked: Any) -> Mapping[str, npt.NDArray[Any]]:
    """The outputs the request asks for (all, if it names none), in the order it names them."""
    if not asked:
        return outputs
    return {output.name: outputs[output.name] for output in asked}


def _asks_raw(request: Any, asked: Any, parameters: Any) -> bool:
    """Whether the outputs go back raw: as the request asks, else as its inputs came."""
    if "binary_data_output" in parameters:
        return bool(parameters["binary_data_output"].bool_param)
    chosen = [output.parameters["binary_data"].bool_param for output in asked
              if "binary_data" in output.parameters]
    if chosen:
        return any(chosen)
    return bool(request.raw_input_contents)
