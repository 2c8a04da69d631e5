"""The OIP echo server: ModelInfer and ModelStreamInfer with no model, the ceiling of Python gRPC.

What ``echo`` is to the anomaly service, for the Open Inference Protocol: grpc.aio, as little
Python per request as the protocol allows. Each request is parsed (its id and rows are needed) and
answered with one FP32 output ``score`` of zeros, one per row, in raw contents: the shape of the
peer model's answer. ``ModelMetadata`` describes that model (``window: FP32[-1, 32]``) and
``ModelReady`` says ready, which is all the harness and its clients ask before the load. No server
that does real work per request can beat this on the same machine with the same client, so
``python -m benchmarks.peer`` runs it beside the peers: a goal above the ceiling's ratio cannot be met
on that machine.

    python -m benchmarks.servers.oip_echo [--address 127.0.0.1:0]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from benchmarks.servers import parse_args, serve
from streamserve_oip._proto import grpc_inference_pb2 as pb2

SERVICE = "inference.GRPCInferenceService"
MODEL = "autoencoder"
_ZERO = b"\0\0\0\0"
"""One FP32 zero, little-endian."""


def _answer(request: Any, response: Any) -> None:
    rows = request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1
    response.model_name = request.model_name
    response.id = request.id
    response.outputs.add(name="score", datatype="FP32", shape=[rows])
    response.raw_output_contents.append(_ZERO * rows)


async def infer(request: Any, context: grpc.aio.ServicerContext) -> Any:
    response = pb2.ModelInferResponse()
    _answer(request, response)
    return response


async def stream_infer(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
) -> AsyncIterator[Any]:
    async for request in requests:
        response = pb2.ModelStreamInferResponse()
        _answer(request, response.infer_response)
        yield response


async def metadata(request: Any, context: grpc.aio.ServicerContext) -> Any:
    tensor = pb2.ModelMetadataResponse.TensorMetadata
    return pb2.ModelMetadataResponse(
        name=MODEL, versions=["1"], platform="echo",
        inputs=[tensor(name="window", datatype="FP32", shape=[-1, 32])],
        outputs=[tensor(name="score", datatype="FP32", shape=[-1])],
    )


async def ready(request: Any, context: grpc.aio.ServicerContext) -> Any:
    return pb2.ModelReadyResponse(ready=True)


def _unary(function: Any, request: Any, response: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        function, request_deserializer=request.FromString, response_serializer=response.SerializeToString
    )


def handlers() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, {
        "ModelInfer": _unary(infer, pb2.ModelInferRequest, pb2.ModelInferResponse),
        "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(
            stream_infer,
            request_deserializer=pb2.ModelInferRequest.FromString,
            response_serializer=pb2.ModelStreamInferResponse.SerializeToString,
        ),
        "ModelMetadata": _unary(metadata, pb2.ModelMetadataRequest, pb2.ModelMetadataResponse),
        "ModelReady": _unary(ready, pb2.ModelReadyRequest, pb2.ModelReadyResponse),
    })


def main() -> None:
    args = parse_args("The OIP echo ceiling: ModelInfer and ModelStreamInfer with no model.")
    asyncio.run(serve(args.address, handlers()))


if __name__ == "__main__":
    main()
