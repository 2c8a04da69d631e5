"""Generate the Python modules of every .proto in this directory; ``--check`` reports drift.

The .proto files here are the source of truth and the generated modules are committed, so that a
plain ``pip install`` of a plugin needs no protoc. This script is the only way those modules are
made, and ``--check`` (run by the tests) fails as soon as a committed module no longer matches what
its .proto generates, whether the .proto or the module was edited.

    python protos/generate.py           # (re)write the generated modules
    python protos/generate.py --check   # exit 1 listing the drifted files, 0 if none

Each .proto is mapped to the package directory that ships its modules (``OUTPUTS`` below). protoc
emits ``import foo_pb2`` for sibling modules, which only works with the output directory on
``sys.path``; those imports are rewritten to ``from . import foo_pb2`` so the modules live inside
their package. The output embeds the grpcio-tools version, so regenerate with the version the
project pins (see the ``grpcio-tools`` dev dependency) or ``--check`` reports every file.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTOS_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTOS_DIR.parent

OUTPUTS: dict[str, Path] = {
    "anomaly_detection.proto": Path("plugins/anomaly/src/streamserve_anomaly/_proto"),
    "grpc_inference.proto": Path("plugins/oip/src/streamserve_oip/_proto"),
}
"""Each .proto (relative to protos/) -> the package directory (relative to the repo root)."""

SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
"""The modules generated per .proto: messages, their type stubs, the gRPC stubs and servicer."""

_SIBLING_IMPORT = re.compile(r"^import (\w+_pb2(?:_grpc)?) as (\w+)$", re.MULTILINE)


def generated_names(proto: str) -> list[str]:
    """The file names that ``proto`` generates, for example ``foo_pb2.py``."""
    stem = Path(proto).stem
    return [stem + suffix for suffix in SUFFIXES]


def _make_imports_relative(text: str, siblings: set[str]) -> str:
    """Turn ``import foo_pb2 as x`` into ``from . import foo_pb2 as x`` for generated siblings."""

    def replace(match: re.Match[str]) -> str:
        module, alias = match.group(1), match.group(2)
        if module not in siblings:
            return match.group(0)
        return f"from . import {module} as {alias}"

    return _SIBLING_IMPORT.sub(replace, text)


def generate(proto: str, out_dir: Path) -> list[Path]:
    """Run protoc for one .proto into ``out_dir``; return the files written."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # a dev dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTOS_DIR / proto),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTOS_DIR / proto}")
    siblings = {Path(name).stem for p in OUTPUTS for name in generated_names(p)}
    written = []
    for name in generated_names(proto):
        path = out_dir / name
        path.write_text(_make_imports_relative(path.read_text(), siblings))
        written.append(path)
    return written


def _check_mapping() -> None:
    """Fail when a .proto has no output package, so a new proto cannot be silently skipped."""
    on_disk = {p.name for p in PROTOS_DIR.glob("*.proto")}
    if unmapped := sorted(on_disk - OUTPUTS.keys()):
        raise SystemExit(
            f"no output package for {', '.join(unmapped)}: "
            f"add it to OUTPUTS in {Path(__file__).name}"
        )
    if missing := sorted(OUTPUTS.keys() - on_disk):
        raise SystemExit(f"OUTPUTS names missing .proto files: {', '.join(missing)}")


def write_all() -> None:
    """Regenerate every mapped .proto into its package directory."""
    for proto, package_dir in OUTPUTS.items():
        for path in generate(proto, REPO_ROOT / package_dir):
            print(path.relative_to(REPO_ROOT))


def drifted() -> list[Path]:
    """Generate into a temporary directory; return the committed files that differ or lack."""
    drift = []
    with tempfile.TemporaryDirectory() as tmp:
        for proto, package_dir in OUTPUTS.items():
            fresh_dir = Path(tmp) / package_dir
            for fresh in generate(proto, fresh_dir):
                committed = REPO_ROOT / package_dir / fresh.name
                if not committed.is_file() or committed.read_bytes() != fresh.read_bytes():
                    drift.append(committed.relative_to(REPO_ROOT))
    return drift


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 listing generated files that differ from their .proto",
    )
    args = parser.parse_args(argv)
    _check_mapping()
    if not args.check:
        write_all()
        return 0
    if drift := drifted():
        print("generated code is out of date with protos/ (run: python protos/generate.py):")
        for path in drift:
            print(f"  {path}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
