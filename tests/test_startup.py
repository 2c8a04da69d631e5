"""A default start, as `make run` does it: what the log and the ready file tell an operator and tools.

Installed plugins that the config does not mention (the scaler, installed by ``subprocess_env`` as a
dist-info on PYTHONPATH, has no default model) must not stop it; the anomaly plugin builds its
default model on first start; the log says when the services can answer and raises no alarm.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from streamserve.config import parse_config
from streamserve.serving.ready import ready_line, write_ready_file
from streamserve.testing import ServerProcess, serve_in_process, serve_subprocess

ANOMALY = "anomaly_detection.AnomalyDetectionService"

# What an operator reads as "something is wrong": our warnings and errors, TensorFlow's C++ W/E/F
# lines and absl's import-time notice, anything about CUDA on a CPU server, and the thread-pool
# warning a default start used to raise.
ALARM = re.compile(
    r" (WARNING|ERROR|CRITICAL) |^WARNING|^[WEF]\d{4} |cuda|thread pools were set",
    re.MULTILINE | re.IGNORECASE,
)


@pytest.fixture(scope="module")
def default_start(
    tmp_path_factory: pytest.TempPathFactory, subprocess_env: dict[str, str]
) -> Iterator[ServerProcess]:
    """`serve` with only the anomaly plugin configured, on its default model, in a fresh home."""
    config = tmp_path_factory.mktemp("default") / "server.yaml"
    config.write_text("plugins:\n  anomaly:\n    enabled: true\n")
    env = {**subprocess_env, "STREAMSERVE_HOME": str(tmp_path_factory.mktemp("fresh_home"))}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    with serve_subprocess(config, env=env, services=["", ANOMALY]) as server:
        yield server


@pytest.mark.e2e
def test_an_installed_plugin_that_is_not_configured_does_not_stop_the_server(
    default_start: ServerProcess,
) -> None:
    log = default_start.output()
    assert "start-up failed" not in log
    (hint,) = [line for line in log.splitlines() if "plugin 'scaler' is installed, not configured" in line]
    assert "plugins: {scaler: {model_path: DIR}}" in hint
    assert "streamserve_test.Scaler" not in default_start.ready["services"]
    assert default_start.ready["not_configured"].keys() == {"scaler"}


@pytest.mark.e2e
def test_the_log_says_once_what_is_serving_after_the_models_load(default_start: ServerProcess) -> None:
    log = default_start.output().splitlines()
    listening = next(i for i, line in enumerate(log) if "listening on" in line)
    loaded = next(i for i, line in enumerate(log) if "model 'anomaly' is SERVING" in line)
    (ready,) = [i for i, line in enumerate(log) if f"ready on {default_start.address}: SERVING" in line]
    assert listening < loaded < ready
    assert ANOMALY in log[ready]
    assert "installed, not configured: scaler" in log[ready]


@pytest.mark.e2e
def test_the_ready_file_is_one_json_line_with_the_address(default_start: ServerProcess) -> None:
    text = Path(default_start.ready_file).read_text(encoding="utf-8")
    assert text.count("\n") == 1
    ready = json.loads(text)
    assert ready["ready"] is True
    assert re.fullmatch(r"127\.0\.0\.1:\d+", ready["address"]) and not ready["address"].endswith(":0")
    assert ready["services"][ANOMALY] == "SERVING"
    assert ready["pid"] == default_start.process.pid


@pytest.mark.e2e
def test_a_default_start_raises_no_alarm(default_start: ServerProcess) -> None:
    log = default_start.output()
    assert "building the default anomaly model" in log  # the path that used to warn about threads
    alarms = ALARM.findall(log)
    assert not alarms, log


async def test_the_ready_line_says_which_service_is_not_serving_and_why(
    scaler_plugin: ModuleType, tmp_path: Path
) -> None:
    """With `on_plugin_error: continue`, a model that fails is named in the ready line and file."""
    config = parse_config(f"on_plugin_error: continue\nplugins:\n  scaler:\n"
                          f"    model_path: {tmp_path}/gone\n")
    async with serve_in_process(config, extra_plugins=[scaler_plugin], installed=False) as server:
        line = ready_line(server)
        write_ready_file(tmp_path / "ready.json", server)
    reason = f"model directory {tmp_path}/gone does not exist"
    assert line == (f"ready on {server.address}: SERVING nothing; "
                    f"streamserve_test.Scaler is NOT_SERVING ({reason})")
    ready = json.loads((tmp_path / "ready.json").read_text())
    assert ready["services"] == {"streamserve_test.Scaler": f"NOT_SERVING ({reason})"}
    assert not list(tmp_path.glob(".ready.json.*"))  # the temporary file was renamed into place
