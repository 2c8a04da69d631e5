"""A real Open Inference Protocol client, Triton's ``tritonclient[grpc]``, in a process of its own.

tritonclient registers the ``inference.*`` messages in protobuf's default descriptor pool, and so
does the plugin the server runs; one process cannot hold both. So the tests run this script and read
the one JSON document it prints:

    python triton_client.py ADDRESS probe MODEL         readiness, metadata and repository calls
    python triton_client.py ADDRESS infer REQUEST       InferenceServerClient.infer (raw contents)
    python triton_client.py ADDRESS typed REQUEST       ModelInfer with typed contents, through
                                                        tritonclient's generated stub
    python triton_client.py ADDRESS stream [REQUEST,..] start_stream, async_stream_infer each,
                                                        stop_stream
    python triton_client.py ADDRESS config [MODEL,..]   get_model_config of each model
    python triton_client.py ADDRESS statistics MODEL    get_inference_statistics of MODEL, of
                                                        every model, and of an unknown one

REQUEST is JSON: ``{"model": "m", "inputs": {"x": ["FP32", [2, 3], [[...]]]}, "outputs": ["y"],
"id": "7"}`` (``outputs`` and ``id`` optional). BYTES values travel as UTF-8 text.
"""

from __future__ import annotations

import json
import queue
import sys
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

TIMEOUT = 30.0  # seconds: a server that hangs fails the test instead of stalling it

TYPED_FIELDS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
    "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def array(datatype: str, shape: list[int], values: Any) -> np.ndarray:
    if datatype == "BYTES":
        flat = [v.encode() for v in np.asarray(values, dtype=object).reshape(-1)]
        return np.array(flat, dtype=object).reshape(shape)
    return np.asarray(values, dtype=triton_to_np_dtype(datatype)).reshape(shape)


def plain(values: np.ndarray) -> Any:
    if values.dtype == object:
        return [v.decode() for v in values.reshape(-1)] if values.ndim == 1 else [
            plain(row) for row in values
        ]
    return values.tolist()


def read_result(result: grpcclient.InferResult) -> dict[str, Any]:
    """What tritonclient's InferResult gives for each output (as_numpy reads raw contents)."""
    response = result.get_response()
    return {
        "id": response.id,
        "model_version": response.model_version,
        "raw": len(response.raw_output_contents) > 0,
        "outputs": {
            out.name: {"datatype": out.datatype, "shape": list(out.shape),
                       "values": plain(result.as_numpy(out.name))}
            for out in response.outputs
        },
    }


def infer_inputs(request: dict[str, Any]) -> list[grpcclient.InferInput]:
    inputs = []
    for name, (datatype, shape, values) in request["inputs"].items():
        tensor = grpcclient.InferInput(name, shape, datatype)
        tensor.set_data_from_numpy(array(datatype, shape, values))
        inputs.append(tensor)
    return inputs


def requested(request: dict[str, Any]) -> list[grpcclient.InferRequestedOutput] | None:
    names = request.get("outputs")
    return None if names is None else [grpcclient.InferRequestedOutput(n) for n in names]


def failure(error: InferenceServerException) -> dict[str, Any]:
    return {"error": {"status": error.status(), "message": error.message()}}


def probe(address: str, model: str) -> dict[str, Any]:
    with grpcclient.InferenceServerClient(address) as client:
        try:
            load = client.load_model(model, client_timeout=TIMEOUT)
        except InferenceServerException as error:
            load = failure(error)
        return {
            "live": client.is_server_live(client_timeout=TIMEOUT),
            "ready": client.is_server_ready(client_timeout=TIMEOUT),
            "model_ready": client.is_model_ready(model, client_timeout=TIMEOUT),
            "unknown_model_ready": client.is_model_ready("no-such-model", client_timeout=TIMEOUT),
            "server": client.get_server_metadata(as_json=True, client_timeout=TIMEOUT),
            "model": client.get_model_metadata(model, as_json=True, client_timeout=TIMEOUT),
            "index": client.get_model_repository_index(as_json=True, client_timeout=TIMEOUT),
            "load_model": load,
        }


def infer(address: str, request: dict[str, Any]) -> dict[str, Any]:
    with grpcclient.InferenceServerClient(address) as client:
        try:
            result = client.infer(request["model"], infer_inputs(request), outputs=requested(request),
                                  request_id=request.get("id", ""), client_timeout=TIMEOUT)
        except InferenceServerException as error:
            return failure(error)
        return read_result(result)


def typed(address: str, request: dict[str, Any]) -> dict[str, Any]:
    """ModelInfer with each input in its typed field; the typed outputs read back per datatype
    (tritonclient's as_numpy only reads raw outputs, and BYTES)."""
    message = service_pb2.ModelInferRequest(model_name=request["model"], id=request.get("id", ""))
    for name, (datatype, shape, values) in request["inputs"].items():
        tensor = message.inputs.add(name=name, datatype=datatype, shape=shape)
        flat = array(datatype, shape, values).reshape(-1).tolist()
        getattr(tensor.contents, TYPED_FIELDS[datatype]).extend(flat)
    for name in request.get("outputs", []):
        message.outputs.add(name=name)
    with grpc.insecure_channel(address) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=TIMEOUT)
    outputs = {}
    for out in response.outputs:
        values = list(getattr(out.contents, TYPED_FIELDS[out.datatype]))
        shaped = np.array(values, dtype=object if out.datatype == "BYTES" else None).reshape(out.shape)
        outputs[out.name] = {"datatype": out.datatype, "shape": list(out.shape), "values": plain(shaped)}
    return {"id": response.id, "model_version": response.model_version,
            "raw": len(response.raw_output_contents) > 0, "outputs": outputs}


def stream(address: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every request on one ModelStreamInfer stream; the responses in the order they came."""
    answers: queue.Queue[dict[str, Any]] = queue.Queue()

    def callback(result: grpcclient.InferResult | None, error: InferenceServerException | None) -> None:
        answers.put(failure(error) if error is not None else read_result(result))

    with grpcclient.InferenceServerClient(address) as client:
        client.start_stream(callback=callback, stream_timeout=TIMEOUT)
        for request in requests:
            client.async_stream_infer(request["model"], infer_inputs(request), outputs=requested(request),
                                      request_id=request.get("id", ""))
        client.stop_stream()  # half-closes, then waits until the server has answered and ended
    return [answers.get_nowait() for _ in range(answers.qsize())]


def config(address: str, models: list[str]) -> dict[str, Any]:
    """Each model's configuration, read from the ModelConfig message tritonclient parsed."""
    answers: dict[str, Any] = {}

    def tensors(configs: Any) -> list[Any]:
        return [[t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)] for t in configs]

    with grpcclient.InferenceServerClient(address) as client:
        for model in models:
            try:
                found = client.get_model_config(model, client_timeout=TIMEOUT).config
            except InferenceServerException as error:
                answers[model] = failure(error)
                continue
            answers[model] = {
                "name": found.name, "platform": found.platform, "backend": found.backend,
                "latest_versions": found.version_policy.latest.num_versions,
                "max_batch_size": found.max_batch_size,
                "input": tensors(found.input), "output": tensors(found.output),
            }
    return answers


def statistics(address: str, model: str) -> dict[str, Any]:
    """get_inference_statistics as_json (field names as in the proto, uint64 values as strings)."""
    with grpcclient.InferenceServerClient(address) as client:
        try:
            unknown = client.get_inference_statistics("no-such-model", client_timeout=TIMEOUT)
        except InferenceServerException as error:
            unknown = failure(error)
        return {
            "model": client.get_inference_statistics(model, as_json=True, client_timeout=TIMEOUT),
            "every": client.get_inference_statistics(as_json=True, client_timeout=TIMEOUT),
            "unknown": unknown,
        }


def main(address: str, command: str, argument: str) -> Any:
    if command == "probe":
        return probe(address, argument)
    if command == "infer":
        return infer(address, json.loads(argument))
    if command == "typed":
        return typed(address, json.loads(argument))
    if command == "stream":
        return stream(address, json.loads(argument))
    if command == "config":
        return config(address, json.loads(argument))
    if command == "statistics":
        return statistics(address, argument)
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
