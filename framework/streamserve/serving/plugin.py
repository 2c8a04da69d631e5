"""A plugin as the server sees it: spec, config, settings, and its model once it is ready."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from streamserve.config import PluginConfig
from streamserve.contract import PluginSpec
from streamserve.errors import Unavailable
from streamserve.runtime import Batcher, Model

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

    @property
    def service_name(self) -> str:
        return self.spec.service.full_name

    def require_ready(self) -> Batcher:
        if self.batcher is None:
            raise Unavailable(
                f"{self.service_name} is not ready: its model is still loading; retry shortly "
                "(health check this service name to wait for SERVING)"
            )
        return self.batcher
