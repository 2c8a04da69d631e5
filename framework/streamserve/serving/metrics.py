"""Prometheus metrics of one server (prometheus-client), served over HTTP on ``metrics.address``.

Each :class:`Server` has its own registry, so several servers in one process (tests, embedding)
never mix their numbers. Label children are bound once per method at start-up: the per-message cost
is a counter increment and a histogram observation.

    streamserve_active_streams{service,method}              streams open now
    streamserve_messages_received_total{service,method}     request messages read
    streamserve_messages_sent_total{service,method}         response messages written
    streamserve_message_latency_seconds{service,method}     request read -> its response handed to gRPC
    streamserve_call_errors_total{service,method,code}      calls that ended in an error, by status code
    streamserve_batch_rows{model}                           rows per model call
    streamserve_queued_rows{model}                          rows waiting for the model now
    streamserve_model_info{model,version}                   1 for the model version being served
    streamserve_model_load_failures_total{model}            model loads (start-up or reload) that failed
    streamserve_model_runner{model,runner,reason}           1: "session" (fast) or "function", and why
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["MethodMetrics", "Metrics"]

# Per-message latency on this hardware spans ~100 µs (idle) to ~100 ms (saturated, queued).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class MethodMetrics:
    """The bound metric children of one RPC method, for the hot path."""

    __slots__ = ("_errors", "_labels", "active", "latency", "received", "sent")

    def __init__(self, metrics: Metrics, service: str, method: str) -> None:
        self.active = metrics.active_streams.labels(service, method)
        self.received = metrics.messages_received.labels(service, method)
        self.sent = metrics.messages_sent.labels(service, method)
        self.latency = metrics.latency.labels(service, method)
        self._errors = metrics.call_errors
        self._labels = (service, method)

    def error(self, code: str) -> None:
        self._errors.labels(*self._labels, code).inc()


class Metrics:
    """Every metric family of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        service_method = ("service", "method")
        self.active_streams = Gauge(
            "streamserve_active_streams", "Streams open now.", service_method,
            registry=self.registry,
        )
        self.messages_received = Counter(
            "streamserve_messages_received", "Request messages read.", service_method,
            registry=self.registry,
        )
        self.messages_sent = Counter(
            "streamserve_messages_sent", "Response messages written.", service_method,
            registry=self.registry,
        )
        self.latency = Histogram(
            "streamserve_message_latency_seconds",
            "From a request message being read to its response being handed to gRPC.",
            service_method, buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.call_errors = Counter(
            "streamserve_call_errors", "Calls that ended in an error, by gRPC status code.",
            (*service_method, "code"), registry=self.registry,
        )
        self.batch_rows = Histogram(
            "streamserve_batch_rows", "Rows per model call.", ("model",),
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.queued_rows = Gauge(
            "streamserve_queued_rows", "Rows waiting for the model now.", ("model",),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "streamserve_model_info", "1 for the version of each model being served.",
            ("model", "version"), registry=self.registry,
        )
        self.model_runner = Gauge(
            "streamserve_model_runner",
            "1 for how each model is called: runner=\"session\" (a TF session callable, the fast "
            "way) or \"function\" (its tf.function), with the reason it is not a session.",
            ("model", "runner", "reason"), registry=self.registry,
        )
        self.load_failures = Counter(
            "streamserve_model_load_failures", "Model loads (start-up or reload) that failed.",
            ("model",), registry=self.registry,
        )
        self._http: tuple[WSGIServer, threading.Thread] | None = None
        self._versions: dict[str, str] = {}
        self._runners: dict[str, tuple[str, str]] = {}

    def method(self, service: str, method: str) -> MethodMetrics:
        return MethodMetrics(self, service, method)

    def watch_queue(self, model: str, depth: Callable[[], float]) -> None:
        self.queued_rows.labels(model).set_function(depth)

    def model_served(self, model: str, version: str, runner: str = "session", reason: str = "") -> None:
        """Only the version served now has a series: a dashboard sees the switch."""
        version = version or "-"
        previous = self._versions.get(model)
        if previous is not None and previous != version:
            self.model_info.remove(model, previous)
        self._versions[model] = version
        self.model_info.labels(model, version).set(1)
        was = self._runners.get(model)
        if was is not None and was != (runner, reason):
            self.model_runner.remove(model, *was)
        self._runners[model] = (runner, reason)
        self.model_runner.labels(model, runner, reason).set(1)

    def serve(self, address: str) -> int:
        """Start the ``/metrics`` HTTP endpoint; returns its port (useful with port 0)."""
        host, _, port = address.rpartition(":")
        server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        self._http = (server, thread)
        return int(server.server_port)

    def close(self) -> None:
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._http = None
