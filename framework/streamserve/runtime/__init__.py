"""Running models: SavedModel loading and checking, the cross-call batcher and its statistics, the
served models by name, and their lifecycle (load, reload, swap, stop)."""

from streamserve.runtime.batcher import Batcher
from streamserve.runtime.manager import ModelManager
from streamserve.runtime.model import (
    Model,
    configure_tensorflow,
    load_model,
    prepare_tensorflow,
    resolve_version,
)
from streamserve.runtime.repository import Repository, ServedModel
from streamserve.runtime.statistics import CallStatistics

__all__ = [
    "Batcher",
    "CallStatistics",
    "Model",
    "ModelManager",
    "Repository",
    "ServedModel",
    "configure_tensorflow",
    "load_model",
    "prepare_tensorflow",
    "resolve_version",
]
