"""``streamserve serve`` as a real subprocess on an ephemeral loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from streamserve.testing import wait_until_serving

LISTENING = re.compile(r"listening on (\S+:\d+)")


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    address: str = ""
    log: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.log)


@contextmanager
def serve_subprocess(
    config: Path, *, env: Mapping[str, str] | None = None, services: list[str] | None = None,
    timeout: float = 120.0,
) -> Iterator[ServerProcess]:
    """Start ``python -m streamserve serve`` on 127.0.0.1:0; yields once ``services`` are SERVING.

    On exit the server gets SIGTERM and must stop with exit code 0 within the timeout.
    """
    command = [sys.executable, "-m", "streamserve", "serve", "--config", str(config),
               "--address", "127.0.0.1:0"]
    process = subprocess.Popen(
        command, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    server = ServerProcess(process)
    found = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.log.append(line)
            if not found.is_set() and (match := LISTENING.search(line)):
                server.address = match.group(1)
                found.set()
        found.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        if not found.wait(timeout) or not server.address:
            raise RuntimeError(f"server did not start:\n{server.output()}")
        wait_until_serving(server.address, services or [""], timeout)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            reader.join(timeout=10)
            assert process.stdout is not None
            process.stdout.close()
    assert code == 0, f"server exited {code}:\n{server.output()}"
