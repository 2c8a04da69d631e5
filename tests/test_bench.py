"""The benchmark harness runs end to end (``--quick``) and its report is complete and consistent.

No speed is asserted: this machine is shared and noisy. What is checked is that every server ran
every scenario, every message sent was answered, and the JSON and markdown say so.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report
from benchmarks.clients import split
from benchmarks.profile import summarise_stacks
from benchmarks.scenarios import NAMES

REPO = Path(__file__).resolve().parent.parent
SERVERS = ("echo", "naive", "streamserve")
OIP = ("oip-unary", "oip-stream")
"""Only streamserve serves the Open Inference Protocol: the baselines skip these."""
TIMED = [name for name in NAMES if name != "idle"]
COMPARED = [name for name in TIMED if name not in OIP]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    json_files, md_files = sorted(out.glob("*.json")), sorted(out.glob("*.md"))
    assert len(json_files) == 1 and len(md_files) == 1, sorted(out.iterdir())
    assert json_files[0].stem == md_files[0].stem
    return json.loads(json_files[0].read_text()), md_files[0].read_text()


@pytest.mark.e2e
def test_every_server_ran_every_scenario_and_every_message_was_answered(
    quick_run: tuple[dict[str, Any], str],
) -> None:
    result, _ = quick_run
    runs = {(r["scenario"], r["server"]): r for r in result["runs"]}
    assert set(runs) == {(s, v) for s in NAMES for v in SERVERS}
    for (scenario, server), run in runs.items():
        assert run["ok"], (scenario, server, run.get("errors"))
        if scenario in OIP and server != "streamserve":
            assert run["skipped"] == "serves no Open Inference Protocol"
            continue
        assert not run["errors"] and run["mismatched"] == 0
        assert run["sent"] == run["received"] > 0, (scenario, server)
        assert run["peak_rss_mb"] > 0
        if scenario == "idle":
            assert run["streams"] == 100
            assert all(r["streams_open"] == 100 for r in run["rounds"])
            assert run["sent"] == 100 * len(run["rounds"])
            assert all(math.isfinite(run[k]) for k in ("idle_rss_mb", "open_mb", "closed_mb"))
            continue
        assert run["messages_per_s"] > 0
        points = 1024 if scenario == "chunked" else 1
        assert run["points_per_s"] == pytest.approx(run["messages_per_s"] * points)
        assert run["latency_samples"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"]
        assert run["server_cpu"] >= 0 and run["client_cpu"] > 0
        assert run["client_processes"] == (1 if scenario == "latency" else 2)


@pytest.mark.e2e
def test_report_has_context_ratios_and_targets(quick_run: tuple[dict[str, Any], str]) -> None:
    result, markdown = quick_run
    assert result["options"]["quick"] is True
    assert {"cpu", "cores", "memory_gib"} <= set(result["machine"])
    assert {"python", "grpcio", "tensorflow", "protobuf", "streamserve"} <= set(result["versions"])
    assert set(result["summary"]) == set(NAMES)
    assert set(result["ratios"]) == set(COMPARED)
    for ratio in result["ratios"].values():
        assert ratio["vs_naive"] > 0 and ratio["vs_echo"] > 0
    assert all(t["met"] in (True, False) for t in result["targets"]), result["targets"]
    for scenario in NAMES:
        for server in SERVERS:
            assert f"| {scenario} | {server} |" in markdown
    assert "streamserve / naive" in markdown and "| target |" in markdown
    assert "NO" not in markdown.replace("**no**", "")


def test_split_deals_streams_evenly() -> None:
    shares = split(list(range(10)), 3)
    assert sorted(i for share in shares for i in share) == list(range(10))
    assert [len(s) for s in shares] == [4, 3, 3]


def test_ratios_pair_servers_within_each_repeat() -> None:
    def run(server: str, repeat: int, rate: float, p99: float) -> dict[str, Any]:
        return {"server": server, "scenario": "throughput", "repeat": repeat, "ok": True,
                "messages_per_s": rate, "p99_ms": p99, "server_cpu": 1.0}

    records = [
        run("echo", 0, 100, 1), run("naive", 0, 10, 4), run("streamserve", 0, 80, 2),
        run("echo", 1, 50, 1), run("naive", 1, 5, 4), run("streamserve", 1, 40, 2),
    ]
    ratio = report.ratios(records)["throughput"]
    assert ratio["vs_naive"] == pytest.approx(8.0)
    assert ratio["vs_echo"] == pytest.approx(0.8)
    assert ratio["p99_vs_naive"] == pytest.approx(0.5)
    # One core each: streamserve spends 8x less CPU per message than naive, 0.8x echo's rate.
    assert ratio["cpu_saving_vs_naive"] == pytest.approx(8.0)
    assert ratio["cpu_saving_vs_echo"] == pytest.approx(0.8)


def test_profile_summary_counts_self_and_inclusive_time() -> None:
    raw = "\n".join([
        "main (app.py:1);serve (app.py:5);infer (model.py:9) 30",
        "main (app.py:1);serve (app.py:5);read (io.py:3) 10",
    ])
    text = summarise_stacks(raw)
    assert "40 samples" in text
    assert "  75.0  infer (model.py)" in text
    assert " 100.0  serve (app.py)" in text


@pytest.mark.e2e
def test_the_naive_baseline_scores_alike_through_either_model_call(
    anomaly_model_dir: Path, tmp_path: Path
) -> None:
    """``naive`` (the model's tf.function) and ``naive-session`` (streamserve's runner) are one
    design with two model calls: the same stream must get the same scores from both."""
    import grpc
    import numpy as np

    from benchmarks.servers.launch import start_server, stop_server, wait_ready
    from streamserve_anomaly._proto import anomaly_detection_pb2 as pb2
    from streamserve_anomaly._proto import anomaly_detection_pb2_grpc as pb2_grpc

    values = np.sin(np.arange(300) / 7.0) + np.random.default_rng(3).normal(0, 0.1, 300)
    values[250] += 8.0  # an outlier, so that not every score is 0
    scores = {}
    for kind in ("naive", "naive-session"):
        server = start_server(kind, tmp_path, anomaly_model_dir)
        try:
            wait_ready(server, 120)
            with grpc.insecure_channel(server.address) as channel:
                stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
                points = (pb2.DataPoint(value=float(v), timestamp=i) for i, v in enumerate(values))
                answers = list(stub.DetectAnomalyStream(points, timeout=60))
        finally:
            stop_server(server)
        assert [a.timestamp for a in answers] == list(range(len(values)))
        scores[kind] = np.array([a.score for a in answers])
    assert scores["naive"].max() > 0
    np.testing.assert_allclose(scores["naive-session"], scores["naive"], rtol=1e-5, atol=1e-6)


# make bench-peer's harness: its own code path, against streamserve alone (no MLServer here) ------


@pytest.mark.e2e
def test_peer_harness_runs_its_scenarios_against_streamserve(tmp_path: Path) -> None:
    """``benchmarks.peer --quick``: the user's model built (a tf.Module wrapping Keras), served by
    the oip plugin, every scenario answered in full, the report written; the model takes the
    session (the fast path the issue-13 shape used to miss)."""
    from benchmarks.peer import SCENARIOS

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.peer", "--quick", "--rounds", "1", "--servers",
         "streamserve,echo", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    (json_file,), (md_file,) = tmp_path.glob("peer-*.json"), tmp_path.glob("peer-*.md")
    result = json.loads(json_file.read_text())
    assert result["streamserve_runner"] == "session"
    for server in ("streamserve", "echo"):  # the echo ceiling answers the same client in full too
        runs = [r for r in result["runs"] if r["server"] == server]
        assert sorted(r["scenario"] for r in runs) == sorted(SCENARIOS)
        for run in runs:
            assert run["ok"], run
            assert run["sent"] == run["received"] > 0 and run["mismatched"] == 0
    for name, row in result["summary"].items():
        for server in ("streamserve", "echo"):
            assert row[server]["messages_per_s"] > 0 and row[server]["cpu_us_per_message"] > 0, name
        assert math.isclose(row["of_ceiling"],
                            row["streamserve"]["messages_per_s"] / row["echo"]["messages_per_s"])
        assert "ratio" not in row  # no MLServer in this run: nothing to compare with
    table = md_file.read_text()
    assert table.count("\n| ") == 1 + len(SCENARIOS)  # header and one row per scenario
    for name, row in result["summary"].items():  # the echo server's rate and CPU, the floor
        echo = row["echo"]
        assert f"{echo['messages_per_s']:,.0f} ({echo['cpu_us_per_message']:,.0f})" in table, name


def test_peer_streamserve_config_is_valid_and_carries_the_batching_delay(tmp_path: Path) -> None:
    from benchmarks.peer import streamserve_config
    from streamserve.config import parse_config

    default = parse_config(streamserve_config(50051, tmp_path), env={})
    delayed = parse_config(streamserve_config(50051, tmp_path, 2.0), env={})
    assert default.model_repository is not None and delayed.model_repository is not None
    assert default.model_repository.batching.max_delay_ms == 0.0
    assert delayed.model_repository.batching.max_delay_ms == 2.0
    assert delayed.plugins["oip"].enabled and not delayed.plugins["anomaly"].enabled


def test_peer_summary_takes_medians_and_judges_the_goals() -> None:
    from benchmarks.peer import summarise

    def run(server: str, scenario: str, rate: float, p99: float, cpu: float) -> dict[str, Any]:
        return {"server": server, "scenario": scenario, "ok": True, "messages_per_s": rate,
                "p50_ms": p99 / 2, "p99_ms": p99, "server_cpu": cpu}

    records = [
        run("mlserver", "stream-64", 1000, 10.0, 0.5), run("mlserver", "stream-64", 3000, 30.0, 0.9),
        run("streamserve", "stream-64", 5000, 4.0, 0.5), run("streamserve", "stream-64", 6000, 6.0, 0.6),
        run("mlserver", "stream-1", 200, 8.0, 0.2), run("streamserve", "stream-1", 500, 4.0, 0.2),
        run("mlserver", "unary-64", 500, 80.0, 0.9), run("streamserve", "unary-64", 1000, 40.0, 0.5),
    ]
    table = summarise(records, ["stream-64", "stream-1", "unary-64"], ["mlserver", "streamserve"])
    row = table["stream-64"]
    assert row["mlserver"]["messages_per_s"] == 2000 and row["streamserve"]["messages_per_s"] == 5500
    assert row["mlserver"]["messages_per_s_range"] == [1000, 3000]
    assert math.isclose(row["ratio"]["messages_per_s"], 2.75)
    assert math.isclose(row["streamserve"]["cpu_us_per_message"], (100 + 100) / 2)
    assert row["goal"] == {"what": "msg/s", "ratio": 2.5, "met": True}
    assert row["cpu_goal"] == {"limit_us": 150.0, "met": True}  # 100 µs per message
    assert "cpu_goal" not in table["stream-1"]  # no CPU goal for one stream
    assert table["unary-64"]["cpu_goal"] == {"limit_us": 400.0, "met": False}  # 500 µs per call
    assert math.isclose(table["stream-1"]["ratio"]["p99"], 0.5)
    assert table["stream-1"]["goal"]["met"] is False  # p99 must be at most 0.35x
    assert "ceiling" not in row["ratio"] and "of_ceiling" not in row  # no echo server here


def test_peer_summary_gives_the_echo_servers_ratio_as_the_ceiling() -> None:
    from benchmarks.peer import summarise

    records = [{"server": server, "scenario": "stream-64", "ok": True, "messages_per_s": rate,
                "p50_ms": 1.0, "p99_ms": 2.0, "server_cpu": 0.5}
               for server, rate in (("mlserver", 4000), ("streamserve", 8000), ("echo", 9000))]
    row = summarise(records, ["stream-64"], ["mlserver", "streamserve", "echo"])["stream-64"]
    assert math.isclose(row["ratio"]["messages_per_s"], 2.0)
    assert math.isclose(row["ratio"]["ceiling"], 2.25)  # no server could have reached 2.5x here
    assert math.isclose(row["of_ceiling"], 8000 / 9000)
    assert row["goal"]["met"] is False


def test_peer_report_says_how_busy_the_machine_was() -> None:
    from benchmarks.peer import markdown, summarise

    records = [{"server": server, "scenario": "stream-64", "ok": True, "messages_per_s": 1000.0,
                "p50_ms": 1.0, "p99_ms": 2.0, "server_cpu": 0.5, "machine_busy": busy,
                "client_cpu": clients}
               for server, busy, clients in (("streamserve", 1.7, 0.7), ("streamserve", 1.9, 0.9),
                                             ("streamserve", 1.8, 0.8), ("echo", 1.95, 1.0))]
    summary = summarise(records, ["stream-64"], ["streamserve", "echo"])
    row = summary["stream-64"]
    assert math.isclose(row["streamserve"]["machine_busy"], 1.8)  # the median of the rounds
    assert math.isclose(row["streamserve"]["client_cpu"], 0.8)
    text = markdown({"started": "now", "command": "python -m benchmarks.peer",
                     "options": {"rounds": 3, "duration": 10.0}, "streamserve_runner": "session",
                     "machine": {"cores": 2}, "scenarios": {"stream-64": "64 streams"},
                     "summary": summary})
    assert "busy cores (of 2)" in text
    assert "- stream-64: streamserve 1.80 (0.80), echo 1.95 (1.00)" in text


def test_a_servers_cpu_includes_its_worker_processes() -> None:
    """MLServer's ``parallel_workers`` run inference in child processes: their CPU is the server's."""
    from benchmarks.procstat import cpu_seconds, tree_cpu_seconds

    burn = ("import sys, time\n"
            "end = time.process_time() + 0.3\n"
            "while time.process_time() < end: pass\n"
            "print('burnt', flush=True)\n"
            "sys.stdin.read()\n")  # alive (and counted) until the test closes its stdin
    with subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as worker:  # closes stdin, waits
        assert worker.stdout is not None and worker.stdout.readline() == "burnt\n"
        mine = cpu_seconds(os.getpid())
        tree = tree_cpu_seconds(os.getpid())
        assert tree - mine >= 0.25  # the child's 0.3 s (clock ticks are 10 ms)
        assert tree_cpu_seconds(worker.pid) >= 0.25


def test_peer_mlserver_settings_carry_its_workers(tmp_path: Path) -> None:
    from benchmarks.peer import MLSERVER_BATCH, mlserver_settings

    settings = mlserver_settings(tmp_path, 50051, 2)
    assert settings["settings.json"]["parallel_workers"] == 2
    assert settings["settings.json"]["grpc_port"] == 50051
    model = settings["model-settings.json"]
    assert model["parameters"] == {"uri": str(tmp_path)}
    assert {key: model[key] for key in MLSERVER_BATCH} == MLSERVER_BATCH
    assert mlserver_settings(tmp_path, 50051)["settings.json"]["parallel_workers"] == 0


def test_kernels_times_a_model_with_each_of_tensorflows_kernel_choices(tmp_path: Path) -> None:
    """``python -m benchmarks.kernels``: one process per choice (the tool fails if the choice did
    not take), a row per size with both timings and their ratio."""
    from tests.support.models import build_module_wrapping_keras

    model = build_module_wrapping_keras(tmp_path / "m")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.kernels", str(model), "--rows", "1,3", "--calls", "20",
         "--repeat", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith(f"| {model} ")]
    assert [int(cells[1]) for cells in rows] == [1, 3]
    for cells in rows:
        onednn, own = (float(cell.split("(")[0].replace(",", "")) for cell in cells[2:4])
        assert onednn > 0 and own > 0
        assert float(cells[4].strip().rstrip("x")) == pytest.approx(own / onednn, abs=0.02)  # rounded


def test_instructions_drives_the_stream_path_of_each_tree_and_checks_every_answer(
    tmp_path: Path,
) -> None:
    """``python -m benchmarks.instructions``: the in-process driver (null model, no gRPC client)
    answers every message of every stream, on this tree and on a baseline (here the same tree);
    natively, as the suite cannot wait for valgrind. The driver fails the tool if a response is
    missing or wrong."""
    out = tmp_path / "counts.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions", "--no-valgrind", "--streams", "3",
         "--messages", "7", "--baseline", f"same={REPO}", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    record = json.loads(out.read_text())
    assert (record["streams"], record["messages"], record["valgrind"]) == (3, 7, False)
    assert set(record["results"]) == {"this tree", "same"}
    assert all(value > 0 for value in record["results"].values())
    assert done.stdout.count("µs of CPU per message") == 2


def test_instructions_counts_the_bytecodes_of_each_function_per_message(tmp_path: Path) -> None:
    """``--bytecodes``: every message passes the stream's reader and writer, the batcher and the
    OIP plugin once, so each of them executes a positive, whole-message share of the bytecodes."""
    out = tmp_path / "bytecodes.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions", "--bytecodes", "40", "--streams", "3",
         "--messages", "5", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    record = json.loads(out.read_text())
    assert (record["unit"], record["valgrind"]) == ("bytecodes", False)
    listed = dict(
        (line.split()[1], float(line.split()[0])) for line in done.stdout.splitlines()[1:]
    )
    for function in ("stream.py:_read", "stream.py:_write", "batcher.py:offer",
                     "infer.py:preprocess_stream", "infer.py:postprocess"):
        assert listed.get(function, 0) > 0, (function, done.stdout)
    assert record["results"]["this tree"] > max(listed.values())
