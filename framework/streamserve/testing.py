"""Helpers for testing plugins against a real server (also used by streamserve's own tests).

In process, on an ephemeral loopback port, every model loaded and warm on entry::

    async with serve_in_process(config, extra_plugins=[my_plugin_module]) as server:
        async with grpc.aio.insecure_channel(server.address) as channel:
            ...

As a real ``streamserve serve`` process (the installed plugins, the config file as given), ready
when its ready file says so (``serve --ready-file``), stopped with SIGTERM and checked to exit 0::

    with serve_subprocess(Path("server.yaml"), services=["my.Service"]) as server:
        with grpc.insecure_channel(server.address) as channel:
            ...
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamserve.config import StreamserveConfig
from streamserve.plugins import discover
from streamserve.serving import Server

__all__ = [
    "ServerProcess", "loopback_config", "serve_in_process", "serve_subprocess", "start_subprocess",
    "wait_until_serving",
]


def loopback_config(config: StreamserveConfig | None = None) -> StreamserveConfig:
    """``config`` (or the defaults) with every port it opens on an ephemeral port of 127.0.0.1."""
    config = config or StreamserveConfig()
    ephemeral = "127.0.0.1:0"
    server = config.server.model_copy(update={
        "address": ephemeral,
        "health_address": config.server.health_address and ephemeral,
    })
    metrics = config.metrics.model_copy(update={"address": config.metrics.address and ephemeral})
    return config.model_copy(update={"server": server, "metrics": metrics})


@asynccontextmanager
async def serve_in_process(
    config: StreamserveConfig | None = None,
    *,
    extra_plugins: Iterable[object] = (),
    installed: bool = True,
) -> AsyncIterator[Server]:
    """A started server with its models loaded; stopped on exit.

    :param extra_plugins: plugin objects (modules with hook implementations) to add to the
        installed ones, as if they were installed.
    :param installed: also load the installed entry-point plugins.
    """
    discovered = discover(extra_plugins, entry_points=installed)
    server = Server(loopback_config(config), discovered)
    await server.start()
    try:
        await server.load_models()
        yield server
    finally:
        await server.stop(0)


def wait_until_serving(
    address: str,
    services: Iterable[str] = ("",),
    timeout: float = 120.0,
    *,
    gone: Callable[[], bool] = lambda: False,
) -> None:
    """Poll the standard health service at ``address`` until every name in ``services`` is SERVING.

    For a server in another process: ``gone`` says whether it died, to fail at once instead of at
    the deadline. Raises TimeoutError naming the service that is not SERVING.
    """
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if gone() or time.monotonic() > deadline:
                    raise TimeoutError(f"{service!r} not SERVING at {address} after {timeout} s")
                time.sleep(0.1)


@dataclass
class ServerProcess:
    """A ``streamserve serve`` process started by :func:`start_subprocess`."""

    process: subprocess.Popen[bytes]
    ready_file: Path
    log_path: Path
    """Where the process's stdout and stderr go."""
    address: str = ""
    """``HOST:PORT`` with the real port, once :meth:`wait_ready` returned."""
    ready: dict[str, Any] = field(default_factory=dict)
    """The ready file's contents (services and models with their status), once ready."""
    _log: IO[bytes] | None = field(default=None, repr=False)

    def output(self) -> str:
        """Everything the process has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 120.0, services: Iterable[str] = ()) -> None:
        """Wait for the ready file (models loaded), then for each of ``services`` to be SERVING.

        Raises RuntimeError with the log if the process exits first, TimeoutError after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"streamserve exited with {self.process.returncode} before it was "
                                   f"ready:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamserve not ready after {timeout} s:\n{self.output()}")
            time.sleep(0.05)
        self.ready = json.loads(self.ready_file.read_text(encoding="utf-8"))
        self.address = self.ready["address"]
        remaining = max(1.0, deadline - time.monotonic())
        wait_until_serving(self.address, list(services), remaining,
                           gone=lambda: self.process.poll() is not None)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code; SIGKILL (and TimeoutError) if it does not exit in time."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise TimeoutError(f"streamserve did not stop within {timeout} s after SIGTERM:\n"
                                   f"{self.output()}") from None
        finally:
            if self._log is not None:
                self._log.close()


def start_subprocess(
    config: Path,
    *,
    address: str = "127.0.0.1:0",
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    log_path: Path | None = None,
) -> ServerProcess:
    """Start ``python -m streamserve serve --config CONFIG --ready-file ...``; returns at once.

    :param env: added to this process's environment (``PYTHONPATH``, ``STREAMSERVE_HOME``, ...).
    :param args: more ``serve`` arguments.
    :param log_path: where its output goes; default a temporary file, removed with the process.
    """
    folder = None
    if log_path is None:
        folder = tempfile.mkdtemp(prefix="streamserve-")
        log_path = Path(folder) / "serve.log"
    ready_file = log_path.with_name(f"{log_path.name}.ready.json")
    ready_file.unlink(missing_ok=True)
    log = log_path.open("wb")
    command = [sys.executable, "-m", "streamserve", "serve", "--config", str(config),
               "--address", address, "--ready-file", str(ready_file), *args]
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=log,
                               stderr=subprocess.STDOUT)
    server = ServerProcess(process, ready_file, log_path, _log=log)
    if folder is not None:  # the log outlives the process: removed with the object that shows it
        weakref.finalize(server, shutil.rmtree, folder, ignore_errors=True)
    return server


@contextmanager
def serve_subprocess(
    config: Path,
    *,
    env: Mapping[str, str] | None = None,
    services: Iterable[str] = ("",),
    timeout: float = 120.0,
    address: str = "127.0.0.1:0",
    args: Sequence[str] = (),
    log_path: Path | None = None,
) -> Iterator[ServerProcess]:
    """A ``streamserve serve`` process on ``address`` (an ephemeral loopback port by default),
    yielded once its models are loaded and ``services`` are SERVING. On exit it gets SIGTERM and
    must stop, with exit code 0, within ``timeout``."""
    server = start_subprocess(config, address=address, env=env, args=args, log_path=log_path)
    try:
        server.wait_ready(timeout, services)
        yield server
    finally:
        code = server.stop(timeout)
    assert code == 0, f"streamserve exited {code}:\n{server.output()}"
