"""Open Inference Protocol datatypes and the NumPy/TensorFlow dtypes they stand for.

The protocol names tensor element types with strings (``"FP32"``, ``"BYTES"``); signatures name
them as NumPy/TensorFlow do (``"float32"``, ``"string"``). A BYTES tensor is an object array of
``bytes`` on our side, as TensorFlow hands string tensors out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DTYPE_NAMES",
    "RAW_ONLY",
    "TYPED_FIELDS",
    "config_data_type",
    "datatype_of",
    "numpy_dtype",
]

DTYPE_NAMES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BF16": "bfloat16",
    "BYTES": "string",
}
"""Every OIP datatype -> the signature dtype name (TensorFlow's) it carries."""

_DATATYPES = {name: datatype for datatype, name in DTYPE_NAMES.items()}

TYPED_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The ``InferTensorContents`` field of each datatype that has one. The narrow integers share the
32-bit fields, so their values are range-checked when read."""

RAW_ONLY = frozenset(DTYPE_NAMES) - frozenset(TYPED_FIELDS)
"""Datatypes with no typed field (16-bit floats): they travel as raw contents only."""


def datatype_of(dtype: str | np.dtype[Any]) -> str | None:
    """The OIP datatype of a signature dtype name or a NumPy dtype; None if the protocol has none
    (complex numbers, TensorFlow resources and variants)."""
    known = _BY_DTYPE.get(dtype) if isinstance(dtype, np.dtype) else None
    if known is not None:  # the common dtypes, without building dtype.name on every response
        return known
    if isinstance(dtype, np.dtype):
        if dtype.kind in "OSU":  # objects (TensorFlow hands strings out as bytes objects), bytes, str
            return "BYTES"
        dtype = dtype.name
    return _DATATYPES.get(dtype)


_BY_DTYPE: dict[np.dtype[Any], str] = {
    np.dtype(name): datatype for datatype, name in DTYPE_NAMES.items()
    if name not in ("string", "bfloat16")
}
"""The native-endian NumPy dtypes -> their datatype: one dict lookup per output array."""
_NUMPY: dict[str, np.dtype[Any]] = {datatype: dtype for dtype, datatype in _BY_DTYPE.items()}


def config_data_type(datatype: str | None) -> str:
    """The name of ``datatype`` in Triton's model configuration enum ``DataType``: ``TYPE_`` and the
    same name, except that BYTES is ``TYPE_STRING``; ``TYPE_INVALID`` for None (no OIP datatype)."""
    if datatype is None:
        return "TYPE_INVALID"
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The NumPy dtype that holds ``datatype``'s elements (object for BYTES)."""
    known = _NUMPY.get(datatype)
    if known is not None:
        return known
    name = DTYPE_NAMES[datatype]
    if name == "string":
        return np.dtype(object)
    if name == "bfloat16":
        # NumPy has no bfloat16; ml_dtypes (a TensorFlow dependency, so always here when models
        # are) adds it under the name TensorFlow uses. Imported only when a BF16 tensor shows up.
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)
