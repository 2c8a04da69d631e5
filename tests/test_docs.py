"""Docs that cannot rot: examples are the tested code, the reference covers every config key."""

from __future__ import annotations

from pathlib import Path

from streamserve.config_reference import BEGIN, END, reference

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def code_blocks(path: Path, language: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [b.split("\n", 1)[1] for b in text.split("```")[1::2] if b.startswith(language + "\n")]


def test_plugin_guide_shows_the_tested_plugin_verbatim() -> None:
    guide = DOCS / "writing-a-plugin.md"
    support = ROOT / "tests" / "support"
    assert (support / "scaler.proto").read_text(encoding="utf-8") in code_blocks(guide, "proto")
    assert (support / "scaler_plugin.py").read_text(encoding="utf-8") in code_blocks(guide, "python")


def test_configuration_reference_is_the_generated_one() -> None:
    """docs/configuration.md carries `streamserve config reference` verbatim between its markers."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert BEGIN in text and END in text
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")
    assert documented == reference().strip("\n"), "run: streamserve config reference"


def test_reference_covers_every_key_with_a_description() -> None:
    generated = reference()
    rows = [line for line in generated.splitlines() if line.startswith("| `")]
    assert len(rows) > 20
    assert all(not line.endswith("|  |") for line in rows), "a config field has no docstring"
    for key in ("server.tls.cert_file", "plugins.<name>.batching.max_batch_size", "metrics.address"):
        assert f"| `{key}` |" in generated


def test_every_doc_the_readme_links_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in ("configuration", "writing-a-plugin", "architecture", "anomaly"):
        assert f"docs/{doc}.md" in readme
        assert (DOCS / f"{doc}.md").is_file(), doc


def test_anomaly_doc_documents_every_setting_with_its_default() -> None:
    from streamserve_anomaly.settings import AnomalySettings

    doc = (DOCS / "anomaly.md").read_text(encoding="utf-8")
    for name, field in AnomalySettings.model_fields.items():
        default = field.default
        assert f"| `{name}` | {default:g} |" in doc, f"docs/anomaly.md: {name} (default {default})"


def test_annotated_example_shows_the_defaults() -> None:
    """configs/example.yaml says its values are the defaults unless noted: keep that true."""
    from streamserve.config import BatchingConfig, PluginConfig, ServerConfig, StreamserveConfig, load_config
    from streamserve_anomaly.settings import AnomalySettings

    example = load_config(ROOT / "configs" / "example.yaml", env={})
    anomaly = example.plugins["anomaly"]
    assert AnomalySettings.model_validate(anomaly.settings) == AnomalySettings()
    assert set(anomaly.settings) == set(AnomalySettings.model_fields)  # every setting is shown
    assert anomaly.batching == BatchingConfig()
    assert anomaly.model_dump(exclude={"settings"}) == PluginConfig().model_dump(exclude={"settings"})
    noted = {"address"}  # the one value the example changes, and says so ("NOTE: default ...")
    server = example.server.model_dump(exclude=noted)
    assert server == ServerConfig().model_dump(exclude=noted)
    top = {"server", "plugins"}
    assert example.model_dump(exclude=top) == StreamserveConfig().model_dump(exclude=top)
