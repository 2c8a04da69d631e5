"""The model repository in the core: models by name, rows checked against each model's own
signature, one batcher per model (shared with a model plugin when asked), readiness, new versions
and new models picked up while serving. Real SavedModels, a real server; the protocol plugins'
wire behaviour is tested in tests/oip and tests/tfserving."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamserve import Infer
from streamserve.config import parse_config
from streamserve.errors import InvalidArgument, ModelLoadError, NotFound, Unavailable
from streamserve.plugins import discover
from streamserve.serving import Server
from streamserve.testing import loopback_config
from tests.support.models import build_affine_model, build_fixed_batch_model, build_scalar_model


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``affine/1`` (y = 2x + 1), ``double/1`` and ``double/2`` (y = 2x then 3x), ``fixed/1``."""
    root = tmp_path_factory.mktemp("repository")
    build_affine_model(root / "affine" / "1")
    build_affine_model(root / "double" / "1", scale=2.0, bias=0.0)
    build_affine_model(root / "double" / "2", scale=3.0, bias=0.0)
    build_fixed_batch_model(root / "fixed" / "1")
    build_scalar_model(root / "scalar" / "1")
    return root


def make_server(text: str, plugins: list[object] = (), source: Path | None = None) -> Server:  # type: ignore[assignment]
    config = loopback_config(parse_config(text, source=source))
    return Server(config, discover(list(plugins), entry_points=False))


async def health(server: Server, name: str) -> str:
    """The health status name of ``name`` (``SERVICE_UNKNOWN`` if the server has no such entry)."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            return "SERVICE_UNKNOWN"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


async def infer(server: Server, request: Infer) -> dict[str, np.ndarray]:
    batcher, rows, count = server.repository.route(request)
    return dict(await (await batcher.submit(rows, count)))


async def test_every_folder_is_a_model_served_at_its_newest_version(repository: Path) -> None:
    server = make_server(f"model_repository: {{path: {repository}, batching: {{max_batch_size: 64}}}}")
    await server.start()
    try:
        await server.load_models()
        models = server.repository
        assert models.names() == ["affine", "double", "fixed", "scalar"]
        double = models.get("double")
        assert double.ready and double.version == "2"
        assert double.max_batch_size == 64  # the configured batching, for protocols that tell clients
        assert double.signature is not None
        assert [s.describe() for s in double.signature.inputs] == ["x: float32[?]"]
        out = await infer(server, Infer("double", {"x": np.array([1.0, 2.0], np.float32)}))
        np.testing.assert_array_equal(out["y"], [3.0, 6.0])
        out = await infer(server, Infer("double", {"x": np.array([1.0], np.float32)}, version="2"))
        np.testing.assert_array_equal(out["y"], [3.0])
        with pytest.raises(NotFound, match="no version '1'"):
            models.get("double", "1")
        with pytest.raises(NotFound, match=r"unknown model 'nope' \(served: affine, double, fixed, scalar\)"):
            server.repository.route(Infer("nope", {}))
    finally:
        await server.stop(0)


@pytest.mark.parametrize(
    ("rows", "field", "reason"),
    [
        ({}, None, None),  # no rows: resolves the model, no call
        ({"y": np.zeros(1, np.float32)}, "x", "needs input x: float32[?]"),
        ({"x": np.zeros(1, np.float32), "z": np.zeros(1, np.float32)}, "z", "has no such input"),
        ({"x": np.zeros(2, np.int64)}, "x", "expected x: float32[?], got int64[2]"),
        ({"x": np.zeros((2, 1), np.float32)}, "x", "expected x: float32[?], got shape [2, 1]"),
    ],
    ids=["metadata-only", "missing", "unexpected", "dtype", "shape"],
)
async def test_rows_are_checked_against_the_models_own_signature(
    repository: Path, rows: dict[str, np.ndarray], field: str | None, reason: str | None
) -> None:
    server = make_server(f"model_repository: {{path: {repository}}}")
    await server.start()
    try:
        await server.load_models()
        if field is None:
            _, checked, count = server.repository.route(Infer("affine", rows))
            assert (dict(checked), count) == ({}, 0)
            return
        with pytest.raises(InvalidArgument) as error:
            server.repository.route(Infer("affine", rows))
        assert error.value.field == field
        assert reason in error.value.reason
    finally:
        await server.stop(0)


async def test_a_model_with_a_fixed_batch_dimension_runs_one_request_per_call(
    repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(f"model_repository: {{path: {repository}}}")
    await server.start()
    try:
        await server.load_models()
        fixed = server.repository.public["fixed"]
        assert fixed.model is not None and not fixed.model.signature.batchable
        assert fixed.batcher is not None
        assert fixed.batching_for(fixed.model).max_batch_size == 1
        assert server.repository.get("fixed").max_batch_size == 1
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        futures = [await fixed.batcher.submit({"x": x + k}, 2) for k in range(3)]  # all queued at once
        outs = [await future for future in futures]
        assert fixed.batcher.statistics.calls == 3
        assert not [r for r in caplog.records if "model call" in r.getMessage()]  # none failed
        for k, out in enumerate(outs):
            np.testing.assert_array_equal(out["total"], (x + k).sum(axis=1))
        with pytest.raises(InvalidArgument, match="expected x: float32\\[2, 3\\]"):
            server.repository.route(Infer("fixed", {"x": np.zeros((1, 3), np.float32)}))
    finally:
        await server.stop(0)


async def test_a_model_of_scalars_is_served_one_request_per_call(repository: Path) -> None:
    server = make_server(f"model_repository: {{path: {repository}}}")
    await server.start()
    try:
        await server.load_models()
        out = await infer(server, Infer("scalar", {"x": np.array(3.0, np.float32)}))
        assert out["y"].shape == () and float(out["y"]) == 9.0
    finally:
        await server.stop(0)


async def test_a_repository_entry_can_share_a_model_plugins_model(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    text = (f"plugins: {{scaler: {{model_path: {scaler_model}}}}}\n"
            "model_repository: {models: {affine: {plugin: scaler}}}\n")
    server = make_server(text, [scaler_plugin])
    await server.start()
    try:
        await server.load_models()
        own = server.plugins[0].model
        assert server.repository.public["affine"] is own  # one model, one batcher
        assert len(server.repository.all()) == 1
        assert own is not None and own.batcher is not None
        before = own.batcher.statistics.calls
        out = await infer(server, Infer("affine", {"x": np.array([1.0], np.float32)}))
        np.testing.assert_array_equal(out["y"], [3.0])
        assert own.batcher.statistics.calls == before + 1
    finally:
        await server.stop(0)


def test_a_shared_entry_must_name_an_enabled_model_plugin() -> None:
    from streamserve.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model_repository.models.a.plugin: no enabled model plugin "
                                          r"is named 'anomalyy'"):
        make_server("model_repository: {models: {a: {plugin: anomalyy}}}")


def test_a_listed_model_cannot_take_a_model_plugins_name(
    repository: Path, scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    from streamserve.errors import ConfigError

    plugins = f"plugins: {{scaler: {{model_path: {scaler_model}}}}}\n"
    for entry in (f"{{path: {repository / 'affine'}}}", "{plugin: other}"):
        with pytest.raises(ConfigError) as error:
            make_server(f"{plugins}model_repository: {{models: {{scaler: {entry}}}}}\n", [scaler_plugin])
        assert "model_repository.models.scaler: plugin 'scaler' already serves a model of that " \
               "name" in str(error.value)
        assert "write `scaler: {plugin: scaler}`, else give this model another name" in str(error.value)

    shared = make_server(f"{plugins}model_repository: {{models: {{scaler: {{plugin: scaler}}}}}}\n",
                         [scaler_plugin])
    assert shared.repository.public["scaler"] is shared.plugins[0].model


async def test_a_folder_named_like_a_model_plugins_model_is_refused_and_the_rest_serve(
    repository: Path, tmp_path: Path, scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(repository / "affine", root / "affine")
    shutil.copytree(repository / "double", root / "scaler")  # the scaler plugin's model is "scaler"
    plugins = f"plugins: {{scaler: {{model_path: {scaler_model}}}}}\n"
    text = f"{plugins}on_plugin_error: continue\nmodel_repository: {{path: {root}}}\n"
    server = make_server(text, [scaler_plugin])
    await server.start()
    try:
        await server.load_models()
        refused = server.repository.get("scaler")
        assert not refused.ready
        assert refused.reason.startswith(f"the folder {root / 'scaler'} is refused: plugin 'scaler' "
                                         "already serves a model of that name")
        assert "rename the folder, or list `scaler: {plugin: scaler}`" in refused.reason
        with pytest.raises(Unavailable, match="is refused: plugin 'scaler' already serves"):
            server.repository.route(Infer("scaler", {}))
        assert await health(server, "model/scaler") == "NOT_SERVING"
        assert await health(server, "model/affine") == "SERVING"
        assert await health(server, server.plugins[0].service_name) == "SERVING"  # the plugin's own
        # Nothing was loaded for the folder, so the series named "scaler" are the plugin's alone.
        samples = server.metrics.registry.get_sample_value
        assert samples("streamserve_model_load_failures_total", {"model": "scaler"}) is None
        assert samples("streamserve_model_info", {"model": "scaler", "version": "1"}) == 1.0
        assert samples("streamserve_model_info", {"model": "scaler", "version": "2"}) is None
    finally:
        await server.stop(0)

    failing = make_server(f"{plugins}model_repository: {{path: {root}}}\n", [scaler_plugin])
    await failing.start()
    try:
        with pytest.raises(ModelLoadError, match="is refused"):  # as a broken model stops start-up
            await failing.load_models()
    finally:
        await failing.stop(0)

    listed = f"{plugins}model_repository: {{path: {root}, models: {{scaler: {{plugin: scaler}}}}}}\n"
    fixed = make_server(listed, [scaler_plugin])
    assert fixed.repository.public["scaler"] is fixed.plugins[0].model  # the folder is ignored


async def test_a_folder_named_like_a_model_plugins_model_is_refused_while_serving(
    repository: Path, tmp_path: Path, scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(repository / "affine", root / "affine")
    text = (f"plugins: {{scaler: {{model_path: {scaler_model}}}}}\n"
            f"model_repository: {{path: {root}, poll_seconds: null}}\n")  # on_plugin_error: fail
    server = make_server(text, [scaler_plugin])
    await server.start()
    try:
        await server.load_models()
        shutil.copytree(repository / "double", root / "scaler")
        await server.reload_models()
        assert server.repository.names() == ["affine", "scaler"]
        assert "is refused: plugin 'scaler' already serves" in server.repository.get("scaler").reason
        assert await health(server, "model/scaler") == "NOT_SERVING"
        assert await health(server, "model/affine") == "SERVING"
        own = server.plugins[0].model
        assert own is not None and own.batcher is not None and own.model is not None
        assert own.model.path == scaler_model / "1"  # still the plugin's model, untouched
    finally:
        await server.stop(0)


async def test_new_versions_and_new_models_are_served_without_a_restart(
    repository: Path, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(repository / "double" / "1", root / "double" / "1")
    server = make_server(f"model_repository: {{path: {root}, poll_seconds: null}}")
    await server.start()
    try:
        await server.load_models()
        assert server.repository.names() == ["double"]
        assert await health(server, "model/affine") == "SERVICE_UNKNOWN"
        shutil.copytree(repository / "double" / "2", root / "double" / "2")
        shutil.copytree(repository / "affine", root / "affine")
        await server.reload_models()  # what SIGHUP and the poll do
        assert server.repository.names() == ["affine", "double"]
        assert await health(server, "model/affine") == "SERVING"
        assert server.repository.get("double").version == "2"
        out = await infer(server, Infer("affine", {"x": np.array([1.0], np.float32)}))
        np.testing.assert_array_equal(out["y"], [3.0])
    finally:
        await server.stop(0)


async def test_statistics_are_per_model_name_and_survive_a_version_reload(
    repository: Path, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(repository / "double" / "1", root / "double" / "1")
    server = make_server(f"model_repository: {{path: {root}, poll_seconds: null}}")
    await server.start()
    try:
        await server.load_models()
        assert server.repository.statistics("double").calls == 0
        await infer(server, Infer("double", {"x": np.array([1.0, 2.0], np.float32)}))
        shutil.copytree(repository / "double" / "2", root / "double" / "2")
        await server.reload_models()
        assert server.repository.get("double").version == "2"
        await infer(server, Infer("double", {"x": np.array([1.0, 2.0, 3.0], np.float32)}))
        counted = server.repository.statistics("double", "2")
        assert (counted.rows, counted.calls, dict(counted.batches).keys()) == (5, 2, {2, 3})
        with pytest.raises(NotFound):
            server.repository.statistics("double", "1")  # only the version served is named
        with pytest.raises(NotFound):
            server.repository.statistics("nope")
    finally:
        await server.stop(0)


async def test_a_broken_model_is_not_ready_and_the_others_serve(repository: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(repository / "affine", root / "affine")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "saved_model.pb").write_bytes(b"not a model")
    text = f"on_plugin_error: continue\nmodel_repository: {{path: {root}}}\n"
    server = make_server(text)
    await server.start()
    try:
        await server.load_models()
        broken = server.repository.get("broken")
        assert not broken.ready and "cannot load SavedModel" in broken.reason
        assert await health(server, "model/broken") == "NOT_SERVING"
        assert await health(server, "model/affine") == "SERVING"
        with pytest.raises(Unavailable, match="model 'broken' is not available: it failed to load"):
            server.repository.route(Infer("broken", {}))
        assert server.repository.get("affine").ready
    finally:
        await server.stop(0)

    failing = make_server(f"model_repository: {{path: {root}}}")  # on_plugin_error: fail
    await failing.start()
    try:
        with pytest.raises(ModelLoadError, match="cannot load SavedModel"):
            await failing.load_models()
    finally:
        await failing.stop(0)


def test_relative_repository_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = parse_config("model_repository: {path: models, models: {a: {path: other/a}}}",
                          source=tmp_path / "conf" / "server.yaml")
    assert config.model_repository.path == tmp_path / "conf" / "models"
    assert config.model_repository.models["a"].path == tmp_path / "conf" / "other" / "a"
