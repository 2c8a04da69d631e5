"""Transport security and authentication: TLS/mTLS credentials and the bearer-token interceptor.

Both are read from the config when the :class:`~streamserve.serving.Server` is built, so a missing
certificate or an empty token list stops start-up (and ``streamserve config check``) with a
:class:`~streamserve.errors.ConfigError` instead of surfacing as failed handshakes or locked-out
clients later.

Authentication guards the plugin services only. Health stays open because probes and load balancers
carry no token; reflection stays open unless ``server.auth.protect_reflection``, because it reveals
schemas, not data. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from streamserve.config import AuthConfig, ServerConfig, TLSConfig
from streamserve.errors import ConfigError, StreamserveError

__all__ = [
    "MISSING_TOKEN",
    "WRONG_TOKEN",
    "BearerTokenInterceptor",
    "TransportSecurity",
    "load_tokens",
    "serve_health_only",
    "server_credentials",
]

log = logging.getLogger(__name__)

MISSING_TOKEN = "missing bearer token: send metadata 'authorization: Bearer <token>'"
"""The UNAUTHENTICATED message for a call without a token: it says how to send one."""
WRONG_TOKEN = "invalid token"
"""The UNAUTHENTICATED message for a call with a token that is not accepted (no hint which)."""

_HEALTH_PREFIX = f"/{health.SERVICE_NAME}/"
_REFLECTION_PREFIX = "/grpc.reflection."  # v1alpha today; v1 too, should grpcio-reflection add it


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"server.tls.{what}: cannot read {path}: {exc.strerror}") from exc


def server_credentials(tls: TLSConfig) -> grpc.ServerCredentials:
    """gRPC server credentials for ``tls``: server certificate, and client verification for mTLS.

    The files are read once, here; to rotate certificates, restart (or roll) the server.
    """
    if tls.require_client_cert and tls.client_ca_file is None:
        raise ConfigError(
            "server.tls.require_client_cert: true needs server.tls.client_ca_file, the CA that "
            "client certificates must chain to"
        )
    key = _read(tls.key_file, "key_file")
    cert = _read(tls.cert_file, "cert_file")
    for what, data, marker in (("key_file", key, b"PRIVATE KEY-----"),
                               ("cert_file", cert, b"-----BEGIN CERTIFICATE-----")):
        if marker not in data:
            path = tls.key_file if what == "key_file" else tls.cert_file
            raise ConfigError(f"server.tls.{what}: {path} is not a PEM file (no {marker.decode()!r})")
    client_ca = _read(tls.client_ca_file, "client_ca_file") if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=tls.require_client_cert
    )


def load_tokens(auth: AuthConfig, env: Mapping[str, str] | None = None) -> tuple[bytes, ...]:
    """Every accepted token from ``auth.tokens_file`` and the variable ``auth.tokens_env`` names.

    Raises :class:`ConfigError` if none are found: a server that requires a token nobody can have
    would refuse every call, which is never what an operator meant.
    """
    env = os.environ if env is None else env
    tokens: list[str] = []
    sources = []
    if auth.tokens_file is not None:
        sources.append(str(auth.tokens_file))
        try:
            text = auth.tokens_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"server.auth.tokens_file: cannot read {auth.tokens_file}: {exc.strerror}"
            ) from exc
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                tokens.append(line)
    if auth.tokens_env is not None:
        sources.append(f"${auth.tokens_env}")
        tokens.extend(t.strip() for t in env.get(auth.tokens_env, "").split(",") if t.strip())
    if not tokens:
        raise ConfigError(
            f"server.auth: no tokens found (looked in {' and '.join(sources) or 'nothing'}: set "
            "server.auth.tokens_file and/or server.auth.tokens_env); without a token no call "
            "could be authenticated"
        )
    if any(any(c.isspace() for c in t) for t in tokens):
        raise ConfigError("server.auth: a token contains whitespace; tokens are single words")
    log.info("authentication: %d token(s) from %s", len(set(tokens)), " and ".join(sources))
    return tuple(sorted({t.encode() for t in tokens}))


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` metadata on every method but the open ones.

    The check runs before the handler is called; a refused call gets a handler of the same kind
    (unary or streaming, either side) that aborts with UNAUTHENTICATED without reading the request,
    because grpc drives a handler according to its kind and a mismatched one would break the call.
    """

    def __init__(self, tokens: Sequence[bytes], *, protect_reflection: bool = False) -> None:
        if not tokens:
            raise ValueError("BearerTokenInterceptor needs at least one token")
        self._tokens = tuple(tokens)
        self._protect_reflection = protect_reflection

    def _is_open(self, method: str) -> bool:
        if method.startswith(_HEALTH_PREFIX):
            return True
        return not self._protect_reflection and method.startswith(_REFLECTION_PREFIX)

    def _accepts(self, token: bytes) -> bool:
        # Compare against every token without stopping early: the time taken tells nothing about
        # which token, or which prefix of a token, came close.
        accepted = False
        for known in self._tokens:
            accepted |= hmac.compare_digest(known, token)
        return accepted

    def refusal(self, metadata: Sequence[tuple[str, Any]] | None) -> str | None:
        """Why a call with ``metadata`` is refused, or None if its token is accepted."""
        values = [value for key, value in (metadata or ()) if key == "authorization"]
        if not values:
            return MISSING_TOKEN
        value = values[0]
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        scheme, _, token = str(value).strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return MISSING_TOKEN
        return None if self._accepts(token.strip().encode()) else WRONG_TOKEN

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or self._is_open(method):
            return handler  # unknown methods stay UNIMPLEMENTED
        reason = self.refusal(handler_call_details.invocation_metadata)
        if reason is None:
            return handler
        log.info("refused a call to %s: %s", method, reason.split(":")[0])
        return _refusing_handler(handler, reason)


def _refusing_handler(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind that ends the call with UNAUTHENTICATED ``reason``."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> NoReturn:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        raise AssertionError("unreachable: context.abort raises")

    # No deserializer: an unauthenticated request is never parsed.
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


@dataclass(frozen=True)
class TransportSecurity:
    """What the main port needs from ``server.tls`` and ``server.auth``, read and checked once."""

    credentials: grpc.ServerCredentials | None = None
    """TLS credentials for the main port; None serves plaintext."""
    interceptors: tuple[grpc.aio.ServerInterceptor, ...] = ()
    """The bearer-token check, when ``server.auth`` is set."""

    @classmethod
    def from_config(
        cls, server: ServerConfig, *, source: str = "<config>", env: Mapping[str, str] | None = None
    ) -> TransportSecurity:
        """Read certificates and tokens now; errors name the config file and the key."""
        try:
            credentials = server_credentials(server.tls) if server.tls is not None else None
            interceptors: tuple[grpc.aio.ServerInterceptor, ...] = ()
            if server.auth is not None:
                tokens = load_tokens(server.auth, env)
                interceptors = (
                    BearerTokenInterceptor(tokens, protect_reflection=server.auth.protect_reflection),
                )
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        return cls(credentials, interceptors)

    def bind(self, server: grpc.aio.Server, address: str, *, key: str = "server.address") -> int:
        """Listen on ``address`` (the value of config key ``key``) with TLS if configured; returns
        the bound port."""
        try:
            if self.credentials is None:
                return server.add_insecure_port(address)
            return server.add_secure_port(address, self.credentials)
        except RuntimeError as exc:
            raise StreamserveError(f"{key}: cannot listen on {address}: {exc}") from exc


async def serve_health_only(
    servicer: health.aio.HealthServicer, address: str, *, reuse_port: bool = False
) -> tuple[grpc.aio.Server, int]:
    """A plaintext server with nothing but ``grpc.health.v1`` on ``address``; returns it and its port.

    kubelet's gRPC probes speak plaintext only, so with TLS on the main port they need their own
    port. Sharing ``servicer`` with the main server keeps both ports' statuses identical (draining
    included); serving nothing else keeps the plaintext port from bypassing TLS or tokens.
    """
    server = grpc.aio.server(options=[("grpc.so_reuseport", int(reuse_port))])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = TransportSecurity().bind(server, address, key="server.health_address")
    await server.start()
    return server, port
