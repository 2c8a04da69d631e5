"""Fixtures of the anomaly plugin's tests (the trained model itself is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from streamserve.config import parse_config
from streamserve.serving import Server
from streamserve.testing import serve_in_process


@pytest.fixture(scope="session")
def loaded_model(anomaly_model_dir: Path) -> Any:
    """That model loaded with plain TensorFlow (not through the core)."""
    import tensorflow as tf

    return tf.saved_model.load(str(anomaly_model_dir))


@pytest.fixture
async def server(anomaly_model: Path) -> AsyncIterator[Server]:
    """The installed plugins served in process on a loopback port, the anomaly plugin on that model."""
    config = parse_config(f"plugins:\n  anomaly:\n    model_path: {anomaly_model}\n")
    async with serve_in_process(config) as running:
        yield running
