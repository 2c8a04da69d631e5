"""Running models: SavedModel loading and checking, and the cross-call batcher."""

from streamserve.runtime.batcher import Batcher
from streamserve.runtime.model import Model, load_model, resolve_version, use_threads

__all__ = ["Batcher", "Model", "load_model", "resolve_version", "use_threads"]
