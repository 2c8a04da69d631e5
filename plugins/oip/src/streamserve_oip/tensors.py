"""Request tensors to NumPy arrays and NumPy arrays to response tensors, typed or raw.

A tensor's elements travel either in the repeated field of its datatype (``contents.fp32_contents``
...) or as "raw" bytes: the flattened row-major elements, little-endian, with no padding, and for
BYTES each element prefixed by its length as a 4-byte little-endian integer. A request uses one way
for all its inputs, a response one way for all its outputs (the spec forbids mixing them).

Every problem found here is the client's: :class:`streamserve.InvalidArgument` naming the input.
Whether the arrays fit the model (names, dtypes, shapes) is the core's check, against the signature.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streamserve import InvalidArgument, Unimplemented
from streamserve_oip.datatypes import DTYPE_NAMES, RAW_ONLY, TYPED_FIELDS, datatype_of, numpy_dtype

__all__ = [
    "RawLayout",
    "decode_inputs",
    "decode_like",
    "fill_typed",
    "is_native",
    "output_datatype",
    "raw_contents",
    "raw_layout",
]

_LENGTH = struct.Struct("<I")
"""The length prefix of each element of a raw BYTES tensor."""

_LITTLE = sys.byteorder == "little"
"""Raw contents are little-endian: on a little-endian machine NumPy's native bytes are the wire's."""

_NATIVE_RAW: dict[str, np.dtype[Any]] = {
    datatype: numpy_dtype(datatype) for datatype in DTYPE_NAMES
    if _LITTLE and datatype not in ("BYTES", "BF16")
}
"""The datatypes whose raw contents are the bytes of a NumPy array as they are, on this machine."""

_UNSUPPORTED_PARAMETERS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def decode_inputs(request: Any) -> dict[str, npt.NDArray[Any]]:
    """The input arrays of a ``ModelInferRequest`` by name, from its typed or raw contents.

    Runs for every request: each field is read once (a protobuf field read costs about as much as
    a small NumPy call), and the uncommon cases are checked only when a cheap test says they may
    be there."""
    inputs = request.inputs
    raw: Sequence[bytes] = request.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise InvalidArgument(
            "raw_input_contents",
            f"has {len(raw)} entries for {len(inputs)} inputs; give one per input, in the "
            "order of inputs",
        )
    arrays: dict[str, npt.NDArray[Any]] = {}
    for index in range(len(inputs)):  # not iter(): protobuf's containers end it with an IndexError
        tensor = inputs[index]
        name = tensor.name
        if not name or name in arrays or tensor.parameters:
            _check_header(tensor, index, arrays)
        shape = tensor.shape[:]  # a list: a slice of the repeated field costs a third of tuple()
        if shape and min(shape) < 0:
            raise InvalidArgument(name, f"shape {list(shape)} has a negative dimension")
        datatype = tensor.datatype
        if datatype not in DTYPE_NAMES:
            raise InvalidArgument(
                name, f"datatype {datatype!r} is not an Open Inference Protocol datatype "
                      f"({', '.join(DTYPE_NAMES)})"
            )
        if raw:
            if tensor.HasField("contents") and tensor.contents.ListFields():
                raise InvalidArgument(
                    name, "has contents while the request has raw_input_contents; use one or the "
                          "other for every input"
                )
            dtype = _NATIVE_RAW.get(datatype)
            if dtype is None:  # BYTES, BF16, or a big-endian machine
                arrays[name] = _from_raw(name, datatype, shape, raw[index])
                continue
            data = raw[index]
            if len(data) != math.prod(shape) * dtype.itemsize:
                raise _raw_size_error(name, datatype, shape, len(data))
            # A view of the request's bytes, read-only as np.frombuffer's; one call, not two.
            arrays[name] = np.ndarray(shape, dtype, data)
        else:
            arrays[name] = _from_typed(name, datatype, shape, tensor.contents)
    return arrays


RawLayout = tuple[tuple[str, tuple[int, ...], np.dtype[Any], int], ...]
"""How a request's raw inputs decoded: name, shape, dtype and byte size per input, in order."""


def raw_layout(request: Any, arrays: Mapping[str, npt.NDArray[Any]]) -> RawLayout | None:
    """The layout of ``arrays``, which :func:`decode_inputs` made of ``request``, if every input
    came raw and is a view of its bytes (numbers, on a little-endian machine); else None.

    A request whose ``inputs`` equal this one's (names, datatypes, shapes, parameters: one
    comparison, in protobuf's C) and whose raw contents have these sizes decodes the same way:
    :func:`decode_like`, which reads no input's fields and repeats no check."""
    if not request.raw_input_contents:
        return None
    inputs = request.inputs
    if any(inputs[index].datatype not in _NATIVE_RAW for index in range(len(inputs))):
        return None
    return tuple((name, array.shape, array.dtype, array.nbytes) for name, array in arrays.items())


def decode_like(raw: Sequence[bytes], layout: RawLayout) -> dict[str, npt.NDArray[Any]] | None:
    """The input arrays of a request whose ``inputs`` equal those of the request ``layout`` was
    made of, from its raw contents ``raw``; None if their number or sizes differ."""
    if len(raw) != len(layout):
        return None
    if len(layout) == 1:  # the usual request, without the loop
        ((name, shape, dtype, size),) = layout
        data = raw[0]
        return {name: np.ndarray(shape, dtype, data)} if len(data) == size else None
    arrays = {}
    for index in range(len(layout)):
        name, shape, dtype, size = layout[index]
        data = raw[index]
        if len(data) != size:
            return None
        arrays[name] = np.ndarray(shape, dtype, data)
    return arrays


def _check_header(tensor: Any, index: int, arrays: dict[str, npt.NDArray[Any]]) -> None:
    """An input with no name, a name given twice, or parameters: refused unless the parameters
    are ones this server ignores."""
    if not tensor.name:
        raise InvalidArgument(f"inputs[{index}]", "has no name")
    if tensor.name in arrays:
        raise InvalidArgument(tensor.name, "is given twice")
    for parameter in _UNSUPPORTED_PARAMETERS:
        if parameter in tensor.parameters:
            raise InvalidArgument(tensor.name, f"parameter {parameter!r}: shared memory is not "
                                               "supported; send the tensor's contents in the request")


def output_datatype(name: str, dtype: np.dtype[Any]) -> str:
    """The OIP datatype of output ``name``'s arrays; UNIMPLEMENTED if the protocol has none."""
    datatype = datatype_of(dtype)
    if datatype is None:
        raise Unimplemented(
            f"output {name!r} is {dtype.name}, which the Open Inference Protocol has no datatype for"
        )
    return datatype


def is_native(dtype: np.dtype[Any]) -> bool:
    """Whether arrays of ``dtype`` are their own raw contents (``tobytes()``): numbers, on a
    little-endian machine, in its byte order."""
    return _LITTLE and dtype.isnative and dtype.kind not in "OSU"


def raw_contents(array: npt.NDArray[Any]) -> bytes:
    """``array``'s elements as a tensor's raw contents."""
    if is_native(array.dtype):
        return array.tobytes()  # C order
    return _to_raw(datatype_of(array.dtype) or "", array)


def fill_typed(contents: Any, datatype: str, array: npt.NDArray[Any]) -> None:
    """Put ``array``'s elements in the typed field of ``contents`` (an ``InferTensorContents``)."""
    if datatype in RAW_ONLY:  # callers choose raw for a response with such an output
        raise AssertionError(f"{datatype} output needs raw contents")
    field = getattr(contents, TYPED_FIELDS[datatype])
    flat = array.reshape(-1)
    if datatype == "BYTES":
        field.extend(_as_bytes(value) for value in flat)
    else:
        field.extend(flat.tolist())


def _from_typed(name: str, datatype: str, shape: list[int], contents: Any) -> npt.NDArray[Any]:
    count = math.prod(shape)
    given = [field.name for field, _ in contents.ListFields()]
    wanted = TYPED_FIELDS.get(datatype)
    if wanted is None:
        if count == 0:
            return np.zeros(shape, numpy_dtype(datatype))
        raise InvalidArgument(name, f"{datatype} has no typed contents field: send it in "
                                    "raw_input_contents")
    if stray := [field for field in given if field != wanted]:
        raise InvalidArgument(name, f"datatype {datatype} takes contents.{wanted}, the request "
                                    f"sets contents.{stray[0]}")
    values = getattr(contents, wanted)
    if len(values) != count:
        raise InvalidArgument(name, f"shape {list(shape)} needs {count} elements, "
                                    f"contents.{wanted} has {len(values)}")
    dtype = numpy_dtype(datatype)
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    wide = np.array(values, dtype=_field_dtype(wanted))
    narrow = wide.astype(dtype)
    if wide.dtype != dtype and not np.array_equal(narrow, wide):
        raise InvalidArgument(name, f"contents.{wanted} has values out of the range of {datatype}")
    return narrow.reshape(shape)


def _field_dtype(field: str) -> str:
    return {
        "bool_contents": "bool",
        "int_contents": "int32",
        "int64_contents": "int64",
        "uint_contents": "uint32",
        "uint64_contents": "uint64",
        "fp32_contents": "float32",
        "fp64_contents": "float64",
    }[field]


def _from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> npt.NDArray[Any]:
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_from_raw(name, raw, count).reshape(shape)
    dtype = numpy_dtype(datatype)
    if len(raw) != count * dtype.itemsize:
        raise _raw_size_error(name, datatype, shape, len(raw))
    # The wire is little-endian whatever this machine is.
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def _raw_size_error(name: str, datatype: str, shape: list[int], size: int) -> InvalidArgument:
    needed = math.prod(shape) * numpy_dtype(datatype).itemsize
    return InvalidArgument(name, f"shape {list(shape)} of {datatype} needs {needed} bytes of raw "
                                 f"contents, got {size}")


def _bytes_from_raw(name: str, raw: bytes, count: int) -> npt.NDArray[Any]:
    elements = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + _LENGTH.size > len(raw):
            raise InvalidArgument(name, f"raw BYTES contents end after {index} of {count} elements")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise InvalidArgument(name, f"raw BYTES element {index} says {length} bytes, only "
                                        f"{len(raw) - offset} follow")
        elements[index] = raw[offset:offset + length]
        offset += length
    if offset != len(raw):
        raise InvalidArgument(name, f"raw BYTES contents have {len(raw) - offset} bytes after the "
                                    f"{count} elements the shape needs")
    return elements


def _to_raw(datatype: str, array: npt.NDArray[Any]) -> bytes:
    if datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(b)) + b for b in map(_as_bytes, array.reshape(-1)))
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _as_bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
