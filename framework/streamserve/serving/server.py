"""The aio gRPC server: every enabled plugin's service, health and reflection on one port.

Start-up order matters to orchestrators: the port opens first with the process's health (``""``)
SERVING and every plugin service NOT_SERVING, then models load (off the event loop) and each service
turns SERVING once its model is loaded, checked and warm. Probes can tell "alive" from "ready".
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from streamserve.config import ServerConfig, StreamserveConfig, plugin_settings
from streamserve.errors import ConfigError, StreamserveError
from streamserve.plugins import DiscoveredPlugin
from streamserve.runtime import ModelManager, Repository, ServedModel, configure_tensorflow
from streamserve.serving.calls import Calls
from streamserve.serving.handlers import service_handler
from streamserve.serving.metrics import Metrics
from streamserve.serving.plugin import ServedPlugin, not_configured
from streamserve.serving.ports import AddressInUse, ensure_free
from streamserve.serving.reflection import enable_reflection
from streamserve.serving.security import TransportSecurity, serve_health_only
from streamserve.serving.unbound import UnboundMethods

__all__ = ["ServedPlugin", "Server", "model_health_name"]

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Server:
    """One streamserve server. ``await start()``, ``await load_models()``, ``await stop()``."""

    def __init__(
        self,
        config: StreamserveConfig,
        discovered: Sequence[DiscoveredPlugin],
        *,
        source: str = "<config>",
    ) -> None:
        self.config = config
        configure_tensorflow(config.tensorflow)
        by_name = {d.spec.name: d for d in discovered}
        if unknown := sorted(set(config.plugins) - set(by_name)):
            raise ConfigError(
                f"{source}: plugins.{unknown[0]}: no installed plugin has this name "
                f"(installed: {', '.join(sorted(by_name)) or 'none'}; see `streamserve plugins`)"
            )
        self.not_configured = {
            d.spec.name: reason for d in discovered if (reason := not_configured(d.spec, config))
        }
        """Installed plugins left out because the config does not say what they should serve."""
        for name, reason in self.not_configured.items():
            log.info("plugin %r is %s", name, reason)
        self.plugins = [
            ServedPlugin(
                spec=d.spec,
                config=config.plugin(d.spec.name),
                settings=plugin_settings(config, d.spec.name, d.spec.settings, source),
                distribution=d.distribution,
            )
            for d in discovered
            if config.plugin(d.spec.name).enabled and d.spec.name not in self.not_configured
        ]
        services = [p.service_name for p in self.plugins]
        if len(set(services)) != len(services):
            raise ConfigError(f"{source}: two enabled plugins serve the same service: {services}")
        self.repository = Repository()
        """Every model served: each model plugin's own, and the model repository's."""
        for plugin in self.plugins:
            if plugin.model is not None:
                self.repository.models[plugin.spec.name] = plugin.model
        self.repository.add_repository(config.model_repository, source=source)
        self.health = health.aio.HealthServicer()
        self.calls = Calls(config.server.max_concurrent_streams, config.server.stream_idle_timeout_seconds)
        self.metrics = Metrics()
        self.metrics_port = 0
        """The bound port of ``metrics.address`` once started; 0 if there is none."""
        self._server: grpc.aio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.models = ModelManager(
            self.repository, config.model_repository, on_ready=self._model_ready,
            on_failed=self._model_failed, on_found=self._model_found,
            batch_observer=lambda name: self.metrics.batch_rows.labels(name).observe,
        )
        """Loading, reloading and swapping the models (runtime/manager.py); the server hears of it
        through the callbacks below and turns it into health and metrics."""
        self.port = 0
        # Transport security (serving/security.py): certificates and tokens are read here, so a
        # bad file fails `config check` and start-up rather than the first handshake.
        self.security = TransportSecurity.from_config(config.server, source=source)
        self._health_server: grpc.aio.Server | None = None
        self.health_port = 0
        """The bound port of ``server.health_address`` once started; 0 if there is none."""

    @property
    def address(self) -> str:
        """Where clients connect, with the real port (useful when the config asked for port 0)."""
        host = self.config.server.address.rpartition(":")[0]
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    @property
    def health_address(self) -> str | None:
        """Where the health-only port listens, with the real port; None without one."""
        if self.config.server.health_address is None:
            return None
        host = self.config.server.health_address.rpartition(":")[0]
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        return f"{host}:{self.health_port}"

    async def start(self) -> None:
        """Open the port and serve health and reflection; plugin services wait for their models.

        An address that is taken (``server.address``, ``server.health_address``,
        ``metrics.address``) raises :class:`~streamserve.serving.ports.AddressInUse` naming the key,
        before anything listens."""
        limits = self.config.server
        if not limits.reuse_port:
            ensure_free("server.address", limits.address)
            if limits.health_address is not None:
                ensure_free("server.health_address", limits.health_address)
        if self.config.metrics.address is not None:
            ensure_free("metrics.address", self.config.metrics.address)
        keepalive = limits.keepalive
        server = grpc.aio.server(
            interceptors=self.security.interceptors,
            options=[
                # gRPC refuses a bigger message with no word to the handler (the call just ends),
                # so the core checks the limit itself (serving/handlers.py) and gRPC's cap is only
                # a backstop for far bigger messages.
                ("grpc.max_receive_message_length", _receive_backstop(limits)),
                ("grpc.max_send_message_length", limits.max_send_message_bytes),
                ("grpc.keepalive_time_ms", int(keepalive.time_seconds * 1000)),
                ("grpc.keepalive_timeout_ms", int(keepalive.timeout_seconds * 1000)),
                ("grpc.http2.min_recv_ping_interval_without_data_ms",
                 int(keepalive.min_client_ping_interval_seconds * 1000)),
                ("grpc.keepalive_permit_without_calls", int(keepalive.permit_without_calls)),
                ("grpc.so_reuseport", int(limits.reuse_port)),
                # Calls that arrived but that the handlers have not picked up yet: gRPC refuses
                # some beyond 1,000 (all beyond 3,000) with RESOURCE_EXHAUSTED "Too many pending
                # requests", which a burst of streams from one client hits before any of them
                # reaches the server's own limit. The limit is max_concurrent_streams, named.
                ("grpc.server.max_pending_requests", limits.max_concurrent_streams),
                ("grpc.server.max_pending_requests_hard_limit", 2 * limits.max_concurrent_streams),
                *_connection_age_options(limits),
            ]
        )
        server.add_generic_rpc_handlers(
            [*(service_handler(p, self.repository, self.calls, self.metrics, limits)
               for p in self.plugins),
             UnboundMethods(self.plugins)]
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if limits.reflection:
            enable_reflection([*(p.service_name for p in self.plugins), health.SERVICE_NAME], server)
        self.port = self.security.bind(server, limits.address)  # TLS if server.tls is set
        await server.start()
        self._server = server
        try:
            if self.config.metrics.address is not None:
                self.metrics_port = self._serve_metrics(self.config.metrics.address)
                log.info("metrics on http://%s/metrics", self.config.metrics.address)
            if limits.health_address is not None:  # plaintext, health only: for kubelet probes
                self._health_server, self.health_port = await serve_health_only(
                    self.health, limits.health_address, reuse_port=limits.reuse_port
                )
                log.info("health-only (plaintext) port on %s", self.health_address)
        except BaseException:
            await self.stop(0)  # nothing half-started is left behind (no "Event loop is closed")
            raise
        self._spawn(self.calls.watch_idle())
        await self.health.set(health.OVERALL_HEALTH, SERVING)
        for plugin in self.plugins:
            await self.health.set(plugin.service_name, NOT_SERVING)
        for name in self.repository.names():
            await self.health.set(model_health_name(name), NOT_SERVING)
        log.info("listening on %s; services: %s", self.address,
                 ", ".join(p.service_name for p in self.plugins) or "none")

    async def load_models(self) -> None:
        """Load, check and warm every model; each service turns SERVING when its models are ready.

        A model that fails stops start-up (``on_plugin_error: fail``, raising the error), or is
        reported and left not ready while the others serve (``continue``): its plugin's service
        stays NOT_SERVING if it is the plugin's own model; a repository model is reported by the
        protocols' own readiness calls. Then every model with a directory is watched for new
        versions.
        """
        await self.models.load_all(fatal=self.config.on_plugin_error == "fail")
        for plugin in self.plugins:
            own = plugin.model
            if own is None or own.batcher is not None:
                await self.health.set(plugin.service_name, SERVING)
        self.models.watch()

    async def reload_models(self) -> None:
        """Look for new model versions, and new repository models, now (SIGHUP does this)."""
        await self.models.reload_all()

    async def _model_ready(self, served: ServedModel) -> None:
        """A model serves a (new) version: its health entries turn SERVING, metrics follow it."""
        assert served.model is not None
        self.metrics.watch_queue(served.name, lambda: float(_queued_rows(served)))
        model = served.model
        self.metrics.model_served(served.name, model.version, model.runner, model.runner_reason)
        for plugin in self.plugins:
            if plugin.model is served:
                await self.health.set(plugin.service_name, SERVING)
        for name, entry in self.repository.public.items():
            if entry is served:
                await self.health.set(model_health_name(name), SERVING)

    def _model_failed(self, served: ServedModel) -> None:
        if served.refused is None:  # a refused model's name, and so its series, is another's
            self.metrics.load_failures.labels(served.name).inc()

    async def _model_found(self, served: ServedModel) -> None:
        await self.health.set(model_health_name(served.name), NOT_SERVING)

    def _serve_metrics(self, address: str) -> int:
        try:
            return self.metrics.serve(address)
        except OSError as exc:  # taken between the check and the bind, or another bind error
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUse("metrics.address", address) from None
            raise StreamserveError(f"metrics.address: cannot listen on {address}: {exc.strerror}") from exc

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, grace: float | None = None) -> None:
        """Drain: health NOT_SERVING and new calls refused at once; open calls get ``grace`` seconds
        (default ``server.shutdown_grace_seconds``), then streams end with UNAVAILABLE after every
        message they sent was answered. Then the models are unloaded."""
        if grace is None:
            grace = self.config.server.shutdown_grace_seconds
        for task in list(self._tasks):
            task.cancel()
        self.models.abandon()  # no new version is looked for; a load in progress is left behind
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            # grpc refuses new calls from now on; its own deadline is only a backstop for ours.
            stopping = asyncio.get_running_loop().create_task(self._server.stop(grace + 5.0))
            await self.calls.drain(grace)
            # What is left is not ours to answer (health watches, reflection): cancel it.
            await self._server.stop(0)
            await stopping
        if self._health_server is not None:  # kept up through the drain: probes see NOT_SERVING
            await self._health_server.stop(0)
            self._health_server = None
        await self.models.close()
        self.metrics.close()

    async def wait_for_termination(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()


def model_health_name(model: str) -> str:
    """The health service name of a repository model: SERVING once it is loaded and warm, whatever
    protocol serves it (for probes and clients that do not speak OIP's ModelReady)."""
    return f"model/{model}"


def _connection_age_options(limits: ServerConfig) -> list[tuple[str, int]]:
    """``server.max_connection_age_*`` as grpc core options: GOAWAY after the age (grpc adds ±10 %
    jitter so clients do not reconnect in step), the connection closed after the grace."""
    options = []
    if limits.max_connection_age_seconds is not None:
        options.append(("grpc.max_connection_age_ms", round(limits.max_connection_age_seconds * 1000)))
    if limits.max_connection_age_grace_seconds is not None:
        options.append(
            ("grpc.max_connection_age_grace_ms", round(limits.max_connection_age_grace_seconds * 1000))
        )
    return options


def _receive_backstop(limits: ServerConfig) -> int:
    """gRPC's own cap on request size: twice ``max_receive_message_bytes``, so a message over the
    limit reaches the core, which refuses it with RESOURCE_EXHAUSTED naming the limit and counts it.
    Only a message over twice the limit is cut off by gRPC (the client still gets
    RESOURCE_EXHAUSTED; the server sees the call cancelled)."""
    return min(2 * limits.max_receive_message_bytes, 2**31 - 1)


def _queued_rows(model: ServedModel) -> int:
    """Rows waiting for ``model`` (0 before it is loaded)."""
    return model.batcher.queued_rows if model.batcher is not None else 0
