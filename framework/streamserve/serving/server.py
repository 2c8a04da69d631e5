"""The aio gRPC server: every enabled plugin's service, health and reflection on one port.

Start-up order matters to orchestrators: the port opens first with the process's health (``""``)
SERVING and every plugin service NOT_SERVING, then models load (off the event loop) and each service
turns SERVING once its model is loaded, checked and warm. Probes can tell "alive" from "ready".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from streamserve.config import StreamserveConfig, plugin_settings
from streamserve.errors import ConfigError, ModelLoadError, StreamserveError
from streamserve.plugins import DiscoveredPlugin
from streamserve.runtime import Batcher, load_model
from streamserve.serving.handlers import service_handler
from streamserve.serving.plugin import ServedPlugin
from streamserve.serving.reflection import enable_reflection

__all__ = ["ServedPlugin", "Server"]

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
        by_name = {d.spec.name: d for d in discovered}
        if unknown := sorted(set(config.plugins) - set(by_name)):
            raise ConfigError(
                f"{source}: plugins.{unknown[0]}: no installed plugin has this name "
                f"(installed: {', '.join(sorted(by_name)) or 'none'}; see `streamserve plugins`)"
            )
        self.plugins = [
            ServedPlugin(
                spec=d.spec,
                config=config.plugin(d.spec.name),
                settings=plugin_settings(config, d.spec.name, d.spec.settings, source),
                distribution=d.distribution,
            )
            for d in discovered
            if config.plugin(d.spec.name).enabled
        ]
        services = [p.service_name for p in self.plugins]
        if len(set(services)) != len(services):
            raise ConfigError(f"{source}: two enabled plugins serve the same service: {services}")
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """Where clients connect, with the real port (useful when the config asked for port 0)."""
        host = self.config.server.address.rpartition(":")[0]
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Open the port and serve health and reflection; plugin services wait for their models."""
        limits = self.config.server
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limits.max_receive_message_bytes),
                ("grpc.max_send_message_length", limits.max_send_message_bytes),
            ]
        )
        server.add_generic_rpc_handlers([service_handler(p) for p in self.plugins])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if limits.reflection:
            enable_reflection([*(p.service_name for p in self.plugins), health.SERVICE_NAME], server)
        try:
            self.port = server.add_insecure_port(limits.address)
        except RuntimeError as exc:
            raise StreamserveError(f"cannot listen on {limits.address}: {exc}") from exc
        await server.start()
        self._server = server
        await self.health.set(health.OVERALL_HEALTH, SERVING)
        for plugin in self.plugins:
            await self.health.set(plugin.service_name, NOT_SERVING)
        log.info("listening on %s; services: %s", self.address,
                 ", ".join(p.service_name for p in self.plugins) or "none")

    async def load_models(self) -> None:
        """Load, check and warm every plugin's model; each service turns SERVING when its is ready."""
        for plugin in self.plugins:
            path = plugin.config.model_path
            if path is None:
                if plugin.spec.default_model is None:
                    raise ModelLoadError(
                        f"plugins.{plugin.spec.name}.model_path is not set and plugin "
                        f"{plugin.spec.name!r} has no default model"
                    )
                path = await asyncio.to_thread(plugin.spec.default_model)
            signature = plugin.spec.signature
            if plugin.config.signature:
                signature = dataclasses.replace(signature, name=plugin.config.signature)
            model = await asyncio.to_thread(load_model, path, signature, plugin=plugin.spec.name)
            batcher = Batcher(
                model.call, plugin.config.batching, name=f"model-{plugin.spec.name}",
                version=model.version,
            )
            batcher.start()
            plugin.model, plugin.batcher = model, batcher
            await self.health.set(plugin.service_name, SERVING)
            log.info("%s is SERVING (model %s)", plugin.service_name, model.path)

    async def stop(self, grace: float | None = None) -> None:
        """Mark everything NOT_SERVING, let open calls finish for ``grace`` seconds, then close."""
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        for plugin in self.plugins:
            if plugin.batcher is not None:
                await plugin.batcher.close()
                plugin.batcher = None

    async def wait_for_termination(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()
