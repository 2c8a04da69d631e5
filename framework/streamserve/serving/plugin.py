"""A plugin as the server sees it: spec, config, settings, and its model once it is ready."""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from streamserve.config import PluginConfig
from streamserve.contract import PluginSpec, Signature
from streamserve.errors import ModelLoadError, Unavailable
from streamserve.runtime import Batcher, Model, load_model

__all__ = ["ServedPlugin"]


@dataclass(eq=False)
class ServedPlugin:
    spec: PluginSpec
    config: PluginConfig
    settings: BaseModel | None
    distribution: str
    model: Model | None = None
    batcher: Batcher | None = None
    """Set once the model is loaded and warm: from then on the service is ready."""
    active_streams: int = 0
    """Bidirectional calls open right now."""
    load_error: str | None = None
    """Why the model could not be loaded (with ``on_plugin_error: continue``), or None."""
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    """Calls that ended in an error, by gRPC status code name."""

    @property
    def service_name(self) -> str:
        return self.spec.service.full_name

    def signature(self) -> Signature:
        """The declared signature, under the name the config picks, if it picks one."""
        if self.config.signature:
            return dataclasses.replace(self.spec.signature, name=self.config.signature)
        return self.spec.signature

    def model_path(self) -> Path:
        """The configured model directory, or the plugin's default (which it may build first)."""
        if self.config.model_path is not None:
            return self.config.model_path
        if self.spec.default_model is None:
            raise ModelLoadError(
                f"plugins.{self.spec.name}.model_path is not set and plugin {self.spec.name!r} "
                "has no default model"
            )
        try:
            return self.spec.default_model()
        except Exception as exc:
            raise ModelLoadError(f"building the default model failed: {exc}") from exc

    def load(self) -> Model:
        """Load, check and warm the model this plugin should serve. Blocking: use a thread."""
        return load_model(self.model_path(), self.signature(), plugin=self.spec.name)

    def require_ready(self) -> Batcher:
        if self.batcher is None:
            if self.load_error is not None:
                raise Unavailable(
                    f"{self.service_name} is not available: its model failed to load "
                    f"({self.load_error}); the server log has the details"
                )
            raise Unavailable(
                f"{self.service_name} is not ready: its model is still loading; retry shortly "
                "(health check this service name to wait for SERVING)"
            )
        return self.batcher
