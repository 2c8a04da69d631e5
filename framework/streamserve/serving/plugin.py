"""A plugin as the server sees it: spec, config, settings, and the model(s) it serves."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from streamserve.config import PluginConfig
from streamserve.contract import PluginSpec
from streamserve.errors import ModelLoadError
from streamserve.runtime.repository import ServedModel

__all__ = ["ServedPlugin"]


@dataclass(eq=False)
class ServedPlugin:
    spec: PluginSpec
    config: PluginConfig
    settings: BaseModel | None
    distribution: str
    own: ServedModel | None = None
    """A model plugin's model (named after the plugin); None for a protocol plugin, which serves
    the model repository."""

    def __post_init__(self) -> None:
        declared = self.spec.signature
        if declared is None:
            return
        if self.config.signature:
            declared = dataclasses.replace(declared, name=self.config.signature)
        self.own = ServedModel(
            name=self.spec.name, owner=self.spec.name, locate=self._model_path,
            watched=self.config.model_path, signature=declared, batching=self.config.batching,
            poll_seconds=self.config.model_poll_seconds,
        )

    @property
    def service_name(self) -> str:
        return self.spec.service.full_name

    def _model_path(self) -> Path:
        """The configured model directory, or the plugin's default (which it may build first)."""
        if self.config.model_path is not None:
            return self.config.model_path
        if self.spec.default_model is None:
            raise ModelLoadError(
                f"plugins.{self.spec.name}.model_path is not set and plugin {self.spec.name!r} "
                "has no default model"
            )
        return self.spec.default_model()
