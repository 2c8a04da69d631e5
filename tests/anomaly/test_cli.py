"""``streamserve-anomaly score`` and ``evaluate`` end to end against a real server on loopback.

The server runs in process on the test's event loop; the CLI (a blocking gRPC client) runs in a
worker thread through its ``main(argv)``, exactly as the console script calls it.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from streamserve.serving import Server
from streamserve_anomaly import cli

START = "2024-03-01 00:00:00"
STEP = 300  # five minutes, as most of NAB


def write_series(path: Path, values: list[float]) -> list[str]:
    """A NAB-style CSV; returns its timestamps as written."""
    base = 1_709_251_200  # 2024-03-01 00:00:00 UTC
    from streamserve_anomaly.series_csv import format_timestamp

    stamps = [format_timestamp(base + STEP * i) for i in range(len(values))]
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["timestamp,value", *(f"{t},{v!r}" for t, v in zip(stamps, values, strict=True))]
    path.write_text("\n".join(rows) + "\n")
    return stamps


def wave(count: int, seed: int, *, spike_at: int = -1, shift_at: int = -1) -> list[float]:
    rng = np.random.default_rng(seed)
    values = [
        20.0 + 5.0 * math.sin(2 * math.pi * i / 48) + float(rng.uniform(-0.2, 0.2)) for i in range(count)
    ]
    if spike_at >= 0:
        values[spike_at] += 25.0
    if shift_at >= 0:
        values[shift_at:] = [v + 30.0 for v in values[shift_at:]]
    return values


async def run(argv: list[str]) -> int:
    return await asyncio.to_thread(cli.main, argv)


async def test_score_writes_scores_and_a_plot(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.csv"
    stamps = write_series(source, wave(2500, 1, spike_at=2000))
    out, plot = tmp_path / "scores.csv", tmp_path / "plot.png"
    argv = ["score", str(source), "--target", server.address, "--out", str(out), "--plot", str(plot),
            "--series-id", "sensor-1"]
    assert await run(argv) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["timestamp", "value", "score", "is_anomaly"]
    assert [r["timestamp"] for r in rows] == stamps  # Unix seconds on the wire, text again here
    assert rows[5]["value"] == source.read_text().splitlines()[6].split(",")[1]
    flagged = [i for i, r in enumerate(rows) if r["is_anomaly"] == "1"]
    assert flagged and flagged[0] == 2000
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    err = capsys.readouterr().err
    assert "2,500/2,500 points (100%)" in err and "2500 points scored" in err


async def test_score_reports_a_server_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.csv"
    write_series(source, wave(50, 1))
    assert await run(["score", str(source), "--target", "127.0.0.1:1"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


async def test_evaluate_scores_a_small_corpus_over_grpc(
    server: Server, anomaly_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "nab"
    spiky = write_series(data / "g" / "spike.csv", wave(3000, 2, spike_at=2100))
    shifted = write_series(data / "g" / "shift.csv", wave(3000, 3, shift_at=1800))
    write_series(data / "clean" / "none.csv", wave(2000, 4))
    windows = {
        "g/spike.csv": [[spiky[2050], spiky[2250]]],
        "g/shift.csv": [[shifted[1750], shifted[1950]]],
        "clean/none.csv": [],
    }
    (data / "windows.json").write_text(json.dumps(windows))
    results = tmp_path / "results.json"
    # A published detector's scores, as NAB's result files hold them: it fires on the spike only.
    reference = data / "reference" / "numenta"
    for name, stamps in (("g/spike.csv", spiky), ("g/shift.csv", shifted), ("clean/none.csv", None)):
        path = reference / name
        path.parent.mkdir(parents=True, exist_ok=True)
        n = len(stamps) if stamps is not None else 2000
        path.write_text("timestamp,anomaly_score\n" + "".join(
            f"t{i},{1.0 if name == 'g/spike.csv' and i == 2100 else 0.0}\n" for i in range(n)))
    argv = ["evaluate", "--data", str(data), "--target", server.address, "--json", str(results),
            "--leave-out", str(anomaly_model_dir)]
    assert await run(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(results.read_text())
    assert report["windows"] == 2 and report["points"] == 8000
    assert report["model_version"] == "1"
    mine, baseline, htm = report["detectors"]
    assert [mine["label"], baseline["label"], htm["label"]] == [
        "streamserve-anomaly (over gRPC)", "windowed Gaussian baseline", "Numenta HTM"]
    standard = mine["profiles"]["standard"]
    assert [f["name"] for f in standard["files"]] == ["clean/none.csv", "g/shift.csv", "g/spike.csv"]
    # Both anomalies found early in their windows, nothing else flagged.
    assert [f["detected_windows"] for f in standard["files"]] == [0, 1, 1]
    assert sum(f["false_positives"] for f in standard["files"]) == 0
    assert standard["score"] > 80.0 and standard["score"] >= baseline["profiles"]["standard"]["score"]
    assert set(mine["profiles"]) == {"standard", "low FP", "low FN"}
    # The reference found one of two windows early: half of the perfect score, the same code scoring.
    assert 45.0 < htm["profiles"]["standard"]["score"] < 50.0
    score, folds = report["left_out"]
    # Three files, three groups of one: each scored with what the other two chose.
    assert math.isfinite(score) and score <= 100.0
    assert [len(f["held_out"]) for f in folds] == [1, 1, 1]
    assert "NAB standard score" in printed and "g/spike.csv" in printed and "leave files out" in printed
    assert "windowed Gaussian baseline" in printed and "Numenta HTM" in printed


@pytest.mark.e2e
def test_evaluate_serve_starts_its_own_server_and_stops_it(
    tmp_path: Path, anomaly_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--serve CONFIG``: a `streamserve serve` child (streamserve.testing.serve_subprocess), ready by
    its ready file, stopped with exit code 0 after the run."""
    data = tmp_path / "nab"
    spiky = write_series(data / "spike.csv", wave(1500, 5, spike_at=1200))
    (data / "windows.json").write_text(json.dumps({"spike.csv": [[spiky[1150], spiky[1300]]]}))
    config = tmp_path / "server.yaml"
    config.write_text(f"plugins:\n  anomaly:\n    model_path: {anomaly_model}\n")

    assert cli.main(["evaluate", "--data", str(data), "--serve", str(config),
                     "--json", str(tmp_path / "r.json")]) == 0

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["points"] == 1500 and report["model_version"] == "1"
    assert report["target"].startswith("127.0.0.1:") and not report["target"].endswith(":0")
