"""``python -m benchmarks.peer`` (``make bench-peer``): streamserve against Seldon MLServer, side by side.

    make bench-peer                                        # builds .venv-peer (MLServer), 2 rounds
    python -m benchmarks.peer --peer-python .venv-peer/bin/python --rounds 3 --duration 10
    python -m benchmarks.peer --quick --servers streamserve   # the harness's own path, no MLServer

What a user who brings their own model would compare. One SavedModel, built the way a user builds
it (:mod:`benchmarks.servers.peer_model`: a ``tf.Module`` wrapping a Keras autoencoder,
``window: float32[?, 32]`` -> ``score: float32[?]``), served by

- **mlserver**: MLServer (its own virtualenv: it pins what streamserve's cannot share) in process
  (``parallel_workers: 0``; ``--mlserver-workers N`` runs inference in N worker processes, as
  MLServer does by default with 1), adaptive batching of 64 rows / 2 ms, through a small custom
  runtime that calls the SavedModel (:mod:`benchmarks.servers.mlserver_runtime`);
- **streamserve**: the ``oip`` plugin over a model repository holding that directory, its defaults;
- **echo**: no model at all (:mod:`benchmarks.servers.oip_echo`): grpc.aio answering each request
  with zeros, the most a Python gRPC server can do per request with this client on this machine.
  Its ratio to MLServer bounds what a Python server's ratio can reach here (the client shares the
  cores).

Both get the same load from the same client processes (:mod:`benchmarks.loadgen` with
tritonclient's messages, one request in flight per caller): ModelStreamInfer over 1 and 64 streams,
ModelInfer from 1 and 64 callers. Rounds interleave the servers scenario by scenario (each round
starts with the other server), so the machine's drifts hit both alike; the report gives the medians
of the rounds, each server's CPU per message (from ``/proc``) and the ratios. Results go to
``benchmarks/results/peer-<timestamp>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

from benchmarks.clients import ClientError, ClientPool
from benchmarks.measure import run_timed
from benchmarks.procstat import die_with_parent, machine_info
from benchmarks.scenarios import Scenario, timing
from benchmarks.servers.launch import REPO

__all__ = ["SCENARIOS", "main"]

RESULTS = REPO / "benchmarks" / "results"
MODEL = "autoencoder"
SERVERS = ("mlserver", "streamserve", "echo")
SCENARIOS = {
    "stream-1": Scenario("stream-1", streams=1, clients=1, protocol="oip-stream"),
    "stream-64": Scenario("stream-64", streams=64, protocol="oip-stream"),
    "unary-1": Scenario("unary-1", streams=1, clients=1, protocol="oip-unary"),
    "unary-64": Scenario("unary-64", streams=64, protocol="oip-unary"),
}
QUICK = {
    "stream-1": SCENARIOS["stream-1"],
    "stream-64": Scenario("stream-64", streams=8, protocol="oip-stream"),
    "unary-1": SCENARIOS["unary-1"],
    "unary-64": Scenario("unary-64", streams=8, protocol="oip-unary"),
}
"""``--quick``: 8 callers stand in for 64 (a smoke test of the harness, not a measurement)."""
GOALS = {
    "stream-64": ("msg/s", 2.5),
    "unary-64": ("msg/s", 1.5),
    "stream-1": ("p99", 0.35),
}
"""Issue 13's goals: streamserve's msg/s at least, or its p99 at most, this times MLServer's."""
CPU_GOALS = {"stream-64": 150.0, "unary-64": 400.0}
"""Issue 13's goals for streamserve's own server CPU per message (µs), whatever MLServer's."""
STREAM_RESPONSE = {"mlserver": "ModelInferResponse", "streamserve": "ModelStreamInferResponse",
                   "echo": "ModelStreamInferResponse"}
"""What each server's ModelStreamInfer streams back: MLServer's proto answers a bare
ModelInferResponse where Triton's (and streamserve's) wrap it in ModelStreamInferResponse."""
MLSERVER_BATCH = {"max_batch_size": 64, "max_batch_time": 0.002}
_START_TIMEOUT = 300.0
_PAUSE = 0.5


@dataclass
class Peer:
    """One server process the harness started."""

    kind: str
    process: subprocess.Popen[bytes]
    log_path: Path
    address: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _log(message: str) -> None:
    print(f"[peer {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
            "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **extra}


def _spawn(kind: str, command: list[str], workdir: Path, address: str, cwd: Path = REPO,
           env: dict[str, str] | None = None) -> Peer:
    log_path = workdir / f"{kind}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=cwd, env=env or _env(),
                                   preexec_fn=die_with_parent)
    return Peer(kind, process, log_path, address)


def build_model(workdir: Path) -> Path:
    """The user's SavedModel, ``<workdir>/models/autoencoder/1``, built in a child process (this
    one never imports TensorFlow)."""
    out = workdir / "models" / MODEL / "1"
    done = subprocess.run([sys.executable, "-m", "benchmarks.servers.peer_model", str(out)],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=_START_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"building the model failed:\n{done.stderr[-3000:]}")
    return out


def streamserve_config(port: int, models: Path, delay_ms: float | None = None) -> str:
    """The YAML of the streamserve under test: the oip plugin over the model repository, its
    defaults, or with ``delay_ms`` its batching's ``max_delay_ms``."""
    batching = f"  batching: {{max_delay_ms: {delay_ms:g}}}\n" if delay_ms is not None else ""
    return (
        "# Written by benchmarks.peer: the oip plugin over the model repository.\n"
        "log_level: INFO\n"
        "server:\n"
        f"  address: 127.0.0.1:{port}\n"
        "  shutdown_grace_seconds: 1\n"
        "plugins:\n"
        "  anomaly: {enabled: false}\n"
        "  tfserving: {enabled: false}\n"
        "  oip: {}\n"
        "model_repository:\n"
        f"  path: {models}\n"
        "  poll_seconds: null\n"
        f"{batching}"
    )


def start_streamserve(workdir: Path, models: Path, delay_ms: float | None = None) -> Peer:
    port = _free_port()
    config = workdir / "streamserve.yaml"
    config.write_text(streamserve_config(port, models, delay_ms))
    return _spawn("streamserve", [sys.executable, "-m", "streamserve", "serve", "--config", str(config)],
                  workdir, f"127.0.0.1:{port}")


def start_echo(workdir: Path) -> Peer:
    address = f"127.0.0.1:{_free_port()}"
    return _spawn("echo", [sys.executable, "-m", "benchmarks.servers.oip_echo", "--address", address],
                  workdir, address)


def mlserver_settings(model_dir: Path, grpc_port: int, workers: int = 0) -> dict[str, dict[str, Any]]:
    """MLServer's ``settings.json`` and ``model-settings.json``: adaptive batching, the custom
    runtime over ``model_dir``, inference in process (``workers`` 0) or in that many processes."""
    return {
        "settings.json": {
            "host": "127.0.0.1", "grpc_port": grpc_port, "http_port": _free_port(),
            "metrics_port": _free_port(), "parallel_workers": workers, "debug": False,
        },
        "model-settings.json": {
            "name": MODEL,
            "implementation": "mlserver_runtime.SavedModelRuntime",
            "parameters": {"uri": str(model_dir)},
            **MLSERVER_BATCH,
            "inputs": [{"name": "window", "datatype": "FP32", "shape": [-1, 32]}],
            "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1]}],
        },
    }


def start_mlserver(workdir: Path, model_dir: Path, peer_python: Path, workers: int = 0) -> Peer:
    """MLServer with adaptive batching, serving ``model_dir`` through the custom runtime (its CPU
    is read with its worker processes')."""
    folder = workdir / "mlserver"
    folder.mkdir()
    shutil.copy(REPO / "benchmarks" / "servers" / "mlserver_runtime.py", folder / "mlserver_runtime.py")
    grpc_port = _free_port()
    for name, settings in mlserver_settings(model_dir, grpc_port, workers).items():
        (folder / name).write_text(json.dumps(settings))
    mlserver = peer_python.absolute().parent / "mlserver"  # not resolve(): a venv's python is a link
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return _spawn("mlserver", [str(mlserver), "start", str(folder)], workdir, f"127.0.0.1:{grpc_port}",
                  cwd=folder, env=env)


def wait_model_ready(peer: Peer, timeout: float) -> None:
    """Poll the OIP ``ModelReady`` of the model until it says ready (the messages hand-encoded: this
    process imports neither tritonclient's nor the oip plugin's)."""
    name = MODEL.encode()
    request = b"\x0a" + bytes([len(name)]) + name  # ModelReadyRequest{name}
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(peer.address) as channel:
        ready = channel.unary_unary("/inference.GRPCInferenceService/ModelReady")
        while time.monotonic() < deadline:
            if peer.process.poll() is not None:
                raise RuntimeError(f"{peer.kind} exited with {peer.process.returncode}:\n"
                                   f"{peer.log_tail()}")
            try:
                if ready(request, timeout=2) == b"\x08\x01":  # ModelReadyResponse{ready: true}
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{peer.kind}: model not ready after {timeout} s:\n{peer.log_tail()}")


def stop(peer: Peer) -> None:
    if peer.process.poll() is None:
        peer.process.send_signal(signal.SIGINT if peer.kind == "mlserver" else signal.SIGTERM)
        try:
            peer.process.wait(15)
        except subprocess.TimeoutExpired:
            peer.process.kill()
            peer.process.wait(5)


def runner_of(peer: Peer) -> str:
    """How streamserve calls the model, from its log: ``session`` (the fast way) or ``function``."""
    text = peer.log_path.read_text(errors="replace")
    if "called through a TF session" in text:
        return "session"
    return "function" if "called through a tf.function" in text else "unknown"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(records: list[dict[str, Any]], names: Sequence[str], servers: Sequence[str]) -> dict[str, Any]:
    """Medians over rounds per (scenario, server), CPU per message, and streamserve/MLServer ratios."""
    table: dict[str, Any] = {}
    for name in names:
        row: dict[str, Any] = {}
        for server in servers:
            runs = [r for r in records if r["scenario"] == name and r["server"] == server and r.get("ok")]
            if not runs:
                continue
            cpu_us = [r["server_cpu"] / r["messages_per_s"] * 1e6 for r in runs if r["messages_per_s"]]
            row[server] = {
                "rounds": len(runs),
                "messages_per_s": _median([r["messages_per_s"] for r in runs]),
                "messages_per_s_range": [min(r["messages_per_s"] for r in runs),
                                         max(r["messages_per_s"] for r in runs)],
                "p50_ms": _median([r["p50_ms"] for r in runs]),
                "p99_ms": _median([r["p99_ms"] for r in runs]),
                "cpu_us_per_message": _median(cpu_us),
                # Whether the machine, not the server, was full: all its cores' busy time, and the
                # share of it that was the load generator's.
                "machine_busy": _median([r["machine_busy"] for r in runs if "machine_busy" in r]),
                "client_cpu": _median([r["client_cpu"] for r in runs if "client_cpu" in r]),
            }
        if "streamserve" in row and name in CPU_GOALS:
            limit = CPU_GOALS[name]
            row["cpu_goal"] = {"limit_us": limit,
                               "met": row["streamserve"]["cpu_us_per_message"] <= limit}
        if "streamserve" in row and "echo" in row:  # how much of the ceiling streamserve reaches
            row["of_ceiling"] = row["streamserve"]["messages_per_s"] / row["echo"]["messages_per_s"]
        if "mlserver" in row and "streamserve" in row:
            ours, theirs = row["streamserve"], row["mlserver"]
            row["ratio"] = {
                "messages_per_s": ours["messages_per_s"] / theirs["messages_per_s"],
                "p99": ours["p99_ms"] / theirs["p99_ms"],
                "cpu_per_message": ours["cpu_us_per_message"] / theirs["cpu_us_per_message"],
            }
            if "echo" in row:
                row["ratio"]["ceiling"] = row["echo"]["messages_per_s"] / theirs["messages_per_s"]
            if name in GOALS:
                what, goal = GOALS[name]
                have = row["ratio"]["messages_per_s" if what == "msg/s" else "p99"]
                row["goal"] = {"what": what, "ratio": goal,
                               "met": have >= goal if what == "msg/s" else have <= goal}
        table[name] = row
    return table


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# streamserve vs MLServer: {result['started']}", "",
             f"`{result['command']}`: {result['options']['rounds']} interleaved round(s) of "
             f"{result['options']['duration']:g} s per scenario; medians of the rounds. "
             f"streamserve calls the model through a {result['streamserve_runner']}, batching "
             f"max_delay_ms {result['options'].get('streamserve_max_delay_ms', 0.0):g}; MLServer's "
             f"parallel_workers {result['options'].get('mlserver_workers', 0)}. "
             f"Machine: {result['machine'].get('cores', '?')} cores, load average "
             f"{result['machine'].get('load_average')} at the start.", "",
             "The echo server answers with no model: its ratio bounds a Python server's here, and its "
             "CPU per message is what grpc.aio alone costs.", "",
             "| load | MLServer msg/s | p50 / p99 ms | CPU µs/msg | streamserve msg/s | p50 / p99 ms "
             "| CPU µs/msg | ratio msg/s | ratio p99 | goal | echo msg/s (CPU µs/msg) | echo ratio (ceiling) "
             "| streamserve / echo |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cells(run: dict[str, Any] | None) -> str:
        if run is None:
            return "- | - | -"
        low, high = run["messages_per_s_range"]
        return (f"{run['messages_per_s']:,.0f} ({low:,.0f}-{high:,.0f}) | {run['p50_ms']:.2f} / "
                f"{run['p99_ms']:.2f} | {run['cpu_us_per_message']:,.0f}")

    for name, row in result["summary"].items():
        ratio = row.get("ratio")
        goal = row.get("goal")
        goals = [f"{goal['what']} {'≥' if goal['what'] == 'msg/s' else '≤'} {goal['ratio']}x: "
                 f"{'met' if goal['met'] else 'NOT met'}"] if goal else []
        if cpu_goal := row.get("cpu_goal"):
            goals.append(f"CPU ≤ {cpu_goal['limit_us']:,.0f} µs: {'met' if cpu_goal['met'] else 'NOT met'}")
        goal_text = "; ".join(goals)
        speed = f"{ratio['messages_per_s']:.2f}x" if ratio else "-"
        p99 = f"{ratio['p99']:.2f}x" if ratio else "-"
        echo = row.get("echo")
        echo_rate = (f"{echo['messages_per_s']:,.0f} ({echo['cpu_us_per_message']:,.0f})"
                     if echo else "-")
        ceiling = f"{ratio['ceiling']:.2f}x" if ratio and "ceiling" in ratio else "-"
        share = f"{row['of_ceiling']:.0%}" if "of_ceiling" in row else "-"
        lines.append(f"| {result['scenarios'][name]} | {cells(row.get('mlserver'))} | "
                     f"{cells(row.get('streamserve'))} | {speed} | {p99} | {goal_text} | {echo_rate} | "
                     f"{ceiling} | {share} |")
    if busy := _busy_lines(result):
        lines += ["", f"The machine's busy cores (of {result['machine'].get('cores', '?')}) while "
                  "each server ran, the clients' in brackets; medians of the rounds. Near the core count "
                  "the machine itself is full: a server's msg/s is then bounded by its CPU per "
                  "message plus the clients'.",
                  "", *busy]
    return "\n".join(lines) + "\n"


def _busy_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for name, row in result["summary"].items():
        # A run gives both or neither (the harness reads the machine and the clients together).
        cells = [f"{server} {run['machine_busy']:.2f} ({run['client_cpu']:.2f})"
                 for server in SERVERS if (run := row.get(server)) and run["machine_busy"] is not None]
        if cells:
            lines.append(f"- {name}: {', '.join(cells)}")
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer", description=__doc__.split("\n")[0])
    parser.add_argument("--peer-python", type=Path, default=REPO / ".venv-peer" / "bin" / "python",
                        help="the Python of the virtualenv with MLServer (make bench-peer builds it)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of "
                        f"{','.join(SERVERS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--duration", type=float, help="seconds measured per scenario (default 10)")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument("--quick", action="store_true", help="tiny: 1 s, 8 callers for 64")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results folder (default {RESULTS})")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (model, logs)")
    parser.add_argument("--streamserve-delay-ms", type=float, metavar="MS",
                        help="streamserve's batching.max_delay_ms (default: its default, 0): how long "
                        "a batch waits for more rows, as MLServer's 2 ms does")
    parser.add_argument("--mlserver-workers", type=int, default=0, metavar="N",
                        help="MLServer's parallel_workers (default 0: inference in its server "
                        "process; MLServer's own default is 1)")
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if bad := sorted(set(servers) - set(SERVERS)) + sorted(set(names) - set(SCENARIOS)):
        _parser().error(f"unknown {bad}")
    if args.rounds < 1:
        _parser().error("--rounds must be at least 1")
    if args.mlserver_workers < 0:
        _parser().error("--mlserver-workers must be at least 0")
    if "mlserver" in servers and not args.peer_python.exists():
        _parser().error(f"{args.peer_python} does not exist: `make bench-peer` builds it")
    table = QUICK if args.quick else SCENARIOS
    timing_ = timing(quick=args.quick, duration=args.duration)
    previous = signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="streamserve-peer-"))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    peers: dict[str, Peer] = {}
    pool: ClientPool | None = None
    records: list[dict[str, Any]] = []
    runner = "not run"
    try:
        _log("building the model (a tf.Module wrapping a Keras autoencoder)")
        model_dir = build_model(workdir)
        for server in servers:
            if server == "streamserve":
                peers[server] = start_streamserve(workdir, model_dir.parent.parent,
                                                  args.streamserve_delay_ms)
            elif server == "mlserver":
                peers[server] = start_mlserver(workdir, model_dir, args.peer_python,
                                               args.mlserver_workers)
            else:
                peers[server] = start_echo(workdir)
        for peer in peers.values():
            wait_model_ready(peer, _START_TIMEOUT)
            _log(f"{peer.kind} ready on {peer.address} (pid {peer.pid})")
        if "streamserve" in peers:
            runner = runner_of(peers["streamserve"])
            _log(f"streamserve calls the model through a {runner}")
        pool = ClientPool(args.clients)
        for round_ in range(args.rounds):
            order = servers[round_ % len(servers):] + servers[: round_ % len(servers)]
            for name in names:
                for server in order:
                    peer = peers[server]
                    try:
                        record = run_timed(pool, peer, table[name], timing_, model=MODEL,
                                           stream_response=STREAM_RESPONSE[server])
                    except ClientError as exc:
                        record = {"ok": False, "errors": [str(exc)]}
                        pool.close()
                        pool = ClientPool(args.clients)
                    record.pop("latencies", None)
                    record.update(server=server, scenario=name, round=round_)
                    records.append(record)
                    _log(f"{name:<9} {server:<11} #{round_ + 1}: " + (
                        f"{record['messages_per_s']:,.0f} msg/s, p50 {record['p50_ms']:.2f} ms, "
                        f"p99 {record['p99_ms']:.2f} ms, server CPU {record['server_cpu']:.2f}"
                        if record.get("ok") else f"FAILED: {'; '.join(record.get('errors', []))[:300]}"))
                    time.sleep(_PAUSE)
    finally:
        if pool is not None:
            pool.close()
        for peer in peers.values():
            stop(peer)
        if args.keep:
            _log(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)

    result = {
        "started": started,
        "command": shlex.join(["python", "-m", "benchmarks.peer",
                               *(argv if argv is not None else sys.argv[1:])]),
        "options": {"rounds": args.rounds, "duration": timing_.duration, "warmup": timing_.warmup,
                    "clients": args.clients, "servers": servers, "quick": args.quick,
                    "mlserver_batching": MLSERVER_BATCH,
                    "streamserve_max_delay_ms": args.streamserve_delay_ms or 0.0,
                    "mlserver_workers": args.mlserver_workers},
        "scenarios": {name: table[name].describe() for name in names},
        "machine": machine_info(),
        "streamserve_runner": runner,
        "runs": records,
        "summary": summarise(records, names, servers),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    json_path, md_path = args.out / f"peer-{stamp}.json", args.out / f"peer-{stamp}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    md_path.write_text(text)
    print(text)
    _log(f"wrote {md_path} and {json_path}")
    return 0 if records and all(r.get("ok") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
