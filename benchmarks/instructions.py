"""Machine instructions per ModelStreamInfer message: the server's own Python, counted, not timed.

    python -m benchmarks.instructions [--baseline before=../worktree] [--streams 64]
    python -m benchmarks.instructions --bytecodes [TOP]

On a noisy machine a 5 % cut of the per-message work is lost in the spread of any timing; an
instruction count is not. Each tree's OIP stream path runs in process (no gRPC: requests fed from
memory, responses kept) under valgrind's callgrind, twice, with ``--messages`` and ``2 x`` that many
messages per stream; the difference over the extra messages is the count per message, free of
start-up. The model is a null one (zeros, one per row, no TensorFlow: its import alone would take
minutes under valgrind), so the count is what streamserve itself does per message: decode, check,
batch, answer, and the event loop's share. The model's own cost is ``benchmarks.kernels``'s.

Instructions are not time (a cache miss costs more than an add), so a change that the count says
is cheaper is then run against the real load too (``benchmarks.run``, ``benchmarks.peer``).
Needs ``valgrind`` (Debian: ``apt install valgrind``); ``--no-valgrind`` runs the same driver once,
natively, and reports CPU time instead (a smoke run, as the test suite does).

``--bytecodes [TOP]`` says where the count goes: the Python bytecodes each function executes per
message (a trace function sees every opcode; seconds, no valgrind; as exact as the count). It
leaves out what runs in C (protobuf, NumPy, the interpreter's own work per call), which the
instruction count includes: a field read of a protobuf message is one bytecode and ~1,000
instructions.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent
MODEL = "autoencoder"
WIDTH = 32
"""The peer model's input row (``window: float32[?, 32]``), one row per request as in
``benchmarks.peer``'s streams."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME=TREE",
                        help="another checkout to count the same way (a git worktree), repeatable")
    parser.add_argument("--streams", type=int, default=64, help="concurrent streams (default 64)")
    parser.add_argument("--messages", type=int, default=20,
                        help="messages per stream in the short run; the long run sends twice that")
    parser.add_argument("--no-valgrind", action="store_true",
                        help="run the driver once natively and report CPU time (smoke run)")
    parser.add_argument("--bytecodes", type=int, metavar="TOP", nargs="?", const=25,
                        help="instead of instructions, count the Python bytecodes executed per "
                             "message in each function (no valgrind), and list the TOP (25)")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


# -- the driver (a child process, under valgrind or not) -----------------------------------------


def _null_model_loader() -> None:
    """Serve every repository model with a null model: the signature of the peer model, zeros out.
    Replaces what the repository calls to load one, before any server exists."""
    import numpy as np

    import streamserve.runtime.repository as repository
    from streamserve.contract import Signature, TensorSpec
    from streamserve.runtime.model import Model

    signature = Signature(inputs=(TensorSpec("window", "float32", (None, WIDTH)),),
                          outputs=(TensorSpec("score", "float32", (None,)),))

    def zeros(rows: Any) -> dict[str, Any]:
        return {"score": np.zeros(len(rows["window"]), np.float32)}

    def load(directory: Path, signature_name: Any, *, plugin: str) -> Model:
        return Model(path=Path(directory), version="1", signature=signature, call=zeros,
                     runner="session")

    repository.load_model = load
    repository.prepare_tensorflow = lambda: None
    # Every batch on the event loop, as a cheap model's are in a real server, from the first one
    # on: a model thread's turns would depend on timing, and under valgrind every call looks slow.
    import streamserve.runtime.batcher as batcher

    batcher.Batcher._cheap = lambda self: True  # type: ignore[method-assign]


async def _settled() -> None:
    """A stream's wait, at its end, for a cancellation gRPC may have decided (``stream.settle``):
    here there is no gRPC, and under valgrind the loop always runs late, so that wait would go on
    for its longest and count a varying number of idle loop turns."""


class _Context:
    """What the stream handler needs of gRPC's servicer context; responses are kept."""

    def __init__(self) -> None:
        self.responses: list[bytes] = []
        self.written: asyncio.Future[None] | None = None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def time_remaining(self) -> None:
        return None

    def invocation_metadata(self) -> tuple[()]:
        return ()

    async def write(self, data: bytes) -> None:
        self.responses.append(data)
        if self.written is not None and not self.written.done():
            self.written.set_result(None)

    async def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")


async def _drive(streams: int, messages: int) -> dict[str, Any]:
    import numpy as np

    import streamserve_oip.plugin
    from streamserve.config import StreamserveConfig
    from streamserve.serving.handlers import service_handler
    from streamserve.testing import serve_in_process
    from streamserve_oip._proto import grpc_inference_pb2 as pb2

    with tempfile.TemporaryDirectory() as models:
        version = Path(models) / MODEL / "1"
        version.mkdir(parents=True)
        (version / "saved_model.pb").touch()  # found as a SavedModel; loaded by the null loader
        config = StreamserveConfig.model_validate({
            "plugins": {"oip": {}}, "model_repository": {"path": models, "poll_seconds": None}})
        async with serve_in_process(config, extra_plugins=[streamserve_oip.plugin],
                                    installed=False) as server:
            (plugin,) = server.plugins
            handler = service_handler(plugin, server.repository, server.calls, server.metrics,
                                      server.config.server)
            bidi = handler.service(_Details("/inference.GRPCInferenceService/ModelStreamInfer"))
            request = pb2.ModelInferRequest(model_name=MODEL, id="x")
            request.inputs.add(name="window", datatype="FP32", shape=[1, WIDTH])
            request.raw_input_contents.append(np.ones((1, WIDTH), np.float32).tobytes())
            data = request.SerializeToString()
            loop = asyncio.get_running_loop()

            async def one() -> list[bytes]:
                context = _Context()

                async def requests() -> Any:
                    for _ in range(messages):  # one message in flight, as benchmarks.peer's clients
                        context.written = loop.create_future()
                        yield data
                        await context.written

                await bidi.stream_stream(requests(), context)
                return context.responses

            started = time.thread_time()
            answered = await asyncio.gather(*(one() for _ in range(streams)))
            seconds = time.thread_time() - started
    last = pb2.ModelStreamInferResponse.FromString(answered[0][-1])
    return {"messages": streams * messages, "answered": sum(map(len, answered)),
            "error": last.error_message, "id": last.infer_response.id,
            "cpu_us_per_message": 1e6 * seconds / (streams * messages)}


class _Details:
    """The one field of ``grpc.HandlerCallDetails`` a generic handler reads."""

    def __init__(self, method: str) -> None:
        self.method = method


def _child(args: argparse.Namespace) -> None:
    _null_model_loader()
    import streamserve.serving.stream as stream

    stream.settle = _settled
    if args.bytecodes is None:
        print(json.dumps(asyncio.run(_drive(args.streams, args.messages))), flush=True)
        return
    short, _ = _traced(args.streams, args.messages)
    long, result = _traced(args.streams, 2 * args.messages)
    extra = args.streams * args.messages
    result["bytecodes"] = {name: (long[name] - short.get(name, 0)) / extra for name in long}
    print(json.dumps(result), flush=True)


def _traced(streams: int, messages: int) -> tuple[collections.Counter[str], dict[str, Any]]:
    """The driver's result, and the bytecodes it executed per function ("file.py:name"), counted
    by a trace function that sees every opcode (deterministic, unlike any timing)."""
    executed: collections.Counter[str] = collections.Counter()

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return opcode

    def opcode(frame: FrameType, event: str, arg: object) -> Any:
        if event == "opcode":
            code = frame.f_code
            executed[f"{Path(code.co_filename).name}:{code.co_name}"] += 1
        return opcode

    sys.settrace(trace)
    try:
        result = asyncio.run(_drive(streams, messages))
    finally:
        sys.settrace(None)
    return executed, result


# -- the counting ---------------------------------------------------------------------------------


def _run_child(
    tree: Path, streams: int, messages: int, *, valgrind: bool, bytecodes: int | None = None
) -> tuple[dict[str, Any], int]:
    """The driver's result on ``tree``, and the instructions it executed (0 without valgrind)."""
    # This tree's driver over ``tree``'s sources (an older worktree has no driver of its own); the
    # same dict layouts in every run.
    from benchmarks.servers.launch import _env  # another tree's sources first on the path

    env = {**_env(None if tree == REPO else tree), "PYTHONHASHSEED": "0"}
    command = [sys.executable, "-m", "benchmarks.instructions", "--child",
               "--streams", str(streams), "--messages", str(messages),
               *(["--bytecodes", str(bytecodes)] if bytecodes is not None else [])]
    with tempfile.TemporaryDirectory() as counts:
        if valgrind:
            # Per thread: only the event loop's count is kept. gRPC's own threads (the server is
            # real, only no client calls it) spin by the clock, not by the message.
            command = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
                       f"--callgrind-out-file={counts}/callgrind.out", *command]
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"the driver failed on {tree} (exit {done.returncode}):\n"
                             f"{done.stderr[-2000:]}")
        result = json.loads(lines[-1])
        if result["answered"] != result["messages"] or result["error"] or result["id"] != "x":
            raise SystemExit(f"the driver on {tree} was not answered right: {result}")
        if not valgrind:
            return result, 0
        main_thread = Path(counts, "callgrind.out-01")  # the first thread: the event loop's
        totals = re.search(r"^totals: (\d+)", main_thread.read_text(), re.MULTILINE)
        if totals is None:
            raise SystemExit(f"valgrind wrote no count for {tree}:\n{done.stderr[-2000:]}")
        return result, int(totals.group(1))


def count(tree: Path, streams: int, messages: int) -> float:
    """Instructions per message on ``tree``: the long run's count minus the short run's, per extra
    message."""
    _, short = _run_child(tree, streams, messages, valgrind=True)
    _, long = _run_child(tree, streams, 2 * messages, valgrind=True)
    return (long - short) / (streams * messages)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        _child(args)
        return 0
    # Imported here, not in the driver: each import is paid again under valgrind.
    from benchmarks.run import _baseline  # NAME=TREE, checked as benchmarks.run checks it

    try:
        baselines = [_baseline(spec) for spec in args.baseline]
    except argparse.ArgumentTypeError as exc:
        _parser().error(f"--baseline: {exc}")
    trees = {"this tree": REPO, **{name: tree.resolve() for name, tree in baselines}}
    results: dict[str, float] = {}
    if args.bytecodes is not None:
        for name, tree in trees.items():
            result, _ = _run_child(tree, args.streams, args.messages, valgrind=False,
                                   bytecodes=args.bytecodes)
            per_function = result["bytecodes"]
            results[name] = sum(per_function.values())
            print(f"{name:<12} {results[name]:8,.0f} Python bytecodes per message; the most:")
            for function, executed in sorted(per_function.items(), key=lambda kv: -kv[1])[:args.bytecodes]:
                print(f"  {executed:8.1f}  {function}")
    elif args.no_valgrind:
        for name, tree in trees.items():
            result, _ = _run_child(tree, args.streams, args.messages, valgrind=False)
            results[name] = result["cpu_us_per_message"]
            print(f"{name:<12} {results[name]:8.1f} µs of CPU per message (native, one run)")
    else:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed (Debian: apt install valgrind); --no-valgrind runs "
                  "the driver natively", file=sys.stderr)
            return 2
        for name, tree in trees.items():
            results[name] = count(tree, args.streams, args.messages)
            print(f"{name:<12} {results[name]:10,.0f} instructions per message", flush=True)
        for name in list(trees)[1:]:
            print(f"this tree / {name}: {results['this tree'] / results[name]:.3f}")
    if args.json:
        args.json.write_text(json.dumps({
            "streams": args.streams, "messages": args.messages,
            "valgrind": not args.no_valgrind and args.bytecodes is None,
            "unit": "bytecodes" if args.bytecodes is not None else
                    "cpu_us" if args.no_valgrind else "instructions",
            "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
