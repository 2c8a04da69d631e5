"""``streamserve-anomaly``: the plugin's own command line (training models)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from streamserve_anomaly.training import DEFAULT_STEPS, train

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    # Our progress lines, without TensorFlow's INFO chatter about tracing and assets.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("streamserve_anomaly").setLevel(logging.INFO)
    try:
        path = train(args.out, seed=args.seed, csv_paths=args.csv, steps=args.steps)
    except (ValueError, OSError) as exc:  # bad arguments or data, an existing version
        print(f"streamserve-anomaly: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
