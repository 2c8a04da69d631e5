"""The plugin as the core sees it: the spec passes the core's checks, the packaging finds it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

from streamserve.plugins import discover
from streamserve_anomaly import cli, plugin
from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import SIGNATURE

PYPROJECT = Path(__file__).parents[2] / "plugins" / "anomaly" / "pyproject.toml"


def test_spec_passes_the_core_checks() -> None:
    (found,) = discover([plugin], entry_points=False)
    assert found.spec is plugin.SPEC
    spec = found.spec
    assert spec.name == "anomaly"
    assert spec.service.full_name == "anomaly_detection.AnomalyDetectionService"
    assert set(spec.methods) == {m.name for m in spec.service.methods}
    assert spec.signature is SIGNATURE
    assert spec.settings is AnomalySettings
    assert spec.default_model is plugin.default_model_dir


def fields(message: object) -> list[tuple[str, int, int, bool]]:
    return [
        (f.name, f.number, f.type, f.is_repeated)
        for f in message.DESCRIPTOR.fields  # type: ignore[attr-defined]
    ]


def test_wire_contract_keeps_the_seeds_fields_and_adds_new_numbers() -> None:
    """Field numbers and types a client generated from the seed proto relies on, then the new ones."""
    F = FieldDescriptor
    assert fields(pb2.DataPoint) == [
        ("value", 1, F.TYPE_FLOAT, False),
        ("timestamp", 2, F.TYPE_INT64, False),
        ("series_id", 3, F.TYPE_STRING, False),
    ]
    assert fields(pb2.AnomalyScore) == [
        ("score", 1, F.TYPE_FLOAT, False),
        ("timestamp", 2, F.TYPE_INT64, False),
        ("series_id", 3, F.TYPE_STRING, False),
        ("is_anomaly", 4, F.TYPE_BOOL, False),
        ("model_version", 5, F.TYPE_STRING, False),
    ]
    assert fields(pb2.DataChunk) == [
        ("series_id", 1, F.TYPE_STRING, False),
        ("values", 2, F.TYPE_FLOAT, True),
        ("timestamps", 3, F.TYPE_INT64, True),
    ]
    assert fields(pb2.ScoreChunk) == [
        ("series_id", 1, F.TYPE_STRING, False),
        ("scores", 2, F.TYPE_FLOAT, True),
        ("timestamps", 3, F.TYPE_INT64, True),
        ("is_anomaly", 4, F.TYPE_BOOL, True),
        ("model_version", 5, F.TYPE_STRING, False),
    ]
    methods = {m.name: m for m in plugin.SPEC.service.methods}
    assert list(methods) == ["DetectAnomalyStream", "DetectAnomalyChunks"]
    for name, request, reply in (
        ("DetectAnomalyStream", pb2.DataPoint, pb2.AnomalyScore),
        ("DetectAnomalyChunks", pb2.DataChunk, pb2.ScoreChunk),
    ):
        method = methods[name]
        assert method.client_streaming and method.server_streaming
        assert method.input_type is request.DESCRIPTOR and method.output_type is reply.DESCRIPTOR


def test_packaging_points_at_the_plugin_and_the_cli() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["name"] == "streamserve-anomaly"
    assert project["entry-points"]["streamserve.plugins"] == {"anomaly": plugin.__name__}
    module, _, function = project["scripts"]["streamserve-anomaly"].partition(":")
    assert (module, function) == (cli.__name__, "main")
