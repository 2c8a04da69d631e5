"""The YAML config: every mistake is a ConfigError naming the file and the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from streamserve.cli import main
from streamserve.config import (
    ADDRESS_ENV,
    StreamserveConfig,
    load_config,
    parse_config,
    plugin_settings,
)
from streamserve.errors import ConfigError

REPO = Path(__file__).parent.parent
SHIPPED = sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "configs").glob("*.yml"))


def write(tmp_path: Path, text: str, name: str = "server.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(path, env={} if env is None else env)
    return str(error.value)


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "# nothing yet\n"), env={})

    assert config == StreamserveConfig()
    assert config.server.address == "0.0.0.0:50051"
    assert config.plugin("anything").batching.max_batch_size == 8192


def test_a_full_file_is_read(tmp_path: Path) -> None:
    text = """
log_level: debug
server:
  address: "[::1]:6000"
  max_receive_message_bytes: 1000
  reflection: false
  shutdown_grace_seconds: 0.5
plugins:
  scaler:
    enabled: false
    model_path: /models/scaler
    signature: other
    batching: {max_batch_size: 8, max_delay_ms: 2.5, max_queued_rows: 64}
    settings: {threshold: 3}
"""
    config = load_config(write(tmp_path, text), env={})

    assert config.log_level == "DEBUG"
    assert config.server.address == "[::1]:6000"
    assert config.server.max_receive_message_bytes == 1000
    assert config.server.reflection is False
    scaler = config.plugin("scaler")
    assert (scaler.enabled, scaler.model_path, scaler.signature) == (False, Path("/models/scaler"), "other")
    assert (scaler.batching.max_batch_size, scaler.batching.max_delay_ms,
            scaler.batching.max_queued_rows) == (8, 2.5, 64)
    assert scaler.settings == {"threshold": 3}


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("sever:\n  address: 127.0.0.1:1\n", "sever"),
        ("server:\n  adress: 127.0.0.1:1\n", "server.adress"),
        ("plugins:\n  x:\n    modelpath: /m\n", "plugins.x.modelpath"),
        ("plugins:\n  x:\n    batching:\n      max_batchsize: 8\n", "plugins.x.batching.max_batchsize"),
    ],
)
def test_misspelled_key_anywhere_names_file_and_key_path(tmp_path: Path, text: str, key_path: str) -> None:
    path = write(tmp_path, text)

    message = config_error(path)

    assert message.startswith(f"{path}: invalid configuration")
    assert f"  {key_path}: unknown key" in message


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  adress: x\nplugins:\n  x:\n    batching:\n      max_batch_size: 0\n")

    message = config_error(path)

    assert "server.adress: unknown key" in message
    assert "plugins.x.batching.max_batch_size: Input should be greater than or equal to 1" in message


@pytest.mark.parametrize(
    ("text", "key_path", "detail"),
    [
        ("server:\n  max_receive_message_bytes: lots\n", "server.max_receive_message_bytes",
         "valid integer"),
        ("server:\n  max_send_message_bytes: 0\n", "server.max_send_message_bytes", "greater than 0"),
        ("server:\n  shutdown_grace_seconds: -1\n", "server.shutdown_grace_seconds",
         "greater than or equal to 0"),
        ("server:\n  reflection: sometimes\n", "server.reflection", "valid boolean"),
        ("server:\n  address: localhost\n", "server.address", "expected HOST:PORT"),
        ("server:\n  address: 127.0.0.1:70000\n", "server.address", "expected HOST:PORT"),
        ("server:\n  address: ':50051'\n", "server.address", "expected HOST:PORT"),
        ("server: [127.0.0.1:1]\n", "server", "valid dictionary"),
        ("server:\n  event_loop: trio\n", "server.event_loop", "'auto', 'uvloop' or 'asyncio'"),
        ("plugins:\n  x:\n    enabled: maybe\n", "plugins.x.enabled", "valid boolean"),
        ("plugins:\n  x:\n    batching:\n      max_batch_size: 0\n", "plugins.x.batching.max_batch_size",
         "greater than or equal to 1"),
        ("plugins:\n  x:\n    batching:\n      max_delay_ms: -0.5\n", "plugins.x.batching.max_delay_ms",
         "greater than or equal to 0"),
        ("plugins:\n  x:\n    batching:\n      max_queued_rows: many\n",
         "plugins.x.batching.max_queued_rows", "valid integer"),
        ("plugins:\n  x:\n    settings: [1, 2]\n", "plugins.x.settings", "valid dictionary"),
        ("plugins: [scaler]\n", "plugins", "valid dictionary"),
        ("log_level: LOUD\n", "log_level", "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ],
)
def test_wrong_type_or_range_names_the_key_path(
    tmp_path: Path, text: str, key_path: str, detail: str
) -> None:
    path = write(tmp_path, text)

    message = config_error(path)

    assert message.startswith(f"{path}: invalid configuration")
    line = next((ln for ln in message.splitlines() if ln.startswith(f"  {key_path}: ")), None)
    assert line is not None, message
    assert detail in line


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  address: [127.0.0.1\n")

    message = config_error(path)

    assert message.startswith(f"{path}: not valid YAML")
    assert "line" in message  # PyYAML's position of the problem


@pytest.mark.parametrize(("text", "kind"), [("- server\n- plugins\n", "list"), ("just words\n", "str")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)

    assert config_error(path) == f"{path}: the top level must be a mapping, got {kind}"


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "server.yaml"

    message = config_error(path)

    assert message.startswith(f"{path}: cannot read the config file")
    assert "No such file or directory" in message


def test_parse_without_a_file_says_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^<config>: invalid configuration:\n  sever: unknown key"):
        parse_config("sever: {}\n", env={})


# STREAMSERVE_ADDRESS ------------------------------------------------------------------------------


def test_address_env_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  address: 0.0.0.0:50051\n  reflection: false\n")

    config = load_config(path, env={ADDRESS_ENV: "127.0.0.1:6001"})

    assert config.server.address == "127.0.0.1:6001"
    assert config.server.reflection is False  # the rest of the section is kept


def test_address_env_applies_without_a_server_section() -> None:
    assert parse_config("", env={ADDRESS_ENV: "127.0.0.1:6002"}).server.address == "127.0.0.1:6002"
    assert parse_config("server:\n", env={ADDRESS_ENV: "127.0.0.1:6003"}).server.address == "127.0.0.1:6003"


def test_address_env_is_read_from_the_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADDRESS_ENV, "127.0.0.1:6004")
    assert parse_config("").server.address == "127.0.0.1:6004"
    # An explicit env wins over the process environment.
    assert parse_config("", env={}).server.address == "0.0.0.0:50051"


def test_bad_address_env_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  address: 0.0.0.0:50051\n")

    message = config_error(path, env={ADDRESS_ENV: "not-an-address"})

    assert message.startswith(f"{path}: ")
    assert "expected HOST:PORT" in message and "'not-an-address'" in message


def test_bad_address_env_says_it_came_from_the_environment(tmp_path: Path) -> None:
    # The file's server.address is fine; pointing only at it would send the operator to the wrong place.
    path = write(tmp_path, "server:\n  address: 0.0.0.0:50051\n")

    message = config_error(path, env={ADDRESS_ENV: "not-an-address"})

    assert ADDRESS_ENV in message


def test_address_env_with_a_malformed_server_section_is_a_config_error(tmp_path: Path) -> None:
    # Without the override this is a clean ConfigError; the override must not turn it into a crash.
    path = write(tmp_path, "server: 5\n")

    message = config_error(path, env={ADDRESS_ENV: "127.0.0.1:6005"})

    assert message.startswith(f"{path}: ") and "server" in message


# model_path --------------------------------------------------------------------------------------


def test_relative_model_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    text = "plugins:\n  a:\n    model_path: models/a\n  b:\n    model_path: /srv/models/b\n  c: {}\n"
    path = write(tmp_path, text, name="etc/streamserve/server.yaml")

    config = load_config(path, env={})

    assert config.plugin("a").model_path == tmp_path / "etc" / "streamserve" / "models" / "a"
    assert config.plugin("b").model_path == Path("/srv/models/b")
    assert config.plugin("c").model_path is None


def test_relative_model_path_with_a_relative_config_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "plugins:\n  a:\n    model_path: ../models/a\n", name="etc/server.yaml")
    monkeypatch.chdir(tmp_path)

    config = load_config("etc/server.yaml", env={})

    model_path = config.plugin("a").model_path
    assert model_path is not None
    assert model_path.resolve() == (tmp_path / "models" / "a").resolve()


def test_parse_without_a_source_keeps_relative_paths() -> None:
    assert parse_config("plugins:\n  a:\n    model_path: models/a\n", env={}).plugin("a").model_path == Path(
        "models/a"
    )


# Plugin settings ---------------------------------------------------------------------------------


class DemoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = 3.0
    window: int = Field(default=16, ge=2)


def test_plugin_settings_are_validated_by_the_plugin_model() -> None:
    config = parse_config("plugins:\n  demo:\n    settings:\n      threshold: 4.5\n", env={})

    settings = plugin_settings(config, "demo", DemoSettings, "server.yaml")

    assert settings == DemoSettings(threshold=4.5, window=16)


def test_plugin_without_a_section_gets_default_settings() -> None:
    assert plugin_settings(parse_config("", env={}), "demo", DemoSettings) == DemoSettings()


@pytest.mark.parametrize(
    ("settings", "key_path", "detail"),
    [
        ("treshold: 4", "plugins.demo.settings.treshold", "unknown key"),
        ("window: 1", "plugins.demo.settings.window", "greater than or equal to 2"),
        ("window: wide", "plugins.demo.settings.window", "valid integer"),
    ],
)
def test_bad_plugin_settings_name_the_key_path(settings: str, key_path: str, detail: str) -> None:
    config = parse_config(f"plugins:\n  demo:\n    settings:\n      {settings}\n", env={})

    with pytest.raises(ConfigError) as error:
        plugin_settings(config, "demo", DemoSettings, "server.yaml")

    message = str(error.value)
    assert message.startswith("server.yaml: invalid configuration")
    assert f"  {key_path}: " in message and detail in message


def test_settings_for_a_plugin_that_takes_none_are_an_error() -> None:
    config = parse_config("plugins:\n  demo:\n    settings:\n      window: 3\n      alpha: 1\n", env={})

    with pytest.raises(ConfigError) as error:
        plugin_settings(config, "demo", None, "server.yaml")

    assert str(error.value) == (
        "server.yaml: plugins.demo.settings: plugin 'demo' takes no settings, got ['alpha', 'window']"
    )


def test_plugin_that_takes_no_settings_and_gets_none() -> None:
    config = parse_config("plugins:\n  demo:\n    enabled: true\n", env={})
    assert plugin_settings(config, "demo", None) is None


# Shipped files and docs ---------------------------------------------------------------------------


def test_the_default_config_is_shipped() -> None:
    assert (REPO / "configs" / "server.yaml").is_file()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_validates(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the installed plugins' own settings too, as `streamserve config check` does."""
    config = load_config(path, env={})
    assert isinstance(config, StreamserveConfig)
    if path.name == "container.yaml" and not Path("/models/anomaly").exists():
        # Its model is baked into the image: outside it, the one problem is that model's path.
        assert main(["config", "check", str(path)]) == 2
        assert capsys.readouterr().err.splitlines()[0] == (
            f"{path}:17: plugins.anomaly.model_path: model directory /models/anomaly does not exist")
        return
    assert main(["config", "check", str(path)]) == 0, capsys.readouterr().err
    assert f"{path}: OK" in capsys.readouterr().out


def _described(schema: dict[str, Any], where: str, missing: list[str]) -> None:
    if schema.get("type") == "object" or "properties" in schema:
        if not schema.get("description"):
            missing.append(f"{where} (the model itself)")
        for name, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{where}.{name}")


def test_every_config_field_has_a_description() -> None:
    schema = StreamserveConfig.model_json_schema()
    missing: list[str] = []

    _described(schema, schema["title"], missing)
    for name, definition in schema.get("$defs", {}).items():
        _described(definition, name, missing)

    assert not missing, f"fields without a docstring (they become the reference docs): {missing}"
    # The walk really saw every section (a schema layout change must not make this test vacuous).
    assert set(schema["$defs"]) >= {"ServerConfig", "PluginConfig", "BatchingConfig"}
    assert "max_queued_rows" in schema["$defs"]["BatchingConfig"]["properties"]
