"""Prometheus metrics of one server (prometheus-client), served over HTTP on ``metrics.address``.

Each :class:`Server` has its own registry, so several servers in one process (tests, embedding)
never mix their numbers. The per-message series (messages received and sent, latency) are plain
Python numbers of each method, which the registry reads when scraped: prometheus-client's own
counters take a lock on every increment, and these are only ever written on the event loop.

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

import bisect
import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

__all__ = ["MethodMetrics", "Metrics"]

# Per-message latency on this hardware spans ~100 µs (idle) to ~100 ms (saturated, queued).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Tally:
    """A counter written by one thread (the event loop) and read by the scrape: no lock."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class LatencyHistogram:
    """A histogram of seconds over ``LATENCY_BUCKETS``, written by one thread: no lock."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: above every bound (+Inf)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # a bucket counts <= bound
        self.count += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts per upper bound, as the exposition format wants them."""
        bounds = [*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf"]
        total = 0
        cumulative = []
        for bound, count in zip(bounds, self.counts, strict=True):
            total += count
            cumulative.append((bound, float(total)))
        return cumulative


class MethodMetrics:
    """The metrics of one RPC method, for the hot path."""

    __slots__ = ("_errors", "_labels", "active", "latency", "received", "sent")

    def __init__(self, metrics: Metrics, service: str, method: str) -> None:
        self.active = metrics.active_streams.labels(service, method)
        self.received = Tally()
        self.sent = Tally()
        self.latency = LatencyHistogram()
        self._errors = metrics.call_errors
        self._labels = (service, method)

    def error(self, code: str) -> None:
        self._errors.labels(*self._labels, code).inc()


class _MessageCollector:
    """Reads every method's message counts and latency into the registry when it is scraped."""

    def __init__(self) -> None:
        self.methods: dict[tuple[str, str], MethodMetrics] = {}

    def describe(self) -> list[Metric]:
        return []  # no samples known in advance: the registry then checks no names

    def collect(self) -> Iterator[Metric]:
        labels = ["service", "method"]
        received = CounterMetricFamily("streamserve_messages_received", "Request messages read.",
                                       labels=labels)
        sent = CounterMetricFamily("streamserve_messages_sent", "Response messages written.",
                                   labels=labels)
        latency = HistogramMetricFamily(
            "streamserve_message_latency_seconds",
            "From a request message being read to its response being handed to gRPC.", labels=labels,
        )
        for key, counted in list(self.methods.items()):
            received.add_metric(key, counted.received.value)
            sent.add_metric(key, counted.sent.value)
            histogram = counted.latency
            latency.add_metric(key, histogram.buckets(), histogram.sum)
        yield received
        yield sent
        yield latency


class Metrics:
    """Every metric family of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        service_method = ("service", "method")
        self.active_streams = Gauge(
            "streamserve_active_streams", "Streams open now.", service_method,
            registry=self.registry,
        )
        self._messages = _MessageCollector()
        self.registry.register(self._messages)
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
        """The metrics of one RPC method; the same object for the same method (a reload keeps
        its counts)."""
        counted = self._messages.methods.get((service, method))
        if counted is None:
            counted = self._messages.methods[(service, method)] = MethodMetrics(self, service, method)
        return counted

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
