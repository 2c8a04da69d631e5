"""GetModelMetadata: the served signature as a SignatureDef, the way TF Serving's clients read it."""

from __future__ import annotations

from typing import Any

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2

from tests.tfserving.conftest import LINEAR, STRINGS, TIMEOUT, rpc_error


def request(model: str, *fields: str, version: int | None = None) -> Any:
    message = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    message.model_spec.name = model
    if version is not None:
        message.model_spec.version.value = version
    return message


def dims(info: Any) -> list[int]:
    return [dim.size for dim in info.tensor_shape.dim]


async def test_signature_def_has_the_models_dtypes_and_shapes(stub: Any) -> None:
    response = await stub.GetModelMetadata(request(LINEAR, "signature_def"), timeout=TIMEOUT)
    assert response.model_spec.name == LINEAR
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert list(signatures.signature_def) == ["serving_default"]  # the one signature served
    served = signatures.signature_def["serving_default"]
    assert served.method_name == "tensorflow/serving/predict"
    assert {key: (info.dtype, dims(info)) for key, info in served.inputs.items()} == {
        "x": (tf.float32.as_datatype_enum, [-1, 3]),
        "n": (tf.int64.as_datatype_enum, [-1]),
    }
    assert {key: (info.dtype, dims(info)) for key, info in served.outputs.items()} == {
        "score": (tf.float32.as_datatype_enum, [-1]),
        "doubled": (tf.int64.as_datatype_enum, [-1]),
    }


async def test_string_tensors_are_dt_string(stub: Any) -> None:
    response = await stub.GetModelMetadata(request(STRINGS, "signature_def", version=1), timeout=TIMEOUT)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    served = signatures.signature_def["serving_default"]
    assert served.inputs["words"].dtype == tf.string.as_datatype_enum
    assert served.outputs["upper"].dtype == tf.string.as_datatype_enum
    assert served.outputs["length"].dtype == tf.int32.as_datatype_enum


async def test_other_metadata_fields_are_invalid(stub: Any) -> None:
    for fields in [(), ("signature_def", "model_config")]:
        error = await rpc_error(stub.GetModelMetadata(request(LINEAR, *fields), timeout=TIMEOUT))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert "metadata_field" in str(error.details())


async def test_unknown_model_and_version_are_not_found(stub: Any) -> None:
    for message in [request("nope", "signature_def"), request(LINEAR, "signature_def", version=2)]:
        error = await rpc_error(stub.GetModelMetadata(message, timeout=TIMEOUT))
        assert error.code() == grpc.StatusCode.NOT_FOUND, message
