"""The models a server serves, by name: each with its source, its batcher once loaded, its status.

A model plugin's own model is named after the plugin. The model repository (``model_repository:``
in the YAML) adds models by name for protocol plugins: every ``<name>/`` folder under its ``path``,
and the models it lists (a path, or the model a plugin already serves: one object, so one load and
one batcher whichever protocol the rows come from). :class:`Repository` is also the read-only
:class:`~streamserve.contract.Models` view that protocol plugins get.

A name means one model everywhere: metrics and the health entry ``model/<name>`` are keyed by it.
So a repository model may take a model plugin's name only to share that plugin's model; a listed
model that would not is a config error, a folder that would is refused (not ready, reason given).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamserve.config import BatchingConfig, RepositoryConfig
from streamserve.contract import Infer, ModelInfo, ModelStatistics, Rows, Signature, TensorSpec
from streamserve.errors import ConfigError, InvalidArgument, ModelLoadError, NotFound, Unavailable
from streamserve.runtime.batcher import Batcher
from streamserve.runtime.model import Model, load_model, prepare_tensorflow
from streamserve.runtime.statistics import CallStatistics

__all__ = ["Repository", "ServedModel"]


@dataclass(eq=False)
class ServedModel:
    """One model: where it comes from, and once it is loaded, its batcher."""

    name: str
    owner: str
    """Who asked for it, for messages: ``plugin 'anomaly'`` or ``model_repository``."""
    locate: Callable[[], Path]
    """The configured directory, or a plugin's default model (which it may build first)."""
    watched: Path | None
    """The directory polled for new versions; None for a default model (never replaced)."""
    signature: Signature | str
    """A plugin's declared signature (checked), or the name of the signature to read from the model."""
    batching: BatchingConfig
    poll_seconds: float | None
    """How often ``watched`` is looked at for a new version; None: only on SIGHUP."""
    model: Model | None = None
    batcher: Batcher | None = None
    """Set once the model is loaded and warm: from then on it is ready."""
    load_error: str | None = None
    """Why the model could not be loaded (with ``on_plugin_error: continue``), or None."""
    refused: str | None = None
    """Why the model is never loaded (a folder named like a plugin's model), or None."""
    statistics: CallStatistics = field(default_factory=CallStatistics)
    """Its model calls, counted by its batcher; kept across version reloads."""

    def load(self, directory: Path | None = None) -> Model:
        """Load, check and warm the model (``directory``, else where it comes from). Blocking."""
        if self.refused is not None:
            raise ModelLoadError(self.refused)
        if directory is None:
            prepare_tensorflow()  # a default model may be built with TensorFlow: pools first
            try:
                directory = self.locate()
            except ModelLoadError:
                raise
            except Exception as exc:  # a plugin's default_model() building its model
                raise ModelLoadError(f"building the default model failed: {exc}") from exc
        return load_model(directory, self.signature, plugin=self.owner)

    def batching_for(self, model: Model) -> BatchingConfig:
        """A model whose batch dimension is fixed cannot share calls: one request per call."""
        if model.signature.batchable:
            return self.batching
        return self.batching.model_copy(update={"max_batch_size": 1})

    def require_ready(self) -> Batcher:
        if self.batcher is None:
            if self.refused is not None:
                raise Unavailable(f"model {self.name!r} is not available: {self.refused}")
            if self.load_error is not None:
                raise Unavailable(
                    f"model {self.name!r} is not available: it failed to load ({self.load_error}); "
                    "the server log has the details"
                )
            raise Unavailable(
                f"model {self.name!r} is not ready: the model is still loading; retry shortly"
            )
        return self.batcher

    def info(self) -> ModelInfo:
        model = self.model
        ready = self.batcher is not None
        reason = "" if ready else (self.load_error or "loading")
        if model is None:
            return ModelInfo(self.name, ready, reason=reason)
        return ModelInfo(self.name, ready, model.version, model.signature, reason,
                         max_batch_size=self.batching_for(model).max_batch_size)


class Repository:
    """Every served model by name; the :class:`~streamserve.contract.Models` view of protocol
    plugins (only the repository's names are visible there, not the plugins' own models)."""

    def __init__(self) -> None:
        self.models: dict[str, ServedModel] = {}
        """The model plugins' own models, by plugin name (which is the model's name)."""
        self.public: dict[str, ServedModel] = {}
        """The repository's models, by the name clients use."""

    def all(self) -> list[ServedModel]:
        """Every distinct model (one shared by a plugin and the repository counts once)."""
        return list({id(m): m for m in (*self.models.values(), *self.public.values())}.values())

    def add_repository(self, config: RepositoryConfig, *, source: str) -> None:
        """The models of ``model_repository``: folders under its path, then the listed ones."""
        if config.path is not None and not config.path.is_dir():
            raise ConfigError(f"{source}: model_repository.path: {config.path} is not a folder")
        self.discover(config)
        for name, entry in config.models.items():
            if name in self.models and entry.plugin != name:
                raise ConfigError(f"{source}: model_repository.models.{name}: {_taken(name)}; to "
                                  f"share the plugin's model, write `{name}: {{plugin: {name}}}`, "
                                  "else give this model another name")
            if entry.plugin is not None:
                shared = self.models.get(entry.plugin)
                if shared is None:
                    raise ConfigError(
                        f"{source}: model_repository.models.{name}.plugin: no enabled model plugin "
                        f"is named {entry.plugin!r} (enabled: {', '.join(sorted(self.models)) or 'none'})"
                    )
                self.public[name] = shared
            else:
                assert entry.path is not None
                self.public[name] = _repository_model(
                    name, entry.path, entry.signature, entry.batching or config.batching,
                    config.poll_seconds,
                )

    def discover(self, config: RepositoryConfig) -> list[ServedModel]:
        """Models under the repository's path that are not known yet (added, not yet loaded)."""
        if config.path is None or not config.path.is_dir():
            return []
        new = []
        for folder in sorted(config.path.iterdir()):
            if folder.is_dir() and not folder.name.startswith(".") and folder.name not in self.public:
                model = _repository_model(folder.name, folder, "serving_default", config.batching,
                                          config.poll_seconds)
                if folder.name in self.models:  # not loaded, nor watched: its name is not its own
                    model.watched = None
                    model.refused = (
                        f"the folder {folder} is refused: {_taken(folder.name)}; rename the folder, "
                        f"or list `{folder.name}: {{plugin: {folder.name}}}` under "
                        "model_repository.models to share the plugin's model under this name "
                        "(the folder is then ignored)"
                    )
                self.public[folder.name] = model
                new.append(model)
        return new

    # -- the Models view ----------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self.public)

    def get(self, name: str, version: str = "") -> ModelInfo:
        return self._find(name, version).info()

    def statistics(self, name: str, version: str = "") -> ModelStatistics:
        return self._find(name, version).statistics.snapshot()

    def _find(self, name: str, version: str) -> ServedModel:
        model = self.public.get(name)
        if model is None:
            raise NotFound(f"unknown model {name!r} (served: {', '.join(self.names()) or 'none'})")
        served = model.model.version if model.model is not None else ""
        if version and model.model is not None and version != served:
            raise NotFound(f"model {name!r} has no version {version!r} being served "
                           f"(serving version {served or '-'})")
        return model

    def route(self, infer: Infer) -> tuple[Batcher, Rows, int]:
        """Where a protocol plugin's rows go: the model's batcher, the checked rows and their count.

        Raises NotFound (model or version), Unavailable (not ready) or InvalidArgument (rows that do
        not fit the model's signature: the field is the input's name).
        """
        rows = infer.rows
        model = self.public.get(infer.model)
        if model is not None and model.batcher is not None and rows and not infer.version:
            # The usual request, per message: a ready model, whichever version, with rows.
            loaded = model.model
            assert loaded is not None
            return model.batcher, rows, _check_rows(rows, loaded.signature, infer.model)
        model = self._find(infer.model, infer.version)  # a ready model's version is checked there
        batcher = model.require_ready()
        if not rows:
            return batcher, {}, 0
        assert model.model is not None
        return batcher, rows, _check_rows(rows, model.model.signature, infer.model)


def _taken(name: str) -> str:
    return (f"plugin {name!r} already serves a model of that name, and a name must mean one model "
            f"(metrics and the health entry model/{name} are keyed by it)")


def _repository_model(
    name: str, path: Path, signature: str, batching: BatchingConfig, poll_seconds: float | None
) -> ServedModel:
    return ServedModel(name=name, owner=f"model {name!r} of model_repository", locate=lambda: path,
                       watched=path, signature=signature, batching=batching,
                       poll_seconds=poll_seconds)


def _check_rows(rows: Rows, signature: Signature, model: str) -> int:
    """The row count of ``rows``, after checking them against the signature; InvalidArgument if not."""
    if len(rows) == 1 and len(signature.inputs) == 1:  # the common case, per request: no sets
        (spec,) = signature.inputs
        value = rows.get(spec.name)
        if (isinstance(value, np.ndarray) and value.dtype == spec.numpy_dtype
                and value.shape[1:] == spec.row_shape and value.ndim):
            return len(value)
    expected = {spec.name: spec for spec in signature.inputs}
    if missing := sorted(set(expected) - set(rows)):
        spec = expected[missing[0]]
        raise InvalidArgument(spec.name, f"model {model!r} needs input {spec.describe()}; "
                              f"the request has {sorted(rows) or 'none'}")
    if unexpected := sorted(set(rows) - set(expected)):
        raise InvalidArgument(unexpected[0], f"model {model!r} has no such input; its inputs are "
                              f"{', '.join(s.describe() for s in signature.inputs)}")
    count = -1
    for name, value in rows.items():
        spec = expected[name]
        _check_tensor(name, value, spec)
        rows_here = len(value) if np.ndim(value) else 1  # a scalar input (rank 0) is one row
        if count == -1:
            count = rows_here
        elif rows_here != count:
            raise InvalidArgument(name, f"has {rows_here} rows but another input has {count}; "
                                  "every input needs the same first (batch) dimension")
    return max(count, 0)


def _check_tensor(name: str, value: Any, spec: TensorSpec) -> None:
    got = _dtype_name(value)
    if got != spec.dtype:
        raise InvalidArgument(name, f"expected {spec.describe()}, got {got}{list(np.shape(value))}")
    shape = np.shape(value)
    if not _fits(shape, spec.shape):
        raise InvalidArgument(name, f"expected {spec.describe()}, got shape {list(shape)}")


def _fits(shape: tuple[int, ...], dims: tuple[int | None, ...]) -> bool:
    """Whether an array of ``shape`` fits a signature's ``dims`` (None: any size)."""
    return len(shape) == len(dims) and all(
        want is None or want == have for want, have in zip(dims, shape, strict=True)
    )


def _dtype_name(value: Any) -> str:
    dtype = np.asarray(value).dtype
    if dtype.kind in "OSU":
        return "string"
    return dtype.name

