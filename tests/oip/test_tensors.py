"""OIP tensors <-> NumPy, without a server: every datatype both ways, and the malformed ones."""

from __future__ import annotations

import struct
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from streamserve import InvalidArgument, Unimplemented
from streamserve_oip._proto import grpc_inference_pb2 as pb2
from streamserve_oip.datatypes import DTYPE_NAMES, RAW_ONLY, TYPED_FIELDS, datatype_of, numpy_dtype
from streamserve_oip.tensors import decode_inputs, fill_typed, output_datatype, raw_contents

SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 200, 255],
    "UINT16": [0, 1, 60000, 7],
    "UINT32": [0, 1, 2**32 - 1, 7],
    "UINT64": [0, 1, 2**64 - 1, 7],
    "INT8": [-128, 0, 127, 5],
    "INT16": [-32768, 0, 32767, 5],
    "INT32": [-(2**31), 0, 2**31 - 1, 5],
    "INT64": [-(2**63), 0, 2**63 - 1, 5],
    "FP16": [0.5, -2.0, 65504.0, 1.0],
    "FP32": [0.25, -1.5, 3.0e38, 1.0],
    "FP64": [0.1, -1e300, 2.5, 1.0],
    "BF16": [0.5, -2.0, 256.0, 1.0],
    "BYTES": [b"", b"a", b"\x00\xff", "é".encode()],
}


def sample(datatype: str) -> np.ndarray:
    values = SAMPLES[datatype]
    if datatype == "BYTES":
        flat = np.empty(4, dtype=object)
        flat[:] = values
        return flat.reshape(2, 2)
    return np.array(values, dtype=numpy_dtype(datatype)).reshape(2, 2)


def encode_output(tensor: Any, array: np.ndarray, *, raw: bool) -> bytes | None:
    """Fill an output tensor as the plugin's responses do: the raw contents, or typed ones."""
    tensor.datatype = output_datatype(tensor.name, array.dtype)
    tensor.shape.extend(array.shape)
    if raw:
        return raw_contents(array)
    fill_typed(tensor.contents, tensor.datatype, array)
    return None


def request_with(tensor: np.ndarray, datatype: str, *, raw: bool) -> pb2.ModelInferRequest:
    """Encode through an output tensor (the plugin's own encoder), then move it to an input."""
    out = pb2.ModelInferResponse.InferOutputTensor(name="t")
    contents = encode_output(out, tensor, raw=raw)
    assert out.datatype == datatype
    request = pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="t", datatype=out.datatype, shape=out.shape).contents.CopyFrom(out.contents)
    if contents is not None:
        request.raw_input_contents.append(contents)
    return request


def test_every_datatype_has_a_dtype_and_back() -> None:
    assert set(DTYPE_NAMES) == set(SAMPLES)
    for datatype, name in DTYPE_NAMES.items():
        assert datatype_of(name) == datatype
        assert datatype_of(numpy_dtype(datatype)) == datatype
    assert set(RAW_ONLY) == {"FP16", "BF16"}
    assert datatype_of("complex64") is None


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_round_trip(datatype: str, raw: bool) -> None:
    if datatype in RAW_ONLY and not raw:
        pytest.skip("16-bit floats travel raw only")
    tensor = sample(datatype)
    decoded = decode_inputs(request_with(tensor, datatype, raw=raw))["t"]
    assert decoded.dtype == tensor.dtype and decoded.shape == (2, 2)
    assert decoded.tolist() == tensor.tolist()


def test_raw_is_little_endian_and_bytes_are_length_prefixed() -> None:
    out = pb2.ModelInferResponse.InferOutputTensor(name="t")
    assert encode_output(out, np.array([1, 256], dtype=">i4"), raw=True) == b"\x01\0\0\0\0\x01\0\0"
    strings = np.array([b"ab", b""], dtype=object)
    assert encode_output(out, strings, raw=True) == b"\x02\0\0\0ab\0\0\0\0"
    assert ml_dtypes.bfloat16 == numpy_dtype("BF16")


def test_typed_outputs_use_the_field_of_their_datatype() -> None:
    for datatype in set(SAMPLES) - RAW_ONLY:
        out = pb2.ModelInferResponse.InferOutputTensor(name="t")
        assert encode_output(out, sample(datatype), raw=False) is None
        assert [field.name for field, _ in out.contents.ListFields()] == [TYPED_FIELDS[datatype]]
        assert list(out.shape) == [2, 2]


def test_an_output_the_protocol_cannot_name_is_unimplemented() -> None:
    with pytest.raises(Unimplemented, match="complex64"):
        encode_output(pb2.ModelInferResponse.InferOutputTensor(name="c"), np.zeros(1, np.complex64), raw=True)


def raw_request(datatype: str, shape: list[int], raw: bytes) -> pb2.ModelInferRequest:
    request = pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="t", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


def typed_request(datatype: str, shape: list[int], field: str, values: list[Any]) -> pb2.ModelInferRequest:
    request = pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="t", datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return request


@pytest.mark.parametrize(("request_", "reason"), [
    (raw_request("FP32", [2], b"\0" * 7), "needs 8 bytes of raw contents, got 7"),
    (raw_request("BYTES", [2], struct.pack("<I", 1) + b"a"), "end after 1 of 2 elements"),
    (raw_request("BYTES", [1], struct.pack("<I", 5) + b"abc"), "says 5 bytes, only 3 follow"),
    (raw_request("BYTES", [1], struct.pack("<I", 1) + b"ab"), "1 bytes after the 1 elements"),
    (raw_request("FP32", [-1], b""), "negative dimension"),
    (typed_request("INT8", [1], "int_contents", [300]), "out of the range of INT8"),
    (typed_request("UINT16", [1], "uint_contents", [70000]), "out of the range of UINT16"),
    (typed_request("FP16", [1], "fp32_contents", [1.0]), "FP16 has no typed contents field"),
    (typed_request("FP32", [3], "fp32_contents", [1.0, 2.0]), "needs 3 elements"),
    (typed_request("INT64", [1], "int_contents", [1]), "takes contents.int64_contents"),
    (typed_request("STRING", [1], "bytes_contents", [b"a"]), "not an Open Inference Protocol datatype"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_malformed_tensors_are_invalid_arguments_naming_the_input(
    request_: pb2.ModelInferRequest, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        decode_inputs(request_)
    assert raised.value.field == "t"
    assert reason in raised.value.reason


def test_an_input_given_twice_or_unnamed_is_refused() -> None:
    twice = typed_request("FP32", [1], "fp32_contents", [1.0])
    twice.inputs.append(twice.inputs[0])
    with pytest.raises(InvalidArgument, match="given twice"):
        decode_inputs(twice)
    unnamed = typed_request("FP32", [1], "fp32_contents", [1.0])
    unnamed.inputs[0].name = ""
    with pytest.raises(InvalidArgument, match=r"inputs\[0\]: has no name"):
        decode_inputs(unnamed)


def test_shared_memory_is_refused() -> None:
    request = typed_request("FP32", [1], "fp32_contents", [1.0])
    request.inputs[0].parameters["shared_memory_region"].string_param = "region"
    with pytest.raises(InvalidArgument, match="shared memory is not supported"):
        decode_inputs(request)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("id_length", [0, 5, 200, 20_000])
@pytest.mark.parametrize("rows", [0, 1, 50, 20_000])
def test_a_raw_response_encoded_by_hand_parses_as_the_message_built_field_by_field(
    stream: bool, id_length: int, rows: int
) -> None:
    # The OIP plugin appends a raw response's id and contents to bytes made once per model (its
    # varint lengths by hand): they must parse to exactly the message protobuf itself would build.
    from streamserve import Outputs
    from streamserve_oip.infer import StreamState, postprocess

    scores = np.arange(rows, dtype=np.float32) / 3
    counts = np.arange(2 * rows, dtype=np.int64).reshape(rows, 2)
    outputs = Outputs({"score": scores, "count": counts}, "7")
    request = pb2.ModelInferRequest(model_name="m", id="é" * (id_length // 2) + "x" * (id_length % 2))
    request.raw_input_contents.append(b"")  # inputs sent raw: outputs go back raw

    state: Any = StreamState(models=None) if stream else None  # a stream's state, or a unary call's
    encoded = postprocess(outputs, request, state)

    expected = pb2.ModelInferResponse(model_name="m", model_version="7", id=request.id)
    expected.outputs.add(name="score", datatype="FP32", shape=[rows])
    expected.outputs.add(name="count", datatype="INT64", shape=[rows, 2])
    expected.raw_output_contents.extend([scores.tobytes(), counts.tobytes()])
    assert isinstance(encoded, bytes)
    if stream:
        assert pb2.ModelStreamInferResponse.FromString(encoded) == pb2.ModelStreamInferResponse(
            infer_response=expected)
    else:
        assert pb2.ModelInferResponse.FromString(encoded) == expected
