"""``python -m benchmarks.run``: every scenario against every server, in one run, one report.

    python -m benchmarks.run                       # full run (make bench), ~5 minutes
    python -m benchmarks.run --quick               # tiny, ~1 minute (the test suite runs this)
    python -m benchmarks.run --repeat 3 --duration 20 --scenarios throughput,chunked
    python -m benchmarks.run --servers echo,streamserve --out /tmp/results

The servers are started once, side by side, and the scenarios interleave them (scenario by scenario,
server by server), so slow drifts of a noisy machine hit all three alike and the ratios stay fair.
Writes ``<out>/<timestamp>.json`` (every repeat's numbers) and ``.md`` (medians, ratios, targets).
Exit status 1 if any scenario failed or lost a message.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import report
from benchmarks.clients import ClientError, ClientPool
from benchmarks.measure import run_idle, run_timed
from benchmarks.procstat import machine_info, versions
from benchmarks.scenarios import NAMES, Scenario, Timing, scenarios, timing
from benchmarks.servers import has_chunks
from benchmarks.servers.launch import (
    DEFAULT_KINDS,
    KINDS,
    REPO,
    ServerProcess,
    start_server,
    stop_server,
    train_model,
    wait_ready,
)

__all__ = ["main"]

RESULTS = REPO / "benchmarks" / "results"
_START_TIMEOUT = 300.0
_PAUSE = 0.5
"""Seconds between runs: the previous server's streams wind down before the next one is measured."""


def _names(value: str, allowed: Sequence[str]) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if unknown := [n for n in names if n not in allowed]:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(allowed)}")
    return names


def _baseline(value: str) -> tuple[str, Path]:
    name, _, tree = value.rpartition("=")
    name = name or "baseline"
    if name in KINDS and name != "baseline":
        raise argparse.ArgumentTypeError(f"{name!r} names a server already; choose another name")
    if not (Path(tree) / "framework" / "streamserve").is_dir():
        raise argparse.ArgumentTypeError(f"{tree} is not a streamserve source tree")
    return name, Path(tree)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark streamserve against an echo server and the naive per-message design.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny scenarios, ~1 s each, 100 idle streams (for the test suite)")
    parser.add_argument("--duration", type=float, help="seconds measured per scenario "
                        "(default 10, quick 1), after a warm-up (2 s, quick 0.3 s)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every scenario N times and report medians (default 1)")
    parser.add_argument("--scenarios", type=lambda v: _names(v, NAMES), default=list(NAMES),
                        help=f"comma-separated subset of {','.join(NAMES)}")
    parser.add_argument("--servers", type=lambda v: _names(v, KINDS), default=list(DEFAULT_KINDS),
                        help=f"comma-separated subset of {','.join(KINDS)} (default "
                        f"{','.join(DEFAULT_KINDS)})")
    parser.add_argument("--clients", type=int, default=2,
                        help="load-generator processes (default 2)")
    parser.add_argument("--max-batch-size", type=int, metavar="N",
                        help="streamserve's batching.max_batch_size (default: the server's default)")
    parser.add_argument("--intra-op-threads", type=int, metavar="N",
                        help="streamserve's tensorflow.intra_op_threads (default: the server's default)")
    parser.add_argument("--baseline", type=_baseline, action="append", default=[],
                        metavar="[NAME=]TREE",
                        help="also run streamserve from the source tree TREE (a git worktree of an "
                        "earlier commit, sharing this virtualenv) as server NAME (default "
                        "'baseline'), to compare a change in the same run; repeatable")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results folder (default {RESULTS})")
    parser.add_argument("--profile", nargs="?", const="threads", choices=["threads", "gil"],
                        help="record each server with py-spy during each timed scenario (into "
                        "<out>/profiles/): every busy thread, or with 'gil' only the thread holding "
                        "the GIL; profiling costs CPU, so its numbers are not results")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (model, config, server logs)")
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM becomes an exception, so every finally block stops its servers and clients.
    raise SystemExit(128 + signum)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _start_all(
    kinds: list[str], workdir: Path, *, quick: bool, tuning: dict[str, Any],
    trees: dict[str, Path] | None = None,
) -> dict[str, ServerProcess]:
    """Train the model (if a server needs it) while echo starts; then start and await the rest."""
    servers: dict[str, ServerProcess] = {}
    model_dir = workdir / "model" / "1"
    trainer = None
    if set(kinds) - {"echo"}:
        _log("training the anomaly model with streamserve_anomaly.training.train")
        trainer = train_model(model_dir, steps=50 if quick else 300, log_path=workdir / "train.log")
    try:
        if "echo" in kinds:
            servers["echo"] = start_server("echo", workdir, model_dir)
        if trainer is not None:
            code = trainer.wait(_START_TIMEOUT)
            if code != 0:
                log = (workdir / "train.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"training failed ({code}):\n{log}")
        for kind in kinds:
            if kind not in servers:
                servers[kind] = start_server(kind, workdir, model_dir, **tuning,
                                             tree=(trees or {}).get(kind))
        for kind in kinds:
            wait_ready(servers[kind], _START_TIMEOUT)
            _log(f"{kind} ready on {servers[kind].address} (pid {servers[kind].pid})")
    except BaseException:
        if trainer is not None and trainer.poll() is None:
            trainer.kill()
            trainer.wait(5)
        for server in servers.values():
            stop_server(server)
        raise
    return {kind: servers[kind] for kind in kinds}


def _run_one(
    pool: ClientPool, server: ServerProcess, scenario: Scenario, timing_: Timing,
    profile: Path | None, *, gil: bool = False,
) -> dict[str, Any]:
    if server.process.poll() is not None:
        return {"ok": False, "errors": [f"{server.kind} server exited with "
                                        f"{server.process.returncode}: {server.log_tail(5)}"]}
    if scenario.chunked and not has_chunks():
        return {"ok": True, "skipped": "the proto has no DetectAnomalyChunks yet"}
    if scenario.protocol != "native" and server.kind != "streamserve" and server.tree is None:
        return {"ok": True, "skipped": "serves no Open Inference Protocol"}
    if scenario.idle:
        return run_idle(pool, server, scenario, timing_)
    return run_timed(pool, server, scenario, timing_, profile, gil=gil)


def _describe(record: dict[str, Any]) -> str:
    if record.get("skipped"):
        return f"skipped ({record['skipped']})"
    if not record.get("ok"):
        return f"FAILED: {'; '.join(record.get('errors', []))[:300]}"
    if "open_mb" in record:
        return (f"idle RSS {record['idle_rss_mb']:.0f} MB, +{record['open_mb']:.1f} MB open, "
                f"+{record['closed_mb']:.1f} MB after close")
    return (f"{record['messages_per_s']:,.0f} msg/s, {record['points_per_s']:,.0f} points/s, "
            f"p99 {record['p99_ms']:.2f} ms, server CPU {record['server_cpu']:.2f}, "
            f"clients {record['client_cpu']:.2f}, machine {record['machine_busy']:.2f} "
            f"(steal {record['machine_steal']:.2f})")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.repeat < 1 or args.clients < 1:
        _parser().error("--repeat and --clients must be at least 1")
    chosen = scenarios(args.scenarios, quick=args.quick)
    timing_ = timing(quick=args.quick, duration=args.duration)
    previous = signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="streamserve-bench-"))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    machine = machine_info()
    servers: dict[str, ServerProcess] = {}
    pool: ClientPool | None = None
    records: list[dict[str, Any]] = []
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    profiles = args.out / "profiles" / stamp if args.profile else None
    if profiles:
        profiles.mkdir(parents=True, exist_ok=True)
    try:
        tuning = {"max_batch_size": args.max_batch_size, "intra_op_threads": args.intra_op_threads}
        trees = dict(args.baseline)
        if len(trees) != len(args.baseline):
            _parser().error("two --baseline trees have the same name")
        kinds = [k for k in args.servers if k != "baseline"] + list(trees)
        servers = _start_all(kinds, workdir, quick=args.quick, tuning=tuning, trees=trees)
        pool = ClientPool(args.clients)
        for repeat in range(args.repeat):
            # Each repeat starts with another server, so none is always measured first.
            kinds = list(servers)
            order = kinds[repeat % len(kinds):] + kinds[: repeat % len(kinds)]
            for scenario in chosen:
                for kind in order:
                    server = servers[kind]
                    profile = profiles / f"{scenario.name}-{kind}-{repeat + 1}.txt" if profiles else None
                    try:
                        record = _run_one(pool, server, scenario, timing_, profile,
                                          gil=args.profile == "gil")
                    except ClientError as exc:
                        record = {"ok": False, "errors": [str(exc)]}
                        pool.close()  # its state is unknown now: start afresh
                        pool = ClientPool(args.clients)
                    record.update(server=kind, scenario=scenario.name, repeat=repeat)
                    records.append(record)
                    _log(f"{scenario.name:<11} {kind:<11} #{repeat + 1}: {_describe(record)}")
                    time.sleep(_PAUSE)
    finally:
        if pool is not None:
            pool.close()
        for server in servers.values():
            stop_server(server)
        if args.keep:
            _log(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)

    result = report.build(
        [{k: v for k, v in r.items() if k != "latencies"} for r in records],
        started=started,
        command=shlex.join(["python", "-m", "benchmarks.run", *(argv or sys.argv[1:])]),
        options={
            "quick": args.quick, "repeat": args.repeat, "duration": timing_.duration,
            "warmup": timing_.warmup, "clients": args.clients, "servers": args.servers,
            "scenarios": args.scenarios, "profile": args.profile,
            "max_batch_size": args.max_batch_size, "intra_op_threads": args.intra_op_threads,
            "baselines": {name: str(tree) for name, tree in args.baseline},
        },
        scenarios={s.name: s.describe() for s in chosen},
        machine=machine,
        versions=versions(),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / f"{stamp}.json", args.out / f"{stamp}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    text = report.markdown(result)
    md_path.write_text(text)
    print(text)
    _log(f"wrote {md_path} and {json_path}")
    return 0 if all(r.get("ok") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
