"""TLS, mutual TLS, the plaintext health-only port, bearer tokens and max_connection_age, on real
in-process servers with certificates made for this test session (tests/support/certs.py).

Every refusal is checked next to the matching success, so a test cannot pass because nothing works.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from streamserve.config import StreamserveConfig, parse_config
from streamserve.errors import ConfigError
from streamserve.plugins import discover
from streamserve.serving import Server
from streamserve.serving.security import MISSING_TOKEN, WRONG_TOKEN
from streamserve.testing import serve_in_process
from tests.support.certs import Certs, make_certs

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
SCALER = "streamserve_test.Scaler"
TIMEOUT = 10.0  # seconds; a hang fails the test instead of stalling the run
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TOKEN = "tok-3f9c2a7d1b8e4c60"
OTHER_TOKEN = "tok-from-env-5a1e"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def scaler_config(model: Path, server_yaml: str = "", *, source: Path | None = None,
                  env: dict[str, str] | None = None) -> StreamserveConfig:
    """The scaler plugin on ``model``, with ``server_yaml`` (indented keys) under ``server:``."""
    text = f"server:\n  address: 127.0.0.1:0\n{server_yaml}plugins:\n  scaler:\n    model_path: {model}\n"
    return parse_config(text, source=source, env=env or {})


def mtls_yaml(certs: Certs, *, require: bool = True, health: bool = True) -> str:
    yaml = (
        "  tls:\n"
        f"    cert_file: {certs.server_cert}\n"
        f"    key_file: {certs.server_key}\n"
        f"    client_ca_file: {certs.ca}\n"
        f"    require_client_cert: {'true' if require else 'false'}\n"
    )
    return yaml + ("  health_address: 127.0.0.1:0\n" if health else "")


def credentials(certs: Certs, client: str | None = "client", ca: str = "ca") -> grpc.ChannelCredentials:
    """Client TLS credentials trusting ``ca``, presenting the ``client`` certificate (None: none)."""
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=certs.read(ca))
    prefix = client.replace("-", "_")
    return grpc.ssl_channel_credentials(
        root_certificates=certs.read(ca),
        private_key=certs.read(f"{prefix}_key"),
        certificate_chain=certs.read(f"{prefix}_cert"),
    )


class Scaler:
    """The scaler's three kinds of method on a channel, with optional call metadata."""

    def __init__(self, channel: grpc.aio.Channel, pb2: Any, metadata: tuple[tuple[str, str], ...] = ()):
        self.pb2, self.metadata = pb2, metadata
        send = {"request_serializer": pb2.Values.SerializeToString}
        self._scale = channel.unary_unary(f"/{SCALER}/Scale", response_deserializer=pb2.Values.FromString,
                                          **send)
        self._expand = channel.unary_stream(f"/{SCALER}/Expand",
                                            response_deserializer=pb2.Value.FromString, **send)
        self._stream = channel.stream_stream(f"/{SCALER}/ScaleStream",
                                             response_deserializer=pb2.Values.FromString, **send)

    async def scale(self, *values: float) -> list[float]:
        reply = await self._scale(self.pb2.Values(values=values), timeout=TIMEOUT, metadata=self.metadata)
        return list(reply.values)

    async def expand(self, *values: float) -> list[float]:
        call = self._expand(self.pb2.Values(values=values), timeout=TIMEOUT, metadata=self.metadata)
        return [reply.value async for reply in call]

    async def scale_stream(self, *messages: list[float]) -> list[list[float]]:
        requests = [self.pb2.Values(values=m) for m in messages]
        call = self._stream(iter(requests), timeout=TIMEOUT, metadata=self.metadata)
        return [list(reply.values) async for reply in call]


async def check_health(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT
    )
    return int(reply.status)


async def list_services(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT,
        metadata=metadata,
    )
    replies = [reply async for reply in call]
    return [service.name for service in replies[0].list_services_response.service]


async def refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error ``call`` fails with (the test fails if it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


async def grpcurl(*args: str) -> tuple[int, str, str]:
    """Run grpcurl without blocking the event loop the in-process server runs on."""
    process = await asyncio.create_subprocess_exec(
        GRPCURL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# TLS and mutual TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def mtls_server(scaler_plugin: ModuleType, scaler_model: Path, certs: Certs) -> AsyncIterator[Server]:
    config = scaler_config(scaler_model, mtls_yaml(certs))
    async with serve_in_process(config, extra_plugins=[scaler_plugin], installed=False) as server:
        yield server


async def test_mtls_client_calls_every_kind_of_method(
    mtls_server: Server, certs: Certs, scaler_plugin: ModuleType
) -> None:
    async with grpc.aio.secure_channel(mtls_server.address, credentials(certs)) as channel:
        scaler = Scaler(channel, scaler_plugin.scaler_pb2)
        assert await scaler.scale(1.0, 2.0) == [3.0, 5.0]
        assert await scaler.expand(1.0, 2.0) == [3.0, 5.0]
        assert await scaler.scale_stream([1.0], [2.0, 3.0]) == [[3.0], [5.0, 7.0]]
        assert await check_health(channel, SCALER) == SERVING


async def test_plaintext_client_is_refused(
    mtls_server: Server, certs: Certs, scaler_plugin: ModuleType
) -> None:
    async with grpc.aio.insecure_channel(mtls_server.address) as channel:
        error = await refused(Scaler(channel, scaler_plugin.scaler_pb2).scale(1.0))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        error = await refused(check_health(channel))
        assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_certificate_from_another_ca_is_refused(
    mtls_server: Server, certs: Certs, scaler_plugin: ModuleType
) -> None:
    async with grpc.aio.secure_channel(mtls_server.address, credentials(certs, "other-client")) as channel:
        error = await refused(Scaler(channel, scaler_plugin.scaler_pb2).scale_stream([1.0]))
        assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_without_a_certificate_is_refused(
    mtls_server: Server, certs: Certs, scaler_plugin: ModuleType
) -> None:
    async with grpc.aio.secure_channel(mtls_server.address, credentials(certs, None)) as channel:
        error = await refused(Scaler(channel, scaler_plugin.scaler_pb2).scale(1.0))
        assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_that_does_not_trust_the_servers_ca_refuses_it(
    mtls_server: Server, certs: Certs, scaler_plugin: ModuleType
) -> None:
    # The other CA's certificate as the only root: the server's certificate does not chain to it.
    creds = grpc.ssl_channel_credentials(
        root_certificates=certs.read("other_client_cert"),
        private_key=certs.read("client_key"), certificate_chain=certs.read("client_cert"),
    )
    async with grpc.aio.secure_channel(mtls_server.address, creds) as channel:
        error = await refused(Scaler(channel, scaler_plugin.scaler_pb2).scale(1.0))
        assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_server_only_tls_needs_no_client_certificate(
    scaler_plugin: ModuleType, scaler_model: Path, certs: Certs
) -> None:
    config = scaler_config(scaler_model, mtls_yaml(certs, require=False, health=False))
    async with serve_in_process(config, extra_plugins=[scaler_plugin], installed=False) as server:
        async with grpc.aio.secure_channel(server.address, credentials(certs, None)) as channel:
            assert await Scaler(channel, scaler_plugin.scaler_pb2).scale(1.0) == [3.0]
        async with grpc.aio.insecure_channel(server.address) as channel:
            error = await refused(Scaler(channel, scaler_plugin.scaler_pb2).scale(1.0))
            assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_grpcurl_with_mtls(mtls_server: Server, certs: Certs) -> None:
    tls = ["-cacert", str(certs.ca), "-cert", str(certs.client_cert), "-key", str(certs.client_key)]
    code, out, err = await grpcurl(*tls, mtls_server.address, "list")
    assert code == 0, err
    assert SCALER in out.split() and "grpc.health.v1.Health" in out.split()

    code, out, err = await grpcurl(*tls, "-d", '{"values": [1, 2]}', mtls_server.address, f"{SCALER}/Scale")
    assert code == 0, err
    assert '"values"' in out and "5" in out

    # Without a client certificate, with the wrong one, or in plaintext: refused.
    attempts = {
        "no client cert": ["-cacert", str(certs.ca)],
        "other CA's client cert": ["-cacert", str(certs.ca), "-cert", str(certs.other_client_cert),
                                   "-key", str(certs.other_client_key)],
        "plaintext": ["-plaintext"],
    }
    for what, args in attempts.items():
        code, out, err = await grpcurl("-connect-timeout", "2", *args, mtls_server.address, "list")
        assert code != 0, f"{what}: grpcurl succeeded: {out}"
        assert SCALER not in out, what


# The health-only port -----------------------------------------------------------------------------


async def test_health_only_port_serves_health_in_plaintext(
    mtls_server: Server, scaler_plugin: ModuleType
) -> None:
    assert mtls_server.health_port not in (0, mtls_server.port)
    assert mtls_server.health_address == f"127.0.0.1:{mtls_server.health_port}"
    async with grpc.aio.insecure_channel(mtls_server.health_address) as channel:
        assert await check_health(channel, "") == SERVING
        assert await check_health(channel, SCALER) == SERVING
        # Nothing else is there: no plugin service (which would bypass mTLS), no reflection.
        error = await refused(Scaler(channel, scaler_plugin.scaler_pb2).scale(1.0))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        code, _ = await asyncio.to_thread(  # a stream with the blocking client: grpc/grpc#36066
            sync_bidi_status, mtls_server.health_address, scaler_plugin.scaler_pb2, ()
        )
        assert code == grpc.StatusCode.UNIMPLEMENTED
        error = await refused(list_services(channel))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_no_health_only_port_unless_configured(scaler_plugin: ModuleType, scaler_model: Path) -> None:
    async with serve_in_process(scaler_config(scaler_model), extra_plugins=[scaler_plugin],
                                installed=False) as server:
        assert server.health_port == 0
        assert server.health_address is None


async def test_health_only_port_follows_the_main_health_through_drain(
    scaler_plugin: ModuleType, scaler_model: Path, certs: Certs
) -> None:
    """One HealthServicer behind both ports: while the server drains, the probe port says so."""
    config = scaler_config(scaler_model, mtls_yaml(certs))
    server = Server(config, discover([scaler_plugin], entry_points=False))
    await server.start()
    stopping: asyncio.Task[None] | None = None
    try:
        assert server.health_address is not None
        async with grpc.aio.insecure_channel(server.health_address) as channel:
            # Before the model loads: alive, not ready, on the probe port too.
            assert await check_health(channel, "") == SERVING
            assert await check_health(channel, SCALER) == NOT_SERVING
            await server.load_models()
            assert await check_health(channel, SCALER) == SERVING
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            try:
                first = await asyncio.wait_for(watch.read(), TIMEOUT)
                assert first.status == SERVING
                stopping = asyncio.create_task(server.stop(1.0))
                second = await asyncio.wait_for(watch.read(), TIMEOUT)
                assert second.status == NOT_SERVING
            finally:
                watch.cancel()
        await asyncio.wait_for(stopping, TIMEOUT)
    finally:
        if stopping is None:
            await server.stop(0)


# Bearer tokens ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(f"# accepted tokens, one a line\n\n{TOKEN}\n# commented-out-token\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
async def auth_server(
    scaler_plugin: ModuleType, scaler_model: Path, tokens_file: Path
) -> AsyncIterator[Server]:
    auth = f"  auth:\n    tokens_file: {tokens_file}\n    tokens_env: SCALER_TOKENS\n"
    config = scaler_config(scaler_model, auth)
    env = {"SCALER_TOKENS": f" {OTHER_TOKEN} ,"}
    # The environment is read when the server is built; serve_in_process builds it from os.environ.
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        async with serve_in_process(config, extra_plugins=[scaler_plugin], installed=False) as server:
            yield server


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def sync_bidi_status(
    address: str, pb2: Any, metadata: tuple[tuple[str, str], ...], messages: int = 200
) -> tuple[grpc.StatusCode, str]:
    """Stream ``messages`` to ScaleStream with grpc's blocking client; the call's final status.

    Every reply is checked, so OK means every message was answered right.
    """
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(f"/{SCALER}/ScaleStream",
                                     request_serializer=pb2.Values.SerializeToString,
                                     response_deserializer=pb2.Values.FromString)
        requests = (pb2.Values(values=[float(i)]) for i in range(messages))
        try:
            replies = [list(r.values) for r in call(requests, timeout=TIMEOUT, metadata=metadata)]
        except grpc.RpcError as error:
            return error.code(), error.details()
        assert replies == [[2.0 * i + 1] for i in range(messages)]
        return grpc.StatusCode.OK, ""


async def test_calls_without_a_token_are_unauthenticated(
    auth_server: Server, scaler_plugin: ModuleType
) -> None:
    async with grpc.aio.insecure_channel(auth_server.address) as channel:
        scaler = Scaler(channel, scaler_plugin.scaler_pb2)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "unary": lambda: scaler.scale(1.0),
            "server streaming": lambda: scaler.expand(1.0),
        }
        for kind, call in calls.items():
            error = await refused(call())
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, kind
            assert error.details() == MISSING_TOKEN, kind
        # Bidi streams, refused while the client is still writing (with grpc's blocking client:
        # the asyncio client may report such a refusal as INTERNAL, grpc/grpc#36066).
        code, details = await asyncio.to_thread(
            sync_bidi_status, auth_server.address, scaler_plugin.scaler_pb2, ()
        )
        assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, MISSING_TOKEN)
        # Another scheme is no bearer token either.
        basic = (("authorization", f"Basic {TOKEN}"),)
        code, details = await asyncio.to_thread(
            sync_bidi_status, auth_server.address, scaler_plugin.scaler_pb2, basic
        )
        assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, MISSING_TOKEN)


async def test_calls_with_a_wrong_token_are_unauthenticated(
    auth_server: Server, scaler_plugin: ModuleType
) -> None:
    async with grpc.aio.insecure_channel(auth_server.address) as channel:
        for token in (TOKEN[:-1], TOKEN + "x", "commented-out-token", "# commented-out-token"):
            scaler = Scaler(channel, scaler_plugin.scaler_pb2, bearer(token))
            error = await refused(scaler.scale(1.0))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, token
            assert error.details() == WRONG_TOKEN, token
            # A stream refused before the client's first message is sent: grpc.aio's client may
            # report its own failed send as INTERNAL instead of the server's status (grpc/grpc#36066,
            # docs/operations.md), so the stream's status is read with the blocking client.
            code, details = await asyncio.to_thread(
                sync_bidi_status, auth_server.address, scaler_plugin.scaler_pb2, bearer(token)
            )
            assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, WRONG_TOKEN), token


async def test_calls_with_a_right_token_work(auth_server: Server, scaler_plugin: ModuleType) -> None:
    code, _ = await asyncio.to_thread(
        sync_bidi_status, auth_server.address, scaler_plugin.scaler_pb2, bearer(TOKEN)
    )
    assert code == grpc.StatusCode.OK
    async with grpc.aio.insecure_channel(auth_server.address) as channel:
        for token in (TOKEN, OTHER_TOKEN):  # one from the file, one from the environment
            scaler = Scaler(channel, scaler_plugin.scaler_pb2, bearer(token))
            assert await scaler.scale(1.0) == [3.0]
            assert await scaler.expand(1.0, 2.0) == [3.0, 5.0]
            assert await scaler.scale_stream([1.0], [2.0, 3.0]) == [[3.0], [5.0, 7.0]]
        # The scheme is case-insensitive (RFC 7235).
        scaler = Scaler(channel, scaler_plugin.scaler_pb2, (("authorization", f"bearer {TOKEN}"),))
        assert await scaler.scale(1.0) == [3.0]


async def test_health_and_reflection_stay_open(auth_server: Server) -> None:
    async with grpc.aio.insecure_channel(auth_server.address) as channel:
        assert await check_health(channel, "") == SERVING
        assert await check_health(channel, SCALER) == SERVING
        assert SCALER in await list_services(channel)


async def test_protected_reflection_needs_a_token(
    scaler_plugin: ModuleType, scaler_model: Path, tokens_file: Path
) -> None:
    auth = f"  auth:\n    tokens_file: {tokens_file}\n    protect_reflection: true\n"
    served = serve_in_process(scaler_config(scaler_model, auth), extra_plugins=[scaler_plugin],
                              installed=False)
    async with served as server, grpc.aio.insecure_channel(server.address) as channel:
        error = await refused(list_services(channel))
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, MISSING_TOKEN)
        assert SCALER in await list_services(channel, bearer(TOKEN))
        assert await check_health(channel, SCALER) == SERVING  # health: never protected
        code, out, err = await grpcurl("-plaintext", "-H", f"authorization: Bearer {TOKEN}",
                                       "-d", '{"values": [2]}', server.address, f"{SCALER}/Scale")
        assert code == 0, err
        assert "5" in out
        code, out, err = await grpcurl("-plaintext", server.address, "list")
        assert code != 0 and "Unauthenticated" in err, (out, err)


async def test_tokens_never_reach_the_log(
    scaler_plugin: ModuleType, scaler_model: Path, tokens_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = f"  auth:\n    tokens_file: {tokens_file}\n"
    wrong = "wrong-token-7c1d"
    served = serve_in_process(scaler_config(scaler_model, auth), extra_plugins=[scaler_plugin],
                              installed=False)
    async with served as server, grpc.aio.insecure_channel(server.address) as channel:
        assert await Scaler(channel, scaler_plugin.scaler_pb2, bearer(TOKEN)).scale(1.0) == [3.0]
        for metadata in (bearer(wrong), ()):
            await refused(Scaler(channel, scaler_plugin.scaler_pb2, metadata).scale_stream([1.0]))
    # The log did record the refusals and the token count: the check below is not vacuous.
    assert "refused a call to /streamserve_test.Scaler/ScaleStream: invalid token" in caplog.text
    assert "1 token(s)" in caplog.text
    assert TOKEN not in caplog.text
    assert wrong not in caplog.text


def test_auth_without_any_token_is_a_start_up_error(
    scaler_plugin: ModuleType, scaler_model: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "tokens"
    empty.write_text("# nobody yet\n\n", encoding="utf-8")
    discovered = discover([scaler_plugin], entry_points=False)
    cases = {
        f"  auth:\n    tokens_file: {empty}\n": "no tokens found",
        "  auth:\n    tokens_env: UNSET_TOKENS_VARIABLE\n": "no tokens found",
        "  auth: {}\n": "no tokens found",
        f"  auth:\n    tokens_file: {tmp_path / 'missing'}\n": "server.auth.tokens_file: cannot read",
    }
    for yaml, message in cases.items():
        config = scaler_config(scaler_model, yaml, source=tmp_path / "server.yaml")
        with pytest.raises(ConfigError, match=message) as error:
            Server(config, discovered, source="server.yaml")
        assert str(error.value).startswith("server.yaml: "), error.value


def test_bad_tls_files_are_start_up_errors(
    scaler_plugin: ModuleType, scaler_model: Path, certs: Certs, tmp_path: Path
) -> None:
    discovered = discover([scaler_plugin], entry_points=False)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello", encoding="utf-8")
    cases = {
        f"  tls:\n    cert_file: {tmp_path / 'nope.pem'}\n    key_file: {certs.server_key}\n":
            "server.tls.cert_file: cannot read",
        f"  tls:\n    cert_file: {certs.server_cert}\n    key_file: {not_pem}\n":
            "server.tls.key_file: .* is not a PEM file",
        f"  tls:\n    cert_file: {certs.server_cert}\n    key_file: {certs.server_key}\n"
        "    require_client_cert: true\n": "require_client_cert: true needs server.tls.client_ca_file",
    }
    for yaml, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            Server(scaler_config(scaler_model, yaml), discovered)


# max_connection_age ------------------------------------------------------------------------------


async def connections_during_calls(server: Server, scaler: Callable[[grpc.aio.Channel], Scaler],
                                   seconds: float) -> tuple[int, int]:
    """Unary calls every 100 ms for ``seconds``: (calls that succeeded, times the channel connected)."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        connected = 0

        async def count_connections() -> None:
            nonlocal connected
            state = channel.get_state(try_to_connect=False)
            while True:
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=False)
                connected += state == grpc.ChannelConnectivity.READY

        counter = asyncio.create_task(count_connections())
        ok = 0
        try:
            stub = scaler(channel)
            deadline = time.monotonic() + seconds
            for _ in range(int(seconds * 20)):  # bounded in count as well as time
                if time.monotonic() > deadline:
                    break
                assert await stub.scale(1.0) == [3.0]
                ok += 1
                await asyncio.sleep(0.1)
        finally:
            counter.cancel()
        return ok, connected


async def test_max_connection_age_reconnects_clients_transparently(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    def stub(channel: grpc.aio.Channel) -> Scaler:
        return Scaler(channel, scaler_plugin.scaler_pb2)

    aged = scaler_config(scaler_model, "  max_connection_age_seconds: 1\n"
                                       "  max_connection_age_grace_seconds: 1\n")
    async with serve_in_process(aged, extra_plugins=[scaler_plugin], installed=False) as server:
        ok, connected = await connections_during_calls(server, stub, 3.5)
    assert ok >= 20  # every call succeeded (one failure would have raised), spread over the time
    assert connected >= 3, f"the channel connected {connected} times in 3.5 s with a 1 s age"

    # The control: without the option the one connection lives on.
    async with serve_in_process(scaler_config(scaler_model), extra_plugins=[scaler_plugin],
                                installed=False) as server:
        ok, connected = await connections_during_calls(server, stub, 2.0)
    assert ok >= 10
    assert connected == 1
