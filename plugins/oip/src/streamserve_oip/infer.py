"""ModelInfer and ModelStreamInfer: request tensors in, the model's rows through the core, outputs out.

The core resolves the model the request names (NOT_FOUND, UNAVAILABLE), checks the input arrays
against its signature (INVALID_ARGUMENT naming the input), batches and runs it; this module only
translates. The per-call state is the repository's :class:`streamserve.Models` view.

Outputs go back raw (``raw_output_contents``) when the request sent its inputs raw, or asks for it
(``binary_data_output`` on the request, ``binary_data`` on a requested output: Triton's and KServe's
names), or an output is a 16-bit float, which has no typed field; otherwise typed, in
``contents``. Triton's clients send raw and read raw.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy.typing as npt

from streamserve import Infer, InvalidArgument, ModelInfo, Models, Outputs
from streamserve.errors import StreamserveError
from streamserve_oip._proto import grpc_inference_pb2 as pb2
from streamserve_oip.datatypes import RAW_ONLY, datatype_of
from streamserve_oip.tensors import decode_inputs, encode_output

__all__ = ["postprocess", "postprocess_stream", "preprocess", "stream_error"]


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


def postprocess(outputs: Outputs, request: Any, models: Models) -> Any:
    """The model's outputs for the request -> its ``ModelInferResponse``."""
    response = pb2.ModelInferResponse()
    _fill(response, outputs, request)
    return response


def postprocess_stream(outputs: Outputs, request: Any, models: Models) -> Any:
    """As :func:`postprocess`, wrapped for the stream; an error here is reported in-band too."""
    message = pb2.ModelStreamInferResponse()
    try:
        _fill(message.infer_response, outputs, request)  # in place: no copy of the response
    except StreamserveError as exc:
        return stream_error(exc, request, models)
    return message


def _fill(response: Any, outputs: Outputs, request: Any) -> None:
    """Fill an empty ``ModelInferResponse`` with the outputs the request asks for."""
    response.model_name = request.model_name
    response.model_version = outputs.model_version
    response.id = request.id
    asked = request.outputs  # each read of a repeated field builds a view: once per response
    arrays = _selected(outputs, asked)
    raw = _wants_raw(request, asked, arrays)
    add, contents = response.outputs.add, response.raw_output_contents
    for name, array in arrays.items():
        encoded = encode_output(add(name=name), array, raw=raw)
        if encoded is not None:
            contents.append(encoded)


def stream_error(error: Exception, request: Any, models: Models) -> Any:
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


def _wants_raw(request: Any, asked: Any, arrays: Mapping[str, npt.NDArray[Any]]) -> bool:
    """Raw if the request asks for it, else as its inputs came; always for a 16-bit float output."""
    return _asks_raw(request, asked) or any(
        datatype_of(array.dtype) in RAW_ONLY for array in arrays.values()
    )


def _asks_raw(request: Any, asked: Any) -> bool:
    if asked or request.parameters:
        if "binary_data_output" in request.parameters:
            return bool(request.parameters["binary_data_output"].bool_param)
        chosen = [output.parameters["binary_data"].bool_param for output in asked
                  if "binary_data" in output.parameters]
        if chosen:
            return any(chosen)
    return bool(request.raw_input_contents)
