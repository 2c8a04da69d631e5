"""The echo server: the anomaly service with no model, the ceiling of Python gRPC on this machine.

grpc.aio, one async generator per stream, as little Python per message as the proto allows: each
DataPoint is answered with an AnomalyScore carrying its timestamp, each DataChunk with a ScoreChunk
of the same length (zero scores, the same timestamps). Whatever streamserve does beyond this
(preprocess, batching, the model, postprocess) is its cost over the ceiling.

    python -m benchmarks.servers.echo [--address 127.0.0.1:0]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from benchmarks.servers import SERVICE, has_chunks, parse_args, serve
from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2


async def detect_stream(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
) -> AsyncIterator[Any]:
    score = pb2.AnomalyScore
    async for point in requests:
        yield score(timestamp=point.timestamp)


async def detect_chunks(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
) -> AsyncIterator[Any]:
    async for chunk in requests:
        n = len(chunk.values)
        yield pb2.ScoreChunk(
            series_id=chunk.series_id,
            scores=[0.0] * n,
            timestamps=chunk.timestamps,
            is_anomaly=[False] * n,
        )


def handlers() -> grpc.GenericRpcHandler:
    methods = {
        "DetectAnomalyStream": grpc.stream_stream_rpc_method_handler(
            detect_stream,
            request_deserializer=pb2.DataPoint.FromString,
            response_serializer=pb2.AnomalyScore.SerializeToString,
        )
    }
    if has_chunks():
        methods["DetectAnomalyChunks"] = grpc.stream_stream_rpc_method_handler(
            detect_chunks,
            request_deserializer=pb2.DataChunk.FromString,
            response_serializer=pb2.ScoreChunk.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def main() -> None:
    args = parse_args("The echo baseline: the anomaly service with no model.")
    asyncio.run(serve(args.address, handlers()))


if __name__ == "__main__":
    main()
