"""The baseline servers, each run as its own process: ``python -m benchmarks.servers.<name>``.

Both print ``listening on HOST:PORT`` once they can answer (the naive server after its model is
loaded and warm), which is what the harness waits for, the same line ``streamserve serve`` logs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc

from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2

__all__ = ["SERVICE", "announce", "has_chunks", "parse_args", "serve"]

SERVICE = pb2.DESCRIPTOR.services_by_name["AnomalyDetectionService"].full_name
"""The service every server under test offers, from the same generated code."""


def has_chunks() -> bool:
    """Whether the generated code has the chunked method yet (it is being added to the proto)."""
    return hasattr(pb2, "DataChunk") and "DetectAnomalyChunks" in (
        pb2.DESCRIPTOR.services_by_name["AnomalyDetectionService"].methods_by_name
    )


def announce(address: str) -> None:
    """Tell the harness where we listen; flushed, since stdout is a file, not a terminal."""
    print(f"listening on {address}", flush=True)


async def serve(address: str, handler: grpc.GenericRpcHandler) -> None:
    """Serve ``handler`` with grpc.aio on ``address`` until SIGTERM or SIGINT (the echo servers)."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port(address)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    announce(f"{address.rpartition(':')[0]}:{port}")
    await stopping.wait()
    await server.stop(1)


def parse_args(description: str, *, model: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--address", default="127.0.0.1:0", help="HOST:PORT (port 0: any free one)")
    if model:
        parser.add_argument("--model", required=True, help="the SavedModel version directory")
        parser.add_argument(
            "--workers", type=int, default=2048,
            help="thread-pool size: one thread per open stream, so at least the streams opened",
        )
        parser.add_argument(
            "--call", choices=["function", "session"], default="function",
            help="how the model is called: its tf.function (the standard TF2 way) or streamserve's "
            "runner (a TF session callable)",
        )
    return parser.parse_args(sys.argv[1:])
