"""The naive design: a sync ``grpc.server`` on a thread pool, one SavedModel call per message.

This is the classic "TF Serving streaming" tutorial shape: each stream holds a pool thread for its
whole life and, for every message, preprocesses it, calls the model on that message alone and
answers. The per-stream work is the plugin's own (its ``open_state``, ``preprocess`` and
``postprocess``, taken from its :data:`~streamserve_anomaly.plugin.SPEC`), so the only difference
from streamserve is the serving design: no batching across streams, no read-ahead, threads instead
of an event loop. A chunk is one model call on all its rows.

    python -m benchmarks.servers.naive --model DIR [--address 127.0.0.1:0] [--workers N]
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from benchmarks.servers import SERVICE, announce, has_chunks, parse_args
from streamserve import Method, Outputs
from streamserve.runtime import load_model
from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2
from streamserve_anomaly.plugin import SPEC
from streamserve_anomaly.settings import AnomalySettings

Handler = Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]]


def per_message(method: Method, call: Callable[[Any], Any], version: str) -> Handler:
    """A stream handler that runs the model once per request message, in the stream's thread."""
    settings = AnomalySettings()

    def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        state = method.open_state(settings)
        try:
            for request in requests:
                rows = method.preprocess(request, state)
                outputs = Outputs(call(rows), version)
                yield method.postprocess(outputs, request, state)
        finally:
            if method.close_state is not None:
                method.close_state(state)

    return handle


def handlers(model_dir: Path) -> grpc.GenericRpcHandler:
    model = load_model(model_dir, SPEC.signature, plugin=SPEC.name)
    methods = {
        "DetectAnomalyStream": grpc.stream_stream_rpc_method_handler(
            per_message(SPEC.methods["DetectAnomalyStream"], model.call, model.version),
            request_deserializer=pb2.DataPoint.FromString,
            response_serializer=pb2.AnomalyScore.SerializeToString,
        )
    }
    if has_chunks() and "DetectAnomalyChunks" in SPEC.methods:
        methods["DetectAnomalyChunks"] = grpc.stream_stream_rpc_method_handler(
            per_message(SPEC.methods["DetectAnomalyChunks"], model.call, model.version),
            request_deserializer=pb2.DataChunk.FromString,
            response_serializer=pb2.ScoreChunk.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def main() -> None:
    args = parse_args("The naive baseline: one SavedModel call per message.", model=True)
    generic = handlers(Path(args.model))  # loaded and warm before the port opens
    # One thread per open stream: a sync streaming handler holds its thread until the stream ends,
    # so the pool must be as large as the number of streams (threads are created on demand).
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    server.add_generic_rpc_handlers([generic])
    port = server.add_insecure_port(args.address)
    server.start()
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    announce(f"{args.address.rpartition(':')[0]}:{port}")
    while not stopping.wait(0.5):
        pass
    server.stop(1).wait(5)


if __name__ == "__main__":
    main()
