"""The methods of a plugin's service that the plugin does not serve: UNIMPLEMENTED, saying whose.

A plugin binds a :class:`~streamserve.Method` only to the RPC methods it serves; the rest of its
service (listed by reflection like the others) answers UNIMPLEMENTED with the plugin's name and the
methods it does serve, so no plugin writes stubs that raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from streamserve.serving.plugin import ServedPlugin

__all__ = ["UnboundMethods"]


class UnboundMethods(grpc.GenericRpcHandler):
    """Answers every unbound method of the served plugins' services (after their own handlers)."""

    def __init__(self, plugins: Sequence[ServedPlugin]) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        for plugin in plugins:
            service = plugin.spec.service
            served = sorted(plugin.spec.methods)
            for rpc in service.methods:
                if rpc.name in plugin.spec.methods:
                    continue
                message = (f"{rpc.name} is not served by plugin {plugin.spec.name!r} (it serves "
                           f"{', '.join(served) or 'no method'} of {service.full_name})")
                self._handlers[f"/{service.full_name}/{rpc.name}"] = _refusal(
                    message, rpc.client_streaming, rpc.server_streaming)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)


def _refusal(message: str, client_streaming: bool, server_streaming: bool) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)
        yield  # an async generator, as grpc expects of a streaming handler

    if client_streaming:  # bidirectional (client-streaming only is refused at registration)
        return grpc.stream_stream_rpc_method_handler(refuse_stream)
    if server_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_stream)
    return grpc.unary_unary_rpc_method_handler(refuse)
