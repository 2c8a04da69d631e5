"""Shared fixtures: real SavedModels built into temp dirs, and the test-only scaler plugin."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.anomaly.helpers import FIXTURE_STEPS
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
