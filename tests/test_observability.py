"""Metrics scraped from /metrics while streaming, and structured lifecycle logs."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamserve.config import parse_config
from streamserve.testing import serve_in_process, serve_subprocess
from tests.test_lifecycle import Feed, read, scale, scale_stream

SCALER = "streamserve_test.Scaler"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_follow_streams_messages_batches_errors_and_models(
    scaler_plugin: ModuleType, scaler_model: Path
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    text = f"metrics:\n  address: 127.0.0.1:0\nplugins:\n  scaler:\n    model_path: {scaler_model}\n"
    async with serve_in_process(
        parse_config(text, env={}), extra_plugins=[scaler_plugin], installed=False
    ) as server, grpc.aio.insecure_channel(server.address) as channel:
        method = {"service": SCALER, "method": "ScaleStream"}
        feed = Feed(pb2)
        call = scale_stream(channel, pb2)(aiter(feed))
        for i in range(10):
            feed.send(i, i)
            assert await read(call) == [2 * i + 1] * 2
        open_samples = scrape(server.metrics_port)
        assert value(open_samples, "streamserve_active_streams", **method) == 1
        assert value(open_samples, "streamserve_messages_received_total", **method) == 10
        assert value(open_samples, "streamserve_messages_sent_total", **method) == 10
        assert value(open_samples, "streamserve_message_latency_seconds_count", **method) == 10
        assert value(open_samples, "streamserve_batch_rows_sum", model="scaler") == 20
        assert value(open_samples, "streamserve_model_info", model="scaler", version="1") == 1
        assert value(open_samples, "streamserve_queued_rows", model="scaler") == 0

        feed.send(float("nan"))
        with pytest.raises(grpc.aio.AioRpcError):
            await read(call)
        await scale(channel, pb2)(pb2.Values(values=[1]))
        closed = scrape(server.metrics_port)
        assert value(closed, "streamserve_active_streams", **method) == 0
        assert value(closed, "streamserve_call_errors_total", code="INVALID_ARGUMENT", **method) == 1
        assert value(closed, "streamserve_messages_sent_total", service=SCALER, method="Scale") == 1


def test_json_logs_have_one_line_per_stream_event_with_ids(
    tmp_path: Path, subprocess_env: dict[str, str], scaler_plugin: ModuleType, scaler_model: Path,
    anomaly_model: Path,
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    config = tmp_path / "server.yaml"
    config.write_text(
        "log_format: json\n"
        f"plugins:\n  scaler:\n    model_path: {scaler_model}\n"
        f"  anomaly:\n    model_path: {anomaly_model}\n"
    )
    with (
        serve_subprocess(config, env=subprocess_env, services=[SCALER]) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stream = channel.stream_stream(
            f"/{SCALER}/ScaleStream", request_serializer=pb2.Values.SerializeToString,
            response_deserializer=pb2.Values.FromString,
        )
        replies = list(stream(iter([pb2.Values(values=[i]) for i in range(50)])))
        assert len(replies) == 50
    records = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    events = [r for r in records if r.get("method") == f"/{SCALER}/ScaleStream"]
    # One line when the stream opens and one when it closes, not one per message.
    assert [e["message"].split(":")[0].split()[-1] for e in events] == ["opened", "closed"]
    assert events[0]["stream_id"] == events[1]["stream_id"] and events[1]["plugin"] == "scaler"
    assert events[1]["status"] == "OK" and events[1]["messages"] == 50
