"""Open Inference Protocol load: requests for any OIP server's model, built from its own metadata.

The messages and stubs are tritonclient's generated code (the client Triton users have), not
streamserve's, so the same load can be pointed at Triton, MLServer, KServe or streamserve. The
request is built from ``ModelMetadata``: one row of random values for every input (open dimensions
other than the batch one are 1), sent as ``raw_input_contents`` as tritonclient does by default.
Each request carries an ``id`` and each answer must echo it, in order.

Only client processes import this module: tritonclient's ``inference.*`` messages would clash with
the ``oip`` plugin's in a process that also serves.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

__all__ = ["INFER_METHOD", "STREAM_METHOD", "OipSource", "load"]

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
_METADATA_METHOD = "/inference.GRPCInferenceService/ModelMetadata"
_CYCLE = 64
"""Distinct prebuilt requests per stream (ids 0..63): building one per message would cost the client
more than the server spends on it."""

_NUMPY = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64,
          "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}


async def load(channel: grpc.aio.Channel, model: str) -> Any:
    """The model's metadata (``ModelMetadataResponse``), which the requests are built from."""
    from tritonclient.grpc import service_pb2 as pb2

    metadata = channel.unary_unary(
        _METADATA_METHOD,
        request_serializer=pb2.ModelMetadataRequest.SerializeToString,
        response_deserializer=pb2.ModelMetadataResponse.FromString,
    )
    return await metadata(pb2.ModelMetadataRequest(name=model), timeout=20)


class OipSource:
    """The requests of one stream (or one unary caller) and how to check their answers."""

    points = 1

    def __init__(self, stream: int, metadata: Any, *, ids: bool = True) -> None:
        """``ids``: check that each answer echoes its request's id. MLServer's streams answer every
        request with the stream's first id (by design, for generative streams): there only the
        count and order of answers with outputs can be checked."""
        from tritonclient.grpc import service_pb2 as pb2

        self.ids = ids
        rng = np.random.default_rng(stream)
        self.requests = []
        for k in range(_CYCLE):
            request = pb2.ModelInferRequest(model_name=metadata.name, id=str(k))
            for tensor in metadata.inputs:
                if tensor.datatype not in _NUMPY:
                    raise ValueError(f"input {tensor.name}: datatype {tensor.datatype} is not "
                                     "supported by this load generator")
                shape = [1 if dim < 0 else dim for dim in tensor.shape]
                values = rng.normal(0, 1, shape).astype(_NUMPY[tensor.datatype])
                request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=shape)
                request.raw_input_contents.append(values.tobytes())
            self.requests.append(request)

    def message(self, index: int) -> tuple[Any, str]:
        request = self.requests[index % _CYCLE]
        return request, request.id

    def check(self, answer: Any, expected: str) -> bool:
        response = getattr(answer, "infer_response", answer)  # a stream wraps it, with errors in-band
        if getattr(answer, "error_message", ""):
            return False
        return bool((response.id == expected or not self.ids) and response.outputs)


def stream_call(channel: grpc.aio.Channel, response: str = "ModelStreamInferResponse") -> Any:
    """``response``: the message the server streams back: Triton's ``ModelStreamInferResponse``
    (errors in-band), or MLServer's bare ``ModelInferResponse``."""
    from tritonclient.grpc import service_pb2 as pb2

    return channel.stream_stream(
        STREAM_METHOD,
        request_serializer=pb2.ModelInferRequest.SerializeToString,
        response_deserializer=getattr(pb2, response).FromString,
    )


def unary_call(channel: grpc.aio.Channel) -> Any:
    from tritonclient.grpc import service_pb2 as pb2

    return channel.unary_unary(
        INFER_METHOD,
        request_serializer=pb2.ModelInferRequest.SerializeToString,
        response_deserializer=pb2.ModelInferResponse.FromString,
    )
