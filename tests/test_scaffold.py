"""`streamserve new-plugin`: the package it writes installs, serves, answers grpcurl and passes its
own test, as written. And `streamserve inspect` on the two ways a Keras model is saved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamserve.cli import main
from streamserve.scaffold import render
from streamserve.testing import serve_subprocess
from tests.test_docs import code_blocks

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
SERVICE = "forecast.ForecastService"


@pytest.fixture(scope="module")
def forecast_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`streamserve new-plugin forecast`, then a real `pip install` of it into a site folder
    (no dependencies: they are this environment's). Returns (package folder, site folder)."""
    root = tmp_path_factory.mktemp("scaffold")
    folder = root / "forecast"
    assert main(["new-plugin", "forecast", "--dir", str(folder)]) == 0
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(folder)],
                   check=True, capture_output=True, timeout=300)
    return folder, site


def grpcurl(*args: str, data: str | None = None) -> str:
    result = subprocess.run([GRPCURL, "-plaintext", *args], input=data, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, f"grpcurl {args}: {result.stderr}"
    return result.stdout


@pytest.mark.e2e
def test_the_new_plugin_is_served_next_to_the_others_and_answers_grpcurl(
    forecast_package: tuple[Path, Path], tmp_path: Path, anomaly_model: Path, subprocess_env: dict[str, str],
) -> None:
    _, site = forecast_package
    config = tmp_path / "server.yaml"  # no forecast section: its default model is trained and served
    config.write_text(f"plugins:\n  anomaly:\n    model_path: {anomaly_model}\n")
    env = {**subprocess_env, "PYTHONPATH": f"{site}:{subprocess_env['PYTHONPATH']}",
           "STREAMSERVE_HOME": str(tmp_path / "home")}
    with serve_subprocess(config, env=env, services=[SERVICE, "anomaly_detection.AnomalyDetectionService"],
                          timeout=300) as server:
        assert server.ready["services"][SERVICE] == "SERVING"
        assert {SERVICE, "anomaly_detection.AnomalyDetectionService"} <= set(
            grpcurl(server.address, "list").split())

        window = {"values": [0, 0.38, 0.71, 0.92, 1, 0.92, 0.71, 0.38]}
        one = json.loads(grpcurl("-emit-defaults", "-d", json.dumps(window), server.address,
                                 f"{SERVICE}/ForecastWindow"))
        assert one["ready"] is True and isinstance(one["value"], float)

        readings = " ".join(json.dumps({"value": v, "timestamp": t + 1})
                            for t, v in enumerate(window["values"]))
        out = grpcurl("-emit-defaults", "-d", "@", server.address, f"{SERVICE}/ForecastStream",
                      data=readings)
        answers = [json.loads(a) for a in out.replace("}\n{", "}\x00{").split("\x00")]
        assert [a["ready"] for a in answers] == [False] * 7 + [True]
        assert [int(a["timestamp"]) for a in answers] == list(range(1, 9))
        assert answers[-1]["value"] == pytest.approx(one["value"], abs=1e-5)
    assert (tmp_path / "home" / "models" / "forecast" / "1" / "saved_model.pb").is_file()


@pytest.mark.e2e
def test_the_new_plugin_passes_its_own_test(forecast_package: tuple[Path, Path], tmp_path: Path) -> None:
    folder, site = forecast_package
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=folder,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "STREAMSERVE_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    # The code it starts from is clean by this repository's own lint rules (bar generated code).
    ruff = Path(sys.executable).parent / "ruff"
    lint = subprocess.run([str(ruff), "check", "--isolated", "--select", "E,F,W,I,B,UP,SIM,RUF",
                           "--line-length", "110", "--exclude", "*_pb2*", "."],
                          cwd=folder, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout


def test_new_plugin_refuses_a_bad_name_or_a_folder_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new-plugin", "Demo-1", "--dir", str(tmp_path / "x")]) == 2
    assert "plugin name 'Demo-1'" in capsys.readouterr().err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    assert main(["new-plugin", "demo", "--dir", str(tmp_path / "used")]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["keep.txt"]


def test_names_are_filled_in_everywhere() -> None:
    files = render("air_quality")
    assert "src/streamserve_air_quality/air_quality.proto" in files
    assert 'air_quality = "streamserve_air_quality.plugin"' in files["pyproject.toml"]
    assert 'name = "streamserve-air-quality"' in files["pyproject.toml"]
    assert "service AirQualityService {" in files["src/streamserve_air_quality/air_quality.proto"]
    assert not [path for path, text in files.items() if "${" in text], "a placeholder left"


@pytest.mark.e2e
def test_the_guides_serve_subprocess_example_runs(
    forecast_package: tuple[Path, Path], tmp_path: Path
) -> None:
    """docs/writing-a-plugin.md's end-to-end test example, run by pytest against the installed
    forecast plugin."""
    guide = Path(__file__).parent.parent / "docs" / "writing-a-plugin.md"
    (example,) = [b for b in code_blocks(guide, "python") if "serve_subprocess(config" in b]
    (tmp_path / "test_example.py").write_text(example)
    _, site = forecast_package
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "STREAMSERVE_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
