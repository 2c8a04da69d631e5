"""Training and export: reproducible, the declared signature, atomic versions, the CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamserve_anomaly import cli, plugin
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import SIGNATURE, WINDOW
from streamserve_anomaly.training import load_csv, make_examples, synthetic_series, train
from tests.anomaly.helpers import FIXTURE_STEPS, call_model, noisy_sine


def weights(model_dir: Path) -> dict[str, np.ndarray]:
    """Every variable of a SavedModel, read from its checkpoint."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(model_dir / "variables" / "variables"))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")
    }


def test_same_seed_gives_bitwise_same_weights_and_another_seed_differs(
    anomaly_model_dir: Path, tmp_path: Path
) -> None:
    again = train(tmp_path / "again", seed=0, steps=FIXTURE_STEPS)
    other = train(tmp_path / "other", seed=1, steps=FIXTURE_STEPS)
    first, second, third = weights(anomaly_model_dir), weights(again), weights(other)
    assert len(first) >= 6 and first.keys() == second.keys() == third.keys()
    for name in first:
        assert first[name].tobytes() == second[name].tobytes(), name
    assert any(first[name].tobytes() != third[name].tobytes() for name in first)


def test_same_seed_gives_the_same_outputs(
    anomaly_model_dir: Path, loaded_model: Any, tmp_path: Path
) -> None:
    import tensorflow as tf

    again = tf.saved_model.load(str(train(tmp_path / "m", seed=0, steps=FIXTURE_STEPS)))
    rng = np.random.default_rng(5)
    rows = [
        {
            "history": rng.normal(size=(8, WINDOW)).astype(np.float32),
            "value": rng.normal(size=8).astype(np.float32),
        }
    ]
    a, b = call_model(loaded_model, rows), call_model(again, rows)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_exported_signature_is_the_declared_one(loaded_model: Any) -> None:
    function = loaded_model.signatures[SIGNATURE.name]
    args, inputs = function.structured_input_signature
    assert args == ()
    found_inputs = {n: (t.dtype.name, tuple(t.shape.as_list())) for n, t in inputs.items()}
    found_outputs = {
        n: (t.dtype.name, tuple(t.shape.as_list())) for n, t in function.structured_outputs.items()
    }
    assert found_inputs == {s.name: (s.dtype, s.shape) for s in SIGNATURE.inputs}
    assert found_outputs == {s.name: (s.dtype, s.shape) for s in SIGNATURE.outputs}


def test_the_core_loads_the_exported_model(anomaly_model_dir: Path) -> None:
    from streamserve.runtime.model import load_model

    model = load_model(anomaly_model_dir.parent, SIGNATURE, plugin="anomaly")
    assert model.version == "1"
    outputs = model.call(
        {"history": np.zeros((3, WINDOW), np.float32), "value": np.ones(3, np.float32)}
    )
    assert outputs["error"].shape == (3,)
    np.testing.assert_allclose(outputs["error"], np.abs(outputs["prediction"] - 1.0), rtol=1e-6)


def test_the_model_predicts_normal_data_well(loaded_model: Any) -> None:
    histories, values = make_examples([np.array(noisy_sine(1000, period=37.0))], AnomalySettings())
    outputs = call_model(loaded_model, [{"history": histories, "value": values}])
    naive = np.mean(np.abs(values - histories[:, -1]))  # "the next value is the last one"
    assert np.mean(outputs["error"]) < 0.75 * naive


def test_metadata_and_no_leftover_temporary_directory(anomaly_model_dir: Path) -> None:
    metadata = json.loads((anomaly_model_dir / "metadata.json").read_text())
    assert metadata["window"] == WINDOW
    assert metadata["seed"] == 0 and metadata["steps"] == FIXTURE_STEPS
    assert metadata["data"] == "synthetic"
    assert metadata["created"].endswith("Z")
    assert sorted(p.name for p in anomaly_model_dir.parent.iterdir()) == ["1"]


def test_a_version_directory_is_never_overwritten(anomaly_model_dir: Path) -> None:
    before = (anomaly_model_dir / "saved_model.pb").read_bytes()
    with pytest.raises(FileExistsError, match="not empty"):
        train(anomaly_model_dir, steps=1)
    assert (anomaly_model_dir / "saved_model.pb").read_bytes() == before


def test_synthetic_data_depends_only_on_the_seed() -> None:
    a = synthetic_series(np.random.default_rng(3))
    b = synthetic_series(np.random.default_rng(3))
    c = synthetic_series(np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def write_csv(path: Path, values: list[float]) -> Path:
    lines = [
        "timestamp,value",
        *(f"2024-01-01 00:{i // 60:02d}:{i % 60:02d},{v}" for i, v in enumerate(values)),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_csv_rejects_bad_rows(tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", [1.0, 2.5] * 40)
    assert load_csv(good).tolist() == [1.0, 2.5] * 40
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2024-01-01 00:00:00,1.0\n2024-01-01 00:01:00,oops\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: value 'oops' is not a number"):
        load_csv(bad)
    with pytest.raises(ValueError, match="more than 32 values"):
        load_csv(write_csv(tmp_path / "short.csv", [1.0] * 10))


def test_cli_trains_from_csv_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    csvs = [write_csv(tmp_path / f"s{i}.csv", noisy_sine(300, seed=i)) for i in range(2)]
    out = tmp_path / "models" / "anomaly" / "7"
    argv = [
        "train",
        "--out",
        str(out),
        "--csv",
        str(csvs[0]),
        "--csv",
        str(csvs[1]),
        "--steps",
        "5",
        "--seed",
        "3",
    ]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["data"] == [str(p) for p in csvs]
    assert metadata["seed"] == 3 and metadata["steps"] == 5
    assert metadata["examples"] == 2 * (300 - WINDOW)

    assert cli.main(argv) == 1  # the version exists now
    assert "not empty" in capsys.readouterr().err


def test_default_model_is_built_once_under_streamserve_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("STREAMSERVE_HOME", str(tmp_path / "home"))
    with caplog.at_level(logging.INFO, logger="streamserve_anomaly"):
        path = plugin.default_model_dir()
        assert path == tmp_path / "home" / "models" / "anomaly" / "1"
        assert (path / "saved_model.pb").is_file()
        built = (path / "saved_model.pb").stat().st_mtime_ns
        assert plugin.default_model_dir() == path
    assert (path / "saved_model.pb").stat().st_mtime_ns == built
    building = [r for r in caplog.records if "building the default anomaly model" in r.message]
    assert len(building) == 1 and building[0].levelno == logging.INFO
    assert json.loads((path / "metadata.json").read_text())["seed"] == 0
