"""The protocol's health and metadata calls, answered from the repository's :class:`Models` view.

None of them runs a model. ModelMetadata and ModelConfig still hand the core an
:class:`~streamserve.Infer` with no rows, so an unknown model or version is NOT_FOUND and one that is
not loaded is UNAVAILABLE exactly as for ModelInfer; the others read the view directly (ModelReady
of an unknown model is ``false``, as Triton answers). The repository cannot be changed through the
protocol: models and versions come from ``model_repository`` on disk, so RepositoryModelLoad/Unload
are UNIMPLEMENTED.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any, NoReturn

from streamserve import Infer, InvalidArgument, Models, NotFound, Outputs, Rows, TensorSpec, Unimplemented
from streamserve_oip._proto import grpc_inference_pb2 as pb2
from streamserve_oip.datatypes import config_data_type, datatype_of

__all__ = [
    "BACKEND",
    "PLATFORM",
    "SERVER_NAME",
    "model_config",
    "model_metadata",
    "model_ready",
    "model_request",
    "never_called",
    "no_model",
    "refuse",
    "repository_index",
    "server_live",
    "server_metadata",
    "server_ready",
]

SERVER_NAME = "streamserve"
PLATFORM = "tensorflow_savedmodel"
"""Triton's platform name for what the repository serves."""
BACKEND = "tensorflow"
"""Triton's backend name for that platform: here too the SavedModels run on TensorFlow."""


def no_model(request: Any, models: Models) -> Rows:
    """Preprocessing of a call about the server, not a model: no rows, no model."""
    return {}


def server_live(outputs: Outputs, request: Any, models: Models) -> Any:
    # Answering at all is being live: the process serves gRPC.
    return pb2.ServerLiveResponse(live=True)


def server_ready(outputs: Outputs, request: Any, models: Models) -> Any:
    return pb2.ServerReadyResponse(ready=all(_ready(models, name) for name in models.names()))


def model_ready(outputs: Outputs, request: Any, models: Models) -> Any:
    return pb2.ModelReadyResponse(ready=_ready(models, request.name, request.version))


def server_metadata(outputs: Outputs, request: Any, models: Models) -> Any:
    return pb2.ServerMetadataResponse(name=SERVER_NAME, version=_version(), extensions=[])


def model_request(request: Any, models: Models) -> Infer:
    """Preprocessing of ModelMetadata and ModelConfig: the model they name, with no rows."""
    if not request.name:
        raise InvalidArgument("name", "is empty: name the model")
    return Infer(model=request.name, rows={}, version=request.version)


def model_metadata(outputs: Outputs, request: Any, models: Models) -> Any:
    info = models.get(request.name, request.version)
    response = pb2.ModelMetadataResponse(
        name=info.name, versions=[info.version] if info.version else [], platform=PLATFORM
    )
    if info.signature is not None:
        response.inputs.extend(_tensor(spec) for spec in info.signature.inputs)
        response.outputs.extend(_tensor(spec) for spec in info.signature.outputs)
    return response


def model_config(outputs: Outputs, request: Any, models: Models) -> Any:
    """Triton's configuration of the model, as far as a SavedModel tells it: its tensors, and the
    batching clients may rely on. ``max_batch_size`` is the model's batching limit when every tensor
    has an open batch dimension, and the dims then leave that dimension out (Triton's convention);
    otherwise it is 0 and the dims are the full shapes (a fixed batch is one request per call)."""
    info = models.get(request.name, request.version)
    config = pb2.ModelConfig(
        name=info.name,
        platform=PLATFORM,
        backend=BACKEND,
        # The highest numbered version is the one served, as Triton's default policy does.
        version_policy=pb2.ModelVersionPolicy(latest=pb2.ModelVersionPolicy.Latest(num_versions=1)),
    )
    if info.signature is not None:
        config.max_batch_size = info.max_batch_size if info.signature.batchable else 0
        skip = 1 if config.max_batch_size > 0 else 0
        for spec in info.signature.inputs:
            config.input.add(name=spec.name, data_type=_data_type(spec), dims=_dims(spec.shape[skip:]))
        for spec in info.signature.outputs:
            config.output.add(name=spec.name, data_type=_data_type(spec), dims=_dims(spec.shape[skip:]))
    return pb2.ModelConfigResponse(config=config)


def repository_index(outputs: Outputs, request: Any, models: Models) -> Any:
    """Every model of the repository with Triton's states: READY, LOADING, or UNAVAILABLE with the
    load error as the reason. ``repository_name`` is ignored: there is one repository."""
    response = pb2.RepositoryIndexResponse()
    for name in models.names():
        try:
            info = models.get(name)
        except NotFound:  # gone between the two calls
            continue
        if request.ready and not info.ready:
            continue
        state = "READY" if info.ready else "LOADING" if info.reason == "loading" else "UNAVAILABLE"
        response.models.add(name=name, version=info.version, state=state,
                            reason="" if info.ready else info.reason)
    return response


def refuse(request: Any, models: Models) -> NoReturn:
    raise Unimplemented(
        "models are not loaded or unloaded through the protocol: they come from the server's "
        "model_repository folder, whose new models and versions are picked up by polling "
        "(model_repository.poll_seconds) or on SIGHUP"
    )


def never_called(outputs: Outputs, request: Any, models: Models) -> NoReturn:
    raise AssertionError("preprocess refused the call")


def _ready(models: Models, name: str, version: str = "") -> bool:
    try:
        return models.get(name, version).ready
    except NotFound:
        return False


def _tensor(spec: TensorSpec) -> Any:
    return pb2.ModelMetadataResponse.TensorMetadata(
        name=spec.name,
        # A dtype the protocol has no name for (complex, resource) is shown as TensorFlow names it,
        # so the metadata still tells what the model takes.
        datatype=datatype_of(spec.dtype) or spec.dtype.upper(),
        shape=_dims(spec.shape),
    )


def _data_type(spec: TensorSpec) -> Any:
    # A dtype the protocol has no name for is TYPE_INVALID: Triton's enum has no other way to say it.
    return pb2.DataType.Value(config_data_type(datatype_of(spec.dtype)))


def _dims(shape: tuple[int | None, ...]) -> list[int]:
    return [-1 if d is None else d for d in shape]


@functools.cache
def _version() -> str:
    return metadata.version("streamserve")
