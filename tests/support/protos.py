"""Compiling a .proto with grpc_tools at test time: a client generated from the contract."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from grpc_tools import protoc


def compile_proto(proto: Path, out: Path, *, grpc: bool = True) -> ModuleType:
    """Generate ``<name>_pb2`` (and ``_pb2_grpc``) for ``proto`` into ``out``; import and return pb2."""
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{proto.parent}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out}",
        str(proto),
    ]
    if grpc:
        args.insert(-1, f"--grpc_python_out={out}")
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {proto}")
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module(f"{proto.stem}_pb2")
