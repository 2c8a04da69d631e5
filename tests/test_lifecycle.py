"""Lifecycle and reliability of the core, in process on loopback: drain, reload, isolation, limits.

The scaler test plugin serves y = a*x + b; version 1 of its model is (2, 1) and the reload tests add
version 2 = (3, 1), so every reply says which version computed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamserve import Method, hookimpl
from streamserve.cli import main
from streamserve.config import parse_config
from streamserve.errors import ModelLoadError
from streamserve.plugins import discover
from streamserve.serving import Server
from streamserve.testing import loopback_config, serve_in_process
from tests.support.counted import active_streams, call_errors
from tests.support.models import build_affine_model

SERVICE = "streamserve_test.Scaler"
TIMEOUT = 20.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def config_text(model: Path, server: str = "", plugin: str = "", top: str = "") -> str:
    return (
        f"{top}server:\n  address: 127.0.0.1:0\n{server}"
        f"plugins:\n  scaler:\n    model_path: {model}\n{plugin}"
    )


def make_server(scaler_plugin: ModuleType, text: str) -> Server:
    config = loopback_config(parse_config(text, env={}))
    return Server(config, discover([scaler_plugin], entry_points=False))


@contextlib.asynccontextmanager
async def served(
    plugin: object, text: str, channel_options: Sequence[tuple[str, Any]] = ()
) -> AsyncIterator[tuple[Server, grpc.aio.Channel]]:
    """An in-process server of ``plugin`` alone, configured by ``text``, and a channel to it."""
    async with serve_in_process(
        parse_config(text, env={}), extra_plugins=[plugin], installed=False
    ) as server, grpc.aio.insecure_channel(server.address, options=channel_options) as channel:
        yield server, channel


class Feed:
    """A client stream whose messages the test sends one by one, and can close."""

    def __init__(self, pb2: ModuleType) -> None:
        self.pb2 = pb2
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def send(self, *values: float) -> None:
        self.queue.put_nowait(self.pb2.Values(values=values))

    def close(self) -> None:
        self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Any]:
        for _ in range(100_000):  # bounded: tests send far fewer
            message = await self.queue.get()
            if message is None:
                return
            yield message


def scale_stream(channel: grpc.aio.Channel, pb2: ModuleType) -> Any:
    return channel.stream_stream(
        f"/{SERVICE}/ScaleStream",
        request_serializer=pb2.Values.SerializeToString,
        response_deserializer=pb2.Values.FromString,
    )


def scale(channel: grpc.aio.Channel, pb2: ModuleType) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/Scale",
        request_serializer=pb2.Values.SerializeToString,
        response_deserializer=pb2.Values.FromString,
    )


async def read(call: Any) -> list[float]:
    reply = await asyncio.wait_for(call.read(), TIMEOUT)
    assert reply is not grpc.aio.EOF
    return list(reply.values)


# Drain ---------------------------------------------------------------------------------------------


async def test_drain_answers_every_message_then_ends_streams_with_unavailable(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    server = make_server(scaler_plugin, config_text(scaler_model))
    await server.start()
    await server.load_models()
    stopped = False
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE)
            )
            assert (await asyncio.wait_for(watch.read(), TIMEOUT)).status == SERVING
            feeds = [Feed(pb2) for _ in range(100)]
            calls = [scale_stream(channel, pb2)(aiter(feed)) for feed in feeds]
            for i, feed in enumerate(feeds):
                feed.send(i)
            assert [await read(call) for call in calls] == [[2 * i + 1] for i in range(100)]
            # Messages in flight when the signal comes must be answered too.
            for i, feed in enumerate(feeds):
                feed.send(i, 0.5)

            stopping = asyncio.create_task(server.stop(grace=1.0))
            assert (await asyncio.wait_for(watch.read(), TIMEOUT)).status == NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await scale(channel, pb2)(pb2.Values(values=[1]), timeout=TIMEOUT)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

            for i, call in enumerate(calls):
                assert await read(call) == [2 * i + 1, 2.0]
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    await asyncio.wait_for(call.read(), TIMEOUT)
                assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "shutting down" in (ended.value.details() or "")
                assert "reconnect" in (ended.value.details() or "")
            await asyncio.wait_for(stopping, TIMEOUT)
            stopped = True
        assert server.calls.open == 0 and not server.calls.streams
    finally:
        if not stopped:
            await server.stop(0)


async def test_streams_that_finish_within_the_grace_end_ok(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    server = make_server(scaler_plugin, config_text(scaler_model))
    await server.start()
    await server.load_models()
    async with grpc.aio.insecure_channel(server.address) as channel:
        feed = Feed(pb2)
        call = scale_stream(channel, pb2)(aiter(feed))
        feed.send(1)
        assert await read(call) == [3]
        stopping = asyncio.create_task(server.stop(grace=10.0))
        await asyncio.sleep(0.1)
        feed.send(2)  # the stream goes on during the grace
        assert await read(call) == [5]
        feed.close()
        assert await asyncio.wait_for(call.read(), TIMEOUT) is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        # With nothing open the drain ends at once instead of sitting out its grace.
        await asyncio.wait_for(stopping, 5.0)


# Hot reload -----------------------------------------------------------------------------------------


@pytest.fixture
def versions(tmp_path: Path, scaler_model: Path) -> Path:
    """A private model base holding version 1 (y = 2x + 1), for tests that add versions."""
    base = tmp_path / "scaler"
    shutil.copytree(scaler_model, base)
    return base


async def test_reload_under_64_live_streams_loses_nothing_and_switches_version(
    scaler_plugin: ModuleType, versions: Path, tmp_path: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    text = config_text(versions, plugin="    model_poll_seconds: 0.2\n")
    async with served(scaler_plugin, text) as (server, channel):
        stop = asyncio.Event()
        answered_once = [asyncio.Event() for _ in range(65)]

        async def client(k: int) -> list[float]:
            async def messages() -> AsyncIterator[Any]:
                after_switch = 0
                for _ in range(2000):  # bounded; ends 20 messages after the new version is in
                    if stop.is_set():
                        after_switch += 1
                        if after_switch > 20:
                            return
                    yield pb2.Values(values=[float(k)])
                    await asyncio.sleep(0.005)

            slopes = []
            async for reply in scale_stream(channel, pb2)(messages()):
                slopes.append((reply.values[0] - 1) / k if k else 0.0)
                answered_once[k].set()
            return slopes

        streams = [asyncio.create_task(client(k)) for k in range(1, 65)]
        # Every stream is live and served by version 1 before version 2 appears.
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in answered_once[1:])), 60)
        staging = tmp_path / "staging"
        build_affine_model(staging, scale=3.0)
        staging.rename(versions / "2")  # appears at once, as a deploy tool would do it
        plugin = server.plugins[0]
        for _ in range(200):
            if plugin.model.model is not None and plugin.model.model.version == "2":
                break
            await asyncio.sleep(0.05)
        stop.set()
        results = await asyncio.wait_for(asyncio.gather(*streams), 60)

        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert reply.status == SERVING
    assert plugin.model.model is not None and plugin.model.model.version == "2"
    for slopes in results:
        assert len(slopes) > 20
        assert set(slopes) <= {2.0, 3.0}
        # Each stream switches once, from version 1 to version 2, and never back.
        assert slopes == sorted(slopes) and slopes[0] == 2.0 and slopes[-1] == 3.0
    assert not call_errors(server)


async def test_a_corrupt_new_version_is_rejected_and_the_old_one_serves(
    scaler_plugin: ModuleType, versions: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    text = config_text(versions, plugin="    model_poll_seconds: null\n")
    async with served(scaler_plugin, text) as (server, channel):
        (versions / "3").mkdir()
        (versions / "3" / "saved_model.pb").write_bytes(b"not a model")
        with caplog.at_level(logging.ERROR):
            assert await server.models.reload(server.plugins[0].model) is False
            # Not retried until it changes:
            assert await server.models.reload(server.plugins[0].model) is False
        rejected = [r for r in caplog.records if "rejected version 3" in r.getMessage()]
        assert len(rejected) == 1 and "still serving version 1" in rejected[0].getMessage()
        assert list((await scale(channel, pb2)(pb2.Values(values=[1]))).values) == [3]
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE)
        )
        assert reply.status == SERVING

        # Fixed in place (files changed): the next look loads it.
        shutil.rmtree(versions / "3")
        build_affine_model(versions / "3", scale=5.0)
        assert await server.models.reload(server.plugins[0].model) is True
        assert list((await scale(channel, pb2)(pb2.Values(values=[1]))).values) == [6]


# Failure isolation ---------------------------------------------------------------------------------


async def test_on_plugin_error_continue_serves_the_rest_and_reports(
    scaler_plugin: ModuleType, tmp_path: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    missing = tmp_path / "nowhere"
    server = make_server(scaler_plugin, config_text(missing, top="on_plugin_error: continue\n"))
    await server.start()
    try:
        await server.load_models()
        assert server.plugins[0].model.load_error and str(missing) in server.plugins[0].model.load_error
        async with grpc.aio.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert (await health.Check(health_pb2.HealthCheckRequest(service=""))).status == SERVING
            status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
            assert status.status == NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await scale(channel, pb2)(pb2.Values(values=[1]))
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "failed to load" in (failure.value.details() or "")
    finally:
        await server.stop(0)


async def test_on_plugin_error_fail_stops_start_up(scaler_plugin: ModuleType, tmp_path: Path) -> None:
    server = make_server(scaler_plugin, config_text(tmp_path / "nowhere"))
    await server.start()
    try:
        with pytest.raises(ModelLoadError, match="does not exist"):
            await server.load_models()
    finally:
        await server.stop(0)


class BuggyScaler:
    """The scaler plugin with a postprocess bug that only some messages trigger."""

    def __init__(self, scaler_plugin: ModuleType) -> None:
        self.scaler_plugin = scaler_plugin

    @hookimpl
    def streamserve_register(self, register: Any) -> None:
        plugin = self.scaler_plugin

        def postprocess(outputs: Any, request: Any, state: Any) -> Any:
            if any(v > 100 for v in request.values):
                raise RuntimeError("secret internals")
            return plugin.postprocess(outputs, request, state)

        spec = plugin.make_spec()
        method = Method(plugin.preprocess, postprocess)
        register(dataclasses.replace(spec, methods=dict.fromkeys(spec.methods, method)))


async def test_a_plugin_bug_ends_only_its_call_as_internal_with_a_reference(
    scaler_plugin: ModuleType, scaler_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    async with served(BuggyScaler(scaler_plugin), config_text(scaler_model)) as (server, channel):
        feed = Feed(pb2)
        healthy = scale_stream(channel, pb2)(aiter(feed))
        feed.send(1)
        assert await read(healthy) == [3]
        with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as failure:
            await scale(channel, pb2)(pb2.Values(values=[1000]))
        details = failure.value.details() or ""
        assert failure.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in details
        reference = details.split("(ref ")[1].split(")")[0]
        logged = [r for r in caplog.records if reference in r.getMessage()]
        assert logged and logged[0].exc_info is not None  # the full traceback, under that id
        feed.send(2)  # the other stream never noticed
        assert await read(healthy) == [5]
        assert call_errors(server) == {"INTERNAL": 1}
        feed.close()


# Limits -------------------------------------------------------------------------------------------


async def test_concurrent_stream_limit_is_resource_exhausted_naming_the_limit(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    text = config_text(scaler_model, server="  max_concurrent_streams: 3\n")
    async with served(scaler_plugin, text) as (server, channel):
        feeds = [Feed(pb2) for _ in range(3)]
        calls = [scale_stream(channel, pb2)(aiter(feed)) for feed in feeds]
        for feed, call in zip(feeds, calls, strict=True):
            feed.send(1)
            assert await read(call) == [3]
        extra = Feed(pb2)
        extra.send(1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await read(scale_stream(channel, pb2)(aiter(extra)))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit is 3" in (refused.value.details() or "")
        for feed in feeds:
            feed.close()
        for call in calls:
            assert await call.code() == grpc.StatusCode.OK
        # Room again once they are closed.
        assert list((await scale(channel, pb2)(pb2.Values(values=[2]))).values) == [5]
        assert server.calls.open == 0


async def test_an_idle_stream_ends_with_deadline_exceeded(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    text = config_text(scaler_model, server="  stream_idle_timeout_seconds: 0.3\n")
    async with served(scaler_plugin, text) as (server, channel):
        feed = Feed(pb2)
        call = scale_stream(channel, pb2)(aiter(feed))
        feed.send(1)
        assert await read(call) == [3]
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), TIMEOUT)
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stream_idle_timeout_seconds" in (ended.value.details() or "")
        assert active_streams(server) == 0


async def test_a_client_deadline_ends_the_stream_and_frees_it(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    async with served(scaler_plugin, config_text(scaler_model)) as (server, channel):
        feed = Feed(pb2)
        call = scale_stream(channel, pb2)(aiter(feed), timeout=0.5)
        feed.send(1)
        assert await read(call) == [3]
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), TIMEOUT)
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        for _ in range(100):
            if server.calls.open == 0:
                break
            await asyncio.sleep(0.02)
        assert server.calls.open == 0 and active_streams(server) == 0


async def test_an_oversized_message_is_resource_exhausted(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    text = config_text(scaler_model, server="  max_receive_message_bytes: 1000\n")
    async with served(scaler_plugin, text) as (_server, channel):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await scale(channel, pb2)(pb2.Values(values=[1.0] * 1000))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert list((await scale(channel, pb2)(pb2.Values(values=[1.0] * 10))).values) == [3.0] * 10


async def test_500_cancelled_streams_free_every_state(
    scaler_plugin: ModuleType, scaler_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    async with served(scaler_plugin, config_text(scaler_model)) as (server, channel):
        with caplog.at_level(logging.INFO):
            for wave in range(5):
                feeds = [Feed(pb2) for _ in range(100)]
                calls = [scale_stream(channel, pb2)(aiter(feed)) for feed in feeds]
                for feed in feeds:
                    feed.send(wave)
                    feed.send(wave + 0.5)  # one answered, one maybe in flight when cancelled
                for call in calls:
                    assert await read(call) == [2 * wave + 1]
                for call in calls:
                    call.cancel()
            for _ in range(200):
                if server.calls.open == 0:
                    break
                await asyncio.sleep(0.02)
        assert server.calls.open == 0
        assert active_streams(server) == 0
        assert not server.calls.streams
        # Each is recorded as the client saw it: cancelled.
        ok = [r.getMessage() for r in caplog.records if "closed: OK" in r.getMessage()]
        assert call_errors(server) == {"CANCELLED": 500}, ok
        assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]


def test_plugins_command_reports_models_that_fail_to_load(
    tmp_path: Path, anomaly_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(f"plugins:\n  anomaly:\n    model_path: {anomaly_model}\n")
    bad.write_text(f"on_plugin_error: continue\nplugins:\n  anomaly:\n    model_path: {tmp_path}/gone\n")

    assert main(["plugins", "--json", "--config", str(good)]) == 0
    (served,) = [row for row in json.loads(capsys.readouterr().out) if row["name"] == "anomaly"]
    assert served["model"] == {"enabled": True, "path": str(anomaly_model / "1"), "version": "1",
                               "error": None, "runner": "session", "runner_reason": ""}

    assert main(["plugins", "--config", str(bad)]) == 1  # `serve` would not start: scripts see it
    assert f"FAILS TO LOAD: model directory {tmp_path}/gone does not exist" in capsys.readouterr().out


async def test_a_client_that_pings_too_often_is_sent_away(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    """Keepalive enforcement: pings more often than min_client_ping_interval_seconds end in GOAWAY."""
    pb2 = scaler_plugin.scaler_pb2
    text = config_text(scaler_model, server="  keepalive:\n    min_client_ping_interval_seconds: 10\n")
    pushy = [
        ("grpc.keepalive_time_ms", 100),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    async with served(scaler_plugin, text, pushy) as (_server, channel):
        feed = Feed(pb2)
        call = scale_stream(channel, pb2)(aiter(feed))
        feed.send(1)
        assert await read(call) == [3]
        with pytest.raises(grpc.aio.AioRpcError) as sent_away:
            await asyncio.wait_for(call.read(), TIMEOUT)  # nothing more is sent: only pings
        assert sent_away.value.code() == grpc.StatusCode.UNAVAILABLE
        assert sent_away.value.details() == "Too many pings"
