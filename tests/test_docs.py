"""Docs that cannot rot: examples are the tested code, the reference covers every config key."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from streamserve.config import StreamserveConfig

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


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += config_keys(annotation, f"{prefix}{name}.")
    return keys


def test_configuration_reference_documents_every_key() -> None:
    reference = (DOCS / "configuration.md").read_text(encoding="utf-8")
    keys = config_keys(StreamserveConfig)
    keys += config_keys(StreamserveConfig.model_fields["plugins"].annotation.__args__[1],  # type: ignore[union-attr]
                        "plugins.<name>.")
    missing = [key for key in keys if f"`{key}`" not in reference]
    assert not missing, f"docs/configuration.md does not document {missing}"


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
