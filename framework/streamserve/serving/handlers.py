"""gRPC method handlers built from a plugin's service descriptor: no servicer code in plugins.

Every call runs the same pipeline: ``open_state`` on the first message, ``preprocess`` to rows, the
model's shared :class:`~streamserve.runtime.Batcher`, ``postprocess`` to the response, state dropped
when the call ends. A bidirectional stream has a reader task that preprocesses and submits up to
``READ_AHEAD`` messages ahead while the handler answers them strictly in order, so a stream is not
limited to one model call per round trip; when that many wait, the reader stops reading
(backpressure through HTTP/2 flow control).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from streamserve.contract import Context, Infer, Method, Outputs, Rows
from streamserve.errors import StreamserveError
from streamserve.runtime import Batcher
from streamserve.serving.calls import END, Calls, Stream
from streamserve.serving.metrics import MethodMetrics, Metrics
from streamserve.serving.plugin import ServedPlugin
from streamserve.serving.repository import Repository
from streamserve.serving.status import abort

__all__ = ["service_handler"]

log = logging.getLogger(__name__)


def service_handler(
    plugin: ServedPlugin, repository: Repository, calls: Calls, metrics: Metrics
) -> grpc.GenericRpcHandler:
    """One generic handler serving every RPC method of ``plugin``'s service."""
    service = plugin.spec.service
    handlers = {}
    route = _router(plugin, repository)
    for rpc in service.methods:
        if rpc.name not in plugin.spec.methods:
            continue  # not served: serving/unbound.py answers UNIMPLEMENTED
        method = _Bound(plugin.spec.methods[rpc.name], route, plugin, repository)
        where = f"/{service.full_name}/{rpc.name}"
        counted = metrics.method(service.full_name, rpc.name)
        codec: dict[str, Any] = {
            "request_deserializer": GetMessageClass(rpc.input_type).FromString,
            "response_serializer": GetMessageClass(rpc.output_type).SerializeToString,
        }
        if rpc.client_streaming:
            handlers[rpc.name] = grpc.stream_stream_rpc_method_handler(
                _bidi(plugin, calls, counted, method, where), **codec
            )
        elif rpc.server_streaming:
            handlers[rpc.name] = grpc.unary_stream_rpc_method_handler(
                _server_streaming(plugin, calls, counted, method, where), **codec
            )
        else:
            handlers[rpc.name] = grpc.unary_unary_rpc_method_handler(
                _unary(plugin, calls, counted, method, where), **codec
            )
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


class _Bound:
    """A plugin's Method with what the core adds: routing to a model, and how state is opened."""

    __slots__ = ("_open", "close_state", "on_error", "postprocess", "preprocess", "ready", "route")

    def __init__(self, method: Method, route: Route, plugin: ServedPlugin, repository: Repository) -> None:
        self.preprocess = method.preprocess
        self.postprocess = method.postprocess
        self.close_state = method.close_state
        self.on_error = method.on_error
        self.route = route
        own = plugin.model
        context = Context(plugin.settings, repository if own is None else None)
        self._open: Callable[[], Any] = lambda: method.open_state(context)
        if own is None:
            self.ready: Callable[[], object] = lambda: None  # readiness is per model and per request
        else:
            self.ready = own.require_ready  # refuse at once, before reading anything

    def open_state(self) -> Any:
        return self._open()


def _row_count(rows: Rows) -> int:
    for value in rows.values():
        return len(value)
    return 0


async def _submit(
    method: _Bound, request: Message, state: Any, *, alone: bool = False
) -> asyncio.Future[Outputs]:
    """Preprocess ``request`` and queue its rows; a future of its outputs.

    ``alone``: the call is the server's only open call and has nothing else in flight. Then an idle
    model runs the rows at once on this thread (:meth:`Batcher.call_now`): nothing could share the
    batch, and the hand-offs to the model thread and back cost more than the wait they avoid.
    """
    batcher, rows, count = method.route(method.preprocess(request, state))
    if batcher is None:  # a request about no model
        outputs = Outputs({}, "")
    else:
        now = batcher.call_now(rows, count) if alone else None
        if now is None:
            return await batcher.submit(rows, count)
        outputs = now
    future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
    future.set_result(outputs)
    return future


async def _infer(method: _Bound, request: Message, state: Any, *, alone: bool) -> Outputs:
    return await (await _submit(method, request, state, alone=alone))


@contextlib.asynccontextmanager
async def _one_request(
    plugin: ServedPlugin, calls: Calls, counted: MethodMetrics, method: _Bound, where: str,
    request: Message, context: grpc.aio.ServicerContext,
) -> AsyncIterator[Any]:
    """A unary or server-streaming call: admitted, counted, its state opened and closed, any
    error turned into its status. Yields what postprocess returned for the one request."""
    try:
        calls.admit()
    except Exception as exc:
        _failed(plugin, counted, exc)
        await abort(context, exc, where=where)
    counted.received.inc()
    state = None
    try:
        method.ready()
        state = method.open_state()
        outputs = await _infer(method, request, state, alone=calls.open == 1)
        yield method.postprocess(outputs, request, state)
    except Exception as exc:
        _failed(plugin, counted, exc)
        await abort(context, exc, where=where)
    finally:
        calls.release()
        _close(method, state)


def _unary(
    plugin: ServedPlugin, calls: Calls, counted: MethodMetrics, method: _Bound, where: str
) -> Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]]:
    async def handle(request: Message, context: grpc.aio.ServicerContext) -> Message:
        started = time.perf_counter()
        async with _one_request(plugin, calls, counted, method, where, request, context) as response:
            if not isinstance(response, Message):
                raise _not_a_message(response)
            counted.sent.inc()
            counted.latency.observe(time.perf_counter() - started)
            return response
        raise AssertionError("unreachable: _one_request yields or aborts")

    return handle


def _server_streaming(
    plugin: ServedPlugin, calls: Calls, counted: MethodMetrics, method: _Bound, where: str
) -> Callable[[Message, grpc.aio.ServicerContext], AsyncIterator[Message]]:
    async def handle(
        request: Message, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Message]:
        started = time.perf_counter()
        async with _one_request(plugin, calls, counted, method, where, request, context) as responses:
            if not isinstance(responses, Iterable):
                raise TypeError(f"the plugin's postprocess returned {type(responses).__name__}, "
                                "not an iterable of response messages")
            for response in responses:
                counted.sent.inc()
                yield response
            counted.latency.observe(time.perf_counter() - started)

    return handle


def _bidi(
    plugin: ServedPlugin, calls: Calls, counted: MethodMetrics, method: _Bound, where: str
) -> Callable[[AsyncIterator[Message], grpc.aio.ServicerContext], AsyncIterator[Message]]:
    async def read(requests: AsyncIterator[Message], stream: Stream) -> None:
        """Take messages off the wire, preprocess them and queue their futures, in order."""
        index = 0
        now = time.perf_counter
        messages = aiter(requests)
        try:
            while stream.ended_by is None:
                await stream.room.acquire()
                if stream.ended_by is not None:
                    break
                stream.waiting = True
                try:
                    request = await anext(messages)
                except StopAsyncIteration:
                    stream.finish(END)
                    return
                finally:
                    stream.waiting = False
                heard = stream.last_heard = now()
                counted.received.inc()
                if not stream.opened:
                    stream.state = method.open_state()
                    stream.opened = True
                try:
                    future = await _submit(method, request, stream.state,
                                           alone=calls.open == 1 and not stream.items)
                except StreamserveError as exc:
                    if method.on_error is None:
                        raise
                    # Answered in-band, in its turn; the stream goes on.
                    future = asyncio.get_running_loop().create_future()
                    future.set_exception(exc)
                stream.add(request, future, heard)
                index += 1
        except asyncio.CancelledError:
            if stream.ended_by is None:  # cancelled because the call itself is over
                raise
        except Exception as exc:
            # Answer everything read before the bad message, then end the call with this error.
            stream.finish((index, exc))
            return
        assert stream.ended_by is not None
        stream.finish((index, stream.ended_by))

    async def handle(
        requests: AsyncIterator[Message], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Message]:
        try:
            calls.admit()
        except Exception as exc:
            _failed(plugin, counted, exc)
            await abort(context, exc, where=where)
        stream = Stream()
        failed_at = where
        outcome = "OK"
        answered = 0
        plugin.active_streams += 1
        counted.active.inc()
        calls.streams.add(stream)
        log.info("stream %s opened: %s from %s", stream.id, where, context.peer(),
                 extra={"stream_id": stream.id, "plugin": plugin.spec.name, "method": where})
        stream.reader = asyncio.get_running_loop().create_task(read(requests, stream))
        try:
            method.ready()
            items = stream.items
            while True:
                if not items or not _answerable(items[0]):
                    stream.ready.clear()
                    await stream.ready.wait()
                    continue
                item = items.popleft()
                if item is END:
                    break
                first, second, *heard = item
                if isinstance(second, Exception):
                    failed_at = f"{where} message {first}"
                    raise second
                response: Any
                try:
                    outputs = second.result()
                except StreamserveError as exc:
                    if method.on_error is None:
                        raise
                    response = method.on_error(exc, first, stream.state)
                else:
                    response = method.postprocess(outputs, first, stream.state)
                if not isinstance(response, Message):
                    raise _not_a_message(response)
                stream.room.release()
                counted.sent.inc()
                counted.latency.observe(time.perf_counter() - heard[0])
                answered += 1
                yield response
        except Exception as exc:
            outcome = _failed(plugin, counted, exc)
            await abort(context, exc, where=failed_at)
        except asyncio.CancelledError:
            outcome = "CANCELLED"
            raise
        finally:
            stream.reader.cancel()
            calls.streams.discard(stream)
            calls.release()
            plugin.active_streams -= 1
            counted.active.dec()
            if stream.opened:
                _close(method, stream.state)
            log.info("stream %s closed: %s after %d answered message(s) in %.1f s", stream.id, outcome,
                     answered, time.perf_counter() - stream.started,
                     extra={"stream_id": stream.id, "plugin": plugin.spec.name, "method": where,
                            "status": outcome, "messages": answered})

    return handle


def _answerable(item: Any) -> bool:
    """Whether the writer can take ``item`` now: a marker, or a message whose outputs are in."""
    return item is END or isinstance(item[1], Exception) or item[1].done()


def _failed(plugin: ServedPlugin, counted: MethodMetrics, exc: Exception) -> str:
    """Count a call that ends in ``exc``; returns its status code name."""
    code = (exc.code if isinstance(exc, StreamserveError) else StreamserveError.code).name
    plugin.errors[code] += 1
    counted.error(code)
    return code


def _not_a_message(value: object) -> TypeError:
    return TypeError(f"the plugin's postprocess returned {type(value).__name__}, not a response message")


def _close(method: _Bound, state: Any) -> None:
    if method.close_state is not None and state is not None:
        method.close_state(state)
