"""protos/generate.py --check: passes on the committed modules, fails on any drift."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]
PROTO_PACKAGE = Path("plugins/anomaly/src/streamserve_anomaly/_proto")


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "protos" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def generated_packages() -> list[Path]:
    """Every package directory protos/generate.py writes into (its OUTPUTS)."""
    spec = importlib.util.spec_from_file_location("generate", REPO / "protos" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sorted(set(module.OUTPUTS.values()))


def copy_of_repo(tmp_path: Path) -> Path:
    """The generator, the protos and the generated modules, laid out as in the repo."""
    shutil.copytree(
        REPO / "protos", tmp_path / "protos", ignore=shutil.ignore_patterns("__pycache__")
    )
    for package in generated_packages():
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


def test_committed_generated_code_matches_the_protos() -> None:
    result = check(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_naming_an_edited_generated_file(tmp_path: Path) -> None:
    root = copy_of_repo(tmp_path)
    assert check(root).returncode == 0
    edited = root / PROTO_PACKAGE / "anomaly_detection_pb2_grpc.py"
    edited.write_text(edited.read_text() + "# a hand edit\n")
    result = check(root)
    assert result.returncode == 1
    assert str(PROTO_PACKAGE / "anomaly_detection_pb2_grpc.py") in result.stdout
    assert "anomaly_detection_pb2.py" not in result.stdout


def test_check_fails_when_the_proto_changes_or_a_module_is_missing(tmp_path: Path) -> None:
    root = copy_of_repo(tmp_path)
    proto = root / "protos" / "anomaly_detection.proto"
    proto.write_text(
        proto.read_text().replace(
            "int64 timestamp = 2;\n}", "int64 timestamp = 2;\n  string series = 3;\n}", 1
        )
    )
    (root / PROTO_PACKAGE / "anomaly_detection_pb2.pyi").unlink()
    result = check(root)
    assert result.returncode == 1
    for name in ("anomaly_detection_pb2.py", "anomaly_detection_pb2.pyi"):
        assert str(PROTO_PACKAGE / name) in result.stdout


def test_check_leaves_the_files_alone(tmp_path: Path) -> None:
    root = copy_of_repo(tmp_path)
    edited = root / PROTO_PACKAGE / "anomaly_detection_pb2.py"
    edited.write_text("# stale\n")
    assert check(root).returncode == 1
    assert edited.read_text() == "# stale\n"
