"""TensorProto <-> NumPy, the way TensorFlow reads and TF Serving writes them, without TensorFlow.

Reading follows ``Tensor::FromProto`` (what TF Serving runs on a request): ``tensor_content`` holds
the raw little-endian values; otherwise the typed field of the dtype (``float_val``, ``int64_val``...)
does, and fewer values than the shape holds are completed with the last one, so a single value fills
the whole shape (no value at all: zeros). Unlike TensorFlow, more values than the shape holds are an
error rather than silently dropped. Writing follows TF Serving's responses: ``tensor_content`` bytes,
except for strings, which only ``string_val`` can carry.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from streamserve import InvalidArgument
from streamserve_tfserving.apis import DataType

__all__ = ["MAX_FILLED_ELEMENTS", "STRING", "Array", "datatype", "read_tensor", "write_tensor"]

Array = npt.NDArray[Any]

STRING = "string"
"""The dtype name streamserve's signatures use for tf.string (NumPy object arrays of bytes)."""

MAX_FILLED_ELEMENTS = 1 << 24
"""Most elements a tensor may have when the request does not carry them all (a value repeated to fill
the shape): a 20-byte message must not make the server allocate gigabytes."""

_DTYPE_BY_DATATYPE = {
    "DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16",
    "DT_INT8": "int8", "DT_INT16": "int16", "DT_INT32": "int32", "DT_INT64": "int64",
    "DT_UINT8": "uint8", "DT_UINT16": "uint16", "DT_UINT32": "uint32", "DT_UINT64": "uint64",
    "DT_BOOL": "bool", "DT_COMPLEX64": "complex64", "DT_COMPLEX128": "complex128",
    "DT_STRING": STRING,
}
"""The TensorFlow dtypes served, by DataType name -> NumPy dtype name. Not served: bfloat16 and the
float8 types (no NumPy dtype without ml_dtypes), quantized types, resources and variants."""

_DATATYPE_BY_DTYPE = {
    dtype: DataType.values_by_name[name].number for name, dtype in _DTYPE_BY_DATATYPE.items()
}


_TYPED_VALUES = {
    "float32": ("float_val", "float32"),
    "float64": ("double_val", "float64"),
    "float16": ("half_val", "int32"),
    "int8": ("int_val", "int32"),
    "int16": ("int_val", "int32"),
    "int32": ("int_val", "int32"),
    "uint8": ("int_val", "int32"),
    "uint16": ("int_val", "int32"),
    "int64": ("int64_val", "int64"),
    "uint32": ("uint32_val", "uint32"),
    "uint64": ("uint64_val", "uint64"),
    "bool": ("bool_val", "bool"),
    "complex64": ("scomplex_val", "float32"),
    "complex128": ("dcomplex_val", "float64"),
    STRING: ("string_val", "object"),
}
"""Where a dtype's values are when ``tensor_content`` is empty, and the field's own element type."""


def _typed_values(tensor: Any, dtype: str) -> tuple[str, Array]:
    """The typed field holding ``tensor``'s values, and those values as an array of ``dtype``."""
    name, wire = _TYPED_VALUES[dtype]
    values = getattr(tensor, name)
    if dtype == STRING:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return name, array
    array = np.asarray(values, dtype=wire)
    if dtype == "float16":  # half_val carries each float16's bit pattern in an int32
        return name, array.astype(np.uint16).view(np.float16)
    if dtype.startswith("complex"):  # real and imaginary parts interleaved
        if len(array) % 2:
            raise ValueError(f"{name} has an odd number of values: they come in (real, imaginary) pairs")
        return name, array.view(dtype)
    return name, array.astype(dtype, copy=False)  # narrow integers travel in int_val: cast, as TF does


def datatype(dtype: str) -> int:
    """The ``tensorflow.DataType`` number of a NumPy/streamserve dtype name (``"float32"`` -> DT_FLOAT)."""
    try:
        return _DATATYPE_BY_DTYPE[dtype]
    except KeyError:
        raise TypeError(f"dtype {dtype!r} has no TensorFlow DataType served here") from None


def read_tensor(tensor: Any, field: str) -> Array:
    """The array a ``TensorProto`` holds; InvalidArgument naming ``field`` if it cannot be read."""
    dtype = _dtype_of(tensor, field)
    shape = _shape_of(tensor, field)
    count = math.prod(shape)
    if tensor.tensor_content and dtype != STRING:
        itemsize = np.dtype(dtype).itemsize
        if len(tensor.tensor_content) != count * itemsize:
            raise InvalidArgument(field, f"tensor_content has {len(tensor.tensor_content)} bytes but "
                                  f"shape {list(shape)} of {dtype} needs {count * itemsize}")
        return np.frombuffer(tensor.tensor_content, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    try:
        name, values = _typed_values(tensor, dtype)
    except ValueError as exc:
        raise InvalidArgument(field, str(exc)) from None
    given = len(values)
    if given == count:
        return values.reshape(shape)
    if given > count:
        raise InvalidArgument(field, f"{name} has {given} values but shape {list(shape)} holds {count}")
    if count > MAX_FILLED_ELEMENTS:
        raise InvalidArgument(field, f"shape {list(shape)} has {count} elements but {name} gives only "
                              f"{given}; a shape filled from fewer values may have at most "
                              f"{MAX_FILLED_ELEMENTS} elements")
    filler = values[-1:] if given else _zeros(dtype)
    return np.concatenate([values, np.repeat(filler, count - given)]).reshape(shape)


def write_tensor(target: Any, value: Array) -> None:
    """Fill the ``TensorProto`` ``target`` with ``value`` as TF Serving answers: dtype, shape, and
    ``tensor_content`` (``string_val`` for strings)."""
    array = np.asarray(value)
    is_string = array.dtype.kind in "OSU"
    target.dtype = datatype(STRING if is_string else array.dtype.name)
    for size in array.shape:
        target.tensor_shape.dim.add(size=size)
    if is_string:
        target.string_val.extend(_as_bytes(item) for item in array.ravel())
    else:
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        target.tensor_content = np.ascontiguousarray(little).tobytes()


def _dtype_of(tensor: Any, field: str) -> str:
    described = DataType.values_by_number.get(tensor.dtype)
    name = described.name if described is not None else str(tensor.dtype)
    try:
        return _DTYPE_BY_DATATYPE[name]
    except KeyError:
        served = ", ".join(sorted(_DTYPE_BY_DATATYPE))
        raise InvalidArgument(field, f"dtype {name} is not supported; supported: {served}") from None


def _shape_of(tensor: Any, field: str) -> tuple[int, ...]:
    if tensor.tensor_shape.unknown_rank:
        raise InvalidArgument(field, "tensor_shape.unknown_rank is set; a request tensor needs its shape")
    shape = tuple(dim.size for dim in tensor.tensor_shape.dim)
    if any(size < 0 for size in shape):
        raise InvalidArgument(field, f"tensor_shape {list(shape)} has a negative dimension")
    return shape


def _zeros(dtype: str) -> Array:
    return np.array([b""], dtype=object) if dtype == STRING else np.zeros(1, dtype=dtype)


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise TypeError(f"a string tensor holds a {type(item).__name__}, not bytes")
