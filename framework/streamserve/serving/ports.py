"""The addresses a server listens on: each its own, and a taken one refused in one clear line.

gRPC sets SO_REUSEPORT on its sockets by default, so on Linux a second server on a running one's
address would start, say "listening" and take half its calls. The server turns that off (unless
``server.reuse_port`` asks for it), and looks at each address before binding it: gRPC's own bind
error is a generic line on stderr, and an HTTP server's a traceback.
"""

from __future__ import annotations

import errno
import socket

from streamserve.errors import StreamserveError

__all__ = ["AddressInUse", "ensure_free"]


class AddressInUse(StreamserveError):
    """Another process listens on an address the config gives the server."""

    def __init__(self, key: str, address: str) -> None:
        port = address.rpartition(":")[2]
        super().__init__(
            f"{key}: cannot listen on {address}: the address is in use by another process "
            f"(`ss -ltnp 'sport = :{port}'` names it); stop it or set another port"
        )
        self.key = key
        self.address = address


def ensure_free(key: str, address: str) -> None:
    """Raise :class:`AddressInUse` if ``address`` (``HOST:PORT``, the value of config key ``key``)
    is taken. Port 0 (any free port) always is free."""
    host, _, port = address.rpartition(":")
    if int(port) == 0:
        return
    try:
        found = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StreamserveError(f"{key}: cannot listen on {address}: {exc.strerror}") from exc
    for family, kind, proto, _, where in found:
        with socket.socket(family, kind, proto) as probe:
            # As servers do: a port whose old connections linger in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise AddressInUse(key, address) from None
                raise StreamserveError(f"{key}: cannot listen on {address}: {exc.strerror}") from exc
