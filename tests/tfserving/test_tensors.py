"""TensorProto <-> NumPy without TensorFlow agrees with TensorFlow's own make_tensor_proto/make_ndarray."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from streamserve import InvalidArgument
from streamserve_tfserving.apis import TensorProto
from streamserve_tfserving.tensors import MAX_FILLED_ELEMENTS, read_tensor, write_tensor

NUMERIC = ["float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16",
           "uint32", "uint64", "bool", "complex64", "complex128"]


def examples(dtype: str) -> list[Any]:
    """A matrix (tensor_content in make_tensor_proto) and a single value (a typed field)."""
    return [np.arange(6).astype(dtype).reshape(2, 3), np.ones((1, 1), dtype=dtype)]


def typed(dtype: str, shape: list[int], field: str, values: list[Any]) -> Any:
    tensor = TensorProto(dtype=tf.as_dtype(dtype).as_datatype_enum)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    getattr(tensor, field).extend(values)
    return tensor


@pytest.mark.parametrize("dtype", NUMERIC)
def test_numbers_read_and_write_like_tensorflow(dtype: str) -> None:
    for array in examples(dtype):
        read = read_tensor(tf.make_tensor_proto(array), "t")
        assert read.dtype == array.dtype
        np.testing.assert_array_equal(read, array)
        written = TensorProto()
        write_tensor(written, array)
        back = tf.make_ndarray(written)
        assert back.dtype == array.dtype
        np.testing.assert_array_equal(back, array)


def test_strings_read_and_write_like_tensorflow() -> None:
    array = np.array([[b"a", b""], ["\u00e9".encode(), b"\x00\xff"]], dtype=object)
    read = read_tensor(tf.make_tensor_proto(array), "t")
    assert read.dtype == object and read.shape == (2, 2)
    assert read.tolist() == array.tolist()
    written = TensorProto()
    write_tensor(written, array)
    assert tf.make_ndarray(written).tolist() == array.tolist()


@pytest.mark.parametrize("tensor", [
    typed("float32", [4], "float_val", [1.0, 2.0]),
    typed("int32", [2, 2], "int_val", [5]),
    typed("float64", [3], "double_val", []),
    typed("string", [3], "string_val", [b"q"]),
    typed("float16", [2], "half_val", [int(np.float16(1.5).view(np.uint16))]),
    typed("complex64", [2], "scomplex_val", [1.0, -1.0]),
    typed("bool", [3], "bool_val", [True, False]),
], ids=lambda tensor: str(tensor.dtype))
def test_fewer_values_fill_the_shape_as_tensorflow_does(tensor: Any) -> None:
    expected = tf.make_ndarray(tensor)
    read = read_tensor(tensor, "t")
    assert read.dtype == expected.dtype
    assert read.tolist() == expected.tolist()


@pytest.mark.parametrize("tensor, words", [
    (typed("float32", [2], "float_val", [1.0, 2.0, 3.0]), "float_val has 3 values"),
    (typed("complex64", [1], "scomplex_val", [1.0]), "odd number"),
    (typed("float32", [-1], "float_val", [1.0]), "negative"),
    (typed("float32", [MAX_FILLED_ELEMENTS + 1], "float_val", [1.0]), "at most"),
    (TensorProto(dtype=tf.resource.as_datatype_enum), "DT_RESOURCE"),
    (TensorProto(dtype=tf.float32.as_datatype_enum, tensor_content=b"\0" * 8), "tensor_content has 8 bytes"),
], ids=["too many", "half a complex", "negative dim", "huge fill", "resource", "content size"])
def test_bad_tensors_are_invalid_arguments_naming_the_field(tensor: Any, words: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        read_tensor(tensor, "t")
    assert raised.value.field == "t"
    assert words in raised.value.reason


def test_unknown_rank_is_invalid() -> None:
    tensor = typed("float32", [], "float_val", [1.0])
    tensor.tensor_shape.unknown_rank = True
    with pytest.raises(InvalidArgument, match="unknown_rank"):
        read_tensor(tensor, "t")
