"""The naive design: a sync ``grpc.server`` on a thread pool, one SavedModel call per message.

This is the classic "TF Serving streaming" tutorial shape: each stream holds a pool thread for its
whole life and, for every message, preprocesses it, calls the model on that message alone and
answers. The per-stream work is the plugin's own (its ``open_state``, ``preprocess`` and
``postprocess``, taken from its :data:`~streamserve_anomaly.plugin.SPEC`), so the only difference
from streamserve is the serving design: no batching across streams, no read-ahead, threads instead
of an event loop. A chunk is one model call on all its rows.

The model is called the standard TensorFlow 2 way, as such a server is written: the restored
SavedModel's signature function, fed ``tf.constant`` tensors (``--call function``, the default).
``--call session`` uses streamserve's own model runner instead (``streamserve.runtime.load_model``,
a TF session callable), so a run can tell the serving design's gain from the model call's.

    python -m benchmarks.servers.naive --model DIR [--address 127.0.0.1:0] [--workers N]
        [--call function|session]
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.servers import SERVICE, announce, has_chunks, parse_args
from streamserve import Context, Method, Outputs
from streamserve.runtime import load_model
from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2
from streamserve_anomaly.plugin import SPEC
from streamserve_anomaly.settings import AnomalySettings

Handler = Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]]


def per_message(method: Method, call: Callable[[Any], Any], version: str) -> Handler:
    """A stream handler that runs the model once per request message, in the stream's thread."""
    settings = AnomalySettings()

    def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        state = method.open_state(Context(settings))
        try:
            for request in requests:
                rows = method.preprocess(request, state)
                outputs = Outputs(call(rows), version)
                yield method.postprocess(outputs, request, state)
        finally:
            if method.close_state is not None:
                method.close_state(state)

    return handle


def function_call(model_dir: Path) -> Callable[[Any], dict[str, Any]]:
    """The plugin's signature as the restored tf.function, called with tensors made per call."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    function = loaded.signatures[SPEC.signature.name]
    dtypes = {spec.name: tf.as_dtype(spec.dtype) for spec in SPEC.signature.inputs}

    def call(rows: Any) -> dict[str, Any]:
        outputs = function(**{key: tf.constant(rows[key], dtype) for key, dtype in dtypes.items()})
        return {key: tensor.numpy() for key, tensor in outputs.items()}

    call.loaded = loaded  # type: ignore[attr-defined]  # its variables live as long as the call
    return call


def handlers(model_dir: Path, how: str = "function") -> grpc.GenericRpcHandler:
    # Either way: loaded, checked against the plugin's signature and warm before the port opens.
    model = load_model(model_dir, SPEC.signature, plugin=SPEC.name)
    call = model.call if how == "session" else function_call(model_dir)
    call({spec.name: np.zeros([size or 1 for size in spec.shape], spec.dtype)
          for spec in SPEC.signature.inputs})
    methods = {
        "DetectAnomalyStream": grpc.stream_stream_rpc_method_handler(
            per_message(SPEC.methods["DetectAnomalyStream"], call, model.version),
            request_deserializer=pb2.DataPoint.FromString,
            response_serializer=pb2.AnomalyScore.SerializeToString,
        )
    }
    if has_chunks() and "DetectAnomalyChunks" in SPEC.methods:
        methods["DetectAnomalyChunks"] = grpc.stream_stream_rpc_method_handler(
            per_message(SPEC.methods["DetectAnomalyChunks"], call, model.version),
            request_deserializer=pb2.DataChunk.FromString,
            response_serializer=pb2.ScoreChunk.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def main() -> None:
    args = parse_args("The naive baseline: one SavedModel call per message.", model=True)
    generic = handlers(Path(args.model), args.call)  # loaded and warm before the port opens
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
