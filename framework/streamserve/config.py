"""The server's configuration: one YAML file, validated by pydantic.

Unknown keys are errors (a typo must not silently fall back to a default), and every error names the
file and the key path. Each plugin's own ``settings:`` are validated later by that plugin's model,
once the plugin is discovered (:func:`plugin_settings`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from streamserve.errors import ConfigError

__all__ = [
    "ADDRESS_ENV",
    "BatchingConfig",
    "PluginConfig",
    "ServerConfig",
    "StreamserveConfig",
    "load_config",
    "parse_config",
    "plugin_settings",
]

ADDRESS_ENV = "STREAMSERVE_ADDRESS"
"""Environment variable that overrides ``server.address`` (``HOST:PORT``)."""

MiB = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def check_address(value: str) -> str:
    """``HOST:PORT`` with a port in 0..65535 (0 picks a free port); IPv6 hosts in brackets."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (for example 0.0.0.0:50051), got {value!r}")
    return value


class ServerConfig(_Strict):
    """The gRPC server shared by every plugin."""

    address: str = "0.0.0.0:50051"
    """Where to listen, ``HOST:PORT``. Overridden by the STREAMSERVE_ADDRESS environment variable."""
    max_receive_message_bytes: Annotated[int, Field(gt=0)] = 4 * MiB
    """Largest request message accepted; bigger ones fail with RESOURCE_EXHAUSTED."""
    max_send_message_bytes: Annotated[int, Field(gt=0)] = 4 * MiB
    """Largest response message sent."""
    reflection: bool = True
    """Serve gRPC server reflection, so grpcurl and other tools can discover the services."""
    shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 10.0
    """On SIGTERM/SIGINT, how long open calls may take to finish before they are cancelled."""

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return check_address(value)


class BatchingConfig(_Strict):
    """How rows from concurrent calls are combined into one model call."""

    max_batch_size: Annotated[int, Field(ge=1)] = 256
    """Most rows in one model call. 1 turns batching off."""
    max_delay_ms: Annotated[float, Field(ge=0)] = 0.0
    """How long a batch may wait for more rows once its first row arrived. 0 means rows never wait:
    an idle model takes a lone row at once, and rows that arrive while it runs form the next batch."""
    max_queued_rows: Annotated[int, Field(ge=1)] = 4096
    """Rows waiting for the model, across all calls. When full, calls stop reading their streams,
    so gRPC flow control slows the clients down instead of the server buffering without bound."""


class PluginConfig(_Strict):
    """One plugin's section under ``plugins:``, keyed by the plugin's name."""

    enabled: bool = True
    """Serve this plugin. Installed plugins are enabled unless their section says otherwise."""
    model_path: Path | None = None
    """The SavedModel directory, or a directory of numbered versions (the highest is served).
    Relative paths are relative to the config file. Empty: the plugin's default model."""
    signature: str | None = None
    """The signature to serve; empty: the one the plugin declares (usually serving_default)."""
    batching: BatchingConfig = BatchingConfig()
    """Batching of this plugin's model calls."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """The plugin's own settings, validated by the plugin (see its documentation)."""


class StreamserveConfig(_Strict):
    """The whole configuration file."""

    server: ServerConfig = ServerConfig()
    """The gRPC server."""
    plugins: dict[str, PluginConfig] = Field(default_factory=dict)
    """Per-plugin sections, keyed by plugin name (see ``streamserve plugins``)."""
    log_level: str = "INFO"
    """Python logging level name: DEBUG, INFO, WARNING, ERROR."""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if value.upper() not in levels:
            raise ValueError(f"expected one of {', '.join(levels)}, got {value!r}")
        return value.upper()

    def plugin(self, name: str) -> PluginConfig:
        """The section of plugin ``name``, or the defaults if the file has none."""
        return self.plugins.get(name) or PluginConfig()


def load_config(path: Path | str, *, env: dict[str, str] | None = None) -> StreamserveConfig:
    """Read, validate and apply environment overrides to the config file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    return parse_config(text, source=path, env=env)


def parse_config(
    text: str, *, source: Path | None = None, env: dict[str, str] | None = None
) -> StreamserveConfig:
    """Validate YAML ``text``; relative model paths are taken relative to ``source``'s folder."""
    where = str(source) if source else "<config>"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping, got {type(data).__name__}")
    env = dict(os.environ) if env is None else env
    if override := env.get(ADDRESS_ENV):
        try:
            check_address(override)
        except ValueError as exc:
            raise ConfigError(f"{where}: environment variable {ADDRESS_ENV}: {exc}") from exc
        server = data.get("server") or {}
        if isinstance(server, dict):  # anything else is reported by validation below
            data = {**data, "server": {**server, "address": override}}
    try:
        config = StreamserveConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: invalid configuration:\n{_describe(exc)}") from exc
    if source is not None:
        config = _resolve_paths(config, source.parent)
    return config


def plugin_settings(
    config: StreamserveConfig, name: str, model: type[BaseModel] | None, where: str = "<config>"
) -> BaseModel | None:
    """Validate plugin ``name``'s ``settings:`` with the plugin's own model."""
    raw = config.plugin(name).settings
    if model is None:
        if raw:
            raise ConfigError(
                f"{where}: plugins.{name}.settings: plugin {name!r} takes no settings, "
                f"got {sorted(raw)}"
            )
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        prefix = ("plugins", name, "settings")
        raise ConfigError(f"{where}: invalid configuration:\n{_describe(exc, prefix)}") from exc


def _describe(exc: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in (*prefix, *err["loc"]))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (check its spelling; see docs/configuration.md)"
        lines.append(f"  {path}: {message}")
    return "\n".join(lines)


def _resolve_paths(config: StreamserveConfig, base: Path) -> StreamserveConfig:
    plugins = {
        name: section.model_copy(update={"model_path": base / section.model_path})
        if section.model_path is not None and not section.model_path.is_absolute()
        else section
        for name, section in config.plugins.items()
    }
    return config.model_copy(update={"plugins": plugins})
