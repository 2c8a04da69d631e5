"""Running models: SavedModel loading and checking, the cross-call batcher, and its statistics."""

from streamserve.runtime.batcher import Batcher
from streamserve.runtime.model import Model, load_model, prepare_tensorflow, resolve_version, use_threads
from streamserve.runtime.statistics import CallStatistics

__all__ = [
    "Batcher", "CallStatistics", "Model", "load_model", "prepare_tensorflow", "resolve_version",
    "use_threads",
]
