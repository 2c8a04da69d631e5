"""Plugin discovery through real entry points of (fake) installed distributions, and the CLI on top."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import streamserve
from streamserve.cli import main
from streamserve.config import ADDRESS_ENV
from streamserve.errors import PluginError
from streamserve.plugins import DiscoveredPlugin, discover
from tests.support.dists import FakeSite

SCALER_METHODS = [
    "Scale(streamserve_test.Values) returns (streamserve_test.Values)",
    "Expand(streamserve_test.Values) returns (stream streamserve_test.Value)",
    "ScaleStream(stream streamserve_test.Values) returns (stream streamserve_test.Values)",
]


def plugin_source(registered: str = "spec", *, body: str = "") -> str:
    """A plugin module whose hook registers the expression ``registered`` (``spec`` is the scaler's)."""
    return f"""
import dataclasses

import streamserve
from streamserve import Method
from tests.support import scaler_plugin
from tests.support.dists import client_streaming_service

{body}

@streamserve.hookimpl
def streamserve_register(register):
    spec = scaler_plugin.make_spec()
    register({registered})
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scaler_plugin: ModuleType) -> Iterator[FakeSite]:
    """A folder of fake installed distributions on sys.path, removed with its modules afterwards."""
    fake = FakeSite(tmp_path / "site-packages")
    fake.root.mkdir()
    monkeypatch.syspath_prepend(str(fake.root))
    try:
        yield fake
    finally:
        fake.cleanup()


def install_plugin(site: FakeSite, dist: str, source: str, *, version: str = "1.0",
                   entry_point: str = "scaler") -> str:
    module = site.module_name(dist)
    site.install(dist, version, entry_points={entry_point: module}, modules={module: source})
    return module


def by_name(found: list[DiscoveredPlugin]) -> dict[str, DiscoveredPlugin]:
    return {d.spec.name: d for d in found}


def test_installed_plugin_is_discovered_with_its_package_and_version(site: FakeSite) -> None:
    install_plugin(site, "streamserve-scaler", plugin_source(), version="1.2.3")

    plugin = by_name(discover())["scaler"]

    assert (plugin.distribution, plugin.version) == ("streamserve-scaler", "1.2.3")
    assert plugin.spec.service.full_name == "streamserve_test.Scaler"
    assert sorted(plugin.spec.methods) == ["Expand", "Scale", "ScaleStream"]
    # The switch for embedding programs and tests: installed plugins are not even imported.
    assert "scaler" not in by_name(discover(entry_points=False))


def test_extra_plugin_objects_are_discovered_in_process(scaler_plugin: ModuleType) -> None:
    (plugin,) = discover(entry_points=False, extra=[scaler_plugin])

    assert plugin.spec.name == "scaler"
    assert (plugin.distribution, plugin.version) == ("<in-process>", "")


def test_extra_plugin_objects_go_through_the_same_checks() -> None:
    class Nonsense:
        @streamserve.hookimpl
        def streamserve_register(self, register):  # type: ignore[no-untyped-def]
            register("scaler")

    with pytest.raises(PluginError, match=r"register\(\) takes a streamserve.PluginSpec, got str") as error:
        discover(entry_points=False, extra=[Nonsense()])
    assert error.value.distribution == "<in-process>"


@pytest.mark.parametrize(
    ("source", "original"),
    [
        ('raise ImportError("libscaler.so: cannot open shared object file")',
         "ImportError: libscaler.so: cannot open shared object file"),
        ("import streamserve_no_such_dependency", "No module named 'streamserve_no_such_dependency'"),
    ],
    ids=["raises-ImportError", "missing-dependency"],
)
def test_plugin_that_fails_to_import_names_entry_point_package_and_cause(
    site: FakeSite, source: str, original: str
) -> None:
    module = install_plugin(site, "streamserve-broken", source, entry_point="broken-scaler")

    with pytest.raises(PluginError) as error:
        discover()

    message = str(error.value)
    assert (error.value.plugin, error.value.distribution) == ("broken-scaler", "streamserve-broken")
    assert "'broken-scaler'" in message and "streamserve-broken" in message
    assert module in message and original in message
    assert isinstance(error.value.__cause__, ImportError)


def test_entry_point_to_a_module_that_does_not_exist(site: FakeSite) -> None:
    site.install("streamserve-ghost", "0.1", entry_points={"ghost": "streamserve_ghost_plugin_module"})

    with pytest.raises(PluginError, match="No module named 'streamserve_ghost_plugin_module'") as error:
        discover()
    assert (error.value.plugin, error.value.distribution) == ("ghost", "streamserve-ghost")


def test_two_plugins_with_one_name_name_both_packages(site: FakeSite) -> None:
    install_plugin(site, "streamserve-scaler", plugin_source(), entry_point="scaler")
    install_plugin(site, "scaler-fork", plugin_source(), entry_point="scaler-fork")

    with pytest.raises(PluginError) as error:
        discover()

    message = str(error.value)
    assert error.value.plugin == "scaler"
    assert "'scaler' is already taken" in message
    assert "streamserve-scaler" in message and "scaler-fork" in message


@pytest.mark.parametrize(
    ("registered", "reason"),
    [
        ('{"name": "scaler"}', "register() takes a streamserve.PluginSpec, got dict"),
        ("dataclasses.replace(spec, name='  ')", "PluginSpec.name must be a non-empty string"),
        ("dataclasses.replace(spec, service='streamserve_test.Scaler')",
         "PluginSpec.service must be a protobuf ServiceDescriptor"),
        ("dataclasses.replace(spec, signature='serving_default')",
         "PluginSpec.signature must be a streamserve.Signature, or None for a plugin"),
        ("dataclasses.replace(spec, methods={**spec.methods, 'Bogus': spec.methods['Scale']})",
         "Method(s) ['Bogus'] are not RPC methods of streamserve_test.Scaler "
         "(it has ['Expand', 'Scale', 'ScaleStream'])"),
        ("dataclasses.replace(spec, methods={**spec.methods, 'Scale': print})",
         "methods['Scale'] must be a streamserve.Method"),
        ("dataclasses.replace(spec, service=client_streaming_service(),"
         " methods={'Collect': spec.methods['Scale']})",
         "Collect is client-streaming only"),
    ],
    ids=["not-a-spec", "blank-name", "service-not-a-descriptor", "signature-not-a-signature",
         "unknown-method", "not-a-method", "client-streaming-only"],
)
def test_nonsense_registration_names_plugin_package_and_reason(
    site: FakeSite, registered: str, reason: str
) -> None:
    install_plugin(site, "streamserve-nonsense", plugin_source(registered), entry_point="nonsense")

    with pytest.raises(PluginError) as error:
        discover()

    message = str(error.value)
    assert error.value.distribution == "streamserve-nonsense"
    assert error.value.plugin in ("nonsense", "scaler")  # the entry point, or the spec's own name
    assert f"plugin {error.value.plugin!r} (from package streamserve-nonsense)" in message
    assert reason in message


def test_hook_that_raises_names_plugin_package_and_error(site: FakeSite) -> None:
    body = "def no_gpu():\n    raise RuntimeError('no GPU found')\n"
    install_plugin(site, "streamserve-gpu", plugin_source("no_gpu()", body=body), entry_point="gpu")

    with pytest.raises(PluginError) as error:
        discover()

    assert (error.value.plugin, error.value.distribution) == ("gpu", "streamserve-gpu")
    assert "streamserve_register raised RuntimeError: no GPU found" in str(error.value)
    assert isinstance(error.value.__cause__, RuntimeError)


def test_hook_with_wrong_parameters_is_a_plugin_error(site: FakeSite) -> None:
    source = (
        "import streamserve\n\n"
        "@streamserve.hookimpl\n"
        "def streamserve_register(register, loop):\n"
        "    pass\n"
    )
    install_plugin(site, "streamserve-args", source, entry_point="args")

    with pytest.raises(PluginError, match="loop") as error:
        discover()
    assert (error.value.plugin, error.value.distribution) == ("args", "streamserve-args")


def test_misspelled_hook_is_a_plugin_error_naming_the_package(site: FakeSite) -> None:
    # A typo in the hook name must not crash start-up with a bare pluggy error (or silently serve
    # nothing): it is a PluginError like every other unusable plugin, so the CLI prints one line.
    source = (
        "import streamserve\n\n"
        "@streamserve.hookimpl\n"
        "def streamserve_registr(register):\n"
        "    pass\n"
    )
    install_plugin(site, "streamserve-typo", source, entry_point="typo")

    with pytest.raises(PluginError, match="streamserve_registr") as error:
        discover()
    assert error.value.distribution == "streamserve-typo"


# The CLI -------------------------------------------------------------------------------------------


def test_cli_plugins_json_lists_installed_plugin(
    site: FakeSite, capsys: pytest.CaptureFixture[str]
) -> None:
    install_plugin(site, "streamserve-scaler", plugin_source(), version="2.0.1")

    assert main(["plugins", "--json"]) == 0

    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["scaler"] == {
        "name": "scaler",
        "distribution": "streamserve-scaler",
        "version": "2.0.1",
        "service": "streamserve_test.Scaler",
        "methods": SCALER_METHODS,
        "status": "installed, not configured: it has no default model; to serve it, give its model "
                  "in the config: plugins: {scaler: {model_path: DIR}}",
    }


def test_cli_plugins_table_lists_installed_plugin(
    site: FakeSite, capsys: pytest.CaptureFixture[str]
) -> None:
    install_plugin(site, "streamserve-scaler", plugin_source(), version="2.0.1")

    assert main(["plugins"]) == 0

    out = capsys.readouterr().out
    assert "scaler  (streamserve-scaler 2.0.1)" in out
    assert "service  streamserve_test.Scaler" in out
    for method in SCALER_METHODS:
        assert f"method   {method}" in out


def test_cli_plugins_reports_a_broken_plugin_in_one_line(
    site: FakeSite, capsys: pytest.CaptureFixture[str]
) -> None:
    install_plugin(site, "streamserve-broken", "raise ImportError('boom')", entry_point="broken")

    assert main(["plugins"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("streamserve: error: plugin 'broken' (from package streamserve-broken)")
    assert "ImportError: boom" in err and "Traceback" not in err


@pytest.fixture
def no_address_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADDRESS_ENV, raising=False)


@pytest.mark.usefixtures("no_address_env")
def test_cli_config_check_accepts_a_good_file(
    site: FakeSite, tmp_path: Path, capsys: pytest.CaptureFixture[str], scaler_model: Path
) -> None:
    install_plugin(site, "streamserve-scaler", plugin_source())
    config = tmp_path / "server.yaml"
    config.write_text(
        f"server:\n  address: 127.0.0.1:0\nplugins:\n  scaler:\n    model_path: {scaler_model}\n")

    assert main(["config", "check", str(config)]) == 0

    out = capsys.readouterr().out
    # Other installed plugins (enabled unless their section says otherwise) may be listed too.
    assert re.search(rf"^{re.escape(str(config))}: OK; serves (\S+, )*scaler(, \S+)* on 127\.0\.0\.1:0$",
                     out, re.MULTILINE), out


@pytest.mark.usefixtures("no_address_env")
def test_cli_config_check_rejects_an_unknown_plugin(
    site: FakeSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_plugin(site, "streamserve-scaler", plugin_source())
    config = tmp_path / "server.yaml"
    config.write_text("plugins:\n  scalar:\n    enabled: true\n")

    assert main(["config", "check", str(config)]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{config}:2: plugins.scalar: ")
    assert "no installed plugin has this name" in captured.err
    assert re.search(r"installed: ([^;)]*, )?scaler\b", captured.err), captured.err


@pytest.mark.usefixtures("no_address_env")
def test_cli_config_check_rejects_a_typo_with_its_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("server:\n  adress: 127.0.0.1:0\n")

    assert main(["config", "check", str(config)]) == 2

    err = capsys.readouterr().err
    assert f"{config}:2: server.adress: unknown key" in err
    assert err.endswith("streamserve: 1 problem: `serve` would not start\n")


@pytest.mark.usefixtures("no_address_env")
def test_an_installed_plugin_without_a_model_is_listed_as_not_configured(
    site: FakeSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Installing is not configuring: a model plugin with no section and no default model is left
    out of serving (the scaler has no default model), with what to add; once configured it serves."""
    install_plugin(site, "streamserve-scaler", plugin_source())

    assert main(["plugins", "--json"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["name"] == "scaler"]
    assert row["status"].startswith("installed, not configured")
    assert "plugins: {scaler: {model_path: DIR}}" in row["status"]

    empty = tmp_path / "empty.yaml"
    empty.write_text("server:\n  address: 127.0.0.1:0\n")
    assert main(["plugins", "--config", str(empty)]) == 0
    assert re.search(r"^scaler .*\n(  .*\n)*  status   installed, not configured", capsys.readouterr().out,
                     re.MULTILINE)
    assert main(["config", "check", str(empty)]) == 0
    served, *notes = capsys.readouterr().out.splitlines()
    assert "scaler" not in served.split("serves", 1)[1]
    assert "  scaler: installed, not configured: it has no default model; to serve it, give its model " \
           "in the config: plugins: {scaler: {model_path: DIR}}" in notes

    configured = tmp_path / "configured.yaml"
    configured.write_text("plugins:\n  scaler:\n    model_path: models\n")
    assert main(["plugins", "--json", "--config", str(configured)]) == 1  # configured, model missing
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["name"] == "scaler"]
    assert row["status"] == "enabled"
    assert "does not exist" in row["model"]["error"]


@pytest.mark.usefixtures("no_address_env")
def test_cli_config_check_names_every_problem_in_one_run(
    site: FakeSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt key, a misspelt plugin section, a bad plugin setting and a missing model: all four
    at once, each with its line and key path (not one per round of fixes)."""
    install_plugin(site, "streamserve-scaler", plugin_source())
    config = tmp_path / "server.yaml"
    config.write_text(
        "server:\n"
        "  adress: 127.0.0.1:0\n"            # line 2
        "plugins:\n"
        "  scalar:\n"                         # line 4
        "    enabled: true\n"
        "  scaler:\n"
        "    model_path: nowhere\n"           # line 7
        "    settings:\n"              # line 8
        "      factor: 2\n"
    )

    assert main(["config", "check", str(config)]) == 2

    err = capsys.readouterr().err.splitlines()
    missing = f"model directory {tmp_path}/nowhere does not exist"
    assert err[0] == f"{config}:2: server.adress: unknown key (check its spelling; see docs/configuration.md)"
    assert err[1].startswith(f"{config}:4: plugins.scalar: no installed plugin has this name")
    assert err[2] == f"{config}:7: plugins.scaler.model_path: {missing}"
    assert err[3] == f"{config}:8: plugins.scaler.settings: plugin 'scaler' takes no settings, got ['factor']"
    assert err[-1] == "streamserve: 4 problems: `serve` would not start"

    # Fix the other three: the missing model is still named, the same way.
    config.write_text("plugins:\n  scaler:\n    model_path: nowhere\n")
    assert main(["config", "check", str(config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{config}:3: plugins.scaler.model_path: {missing}"


@pytest.mark.usefixtures("no_address_env")
def test_cli_config_check_names_the_file_and_line_of_a_yaml_syntax_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("server:\n  address: 127.0.0.1:0\nplugins:\n  anomaly: {enabled: true\n")

    assert main(["config", "check", str(config)]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"{config}:5: not valid YAML at line 5, column 1: ")
    assert "<unicode string>" not in err


@pytest.mark.usefixtures("no_address_env")
def test_cli_config_check_with_models_loads_each_model_and_checks_its_signature(
    site: FakeSite, tmp_path: Path, anomaly_model: Path, scaler_model: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The model exists (so the quick check passes) but is the anomaly model, not the scaler's:
    only loading it, as `serve` would, finds the mismatch."""
    install_plugin(site, "streamserve-scaler", plugin_source())
    config = tmp_path / "server.yaml"
    config.write_text(f"plugins:\n  scaler:\n    model_path: {anomaly_model}\n"
                      "  anomaly:\n    enabled: false\n")
    assert main(["config", "check", str(config)]) == 0
    capsys.readouterr()

    assert main(["config", "check", "--models", str(config)]) == 2
    err = capsys.readouterr().err
    assert "plugin 'scaler'" in err and "does not match the plugin's" in err

    config.write_text(f"plugins:\n  scaler:\n    model_path: {scaler_model}\n"
                      "  anomaly:\n    enabled: false\n")
    assert main(["config", "check", "--models", str(config)]) == 0
