"""The core serving real models in process: unary, server-streaming and bidirectional methods."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import streamserve
from streamserve import PluginSpec
from streamserve.config import parse_config
from streamserve.testing import serve_in_process


def scaler_config(model: Path, **batching: object) -> str:
    lines = [f"plugins:\n  scaler:\n    model_path: {model}\n"]
    if batching:
        lines.append("    batching:\n" + "".join(f"      {k}: {v}\n" for k, v in batching.items()))
    return "".join(lines)


@pytest.fixture
async def scaler_server(scaler_plugin: ModuleType, scaler_model: Path):  # type: ignore[no-untyped-def]
    config = parse_config(scaler_config(scaler_model))
    async with serve_in_process(config, extra_plugins=[scaler_plugin], installed=False) as server:
        yield server


def stubs(channel: grpc.aio.Channel, pb2: ModuleType) -> dict[str, object]:
    codec = {"request_serializer": pb2.Values.SerializeToString}
    return {
        "Scale": channel.unary_unary("/streamserve_test.Scaler/Scale",
                                     response_deserializer=pb2.Values.FromString, **codec),
        "Expand": channel.unary_stream("/streamserve_test.Scaler/Expand",
                                       response_deserializer=pb2.Value.FromString, **codec),
        "ScaleStream": channel.stream_stream("/streamserve_test.Scaler/ScaleStream",
                                             response_deserializer=pb2.Values.FromString, **codec),
    }


async def test_unary_server_streaming_and_bidi(scaler_server, scaler_plugin) -> None:  # type: ignore[no-untyped-def]
    pb2 = scaler_plugin.scaler_pb2
    async with grpc.aio.insecure_channel(scaler_server.address) as channel:
        call = stubs(channel, pb2)
        reply = await call["Scale"](pb2.Values(values=[0, 1, 2.5]))
        assert list(reply.values) == [1, 3, 6]

        expanded = [m.value async for m in call["Expand"](pb2.Values(values=[1, -1]))]
        assert expanded == [3, -1]

        requests = [pb2.Values(values=[float(i), float(i) + 0.5]) for i in range(200)]
        replies = [list(r.values) async for r in call["ScaleStream"](iter(requests))]
        assert replies == [[2 * i + 1, 2 * i + 2] for i in range(200)]


async def test_empty_message_needs_no_model_call(scaler_server, scaler_plugin) -> None:  # type: ignore[no-untyped-def]
    pb2 = scaler_plugin.scaler_pb2
    async with grpc.aio.insecure_channel(scaler_server.address) as channel:
        reply = await stubs(channel, pb2)["Scale"](pb2.Values())
    assert list(reply.values) == []


async def test_bad_input_is_invalid_argument_with_field_and_others_go_on(
    scaler_server, scaler_plugin
) -> None:  # type: ignore[no-untyped-def]
    pb2 = scaler_plugin.scaler_pb2
    async with grpc.aio.insecure_channel(scaler_server.address) as channel:
        call = stubs(channel, pb2)
        requests = [pb2.Values(values=[1]), pb2.Values(values=[2]), pb2.Values(values=[float("nan")])]
        stream = call["ScaleStream"](iter(requests))
        answered = []
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            async for reply in stream:
                answered.append(list(reply.values))
        # Everything before the bad message is answered, then the call ends with the reason.
        assert answered == [[3], [5]]
        error = failure.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "message 2" in error.details() and "values" in error.details()
        status = rpc_status.from_call(error)
        assert status is not None
        bad_request = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad_request)
        assert bad_request.field_violations[0].field == "values"

        # The server keeps serving everyone else.
        reply = await call["Scale"](pb2.Values(values=[4]))
        assert list(reply.values) == [9]


class PartialScaler:
    """The scaler plugin serving only Scale: Expand and ScaleStream have no Method."""

    def __init__(self, scaler_plugin: ModuleType) -> None:
        spec = scaler_plugin.make_spec()
        self.spec = dataclasses.replace(
            spec, methods={"Scale": spec.methods["Scale"]})

    @streamserve.hookimpl
    def streamserve_register(self, register: Callable[[PluginSpec], None]) -> None:
        register(self.spec)


async def test_a_method_the_plugin_does_not_bind_answers_unimplemented_naming_the_plugin(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    config = parse_config(scaler_config(scaler_model))
    async with (
        serve_in_process(config, extra_plugins=[PartialScaler(scaler_plugin)], installed=False) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        call = stubs(channel, pb2)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            [m async for m in call["Expand"](pb2.Values(values=[1]))]
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert refused.value.details() == ("Expand is not served by plugin 'scaler' (it serves Scale "
                                           "of streamserve_test.Scaler)")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            [m async for m in call["ScaleStream"](iter([pb2.Values(values=[2])]))]
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert (refused.value.details() or "").startswith("ScaleStream is not served by plugin 'scaler'")
        # The bound method is untouched.
        assert list((await call["Scale"](pb2.Values(values=[1]))).values) == [3]


class EchoScaler(PartialScaler):
    """Scale answered by the plugin itself, without the model: the values back, unscaled."""

    def __init__(self, scaler_plugin: ModuleType) -> None:
        super().__init__(scaler_plugin)
        pb2 = scaler_plugin.scaler_pb2
        echo = streamserve.Method.without_model(lambda request, state: pb2.Values(values=request.values))
        self.spec = dataclasses.replace(self.spec, methods={"Scale": echo})


async def test_a_method_may_answer_without_a_model_call(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    config = parse_config(scaler_config(scaler_model))
    async with (
        serve_in_process(config, extra_plugins=[EchoScaler(scaler_plugin)], installed=False) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        reply = await stubs(channel, pb2)["Scale"](pb2.Values(values=[1, 2]))
        assert list(reply.values) == [1, 2]  # not 2x + 1: the model was not called
        model = server.plugins[0].model
        assert model is not None and model.statistics.calls == 0
