"""gRPC method handlers built from a plugin's service descriptor: no servicer code in plugins.

Every call runs the same pipeline: the request bytes decoded (a message that does not parse is the
client's error, INVALID_ARGUMENT), ``open_state`` on the first message, ``preprocess`` to rows, the
model's shared :class:`~streamserve.runtime.Batcher`, ``postprocess`` to the response, the response
encoded and checked against the size limit, state dropped when the call ends. Every call, unary,
server-streaming or bidirectional, lives in one :class:`~streamserve.serving.calls.Call`, which
records how it ended once; a bidirectional one is a :class:`~streamserve.serving.stream.Stream`.

The core decodes and encodes the messages itself (gRPC only moves bytes), and writes through
``context.write``: every failure, a message gRPC could not send included, happens in the handler's
own frame, where the call's record is kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from streamserve.config import ServerConfig
from streamserve.contract import Context, Infer, Method, Outputs, Rows
from streamserve.errors import InvalidArgument, ResourceExhausted, StreamserveError
from streamserve.runtime import Batcher
from streamserve.runtime.repository import Repository
from streamserve.serving.calls import Call, Calls, send_failed
from streamserve.serving.metrics import Metrics
from streamserve.serving.plugin import ServedPlugin
from streamserve.serving.stream import Stream

__all__ = ["MethodEndpoint", "service_handler"]


def service_handler(
    plugin: ServedPlugin, repository: Repository, calls: Calls, metrics: Metrics,
    limits: ServerConfig,
) -> grpc.GenericRpcHandler:
    """One generic handler serving every RPC method of ``plugin``'s service."""
    service = plugin.spec.service
    handlers = {}
    route = _router(plugin, repository)
    for rpc in service.methods:
        if rpc.name not in plugin.spec.methods:
            continue  # not served: serving/unbound.py answers UNIMPLEMENTED
        endpoint = MethodEndpoint(rpc, plugin, route, repository, calls, metrics, limits)
        if rpc.client_streaming:
            handlers[rpc.name] = grpc.stream_stream_rpc_method_handler(endpoint.bidi)
        elif rpc.server_streaming:
            handlers[rpc.name] = grpc.unary_stream_rpc_method_handler(endpoint.server_streaming)
        else:
            handlers[rpc.name] = grpc.unary_unary_rpc_method_handler(endpoint.unary)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


Route = Callable[[Any], tuple[Batcher | None, Rows, int]]
"""What preprocess returned -> the batcher of its model (None: no model involved), the rows, their
count."""


def _router(plugin: ServedPlugin, repository: Repository) -> Route:
    own = plugin.model
    if own is None:  # a protocol plugin: the request names a model of the repository

        def route(result: Any) -> tuple[Batcher | None, Rows, int]:
            if isinstance(result, Infer):
                return repository.route(result)
            if isinstance(result, Mapping) and not result:  # a request that needs no model at all
                return None, result, 0
            raise TypeError(f"plugin {plugin.spec.name!r} serves the model repository: its preprocess "
                            f"must return streamserve.Infer (or {{}}), not {type(result).__name__}")

        return route

    def route_own(result: Any) -> tuple[Batcher | None, Rows, int]:
        if isinstance(result, Infer):
            raise TypeError(f"plugin {plugin.spec.name!r} declares a signature: its preprocess "
                            "returns Rows for its own model, not streamserve.Infer")
        if isinstance(result, Mapping) and not result:  # no model at all (Method.without_model)
            return None, result, 0
        return own.require_ready(), result, _row_count(result)

    return route_own


class MethodEndpoint:
    """One RPC method of a plugin's service, bound to the server: the plugin's :class:`Method`, and
    what the core adds (decoding and encoding with their limits, routing to a model, metrics)."""

    def __init__(
        self, rpc: MethodDescriptor, plugin: ServedPlugin, route: Route, repository: Repository,
        calls: Calls, metrics: Metrics, limits: ServerConfig,
    ) -> None:
        method: Method = plugin.spec.methods[rpc.name]
        self.where = f"/{plugin.spec.service.full_name}/{rpc.name}"
        self.plugin = plugin.spec.name
        self.calls = calls
        self.counted = metrics.method(plugin.spec.service.full_name, rpc.name)
        self.preprocess = method.preprocess
        self.postprocess = method.postprocess
        self._close_state = method.close_state
        self.on_error = method.on_error
        self.route = route
        self._request = GetMessageClass(rpc.input_type)
        self._response = GetMessageClass(rpc.output_type)
        self._max_receive = limits.max_receive_message_bytes
        self._max_send = limits.max_send_message_bytes
        own = plugin.model
        context = Context(plugin.settings, repository if own is None else None)
        self._open: Callable[[], Any] = lambda: method.open_state(context)
        if own is None:
            self.ready: Callable[[], object] = lambda: None  # readiness is per model and per request
        else:
            self.ready = own.require_ready  # refuse at once, before reading anything

    # -- the three kinds of call ----------------------------------------------------------------

    async def unary(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        async with Call(self, context) as call:
            request = self._first(call, data)
            outputs = await self.infer(request, call.open_state(), alone=self.calls.open == 1,
                                       lane=call)
            encoded = self.encode(self.postprocess(outputs, request, call.state), 0)
            self.counted.sent.inc()
            self.counted.latency.observe(time.perf_counter() - call.started)
            call.answered = 1
            return encoded
        return b""  # the call is over on the client's side; nothing is sent

    async def server_streaming(self, data: bytes, context: grpc.aio.ServicerContext) -> None:
        async with Call(self, context) as call:
            started = time.perf_counter()
            request = self._first(call, data)
            outputs = await self.infer(request, call.open_state(), alone=self.calls.open == 1,
                                       lane=call)
            responses = self.postprocess(outputs, request, call.state)
            if not isinstance(responses, Iterable):
                raise TypeError(f"the plugin's postprocess returned {type(responses).__name__}, "
                                "not an iterable of response messages")
            for response in responses:
                encoded = self.encode(response, 0)
                self.counted.sent.inc()
                await self.send(context.write, encoded)
                call.answered += 1
            self.counted.latency.observe(time.perf_counter() - started)

    async def bidi(self, requests: AsyncIterable[bytes], context: grpc.aio.ServicerContext) -> None:
        async with Call(self, context, stream=True) as call:
            await Stream(self, call, requests).run()

    def _first(self, call: Call, data: bytes) -> Message:
        """The request of a unary or server-streaming call, decoded, once the model is ready."""
        self.counted.received.inc()
        call.at(0)
        request = self.decode(data, 0)
        call.at(None)
        self.ready()
        return request

    # -- the pipeline ---------------------------------------------------------------------------

    def open_state(self) -> Any:
        return self._open()

    def close_state(self, state: Any) -> None:
        if self._close_state is not None and state is not None:
            self._close_state(state)

    def decode(self, data: bytes, index: int) -> Message:
        """Message ``index`` of the call from its bytes; a message that does not parse, or is over
        the size limit, is the client's error."""
        if len(data) > self._max_receive:
            raise ResourceExhausted(
                f"message {index} is {len(data)} bytes, over the limit of {self._max_receive} "
                "(server.max_receive_message_bytes)"
            )
        try:
            return self._request.FromString(data)
        except DecodeError as exc:
            raise InvalidArgument(
                "request", f"not a valid {self._request.DESCRIPTOR.full_name} message ({exc})"
            ) from None

    def encode(self, response: object, index: int) -> bytes:
        """The bytes of the response to message ``index``; refused if over the size limit (gRPC
        would fail the call while sending it)."""
        if type(response) is bytes:  # encoded by the plugin already (see streamserve.contract)
            data = response
        elif type(response) is self._response:
            assert isinstance(response, Message)
            data = response.SerializeToString()
        else:
            raise TypeError(f"the plugin's postprocess returned {type(response).__name__}, not a "
                            f"{self._response.DESCRIPTOR.full_name} response message (or its bytes)")
        if len(data) > self._max_send:
            raise ResourceExhausted(
                f"the response to message {index} is {len(data)} bytes, over the limit of "
                f"{self._max_send} (server.max_send_message_bytes); send fewer rows per message"
            )
        return data

    def respond(
        self, outputs: asyncio.Future[Outputs], request: Message, state: Any, index: int
    ) -> bytes:
        """The encoded response to a stream's message ``index`` whose outputs are in. A deliberate
        error of the request's, from the model or from ``postprocess``, is answered by the
        method's ``on_error`` if it has one."""
        try:
            response = self.postprocess(outputs.result(), request, state)
        except StreamserveError as exc:
            if self.on_error is None:
                raise
            response = self.on_error(exc, request, state)
        # Bytes within the limit as they are (the usual OIP response; no call); else encode's checks.
        return response if type(response) is bytes and len(response) <= self._max_send else (
            self.encode(response, index))

    @staticmethod
    async def send(write: Callable[[bytes], Awaitable[None]], data: bytes) -> None:
        """Hand ``data`` to gRPC; a failure there means the call is gone on the client's side."""
        try:
            await write(data)
        except Exception as exc:  # not CancelledError: that ends the call as it is
            raise send_failed(exc) from exc

    async def submit(
        self, request: Message, state: Any, *, lane: object, alone: bool = False,
        certain: bool = True, wake: Callable[[], None] | None = None,
    ) -> asyncio.Future[Outputs]:
        """Preprocess ``request`` and queue its rows; a future of its outputs.

        ``alone``: the call is the server's only open call and has nothing else in flight. Then an
        idle model runs the rows at once on this thread (:meth:`Batcher.call_now`): nothing could
        share the batch, and the hand-offs to the model thread and back cost more than the wait
        they avoid. ``certain``: whether ``alone`` is sure (a stream) or only seems so (a call of
        one request, unary or server-streaming: see :meth:`Batcher.call_now`; such calls wait for
        company while they come concurrently, :meth:`Batcher.wants_company`). ``lane``: the call,
        whose messages take turns with other calls' at the model. ``wake``: called when a future
        returned unresolved is resolved (:meth:`Batcher.offer`).
        """
        batcher, rows, count = self.route(self.preprocess(request, state))
        if batcher is None:  # a request about no model
            outputs = Outputs({}, "")
        else:
            # A call of one request waits for company while such calls come concurrently.
            company = not certain and batcher.wants_company()
            now = batcher.call_now(rows, count, certain=certain) if alone and not company else None
            if now is None:
                queued = batcher.offer(rows, count, lane, wake, unary=not certain, company=company)
                if queued is None:  # the queue is full: wait for room
                    queued = await batcher.submit(rows, count, lane, wake, unary=not certain,
                                                  company=company)
                return queued
            outputs = now
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        future.set_result(outputs)
        return future

    async def infer(self, request: Message, state: Any, *, alone: bool, lane: object) -> Outputs:
        """The outputs of a unary or server-streaming call's one request (its being ``alone`` is
        never certain: the next call may be waiting in gRPC)."""
        return await (await self.submit(request, state, alone=alone, certain=False, lane=lane))


def _row_count(rows: Rows) -> int:
    for value in rows.values():
        return len(value)
    return 0
