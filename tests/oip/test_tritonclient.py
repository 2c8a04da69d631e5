"""Triton's own Python client (tritonclient[grpc]) against the OIP plugin: the calls its basic API
makes, answered as it expects. The client runs in a subprocess (conftest.run_client)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np
import pytest

from streamserve.config import BatchingConfig
from streamserve.serving import Server
from tests.oip.conftest import TritonClient

Reference = Callable[..., dict[str, Any]]


def adder_request(x: np.ndarray, k: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {"model": "adder", **extra, "inputs": {
        "x": ["FP32", list(x.shape), x.tolist()],
        "k": ["INT64", list(k.shape), k.tolist()],
    }}


def rows(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    x = generator.normal(size=(count, 3)).astype(np.float32)
    k = generator.integers(-1000, 1000, size=count).astype(np.int64)
    return x, k


def tensor(name: str, datatype: str, *shape: int) -> dict[str, Any]:
    """A TensorMetadata as tritonclient's as_json shows it (int64 values as strings)."""
    return {"name": name, "datatype": datatype, "shape": [str(d) for d in shape]}


def assert_adder_outputs(outputs: dict[str, Any], expected: dict[str, Any]) -> None:
    assert outputs["sum"]["datatype"] == "FP32"
    assert outputs["sum"]["values"] == pytest.approx(expected["sum"].tolist(), rel=1e-6)
    assert outputs["twice"] == {"datatype": "INT64", "shape": [len(expected["twice"])],
                                "values": expected["twice"].tolist()}
    assert outputs["label"]["datatype"] == "BYTES"
    assert outputs["label"]["values"] == [v.decode() for v in expected["label"]]


async def test_readiness_metadata_and_repository_calls(triton: TritonClient) -> None:
    found = await triton("probe", "adder")
    assert found["live"] is True
    assert found["ready"] is True
    assert found["model_ready"] is True
    assert found["unknown_model_ready"] is False
    assert found["server"] == {"name": "streamserve", "version": metadata.version("streamserve")}
    assert found["model"] == {
        "name": "adder",
        "versions": ["1"],
        "platform": "tensorflow_savedmodel",
        "inputs": [tensor("k", "INT64", -1), tensor("x", "FP32", -1, 3)],
        "outputs": [tensor("label", "BYTES", -1), tensor("sum", "FP32", -1), tensor("twice", "INT64", -1)],
    }
    assert found["index"] == {"models": [
        {"name": "adder", "version": "1", "state": "READY"},
        {"name": "fixed", "version": "1", "state": "READY"},
        {"name": "scalar", "version": "1", "state": "READY"},
        {"name": "words", "version": "3", "state": "READY"},
    ]}
    assert found["load_model"]["error"]["status"] == "StatusCode.UNIMPLEMENTED"
    assert "model_repository" in found["load_model"]["error"]["message"]


def config(name: str, max_batch_size: int, inputs: list[Any], outputs: list[Any]) -> dict[str, Any]:
    """A ModelConfig as triton_client.py reads it from tritonclient's own message."""
    return {"name": name, "platform": "tensorflow_savedmodel", "backend": "tensorflow",
            "latest_versions": 1, "max_batch_size": max_batch_size, "input": inputs, "output": outputs}


async def test_model_config_gives_the_batching_and_the_tensors(triton: TritonClient) -> None:
    found = await triton("config", ["adder", "words", "fixed", "scalar", "no-such-model"])
    # Batchable models: the batching limit, and dims without the batch dimension (Triton's way).
    limit = BatchingConfig().max_batch_size
    assert found["adder"] == config(
        "adder", limit,
        inputs=[["k", "TYPE_INT64", []], ["x", "TYPE_FP32", [3]]],
        outputs=[["label", "TYPE_STRING", []], ["sum", "TYPE_FP32", []], ["twice", "TYPE_INT64", []]],
    )
    assert found["words"] == config(
        "words", limit,
        inputs=[["text", "TYPE_STRING", []]],
        outputs=[["half", "TYPE_FP16", []], ["length", "TYPE_INT32", []], ["upper", "TYPE_STRING", []]],
    )
    # Models that cannot batch: 0, and the full shapes.
    assert found["fixed"] == config("fixed", 0, inputs=[["x", "TYPE_FP32", [2, 3]]],
                                    outputs=[["total", "TYPE_FP32", [2]]])
    assert found["scalar"] == config("scalar", 0, inputs=[["x", "TYPE_FP32", []]],
                                     outputs=[["y", "TYPE_FP32", []]])
    assert found["no-such-model"]["error"]["status"] == "StatusCode.NOT_FOUND"
    assert "no-such-model" in found["no-such-model"]["error"]["message"]


async def test_infer_with_raw_contents_equals_the_savedmodel(
    triton: TritonClient, reference: Reference
) -> None:
    x, k = rows(5, seed=1)
    result = await triton("infer", adder_request(x, k, id="req-1"))
    assert result["raw"] is True  # tritonclient sends raw, and as_numpy reads raw
    assert result["id"] == "req-1"
    assert result["model_version"] == "1"
    assert_adder_outputs(result["outputs"], reference("adder", x=x, k=k))


async def test_infer_with_typed_contents_equals_the_savedmodel(
    triton: TritonClient, reference: Reference
) -> None:
    x, k = rows(3, seed=2)
    result = await triton("typed", adder_request(x, k, id="typed"))
    assert result["raw"] is False
    assert result["id"] == "typed"
    assert_adder_outputs(result["outputs"], reference("adder", x=x, k=k))


async def test_only_the_requested_outputs_in_the_requested_order(triton: TritonClient) -> None:
    x, k = rows(2, seed=3)
    result = await triton("infer", adder_request(x, k, outputs=["twice", "label"]))
    assert list(result["outputs"]) == ["twice", "label"]


async def test_bytes_and_fp16_tensors(triton: TritonClient, reference: Reference) -> None:
    texts = ["a", "", "héllo wörld", "x" * 300]
    request = {"model": "words", "inputs": {"text": ["BYTES", [4], texts]}}
    expected = reference("words", text=np.array([t.encode() for t in texts], dtype=object))
    result = await triton("infer", request)
    assert result["model_version"] == "3"
    outputs = result["outputs"]
    assert outputs["upper"]["values"] == [v.decode() for v in expected["upper"]]
    assert outputs["length"] == {"datatype": "INT32", "shape": [4], "values": expected["length"].tolist()}
    assert outputs["half"]["datatype"] == "FP16"
    assert outputs["half"]["values"] == expected["half"].tolist()
    typed = await triton("typed", {**request, "outputs": ["upper", "length"]})
    assert typed["raw"] is False
    assert typed["outputs"]["upper"]["values"] == outputs["upper"]["values"]
    assert typed["outputs"]["length"]["values"] == outputs["length"]["values"]


async def test_errors_have_the_protocols_status_codes(triton: TritonClient) -> None:
    x, k = rows(2, seed=4)
    unknown = await triton("infer", {**adder_request(x, k), "model": "nope"})
    assert unknown["error"]["status"] == "StatusCode.NOT_FOUND"
    bad = adder_request(x, k)
    bad["inputs"]["k"][0] = "INT32"
    wrong_dtype = await triton("infer", bad)
    assert wrong_dtype["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "k" in wrong_dtype["error"]["message"] and "int64" in wrong_dtype["error"]["message"]


async def test_stream_answers_in_order_and_reports_bad_requests_in_band(
    triton: TritonClient, reference: Reference
) -> None:
    batches = [rows(count, seed=10 + count) for count in (1, 4, 2, 7, 3)]
    requests = [adder_request(x, k, id=f"r{i}") for i, (x, k) in enumerate(batches)]
    wrong_shape = adder_request(np.zeros((2, 4), np.float32), np.zeros(2, np.int64), id="bad")
    unknown = {**adder_request(*rows(1, seed=0)), "model": "nope", "id": "unknown"}
    sent = [*requests[:2], wrong_shape, requests[2], unknown, *requests[3:]]

    answers = await triton("stream", sent)

    assert len(answers) == len(sent)
    assert answers[2]["error"]["message"].startswith("INVALID_ARGUMENT: x: ")
    assert answers[4]["error"]["message"].startswith("NOT_FOUND: ")
    good = [a for i, a in enumerate(answers) if i not in (2, 4)]
    assert [a["id"] for a in good] == [f"r{i}" for i in range(len(requests))]
    for answer, (x, k) in zip(good, batches, strict=True):
        assert_adder_outputs(answer["outputs"], reference("adder", x=x, k=k))


async def test_inference_statistics_are_what_the_server_counted(
    triton: TritonClient, oip_server: Server
) -> None:
    x, k = rows(2, seed=5)
    assert "error" not in await triton("infer", adder_request(x, k))
    found = await triton("statistics", "adder")
    counted = oip_server.repository.statistics("adder")  # nothing ran since: the same counts
    (model,) = found["model"]["model_stats"]
    assert (model["name"], model["version"]) == ("adder", "1")
    assert int(model["inference_count"]) == counted.rows >= 2
    assert int(model["execution_count"]) == counted.calls >= 1
    # Placed on the wall clock when read: two reads may round apart by a millisecond.
    assert abs(int(model["last_inference"]) - counted.last_call_ms) <= 1 and counted.last_call_ms > 0
    assert model["inference_stats"] == {"compute_infer": {"count": str(counted.calls),
                                                          "ns": str(counted.call_ns)}}
    assert [(int(b["batch_size"]), int(b["compute_infer"]["count"])) for b in model["batch_stats"]] == [
        (size, calls) for size, (calls, _) in counted.batches.items()
    ]
    assert [m["name"] for m in found["every"]["model_stats"]] == ["adder", "fixed", "scalar", "words"]
    assert found["unknown"]["error"]["status"] == "StatusCode.NOT_FOUND"
