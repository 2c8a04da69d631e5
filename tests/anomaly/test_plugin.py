"""The plugin as the core sees it: the spec passes the core's checks, the packaging finds it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

from streamserve.plugins import discover
from streamserve_anomaly import cli, plugin
from streamserve_anomaly._proto import anomaly_detection_pb2
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


def test_wire_contract_is_the_seeds() -> None:
    """Field numbers and types a client generated from the seed proto relies on."""
    point = anomaly_detection_pb2.DataPoint.DESCRIPTOR
    score = anomaly_detection_pb2.AnomalyScore.DESCRIPTOR
    assert [(f.name, f.number, f.type) for f in point.fields] == [
        ("value", 1, FieldDescriptor.TYPE_FLOAT),
        ("timestamp", 2, FieldDescriptor.TYPE_INT64),
    ]
    assert [(f.name, f.number, f.type) for f in score.fields] == [
        ("score", 1, FieldDescriptor.TYPE_FLOAT),
        ("timestamp", 2, FieldDescriptor.TYPE_INT64),
    ]
    (method,) = plugin.SPEC.service.methods
    assert method.name == "DetectAnomalyStream"
    assert method.client_streaming and method.server_streaming
    assert method.input_type is point and method.output_type is score


def test_packaging_points_at_the_plugin_and_the_cli() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["name"] == "streamserve-anomaly"
    assert project["entry-points"]["streamserve.plugins"] == {"anomaly": plugin.__name__}
    module, _, function = project["scripts"]["streamserve-anomaly"].partition(":")
    assert (module, function) == (cli.__name__, "main")
