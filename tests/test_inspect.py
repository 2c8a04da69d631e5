"""`streamserve inspect` on Keras exports (both routes), and docs/writing-a-plugin.md kept honest:
its Keras example runs as written and `inspect` prints what the page shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamserve import Signature, TensorSpec
from streamserve.cli import main
from streamserve.inspect_model import describe, read_signatures, signature_code
from streamserve.runtime import load_model
from streamserve.scaffold import render
from tests.test_docs import code_blocks

GUIDE = Path(__file__).parent.parent / "docs" / "writing-a-plugin.md"


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's Keras example, run as written in a fresh folder: models/forecast (model.export)
    and models/forecast_saved (tf.saved_model.save)."""
    (code,) = [b for b in code_blocks(GUIDE, "python") if "tf.saved_model.save(model" in b]
    folder = tmp_path_factory.mktemp("keras")
    subprocess.run([sys.executable, "-c", code], cwd=folder, check=True, capture_output=True,
                   timeout=300)
    return folder / "models"


def guide_output(command: str) -> str:
    (block,) = [b for b in code_blocks(GUIDE, "text") if b.startswith(f"$ {command}\n")]
    return block.split("\n", 1)[1].rstrip("\n")


def test_inspect_prints_what_the_guide_shows_for_a_keras_export(
    keras_models: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(keras_models.parent)
    assert main(["inspect", "models/forecast"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == guide_output("streamserve inspect models/forecast")


def test_inspect_names_the_input_inputs_for_tf_saved_model_save(keras_models: Path) -> None:
    shown = guide_output("streamserve inspect models/forecast_saved")
    printed = describe(keras_models / "forecast_saved").splitlines()
    for line in shown.splitlines():
        assert line == "..." or line in printed, line
    _, _, (serving,) = read_signatures(keras_models / "forecast_saved")
    assert [t.name for t in serving.inputs] == ["inputs"]
    assert [t.name for t in serving.outputs] == ["output_0"]


@pytest.mark.parametrize("route", ["forecast", "forecast_saved"])
def test_the_pasted_signature_is_the_one_the_model_loads_with(keras_models: Path, route: str) -> None:
    _, version, signatures = read_signatures(keras_models / route)
    assert version == "1"
    declared = eval(signature_code(signatures[0]), {"Signature": Signature, "TensorSpec": TensorSpec})
    assert isinstance(declared, Signature)
    model = load_model(keras_models / route, declared, plugin="test")  # checked against the model
    assert model.signature == declared


def test_inspect_says_when_there_is_no_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
    assert f"model directory {tmp_path}/nothing does not exist" in capsys.readouterr().err


def test_the_guide_shows_the_scaffold_plugin_verbatim() -> None:
    """The page walks through the plugin.py that `streamserve new-plugin forecast` writes."""
    plugin = render("forecast")["src/streamserve_forecast/plugin.py"]
    assert plugin in code_blocks(GUIDE, "python")
    assert "open_state=open_state" in plugin


def test_the_guide_generates_code_inside_the_package(tmp_path: Path) -> None:
    """The guide's protoc command, run on a package, gives modules that import as `my_pkg.x_pb2`."""
    (command,) = [line for block in code_blocks(GUIDE, "sh") for line in block.splitlines()
                  if "grpc_tools.protoc" in line]
    package = tmp_path / "src" / "my_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    support = Path(__file__).parent / "support"
    (package / "scaler.proto").write_text((support / "scaler.proto").read_text())
    subprocess.run(command.replace("python ", f"{sys.executable} ", 1), shell=True, cwd=tmp_path,
                   check=True, timeout=60)
    assert "from my_pkg import scaler_pb2" in (package / "scaler_pb2_grpc.py").read_text()
    result = subprocess.run([sys.executable, "-c", "from my_pkg import scaler_pb2_grpc; "
                             "print(scaler_pb2_grpc.ScalerStub.__name__)"],
                            cwd=tmp_path / "src", capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ScalerStub", result.stderr
