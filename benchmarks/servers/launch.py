"""Starting, watching and stopping the servers under test, each its own process on 127.0.0.1.

Separate processes keep the load generator and the server from sharing a GIL, and let the harness
read each server's CPU and memory from ``/proc``. Every child is started with
:func:`~benchmarks.procstat.die_with_parent`, and :func:`stop` escalates SIGTERM to SIGKILL, so no
server outlives the harness, whether it ends normally, by an exception or by a signal.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procstat import die_with_parent
from benchmarks.servers import SERVICE
from streamserve.testing import ServerProcess as Launched
from streamserve.testing import wait_until_serving

__all__ = [
    "DEFAULT_KINDS", "KINDS", "ServerProcess", "start_server", "stop_server", "train_model", "wait_ready",
]

REPO = Path(__file__).resolve().parents[2]
KINDS = ("echo", "naive", "naive-session", "streamserve")
DEFAULT_KINDS = ("echo", "naive", "streamserve")
"""``naive-session`` (the naive design calling the model through streamserve's own runner) runs
only when asked for: it isolates what the serving design gains from what the model call gains."""
"""The servers, in report order: ceiling, baseline, the system under test."""
SOURCE_DIRS = ("framework", "plugins/anomaly/src", "plugins/oip/src", "plugins/tfserving/src")
"""Where a source tree keeps the core and the plugins (a baseline imports them from another tree)."""

_LISTENING = re.compile(r"listening on (\S+:\d+)")
"""The echo and naive servers' own ready line (benchmarks/servers/__init__.py)."""


@dataclass
class ServerProcess:
    """One running server: its process, where it listens, and its log file."""

    kind: str
    process: subprocess.Popen[bytes]
    log_path: Path
    address: str = ""
    tree: Path | None = None
    """A baseline's source tree: streamserve as of an earlier commit (None: this tree's servers)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _env(tree: Path | None = None) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    # Another tree's sources go before the virtualenv's editable installs (of this tree): the
    # same entry points then load that tree's code.
    first = [str(tree / d) for d in SOURCE_DIRS] if tree is not None else []
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*first, str(REPO), *([path] if path else [])]),
        # TensorFlow's C++ log (oneDNN, CPU features, cuInit on a machine without a GPU) is noise
        # in these logs: quiet, as `streamserve` keeps it by default.
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1",
    }


def _spawn(command: list[str], log_path: Path, tree: Path | None = None) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO, env=_env(tree), preexec_fn=die_with_parent,
        )


def train_model(out_dir: Path, *, steps: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start training the anomaly model into ``out_dir`` (a version directory) with the plugin's
    own trainer; returns the process (wait for it). In a child, so the harness never imports TF."""
    code = (
        "import sys; from pathlib import Path; from streamserve_anomaly.training import train; "
        "train(Path(sys.argv[1]), seed=0, steps=int(sys.argv[2]))"
    )
    return _spawn([sys.executable, "-c", code, str(out_dir), str(steps)], log_path)


def _streamserve_config(
    workdir: Path, model_base: Path, max_batch_size: int | None, intra_op_threads: int | None
) -> Path:
    config = workdir / "streamserve.yaml"
    batching = f"    batching:\n      max_batch_size: {max_batch_size}\n" if max_batch_size else ""
    threads = "" if intra_op_threads is None else (
        f"tensorflow:\n  intra_op_threads: {intra_op_threads}\n")
    config.write_text(
        "# Written by the benchmark harness: the defaults, the benchmark's model.\n"
        "log_level: INFO\n"
        "server:\n"
        "  address: 127.0.0.1:0\n"
        "  shutdown_grace_seconds: 1\n"
        "plugins:\n"
        "  anomaly:\n"
        f"    model_path: {model_base}\n" + batching +
        "  oip: {}\n"
        # The OIP scenarios: the same model, one batcher, under the name `anomaly`.
        "model_repository:\n"
        "  models:\n"
        "    anomaly: {plugin: anomaly}\n" + threads
    )
    return config


def start_server(
    kind: str,
    workdir: Path,
    model_dir: Path,
    *,
    max_batch_size: int | None = None,
    intra_op_threads: int | None = None,
    tree: Path | None = None,
) -> ServerProcess:
    """Start server ``kind`` on an ephemeral loopback port; :func:`wait_ready` before using it.

    :param model_dir: the model version directory (``<base>/1``); streamserve is given its base.
    :param max_batch_size: streamserve's ``batching.max_batch_size``; None: its default.
    :param intra_op_threads: streamserve's ``tensorflow.intra_op_threads``; None: its default.
    :param tree: with it, ``kind`` is any name, and the server is streamserve run from this source
        tree (a git worktree of an earlier commit): a baseline for a change, in the same run.
    """
    log_path = workdir / f"{kind}.log"
    python = sys.executable
    if kind == "echo":
        command = [python, "-m", "benchmarks.servers.echo", "--address", "127.0.0.1:0"]
    elif kind in ("naive", "naive-session"):
        command = [python, "-m", "benchmarks.servers.naive", "--address", "127.0.0.1:0",
                   "--model", str(model_dir), "--call", "session" if kind == "naive-session" else "function"]
    elif kind == "streamserve":
        config = _streamserve_config(workdir, model_dir.parent, max_batch_size, intra_op_threads)
        command = [python, "-m", "streamserve", "serve", "--config", str(config),
                   "--address", "127.0.0.1:0", "--ready-file", str(_ready_file(workdir))]
        _ready_file(workdir).unlink(missing_ok=True)
    elif tree is not None:
        # An earlier tree may know no --ready-file: a fixed port, and its health polled.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{s.getsockname()[1]}"
        folder = workdir / kind
        folder.mkdir(exist_ok=True)
        config = _streamserve_config(folder, model_dir.parent, max_batch_size, intra_op_threads)
        command = [python, "-m", "streamserve", "serve", "--config", str(config), "--address", address]
        return ServerProcess(kind, _spawn(command, log_path, tree), log_path, address, tree)
    else:
        raise ValueError(f"unknown server {kind!r}; expected one of {', '.join(KINDS)}")
    return ServerProcess(kind, _spawn(command, log_path), log_path)


def _ready_file(workdir: Path) -> Path:
    return workdir / "streamserve.ready.json"


def wait_ready(server: ServerProcess, timeout: float) -> None:
    """Wait until the server can answer: streamserve's ready file (``serve --ready-file``) and its
    service SERVING; the echo and naive servers' ``listening on`` line (printed once they can)."""
    if server.kind == "streamserve":
        launched = Launched(server.process, _ready_file(server.log_path.parent), server.log_path)
        try:
            launched.wait_ready(timeout, [SERVICE])
        except (RuntimeError, TimeoutError) as exc:
            raise type(exc)(f"streamserve not ready:\n{server.log_tail()}") from None
        server.address = launched.address
        return
    if server.tree is not None:
        wait_until_serving(server.address, [SERVICE], timeout,
                           gone=lambda: server.process.poll() is not None)
        return
    deadline = time.monotonic() + timeout
    while not server.address:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.kind} server exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.kind} server not listening after {timeout} s:\n"
                               f"{server.log_tail()}")
        if match := _LISTENING.search(server.log_path.read_text(errors="replace")):
            server.address = match.group(1)
        else:
            time.sleep(0.1)


def stop_server(server: ServerProcess, timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode
