"""`make run` installs what serving needs; `make test` adds the development extras (README's two
commands, on a fresh machine: a virtualenv that does not exist yet)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def planned(target: str, venv: Path) -> list[str]:
    """The commands `make TARGET` would run to set up ``venv`` from nothing (``make -n``)."""
    result = subprocess.run(["make", "-n", "-C", str(ROOT), f"VENV={venv}", target],
                            capture_output=True, text=True, timeout=60, check=True)
    return [line for line in result.stdout.splitlines() if not line.startswith("make")]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_installs_only_what_serving_needs(tmp_path: Path) -> None:
    venv = tmp_path / ".venv"
    commands = planned("run", venv)

    installs = [c for c in commands if "pip install" in c and "--upgrade pip" not in c]
    assert installs == [f"{venv}/bin/python -m pip install --quiet -e . -e plugins/anomaly "
                        "-e plugins/oip -e plugins/tfserving"]
    assert not [c for c in commands if "[dev]" in c]
    assert commands[-1] == f"{venv}/bin/streamserve serve --config configs/server.yaml"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_adds_the_development_extras_then_runs_the_tests(tmp_path: Path) -> None:
    venv = tmp_path / ".venv"
    commands = planned("test", venv)

    assert f"{venv}/bin/python -m pip install --quiet -e . -e plugins/anomaly -e plugins/oip " \
           "-e plugins/tfserving" in commands
    (dev,) = [c for c in commands if "[dev]" in c]
    assert commands.index(dev) < commands.index(f"{venv}/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.rstrip().endswith("make test")
