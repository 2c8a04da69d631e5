"""Which TensorFlow CPU kernels suit your model: oneDNN's or TensorFlow's own, timed side by side.

    python -m benchmarks.kernels MODEL_DIR [MODEL_DIR ...] [--rows 1,64] [--calls 2000] [--repeat 2]

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, when it is imported, so each setting runs in a
process of its own, alternately (``--repeat`` of each). A process loads every model through
streamserve's own runner (:func:`streamserve.runtime.load_model`, as the server does), feeds it
rows of its signature (the server's warm-up row, repeated) and times the calls; the table gives
the best repeat (by CPU), in µs of CPU per call (every thread of the process: TensorFlow may split a
large product over its pools) and of wall time. Set ``tensorflow.onednn`` in the server's YAML to
the faster (docs/configuration.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamserve.runtime.model import ONEDNN_ENV

__all__ = ["main"]

SETTINGS = {"oneDNN": "1", "TensorFlow's own": "0"}
"""The two kernel choices and the value of ``TF_ENABLE_ONEDNN_OPTS`` that makes each."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="SavedModel directories (or version bases)")
    parser.add_argument("--signature", default="serving_default", help="the signature to call")
    parser.add_argument("--rows", default="1,64", help="rows per call, comma-separated (default 1,64)")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per model and size")
    parser.add_argument("--repeat", type=int, default=2, help="processes per setting, alternating")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


def _inputs(model: Any, rows: int) -> dict[str, Any]:
    """``rows`` rows for every input of the model's signature: the row the server warms the model
    up with (random floats, zeros, empty strings; open inner dimensions the model's size or 1),
    repeated."""
    import numpy as np

    from streamserve.runtime.model import _probe_rows, _warmup_rows  # the server's own warm-up row

    specs = model.signature.inputs
    one = _probe_rows(_warmup_rows(specs, {spec.name: spec for spec in specs}))
    return {name: np.repeat(row, rows, axis=0) for name, row in one.items()}


def _child(args: argparse.Namespace) -> None:
    """In a process with the setting in its environment: one JSON line per model and size."""
    from streamserve.runtime.model import load_model, onednn_enabled, prepare_tensorflow

    prepare_tensorflow()
    for path in args.models:
        model = load_model(path, args.signature, plugin="benchmarks.kernels")
        for rows in _sizes(args.rows):
            inputs = _inputs(model, rows)
            for _ in range(max(10, args.calls // 20)):  # warm-up
                model.call(inputs)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.calls):
                model.call(inputs)
            print(json.dumps({
                "model": str(path), "rows": rows, "onednn": onednn_enabled(),
                "cpu_us": 1e6 * (time.process_time() - cpu) / args.calls,
                "wall_us": 1e6 * (time.perf_counter() - wall) / args.calls,
            }), flush=True)


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _run(args: argparse.Namespace, value: str) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "benchmarks.kernels", "--child", "--signature", args.signature,
               "--rows", args.rows, "--calls", str(args.calls), *map(str, args.models)]
    env = {**os.environ, ONEDNN_ENV: value, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{ONEDNN_ENV}={value}: {done.stderr.strip()[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _cell(record: dict[str, Any]) -> str:
    return f"{record['cpu_us']:,.1f} ({record['wall_us']:,.1f})"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        _child(args)
        return 0
    best: dict[tuple[str, str, int], dict[str, Any]] = {}
    for _ in range(args.repeat):
        for name, value in SETTINGS.items():
            for record in _run(args, value):
                if record["onednn"] is not None and record["onednn"] != (value == "1"):
                    raise SystemExit(f"{ONEDNN_ENV}={value} did not take: oneDNN is "
                                     f"{'on' if record['onednn'] else 'off'}")
                key = (name, record["model"], record["rows"])
                if key not in best or record["cpu_us"] < best[key]["cpu_us"]:
                    best[key] = record
    onednn, own = list(SETTINGS)
    print(f"| model | rows | {onednn}: µs per call, CPU (wall) | {own}: µs per call, CPU (wall) "
          f"| {own} / {onednn}, CPU |")
    print("|---|---:|---:|---:|---:|")
    for path in args.models:
        for rows in _sizes(args.rows):
            on, off = best[(onednn, str(path), rows)], best[(own, str(path), rows)]
            print(f"| {path} | {rows} | {_cell(on)} | {_cell(off)} | {off['cpu_us'] / on['cpu_us']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
