"""The OIP service through the plugin's own generated stubs, in process: error statuses, raw
contents, in-band stream errors, statistics, health and reflection."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import streamserve_oip.plugin
from streamserve.config import parse_config
from streamserve.serving import Server
from streamserve.testing import serve_in_process
from streamserve_oip._proto import grpc_inference_pb2 as pb2
from streamserve_oip._proto import grpc_inference_pb2_grpc as pb2_grpc
from tests.oip.conftest import repository_config

SERVICE = "inference.GRPCInferenceService"
TIMEOUT = 10.0  # seconds per call: a hang fails the test
Reference = Callable[..., dict[str, Any]]


@pytest.fixture
async def stub(oip_server: Server) -> AsyncIterator[pb2_grpc.GRPCInferenceServiceStub]:
    async with grpc.aio.insecure_channel(oip_server.address) as channel:
        yield pb2_grpc.GRPCInferenceServiceStub(channel)


def typed_request(x: Any, k: Any, **fields: Any) -> pb2.ModelInferRequest:
    x, k = np.asarray(x, np.float32), np.asarray(k, np.int64)
    request = pb2.ModelInferRequest(**{"model_name": "adder", **fields})
    request.inputs.add(name="x", datatype="FP32", shape=x.shape).contents.fp32_contents.extend(x.ravel())
    request.inputs.add(name="k", datatype="INT64", shape=k.shape).contents.int64_contents.extend(k.ravel())
    return request


def raw_bytes(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def parse_raw_bytes(raw: bytes) -> list[bytes]:
    values, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        values.append(raw[offset + 4:offset + 4 + length])
        offset += 4 + length
    return values


async def failure(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


# Errors ------------------------------------------------------------------------------------------


async def test_unknown_model_or_version_is_not_found(stub: pb2_grpc.GRPCInferenceServiceStub) -> None:
    unknown = typed_request([[1, 2, 3]], [1], model_name="nope")
    infer = await failure(stub.ModelInfer(unknown, timeout=TIMEOUT))
    assert infer.code() == grpc.StatusCode.NOT_FOUND and "nope" in infer.details()
    other_version = typed_request([[1, 2, 3]], [1], model_version="2")
    version = await failure(stub.ModelInfer(other_version, timeout=TIMEOUT))
    assert version.code() == grpc.StatusCode.NOT_FOUND
    meta = await failure(stub.ModelMetadata(pb2.ModelMetadataRequest(name="nope"), timeout=TIMEOUT))
    assert meta.code() == grpc.StatusCode.NOT_FOUND
    other = pb2.ModelConfigRequest(name="adder", version="2")
    config = await failure(stub.ModelConfig(other, timeout=TIMEOUT))
    assert config.code() == grpc.StatusCode.NOT_FOUND and "version '2'" in config.details()
    ready = await stub.ModelReady(pb2.ModelReadyRequest(name="adder", version="2"), timeout=TIMEOUT)
    assert ready.ready is False


async def test_model_config_of_the_served_version(stub: pb2_grpc.GRPCInferenceServiceStub) -> None:
    response = await stub.ModelConfig(pb2.ModelConfigRequest(name="adder", version="1"), timeout=TIMEOUT)
    assert response.config.name == "adder"
    assert response.config.version_policy.latest.num_versions == 1
    assert [(i.name, list(i.dims)) for i in response.config.input] == [("k", []), ("x", [3])]
    unnamed = await failure(stub.ModelConfig(pb2.ModelConfigRequest(), timeout=TIMEOUT))
    assert unnamed.code() == grpc.StatusCode.INVALID_ARGUMENT and "name" in unnamed.details()


def as_fp64(request: Any) -> None:
    """x sent as FP64, consistently: the core finds that the model wants float32."""
    x = request.inputs[0]
    values = list(x.contents.fp32_contents)
    x.datatype = "FP64"
    x.ClearField("contents")
    x.contents.fp64_contents.extend(values)


def two_rows_of_k(request: Any) -> None:
    """k has 2 rows, x has 1."""
    k = request.inputs[1]
    k.shape[0] = 2
    k.contents.int64_contents.append(8)


def more_rows_than_values(request: Any) -> None:
    request.inputs[0].shape[0] = 2


def drop_k(request: Any) -> None:
    del request.inputs[1]


def add_z(request: Any) -> None:
    request.inputs.add(name="z", datatype="FP32", shape=[1]).contents.fp32_contents.append(1)


def fp8(request: Any) -> None:
    request.inputs[0].datatype = "FP8"


def raw_and_typed(request: Any) -> None:
    request.raw_input_contents.extend([b"", b""])


def one_raw_for_two_inputs(request: Any) -> None:
    request.raw_input_contents.append(b"")


def ask_unknown_output(request: Any) -> None:
    request.outputs.add(name="nothing")


def k_in_two_fields(request: Any) -> None:
    request.inputs[1].contents.fp32_contents.append(1)


@pytest.mark.parametrize(("change", "field"), [
    (as_fp64, "x"),
    (two_rows_of_k, "k"),
    (more_rows_than_values, "x"),
    (drop_k, "k"),
    (add_z, "z"),
    (fp8, "x"),
    (raw_and_typed, "x"),
    (one_raw_for_two_inputs, "raw_input_contents"),
    (ask_unknown_output, "nothing"),
    (k_in_two_fields, "k"),
], ids=lambda value: getattr(value, "__name__", value))
async def test_bad_tensors_are_invalid_argument_naming_the_field(
    stub: pb2_grpc.GRPCInferenceServiceStub, change: Callable[[Any], Any], field: str
) -> None:
    request = typed_request([[1, 2, 3]], [7])
    change(request)
    error = await failure(stub.ModelInfer(request, timeout=TIMEOUT))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"ModelInfer: {field}: " in error.details()


async def test_the_fixed_dimension_of_an_input_is_checked(stub: pb2_grpc.GRPCInferenceServiceStub) -> None:
    error = await failure(stub.ModelInfer(typed_request([[1, 2, 3, 4]], [7]), timeout=TIMEOUT))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x: expected x: float32[?, 3]" in error.details()


async def test_load_and_unload_are_unimplemented(stub: pb2_grpc.GRPCInferenceServiceStub) -> None:
    load = await failure(stub.RepositoryModelLoad(pb2.RepositoryModelLoadRequest(model_name="adder"),
                                                  timeout=TIMEOUT))
    unload = await failure(stub.RepositoryModelUnload(pb2.RepositoryModelUnloadRequest(model_name="adder"),
                                                      timeout=TIMEOUT))
    assert load.code() == unload.code() == grpc.StatusCode.UNIMPLEMENTED


# Contents ----------------------------------------------------------------------------------------


async def test_raw_contents_round_trip(stub: pb2_grpc.GRPCInferenceServiceStub, reference: Reference) -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    k = np.array([3, -4, 5, 2**40], dtype=np.int64)
    request = pb2.ModelInferRequest(model_name="adder", id="raw")
    request.inputs.add(name="x", datatype="FP32", shape=[4, 3])
    request.inputs.add(name="k", datatype="INT64", shape=[4])
    request.raw_input_contents.extend([x.astype("<f4").tobytes(), k.astype("<i8").tobytes()])

    response = await stub.ModelInfer(request, timeout=TIMEOUT)

    expected = reference("adder", x=x, k=k)
    assert [o.name for o in response.outputs] == ["label", "sum", "twice"]
    assert not any(o.contents.ListFields() for o in response.outputs)  # raw means no typed contents
    raw = dict(zip([o.name for o in response.outputs], response.raw_output_contents, strict=True))
    np.testing.assert_array_equal(np.frombuffer(raw["sum"], "<f4"), expected["sum"])
    np.testing.assert_array_equal(np.frombuffer(raw["twice"], "<i8"), expected["twice"])
    assert parse_raw_bytes(raw["label"]) == list(expected["label"])

    words = pb2.ModelInferRequest(model_name="words")
    words.inputs.add(name="text", datatype="BYTES", shape=[3])
    words.raw_input_contents.append(raw_bytes([b"ab", b"", b"\x00\xff"]))
    answered = await stub.ModelInfer(words, timeout=TIMEOUT)
    by_name = dict(zip([o.name for o in answered.outputs], answered.raw_output_contents, strict=True))
    assert parse_raw_bytes(by_name["upper"]) == [b"AB", b"", b"\x00\xff"]
    assert np.frombuffer(by_name["half"], "<f2").tolist() == [1.0, 0.0, 1.0]


async def test_the_request_chooses_raw_or_typed_outputs(stub: pb2_grpc.GRPCInferenceServiceStub) -> None:
    typed_in = typed_request([[1, 2, 3]], [7])
    typed_in.parameters["binary_data_output"].bool_param = True
    assert len((await stub.ModelInfer(typed_in, timeout=TIMEOUT)).raw_output_contents) == 3

    asked = typed_request([[1, 2, 3]], [7])
    asked.outputs.add(name="sum").parameters["binary_data"].bool_param = True
    response = await stub.ModelInfer(asked, timeout=TIMEOUT)
    assert [o.name for o in response.outputs] == ["sum"]
    assert np.frombuffer(response.raw_output_contents[0], "<f4").tolist() == [21.0]

    plain = await stub.ModelInfer(typed_request([[1, 2, 3]], [7]), timeout=TIMEOUT)
    assert not plain.raw_output_contents
    assert list(plain.outputs[1].contents.fp32_contents) == [21.0]
    assert list(plain.outputs[0].contents.bytes_contents) == [b"7"]


async def test_zero_rows_give_empty_outputs(stub: pb2_grpc.GRPCInferenceServiceStub) -> None:
    response = await stub.ModelInfer(typed_request(np.zeros((0, 3)), []), timeout=TIMEOUT)
    assert {o.name: (o.datatype, list(o.shape)) for o in response.outputs} == {
        "label": ("BYTES", [0]), "sum": ("FP32", [0]), "twice": ("INT64", [0]),
    }
    assert response.model_version == "1"

    asked = typed_request(np.zeros((0, 3)), [])
    for name in ("twice", "label"):
        asked.outputs.add(name=name)
    response = await stub.ModelInfer(asked, timeout=TIMEOUT)
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("twice", "INT64", [0]), ("label", "BYTES", [0]),
    ]

    words = pb2.ModelInferRequest(model_name="words")
    words.inputs.add(name="text", datatype="BYTES", shape=[0])
    response = await stub.ModelInfer(words, timeout=TIMEOUT)
    assert {o.name: (o.datatype, list(o.shape)) for o in response.outputs} == {
        "half": ("FP16", [0]), "length": ("INT32", [0]), "upper": ("BYTES", [0]),
    }
    assert list(response.raw_output_contents) == [b"", b"", b""]  # FP16 has no typed field: all raw


# Streams -----------------------------------------------------------------------------------------


async def test_stream_errors_are_in_band_with_the_request_id(stub: pb2_grpc.GRPCInferenceServiceStub) -> None:
    bad = typed_request([[1, 2, 3]], [7], id="b")
    bad.inputs[0].datatype = "FP8"
    requests = [typed_request([[1, 2, 3]], [7], id="a"), bad, typed_request([[0, 0, 1]], [1], id="c")]
    answers = [a async for a in stub.ModelStreamInfer(iter(requests), timeout=TIMEOUT)]
    assert [(a.error_message[:17], a.infer_response.id) for a in answers] == [
        ("", "a"), ("INVALID_ARGUMENT:", "b"), ("", "c"),
    ]
    assert "FP8" in answers[1].error_message
    assert list(answers[2].infer_response.outputs[1].contents.fp32_contents) == [4.0]


def raw_request(x: Any, k: Any, id: str) -> pb2.ModelInferRequest:
    x, k = np.asarray(x, np.float32), np.asarray(k, np.int64)
    request = pb2.ModelInferRequest(model_name="adder", id=id)
    request.inputs.add(name="x", datatype="FP32", shape=x.shape)
    request.inputs.add(name="k", datatype="INT64", shape=k.shape)
    request.raw_input_contents.extend([x.tobytes(), k.tobytes()])
    return request


async def test_a_stream_decodes_each_request_as_it_is_when_its_layout_changes(
    stub: pb2_grpc.GRPCInferenceServiceStub, reference: Reference
) -> None:
    """A stream's request whose inputs equal the last one's is decoded as that one was: every
    change of the inputs, or of the raw contents' sizes, must still be seen, and checked."""
    rows = {"one": ([[1, 2, 3]], [7]), "other": ([[4, 5, 6]], [-1]), "two": ([[1, 2, 3], [0, 1, 0]], [1, 2])}
    short = raw_request(*rows["one"], id="short")
    short.raw_input_contents[0] = short.raw_input_contents[0][:8]
    missing = raw_request(*rows["one"], id="missing")
    del missing.raw_input_contents[1]
    shared = raw_request(*rows["one"], id="shared")
    shared.inputs[0].parameters["shared_memory_region"].string_param = "r"
    asked = raw_request(*rows["two"], id="asked")
    asked.outputs.add(name="sum")
    requests = [
        raw_request(*rows["one"], id="one"), raw_request(*rows["other"], id="other"), short,
        raw_request(*rows["other"], id="other"), missing, shared, raw_request(*rows["two"], id="two"),
        asked, typed_request(*rows["one"], id="typed"), raw_request(*rows["one"], id="one"),
    ]
    answers = [a async for a in stub.ModelStreamInfer(iter(requests), timeout=TIMEOUT)]

    assert [a.infer_response.id for a in answers] == [r.id for r in requests]
    errors = {a.infer_response.id: a.error_message for a in answers if a.error_message}
    assert errors.keys() == {"short", "missing", "shared"}
    assert errors["short"].startswith("INVALID_ARGUMENT: x: shape [1, 3] of FP32 needs 12 bytes")
    assert errors["missing"].startswith("INVALID_ARGUMENT: raw_input_contents: has 1 entries")
    assert errors["shared"].startswith("INVALID_ARGUMENT: x: parameter 'shared_memory_region'")
    for request, answer in zip(requests, answers, strict=True):
        if answer.error_message:
            continue
        x, k = rows[request.id if request.id in rows else "two" if request.id == "asked" else "one"]
        expected = reference("adder", x=np.asarray(x, np.float32), k=np.asarray(k, np.int64))
        response = answer.infer_response
        if request.id == "typed":
            assert not response.raw_output_contents
            assert list(response.outputs[1].contents.fp32_contents) == list(expected["sum"])
            continue
        raw = dict(zip([o.name for o in response.outputs], response.raw_output_contents, strict=True))
        assert list(raw) == (["sum"] if request.id == "asked" else ["label", "sum", "twice"])
        np.testing.assert_array_equal(np.frombuffer(raw["sum"], "<f4"), expected["sum"])


# Statistics --------------------------------------------------------------------------------------


async def adder_statistics(stub: pb2_grpc.GRPCInferenceServiceStub, **fields: str) -> Any:
    response = await stub.ModelStatistics(pb2.ModelStatisticsRequest(name="adder", **fields),
                                          timeout=TIMEOUT)
    (found,) = response.model_stats
    return found


async def test_statistics_count_the_rows_and_model_calls(stub: pb2_grpc.GRPCInferenceServiceStub) -> None:
    # The server is shared by this module's tests: compare with what was counted before.
    before = await adder_statistics(stub)
    started_ms = time.time() * 1000
    requests = [typed_request([[i, 1, 2], [3, 4, 5]], [i, -i]) for i in range(3)]
    await asyncio.gather(*(stub.ModelInfer(r, timeout=TIMEOUT) for r in requests))
    after = await adder_statistics(stub, version="1")

    assert (after.name, after.version) == ("adder", "1")
    assert after.inference_count - before.inference_count == 6
    assert 1 <= after.execution_count - before.execution_count <= 3
    assert started_ms - 1 <= after.last_inference <= time.time() * 1000 + 1
    assert sum(b.batch_size * b.compute_infer.count for b in after.batch_stats) == after.inference_count
    assert sum(b.compute_infer.count for b in after.batch_stats) == after.execution_count
    infer = after.inference_stats.compute_infer
    assert infer.count == after.execution_count
    assert infer.ns == sum(b.compute_infer.ns for b in after.batch_stats)
    assert infer.ns > before.inference_stats.compute_infer.ns
    # Not measured: per-request outcomes and times, input and output preparation.
    assert not after.inference_stats.HasField("success") and not after.inference_stats.HasField("queue")
    assert not after.memory_usage


async def test_concurrent_unary_calls_share_model_calls_with_a_batching_delay(
    oip_repository: Path, reference: Reference
) -> None:
    """Unary callers at once, ``max_delay_ms`` set: their rows share model calls (each handler used
    to run its request at once, seeing itself as the only open call), and each gets its own rows'
    answers."""
    extra = "  batching: {max_delay_ms: 300}\n"
    config = parse_config(repository_config(oip_repository, extra), env={})
    async with (
        serve_in_process(config, extra_plugins=[streamserve_oip.plugin], installed=False) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        xs = [np.full((1, 3), i, np.float32) for i in range(8)]
        answers = await asyncio.gather(*(stub.ModelInfer(typed_request(x, [i]), timeout=TIMEOUT)
                                         for i, x in enumerate(xs)))
        stats = await adder_statistics(stub)
    assert stats.inference_count == 8
    assert stats.execution_count < 8  # batched: at least two calls shared one model call
    for i, (x, answer) in enumerate(zip(xs, answers, strict=True)):
        got = {o.name: o for o in answer.outputs}
        expected = reference("adder", x=x, k=np.array([i], np.int64))
        np.testing.assert_array_equal(got["sum"].contents.fp32_contents, expected["sum"])


async def test_concurrent_unary_calls_share_model_calls_without_a_configured_delay(
    oip_repository: Path, reference: Reference
) -> None:
    """Unary callers at once, no ``max_delay_ms``: the server notices them (its first unary call
    waits ``unary_window_ms`` for company) and their rows share model calls from then on."""
    extra = "  batching: {unary_window_ms: 300}\n"
    config = parse_config(repository_config(oip_repository, extra), env={})
    async with (
        serve_in_process(config, extra_plugins=[streamserve_oip.plugin], installed=False) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        xs = [np.full((1, 3), i, np.float32) for i in range(16)]
        answers: list[Any] = []
        executions = 0
        for part in (xs[:8], xs[8:]):  # the first group finds out, the second is batched knowingly
            answers += await asyncio.gather(*(
                stub.ModelInfer(typed_request(x, [int(x[0, 0])]), timeout=TIMEOUT) for x in part
            ))
            stats = await adder_statistics(stub)
            assert stats.inference_count == len(answers)
            assert stats.execution_count - executions < 8  # two calls or more shared a model call
            executions = stats.execution_count
    for i, (x, answer) in enumerate(zip(xs, answers, strict=True)):
        got = {o.name: o for o in answer.outputs}
        expected = reference("adder", x=x, k=np.array([i], np.int64))
        np.testing.assert_array_equal(got["sum"].contents.fp32_contents, expected["sum"])


async def test_statistics_of_every_model_and_not_found(stub: pb2_grpc.GRPCInferenceServiceStub) -> None:
    every = await stub.ModelStatistics(pb2.ModelStatisticsRequest(), timeout=TIMEOUT)
    assert [(m.name, m.version) for m in every.model_stats] == [
        ("adder", "1"), ("fixed", "1"), ("scalar", "1"), ("words", "3"),
    ]
    for request in (pb2.ModelStatisticsRequest(name="nope"),
                    pb2.ModelStatisticsRequest(name="adder", version="2")):
        error = await failure(stub.ModelStatistics(request, timeout=TIMEOUT))
        assert error.code() == grpc.StatusCode.NOT_FOUND


# Health and reflection ---------------------------------------------------------------------------


async def test_health_and_reflection_show_the_service(oip_server: Server) -> None:
    async with grpc.aio.insecure_channel(oip_server.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=TIMEOUT
        )
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
        )
        replies = [reply async for reply in call]
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert SERVICE in [s.name for s in replies[0].list_services_response.service]


# A model that is not ready -----------------------------------------------------------------------


async def test_a_model_that_failed_to_load_is_unavailable(tmp_path: Path) -> None:
    broken = tmp_path / "repo" / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    config = parse_config(repository_config(tmp_path / "repo", "on_plugin_error: continue\n"), env={})
    async with (
        serve_in_process(config, extra_plugins=[streamserve_oip.plugin], installed=False) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        assert (await stub.ServerLive(pb2.ServerLiveRequest(), timeout=TIMEOUT)).live is True
        assert (await stub.ServerReady(pb2.ServerReadyRequest(), timeout=TIMEOUT)).ready is False
        assert (await stub.ModelReady(pb2.ModelReadyRequest(name="broken"), timeout=TIMEOUT)).ready is False
        index = await stub.RepositoryIndex(pb2.RepositoryIndexRequest(), timeout=TIMEOUT)
        request = pb2.ModelInferRequest(model_name="broken")
        request.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(1)
        infer = await failure(stub.ModelInfer(request, timeout=TIMEOUT))
        meta = await failure(stub.ModelMetadata(pb2.ModelMetadataRequest(name="broken"), timeout=TIMEOUT))
        config = await failure(stub.ModelConfig(pb2.ModelConfigRequest(name="broken"), timeout=TIMEOUT))
    assert [(m.name, m.state) for m in index.models] == [("broken", "UNAVAILABLE")]
    assert "SavedModel" in index.models[0].reason
    assert infer.code() == meta.code() == config.code() == grpc.StatusCode.UNAVAILABLE


async def test_an_output_the_protocol_cannot_carry_is_an_in_band_error_of_each_stream_request(
    tmp_path: Path,
) -> None:
    # The error comes from postprocess (the OIP has no complex datatype), not from the model: the
    # core hands it to the method's on_error too, so the stream reports it and goes on.
    import tensorflow as tf

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"z": tf.complex(x, x)}

    tf.saved_model.save(module, str(tmp_path / "repo" / "complex" / "1"),
                        signatures={"serving_default": serve.get_concrete_function()})
    config = parse_config(repository_config(tmp_path / "repo"), env={})
    requests = []
    for id in ("a", "b"):
        request = pb2.ModelInferRequest(model_name="complex", id=id)
        request.inputs.add(name="x", datatype="FP32", shape=[2])
        request.raw_input_contents.append(np.array([1, 2], np.float32).tobytes())
        requests.append(request)
    async with (
        serve_in_process(config, extra_plugins=[streamserve_oip.plugin], installed=False) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        call = stub.ModelStreamInfer(iter(requests), timeout=TIMEOUT)
        answers = [a async for a in call]
        status = await call.code()
    assert [(a.error_message.split(":")[0], a.infer_response.id) for a in answers] == [
        ("UNIMPLEMENTED", "a"), ("UNIMPLEMENTED", "b")]
    assert "complex64" in answers[0].error_message
    assert status == grpc.StatusCode.OK
