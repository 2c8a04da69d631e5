"""Shared fixtures: real SavedModels built into temp dirs, and the test-only scaler plugin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from streamserve.testing import ServerProcess, serve_subprocess
from tests.anomaly.helpers import FIXTURE_STEPS
from tests.support.dists import FakeSite
from tests.support.models import build_affine_model
from tests.support.protos import compile_proto

SUPPORT = Path(__file__).parent / "support"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def scaler_plugin(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The scaler plugin module, its proto compiled by grpc_tools for this test session."""
    compile_proto(SUPPORT / "scaler.proto", tmp_path_factory.mktemp("scaler_pb"), grpc=False)
    from tests.support import scaler_plugin

    return scaler_plugin


@pytest.fixture(scope="session")
def scaler_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A versioned model base: ``<base>/1/`` is y = 2x + 1."""
    base = tmp_path_factory.mktemp("scaler_model")
    build_affine_model(base / "1")
    return base


@pytest.fixture(scope="session")
def anomaly_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An anomaly model version ``<base>/1``, trained by the plugin's own trainer (seed 0, few steps)."""
    from streamserve_anomaly.training import train

    return train(tmp_path_factory.mktemp("anomaly_model") / "1", seed=0, steps=FIXTURE_STEPS)


@pytest.fixture(scope="session")
def anomaly_model(anomaly_model_dir: Path) -> Path:
    """The versioned base folder of :func:`anomaly_model_dir`, as a config's model_path names it."""
    return anomaly_model_dir.parent


@pytest.fixture(scope="session")
def scaler_site(tmp_path_factory: pytest.TempPathFactory, scaler_plugin: ModuleType) -> Path:
    """A PYTHONPATH entry where the scaler plugin is an installed distribution (streamserve-scaler
    0.3), for `streamserve` subprocesses that must discover it by its entry point."""
    site = FakeSite(tmp_path_factory.mktemp("site"))
    pb2_file = Path(scaler_plugin.scaler_pb2.__file__)
    site.install(
        "streamserve-scaler", "0.3",
        entry_points={"scaler": "scaler_e2e_plugin"},
        modules={
            "scaler_pb2": pb2_file.read_text(encoding="utf-8"),
            "scaler_e2e_plugin": (SUPPORT / "scaler_plugin.py").read_text(encoding="utf-8"),
        },
    )
    return site.root


@pytest.fixture(scope="session")
def subprocess_env(scaler_site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for `streamserve` subprocesses: the scaler plugin installed, a private home."""
    return {
        "PYTHONPATH": f"{scaler_site}:{REPO}",
        "STREAMSERVE_HOME": str(tmp_path_factory.mktemp("home")),
    }


@pytest.fixture(scope="session")
def server_process(
    tmp_path_factory: pytest.TempPathFactory, subprocess_env: dict[str, str], scaler_model: Path,
    anomaly_model: Path,
) -> Iterator[ServerProcess]:
    """One `streamserve serve` process for the session: the anomaly and scaler plugins, loopback."""
    config = tmp_path_factory.mktemp("config") / "server.yaml"
    config.write_text(
        f"plugins:\n"
        f"  anomaly:\n    model_path: {anomaly_model}\n"
        f"  scaler:\n    model_path: {scaler_model}\n"
    )
    services = ["", "anomaly_detection.AnomalyDetectionService", "streamserve_test.Scaler"]
    with serve_subprocess(config, env=subprocess_env, services=services) as running:
        yield running
