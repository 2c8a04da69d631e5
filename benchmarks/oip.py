"""``python -m benchmarks.oip``: the harness's OIP scenarios against any Open Inference Protocol server.

    python -m benchmarks.oip --target 127.0.0.1:8001 --model my_model
    python -m benchmarks.oip --target 127.0.0.1:50051 --model anomaly --scenarios oip-stream --duration 20

The same load generator processes and the same requests as ``make bench``'s ``oip-unary`` and
``oip-stream`` scenarios (tritonclient's messages, built from the model's ``ModelMetadata``), so a
streamserve number and another server's (Triton, MLServer, KServe) come from the very same client.
The target's CPU and memory are not read (it may be any process, or another machine); the clients'
CPU is. Prints one line per scenario and, with ``--json``, writes every number.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.clients import ClientError, ClientPool
from benchmarks.measure import run_timed
from benchmarks.scenarios import scenarios, timing

__all__ = ["main"]

OIP_SCENARIOS = ("oip-unary", "oip-stream")


@dataclass(frozen=True)
class RemoteServer:
    """A server the harness did not start: its address only."""

    address: str
    pid: int | None = None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.oip", description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the OIP gRPC endpoint")
    parser.add_argument("--model", required=True, help="the model every request names")
    parser.add_argument("--scenarios", default=",".join(OIP_SCENARIOS),
                        help=f"comma-separated subset of {','.join(OIP_SCENARIOS)}")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured (default 10)")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument("--quick", action="store_true", help="the tiny sizes of make bench-quick")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    parser.add_argument("--stream-response", choices=["ModelStreamInferResponse", "ModelInferResponse"],
                        default="ModelStreamInferResponse",
                        help="what the target's ModelStreamInfer answers with: Triton's wrapper "
                        "(default; streamserve too) or a bare ModelInferResponse (MLServer)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    if unknown := sorted(set(names) - set(OIP_SCENARIOS)):
        _parser().error(f"unknown scenarios {unknown}; choose from {', '.join(OIP_SCENARIOS)}")
    target = RemoteServer(args.target)
    timing_ = timing(quick=args.quick, duration=args.duration)
    records = []
    pool = ClientPool(args.clients)
    try:
        for scenario in scenarios(names, quick=args.quick):
            try:
                record = run_timed(pool, target, scenario, timing_, model=args.model,
                                   stream_response=args.stream_response)
            except ClientError as exc:
                record = {"ok": False, "errors": [str(exc)]}
            record.pop("latencies", None)
            record.update(scenario=scenario.name, target=args.target, model=args.model,
                          description=scenario.describe())
            records.append(record)
            if record.get("ok"):
                print(f"{scenario.name:<11} {record['messages_per_s']:>9,.0f} infer/s  "
                      f"p50 {record['p50_ms']:.2f} ms  p99 {record['p99_ms']:.2f} ms  "
                      f"clients CPU {record['client_cpu']:.2f}  ({scenario.describe()})")
            else:
                print(f"{scenario.name:<11} FAILED: {'; '.join(record.get('errors', []))[:300]}")
    finally:
        pool.close()
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    return 0 if all(r.get("ok") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
