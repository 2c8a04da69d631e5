"""Standard gRPC health and reflection on a real in-process server, before, during and after loading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from streamserve.config import StreamserveConfig, parse_config
from streamserve.plugins import discover
from streamserve.serving import Server
from streamserve.testing import loopback_config, serve_in_process

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
TIMEOUT = 10.0  # seconds; a hang fails the test instead of stalling the run


def scaler_service(scaler_plugin: ModuleType) -> str:
    return str(scaler_plugin.scaler_pb2.DESCRIPTOR.services_by_name["Scaler"].full_name)


def make_config(model: Path, extra: str = "") -> StreamserveConfig:
    return parse_config(f"plugins:\n  scaler:\n    model_path: {model}\n{extra}", env={})


@pytest.fixture
async def served(scaler_plugin: ModuleType, scaler_model: Path) -> AsyncIterator[Server]:
    async with serve_in_process(
        make_config(scaler_model), extra_plugins=[scaler_plugin], installed=False
    ) as server:
        yield server


async def check(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT
    )
    return int(reply.status)


async def next_status(watch: grpc.aio.UnaryStreamCall) -> int:
    reply = await asyncio.wait_for(watch.read(), TIMEOUT)
    assert reply is not grpc.aio.EOF, "the Watch stream ended"
    return int(reply.status)


def watch(channel: grpc.aio.Channel, service: str) -> grpc.aio.UnaryStreamCall:
    return health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service))


async def list_services(channel: grpc.aio.Channel) -> list[str]:
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
    )
    replies = [reply async for reply in call]
    return [service.name for service in replies[0].list_services_response.service]


# Health ------------------------------------------------------------------------------------------


async def test_everything_is_serving_after_load(served: Server, scaler_plugin: ModuleType) -> None:
    async with grpc.aio.insecure_channel(served.address) as channel:
        assert await check(channel, "") == SERVING
        assert await check(channel, scaler_service(scaler_plugin)) == SERVING
        assert await check(channel, "streamserve_test.Scaler") == SERVING


async def test_unknown_service_is_not_found(served: Server) -> None:
    async with grpc.aio.insecure_channel(served.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await check(channel, "streamserve_test.NoSuchService")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_streams_the_current_status(served: Server, scaler_plugin: ModuleType) -> None:
    async with grpc.aio.insecure_channel(served.address) as channel:
        service_watch = watch(channel, scaler_service(scaler_plugin))
        unknown_watch = watch(channel, "streamserve_test.NoSuchService")
        try:
            assert await next_status(service_watch) == SERVING
            assert await next_status(unknown_watch) == SERVICE_UNKNOWN
        finally:
            service_watch.cancel()
            unknown_watch.cancel()


async def test_service_is_not_serving_until_its_model_is_loaded(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    service = scaler_service(scaler_plugin)
    server = Server(loopback_config(make_config(scaler_model)), discover([scaler_plugin], entry_points=False))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            # Alive (the process) but not ready (the plugin): probes can tell the two apart.
            assert await check(channel, "") == SERVING
            assert await check(channel, service) == NOT_SERVING
            service_watch = watch(channel, service)
            try:
                assert await next_status(service_watch) == NOT_SERVING

                send = {"request_serializer": pb2.Values.SerializeToString}
                scale = channel.unary_unary(
                    f"/{service}/Scale", response_deserializer=pb2.Values.FromString, **send
                )
                expand = channel.unary_stream(
                    f"/{service}/Expand", response_deserializer=pb2.Value.FromString, **send
                )
                scale_stream = channel.stream_stream(
                    f"/{service}/ScaleStream", response_deserializer=pb2.Values.FromString, **send
                )
                calls = {
                    "Scale": lambda: scale(pb2.Values(values=[1.0]), timeout=TIMEOUT),
                    "Expand": lambda: _drain(expand(pb2.Values(values=[1.0]), timeout=TIMEOUT)),
                    "ScaleStream": lambda: _drain(
                        scale_stream(iter([pb2.Values(values=[1.0])]), timeout=TIMEOUT)
                    ),
                }
                for name, make_call in calls.items():
                    with pytest.raises(grpc.aio.AioRpcError) as error:
                        await make_call()
                    assert error.value.code() == grpc.StatusCode.UNAVAILABLE, name
                    assert "model is still loading" in (error.value.details() or ""), name

                await server.load_models()

                assert await next_status(service_watch) == SERVING
                assert await check(channel, service) == SERVING
                reply = await scale(pb2.Values(values=[1.0, 2.0]), timeout=TIMEOUT)
                assert list(reply.values) == [3.0, 5.0]
            finally:
                service_watch.cancel()
    finally:
        await server.stop(0)


async def _drain(call: grpc.aio.Call) -> list[object]:
    return [reply async for reply in call]


async def test_stop_flips_health_to_not_serving(scaler_plugin: ModuleType, scaler_model: Path) -> None:
    service = scaler_service(scaler_plugin)
    server = Server(loopback_config(make_config(scaler_model)), discover([scaler_plugin], entry_points=False))
    await server.start()
    stopping = None
    try:
        await server.load_models()
        async with grpc.aio.insecure_channel(server.address) as channel:
            watches = {name: watch(channel, name) for name in ("", service)}
            # An open stream keeps the drain going, as a real drain with clients does: the Watch
            # streams stay up until they have delivered the change, however busy the machine.
            pb2 = scaler_plugin.scaler_pb2
            open_stream = channel.stream_stream(
                f"/{service}/ScaleStream", request_serializer=pb2.Values.SerializeToString,
                response_deserializer=pb2.Values.FromString)()
            try:
                for name, call in watches.items():
                    assert await next_status(call) == SERVING, name
                await open_stream.write(pb2.Values(values=[1.0]))
                assert list((await asyncio.wait_for(open_stream.read(), TIMEOUT)).values) == [3.0]

                stopping = asyncio.create_task(server.stop(grace=TIMEOUT))

                for name, call in watches.items():
                    assert await next_status(call) == NOT_SERVING, name
                await open_stream.done_writing()  # the client ends its stream: the drain is over
            finally:
                for call in watches.values():
                    call.cancel()
            await asyncio.wait_for(stopping, TIMEOUT)
    finally:
        if stopping is None:
            await server.stop(0)


# Reflection --------------------------------------------------------------------------------------


async def test_reflection_lists_every_service(served: Server, scaler_plugin: ModuleType) -> None:
    async with grpc.aio.insecure_channel(served.address) as channel:
        services = await list_services(channel)

    assert {scaler_service(scaler_plugin), HEALTH, REFLECTION} <= set(services)
    assert {"streamserve_test.Scaler", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= set(services)


def _describe_over_reflection(address: str, service: str) -> tuple[list[str], dict[str, tuple[bool, bool]]]:
    """grpc's own reflection client, as grpcurl-like tools use it (blocking: run it in a thread)."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = list(database.get_services())
        descriptor = DescriptorPool(database).FindServiceByName(service)
        methods = {m.name: (m.client_streaming, m.server_streaming) for m in descriptor.methods}
    return services, methods


async def test_reflection_describes_the_plugin_service_to_a_standard_client(
    served: Server, scaler_plugin: ModuleType
) -> None:
    service = scaler_service(scaler_plugin)

    services, methods = await asyncio.to_thread(_describe_over_reflection, served.address, service)

    assert service in services
    assert methods == {"Scale": (False, False), "Expand": (False, True), "ScaleStream": (True, True)}


async def test_reflection_can_be_switched_off(scaler_plugin: ModuleType, scaler_model: Path) -> None:
    config = make_config(scaler_model, "server:\n  reflection: false\n")
    async with (
        serve_in_process(config, extra_plugins=[scaler_plugin], installed=False) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await list_services(channel)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # Health does not depend on reflection.
        assert await check(channel, scaler_service(scaler_plugin)) == SERVING
