"""The models' lifecycle: load, check and warm each model, serve it through its batcher, watch its
directory for new versions and the repository for new models, swap a new version in, and stop.

The gRPC server is told what happens through callbacks (a model ready, a model failed, a new model
found) and turns that into health and metrics; it keeps ports, health, reflection and drain.

Models load in the manager's own thread, not the event loop's default executor: a load cannot be
interrupted, and ``asyncio.run`` waits for that executor at exit, so a stop during a load would
wait for it. A stop abandons a load in progress instead (and says so), leaving its thread to the
process's exit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from streamserve.config import RepositoryConfig
from streamserve.errors import ModelLoadError, StreamserveError
from streamserve.runtime.batcher import Batcher
from streamserve.runtime.model import Model, resolve_version
from streamserve.runtime.repository import Repository, ServedModel

__all__ = ["ModelManager"]

log = logging.getLogger(__name__)


class ModelManager:
    """Every model of a :class:`Repository`, from first load to stop."""

    def __init__(
        self,
        repository: Repository,
        config: RepositoryConfig,
        *,
        on_ready: Callable[[ServedModel], Awaitable[None]],
        on_failed: Callable[[ServedModel], None],
        on_found: Callable[[ServedModel], Awaitable[None]],
        batch_observer: Callable[[str], Callable[[int], None]] | None = None,
    ) -> None:
        """``on_ready(model)``: the model serves a (new) version. ``on_failed(model)``: a load
        failed (``model.load_error`` says why if the model is not ready). ``on_found(model)``: a
        new model appeared under the repository's path (not loaded yet). ``batch_observer(name)``:
        what each of the model's batches' row count is told to (metrics)."""
        self.repository = repository
        self._config = config
        self._on_ready = on_ready
        self._on_failed = on_failed
        self._on_found = on_found
        self._batch_observer = batch_observer
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")
        self._loading: set[str] = set()
        """Models whose load is in progress, named in the log if a stop abandons them."""
        self._reload_lock = asyncio.Lock()
        self._rejected: set[tuple[Path, float]] = set()
        """Versions that failed, with their files' newest mtime: retried once their files change."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._abandoned = False

    async def load_all(self, *, fatal: bool) -> None:
        """Load, check and warm every model. A model that fails raises (``fatal``) or is reported
        and left not ready while the others serve."""
        for model in self.repository.all():
            await self._load(model, fatal=fatal)

    def watch(self) -> None:
        """From now on, poll each model's directory for new versions and the repository's path for
        new models, at their configured intervals."""
        for model in self.repository.all():
            self._watch(model)
        if self._config.path is not None and self._config.poll_seconds is not None:
            self._spawn(self._poll_repository(self._config.poll_seconds))

    async def reload_all(self) -> None:
        """Look for new model versions, and new repository models, now (SIGHUP does this)."""
        for model in self.repository.all():
            await self.reload(model)
        await self._discover()

    async def reload(self, model: ServedModel) -> bool:
        """Serve the newest version under the model's directory if it is not served yet.

        The new version is loaded, checked and warmed in the loader thread while the old one goes
        on serving; then the batcher switches between two batches, so no call sees an error. A
        version that fails is logged and skipped (until its files change); the old one keeps
        serving.
        """
        base = model.watched
        if base is None:
            return False
        async with self._reload_lock:
            try:
                directory, version = resolve_version(base)
            except ModelLoadError:
                return False
            if model.model is not None and model.model.path == directory:
                return False
            attempt = (directory, _newest_mtime(directory))
            if attempt in self._rejected:
                return False
            try:
                loaded = await self._in_loader(model, directory)
            except StreamserveError as exc:
                self._rejected.add(attempt)
                self._on_failed(model)
                serving = model.model.version if model.model else "none"
                log.error("rejected version %s of model %r (%s): %s; still serving version %s",
                          version, model.name, model.owner, exc, serving)
                return False
            await self._serve(model, loaded)
            return True

    def abandon(self) -> None:
        """Stop watching, and abandon a load in progress (said in the log). Models already loaded
        go on serving until :meth:`close`."""
        if self._abandoned:
            return
        self._abandoned = True
        for task in list(self._tasks):
            task.cancel()
        if self._loading:
            log.info("abandoning the load of model(s) %s: the server is stopping",
                     ", ".join(repr(name) for name in sorted(self._loading)))
        self._loader.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Unload every model: its batcher stops; calls still waiting get UNAVAILABLE."""
        self.abandon()
        for model in self.repository.all():
            if model.batcher is not None:
                await model.batcher.close()
                model.batcher = None

    # -- inside ---------------------------------------------------------------------------------

    async def _in_loader(self, model: ServedModel, directory: Path | None = None) -> Model:
        """``model.load(directory)`` in the loader thread."""
        self._loading.add(model.name)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._loader, model.load, directory)
        finally:
            self._loading.discard(model.name)

    async def _load(self, model: ServedModel, *, fatal: bool) -> None:
        log.info("loading model %r (%s)", model.name, model.owner)
        try:
            loaded = await self._in_loader(model)
        except StreamserveError as exc:
            if fatal:
                raise
            model.load_error = str(exc)
            self._on_failed(model)
            log.error("model %r (%s) is not ready: %s", model.name, model.owner, exc)
            return
        await self._serve(model, loaded)

    async def _serve(self, served: ServedModel, model: Model) -> None:
        if served.batcher is None:
            observe = self._batch_observer(served.name) if self._batch_observer else None
            batcher = Batcher(model.call, served.batching_for(model), name=f"model-{served.name}",
                              on_batch=observe, version=model.version,
                              outputs=model.signature.outputs, statistics=served.statistics)
            batcher.start()
            served.batcher = batcher
        else:
            served.batcher.swap(model.call, model.version, model.signature.outputs)
        served.model, served.load_error = model, None
        await self._on_ready(served)
        log.info("model %r is SERVING version %s (%s)", served.name, model.version or "-", model.path)

    def _watch(self, model: ServedModel) -> None:
        """Poll the model's directory for new versions, if it has one and a poll interval."""
        if model.watched is not None and model.poll_seconds is not None:
            self._spawn(self._poll(model, model.poll_seconds))

    async def _poll(self, model: ServedModel, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.reload(model)

    async def _poll_repository(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._discover()

    async def _discover(self) -> None:
        """Load the models that appeared under the repository's path (and watch them)."""
        for model in self.repository.discover(self._config):
            log.info("new model %r in the model repository", model.name)
            await self._on_found(model)
            await self._load(model, fatal=False)  # while serving, a bad new model fails alone
            self._watch(model)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _newest_mtime(directory: Path) -> float:
    """When the version's files last changed: a half-copied version is retried once it changes."""
    return max((p.stat().st_mtime for p in directory.rglob("*")), default=0.0)
