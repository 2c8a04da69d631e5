"""``streamserve config check``: will ``streamserve serve`` start with this file?

Every check ``serve`` runs short of binding ports: the YAML, every key, every plugin section against
the installed plugins and their own settings models, certificates and tokens, the model repository,
each served plugin's model path; with ``models=True`` each model is also loaded and its signature
checked, as at start-up. Every problem is reported in one run, each with its file, line (where the
file has one) and key path, so a misspelt plugin section does not hide behind a misspelt key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from streamserve.config import (
    KeyPath,
    StreamserveConfig,
    key_lines,
    line_of,
    read_yaml,
    resolve_paths,
    validation_problems,
    with_environment,
    yaml_error_line,
)
from streamserve.errors import ConfigError, StreamserveError
from streamserve.plugins import DiscoveredPlugin

__all__ = ["CheckResult", "Problem", "check_config"]


@dataclass(frozen=True)
class Problem:
    """One reason ``serve`` would not start."""

    file: str
    line: int | None
    """1-based line in the file; None when the problem has no line (a missing file, a model)."""
    key: str
    """Dotted key path (``plugins.anomaly.batching.max_batch_size``); empty for the whole file."""
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


@dataclass(frozen=True)
class CheckResult:
    config: StreamserveConfig | None
    """The validated config; None when the file does not validate."""
    problems: list[Problem]
    served: list[str]
    """The plugins ``serve`` would serve (when there are no problems)."""
    not_configured: dict[str, str]
    """Installed plugins ``serve`` would leave out, and why."""


def check_config(
    path: Path,
    discovered: Sequence[DiscoveredPlugin],
    *,
    models: bool = False,
    env: dict[str, str] | None = None,
) -> CheckResult:
    """Every problem that would stop ``serve`` with the config file at ``path``."""
    file = str(path)
    problems: list[Problem] = []

    def result(config: StreamserveConfig | None = None, served: Sequence[str] = (),
               not_configured: dict[str, str] | None = None) -> CheckResult:
        return CheckResult(config, problems, list(served), not_configured or {})

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(file, None, "", f"cannot read the config file: {exc.strerror}"))
        return result()
    try:
        data = with_environment(read_yaml(text, file), file, dict(os.environ) if env is None else env)
    except ConfigError as exc:
        message = str(exc).removeprefix(f"{file}: ")
        problems.append(Problem(file, yaml_error_line(exc), "", message))
        return result()
    lines = key_lines(text)

    def add(key: KeyPath, message: str) -> None:
        problems.append(Problem(file, line_of(lines, key), ".".join(map(str, key)), message))

    config: StreamserveConfig | None = None
    try:
        config = StreamserveConfig.model_validate(data)
    except ValidationError as exc:
        for key, message in validation_problems(exc):
            add(key, message)
    _check_plugin_sections(data.get("plugins"), discovered, add)
    if config is None or problems:
        # The deeper checks need a valid config; the model paths do not: say those now too.
        _check_model_paths(data.get("plugins"), discovered, path.parent, add)
        return result()
    config = resolve_paths(config, path)

    # What the server's constructor checks (certificates, tokens, the repository, services).
    from streamserve.serving import Server  # grpc server pieces

    try:
        server = Server(config, discovered, source=file)
    except StreamserveError as exc:
        problems.append(Problem(file, None, "", str(exc).removeprefix(f"{file}: ")))
        return result(config)
    for plugin in server.plugins:
        model_key: KeyPath = ("plugins", plugin.spec.name, "model_path")
        if plugin.model is None:
            continue
        if plugin.config.model_path is None and plugin.spec.default_model is None:
            add(model_key, f"not set, and plugin {plugin.spec.name!r} has no default model")
        elif plugin.config.model_path is not None and not models:
            from streamserve.runtime import resolve_version

            try:
                resolve_version(plugin.config.model_path)
            except StreamserveError as exc:
                add(model_key, str(exc))
    if models and not problems:
        for model in server.repository.all():
            try:
                model.load()
            except StreamserveError as exc:
                if model.owner in config.plugins or any(p.spec.name == model.owner
                                                        for p in server.plugins):
                    add(("plugins", model.owner), str(exc))
                else:
                    add(("model_repository", "models", model.name), f"model {model.name!r}: {exc}")
    return result(config, [p.spec.name for p in server.plugins], server.not_configured)


def _check_model_paths(
    sections: object, discovered: Sequence[DiscoveredPlugin], folder: Path,
    add: Callable[[KeyPath, str], None],
) -> None:
    """Each installed plugin's ``model_path`` (relative to the config file's folder) holds a model
    version, as far as the file can be read without validating it whole."""
    if not isinstance(sections, dict):
        return
    from streamserve.runtime import resolve_version

    installed = {d.spec.name for d in discovered}
    for name, section in sections.items():
        where = section.get("model_path") if isinstance(section, dict) else None
        if name not in installed or not isinstance(where, str):
            continue
        try:
            resolve_version(folder / Path(where).expanduser())
        except StreamserveError as exc:
            add(("plugins", str(name), "model_path"), str(exc))


def _check_plugin_sections(
    sections: object, discovered: Sequence[DiscoveredPlugin], add: Callable[[KeyPath, str], None]
) -> None:
    """Each ``plugins:`` section names an installed plugin, and its ``settings:`` validate."""
    if not isinstance(sections, dict):
        return  # reported by validation
    by_name = {d.spec.name: d for d in discovered}
    for name, section in sections.items():
        key: KeyPath = ("plugins", str(name))
        if name not in by_name:
            installed = ", ".join(sorted(by_name)) or "none"
            add(key, f"no installed plugin has this name (installed: {installed}; "
                     "see `streamserve plugins`)")
            continue
        settings = section.get("settings") if isinstance(section, dict) else None
        if not isinstance(settings, dict):
            continue  # absent, or reported by validation
        model = by_name[name].spec.settings
        if model is None:
            if settings:
                add((*key, "settings"), f"plugin {name!r} takes no settings, got {sorted(settings)}")
            continue
        try:
            model.model_validate(settings)
        except ValidationError as exc:
            for path, message in validation_problems(exc, (*key, "settings")):
                add(path, message)
