"""Fixtures of the anomaly plugin's tests (the trained model itself is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def loaded_model(anomaly_model_dir: Path) -> Any:
    """That model loaded with plain TensorFlow (not through the core)."""
    import tensorflow as tf

    return tf.saved_model.load(str(anomaly_model_dir))
