"""A plugin as the server sees it: spec, config, settings, and the model(s) it serves."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from streamserve.config import PluginConfig, StreamserveConfig
from streamserve.contract import PluginSpec
from streamserve.errors import ModelLoadError
from streamserve.runtime.repository import ServedModel

__all__ = ["ServedPlugin", "not_configured"]


@dataclass(eq=False)
class ServedPlugin:
    spec: PluginSpec
    config: PluginConfig
    settings: BaseModel | None
    distribution: str
    model: ServedModel | None = None
    """A model plugin's model (named after the plugin); None for a protocol plugin, which serves
    the model repository."""

    def __post_init__(self) -> None:
        declared = self.spec.signature
        if declared is None:
            return
        if self.config.signature:
            declared = dataclasses.replace(declared, name=self.config.signature)
        self.model = ServedModel(
            name=self.spec.name, owner=self.spec.name, locate=self._model_path,
            watched=self.config.model_path, signature=declared, batching=self.config.batching,
            poll_seconds=self.config.model_poll_seconds,
        )

    @property
    def own(self) -> ServedModel | None:
        """The old name of :attr:`model` (until 0.2.0), kept for one release."""
        return self.model

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


def not_configured(spec: PluginSpec, config: StreamserveConfig) -> str | None:
    """Why an installed plugin is not served, if it is "installed, not configured"; else None.

    Installing a package is not asking for it to be served: a model plugin with no section in the
    config and no default model has nothing it could serve, so it is left out with this hint rather
    than stopping start-up. A plugin that has a section and cannot load is still an error.
    """
    if spec.signature is None or spec.default_model is not None or spec.name in config.plugins:
        return None
    return (f"installed, not configured: it has no default model; to serve it, give its model in "
            f"the config: plugins: {{{spec.name}: {{model_path: DIR}}}}")
