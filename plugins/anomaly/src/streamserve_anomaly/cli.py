"""``streamserve-anomaly``: the plugin's own command line.

``train`` builds a model version; ``score`` streams a CSV through a running server and writes the
scores (and a plot); ``evaluate`` scores a NAB-style corpus through a running server against NAB's
labels and a windowed-Gaussian baseline.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from streamserve_anomaly.training import DEFAULT_STEPS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamserve-anomaly", description="Tools for the streamserve anomaly plugin."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train a model and export it as a SavedModel version directory",
        description="Train the next-value predictor on synthetic normal data or on CSVs of normal "
        "behaviour and export it. Point the server at the parent directory: each numbered "
        "subdirectory is a model version.",
    )
    train.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="the version directory to create, e.g. models/anomaly/2 (must not exist or be empty)",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument(
        "--csv",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="timestamp,value CSV of normal behaviour, one series per file (repeatable); "
        "default: synthetic noisy periodic series",
    )
    train.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"optimiser steps (default: {DEFAULT_STEPS})",
    )

    score = commands.add_parser(
        "score",
        help="score a timestamp,value CSV through a running server",
        description="Stream a timestamp,value CSV (timestamps YYYY-MM-DD HH:MM:SS, UTC) through the "
        "server's DetectAnomalyChunks method and write timestamp,value,score,is_anomaly.",
    )
    score.add_argument("file", type=Path, metavar="FILE.csv")
    score.add_argument("--target", required=True, metavar="HOST:PORT", help="the server")
    score.add_argument("--out", type=Path, metavar="FILE", help="output CSV (default: stdout)")
    score.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw the series and scores")
    score.add_argument("--series-id", default="", metavar="ID", help="the series id sent (default: '')")
    score.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="SCORE",
        help="the line drawn in the plot (default: the plugin's default threshold)",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="score a NAB-style corpus through a server with NAB's standard profile",
        description="Stream every series of DIR (<group>/<name>.csv and windows.json) through the "
        "server, score the detections with NAB's standard profile at the corpus-optimal threshold, "
        "and compare with a windowed-Gaussian baseline scored the same way.",
    )
    evaluate.add_argument("--data", type=Path, required=True, metavar="DIR")
    where = evaluate.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", metavar="HOST:PORT", help="a running server")
    where.add_argument(
        "--serve",
        type=Path,
        metavar="CONFIG",
        help="start `streamserve serve --config CONFIG` on a free loopback port for the run",
    )
    evaluate.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    evaluate.add_argument(
        "--leave-out",
        nargs="?",
        const="default",
        metavar="MODEL_DIR",
        help="also score each group of files with the settings and threshold chosen on the others, "
        "in process with the served model (default: the plugin's default model)",
    )
    return parser


class _ProgressLine:
    """A single stderr line rewritten in place (at most every 0.2 s), for long files."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        self.shown = True
        percent = 100.0 * done / total if total else 100.0
        print(f"\r{self.label}: {done:,}/{total:,} points ({percent:.0f}%)", end="", file=sys.stderr,
              flush=True)

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr)


def _train(args: argparse.Namespace) -> int:
    from streamserve_anomaly.training import train

    print(train(args.out, seed=args.seed, csv_paths=args.csv, steps=args.steps))
    return 0


def _score(args: argparse.Namespace) -> int:
    from streamserve_anomaly.client import score_series
    from streamserve_anomaly.settings import AnomalySettings

    if args.threshold is None:
        args.threshold = AnomalySettings().threshold
    from streamserve_anomaly.series_csv import read_series, write_scores

    series = read_series(args.file)
    progress = _ProgressLine(f"scoring {args.file.name}")
    try:
        (result,) = score_series(
            args.target, [(args.series_id, series.timestamps, series.values)], progress=progress
        )
    finally:
        progress.close()
    out = args.out or Path("/dev/stdout")
    write_scores(out, series, result.timestamps.tolist(), result.scores.tolist(),
                 result.is_anomaly.tolist())
    if args.plot:
        from streamserve_anomaly.plot import labelled_windows, plot_scores

        plot_scores(args.plot, result.timestamps, series.values, result.scores, result.is_anomaly,
                    threshold=args.threshold,
                    windows=labelled_windows(args.file),
                    title=f"{args.file.name} (model version {result.model_version})")
    flagged = int(result.is_anomaly.sum())
    print(f"{len(result.scores)} points scored, {flagged} flagged as anomalies"
          + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from streamserve_anomaly.evaluate import evaluate, print_report

    leave_out = None
    if args.leave_out == "default":
        from streamserve_anomaly.plugin import default_model_dir

        leave_out = default_model_dir()
    elif args.leave_out is not None:
        leave_out = Path(args.leave_out)
    progress = _ProgressLine("streaming the corpus")
    try:
        if args.serve is not None:
            from streamserve.testing import serve_subprocess

            service = "anomaly_detection.AnomalyDetectionService"
            with serve_subprocess(args.serve, services=[service], timeout=300) as server:
                result = evaluate(args.data, server.address, progress=progress,
                                  leave_out_model=leave_out)
        else:
            result = evaluate(args.data, args.target, progress=progress, leave_out_model=leave_out)
    finally:
        progress.close()
    print_report(result, sys.stdout)  # the stdout of now (its default is bound at import)
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _train,
    "score": _score,
    "evaluate": _evaluate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    # Our progress lines, without TensorFlow's INFO chatter about tracing and assets.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("streamserve_anomaly").setLevel(logging.INFO)
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, OSError, RuntimeError) as exc:  # bad arguments or data, an existing version
        print(f"streamserve-anomaly: error: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()  # a grpc.Call too
        print(f"streamserve-anomaly: error: the server answered {code.name}: {details}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
