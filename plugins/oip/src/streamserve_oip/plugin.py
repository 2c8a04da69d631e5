"""The ``oip`` plugin: the Open Inference Protocol's ``inference.GRPCInferenceService``.

Found through the entry point ``oip = "streamserve_oip.plugin"`` of the group
``streamserve.plugins``. A protocol plugin (``signature=None``): it serves every model of the
server's ``model_repository`` by name, as KServe's and Triton's servers do. Importing this module is
cheap (no TensorFlow): the core imports every plugin just to list them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamserve
from streamserve import Context, Infer, Method, Models, Outputs, Rows
from streamserve_oip import infer, metadata, statistics
from streamserve_oip._proto import grpc_inference_pb2

__all__ = ["SPEC", "open_state", "streamserve_register"]


def open_state(context: Context) -> Models:
    """A call's state is the repository view itself (a ModelStreamInfer stream's wraps it:
    :class:`streamserve_oip.infer.StreamState`)."""
    assert context.models is not None  # a protocol plugin (signature=None) always gets the view
    return context.models


def open_stream(context: Context) -> infer.StreamState:
    """A ModelStreamInfer call's state: the repository view, with its last request's layout."""
    return infer.StreamState(open_state(context))


def _method(
    preprocess: Callable[[Any, Models], Rows | Infer], postprocess: Callable[[Outputs, Any, Models], Any]
) -> Method:
    return Method(preprocess=preprocess, postprocess=postprocess, open_state=open_state)


SPEC = streamserve.PluginSpec(
    name="oip",
    service=grpc_inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"],
    methods={
        "ServerLive": _method(metadata.no_model, metadata.server_live),
        "ServerReady": _method(metadata.no_model, metadata.server_ready),
        "ModelReady": _method(metadata.no_model, metadata.model_ready),
        "ServerMetadata": _method(metadata.no_model, metadata.server_metadata),
        "ModelMetadata": _method(metadata.model_request, metadata.model_metadata),
        "ModelInfer": _method(infer.preprocess, infer.postprocess),
        "ModelStreamInfer": Method(
            preprocess=infer.preprocess_stream,
            postprocess=infer.postprocess,
            open_state=open_stream,
            on_error=infer.stream_error,
        ),
        "ModelConfig": _method(metadata.model_request, metadata.model_config),
        "ModelStatistics": _method(metadata.no_model, statistics.model_statistics),
        "RepositoryIndex": _method(metadata.no_model, metadata.repository_index),
        "RepositoryModelLoad": _method(metadata.refuse, metadata.never_called),
        "RepositoryModelUnload": _method(metadata.refuse, metadata.never_called),
    },
    signature=None,
    extra={
        "protocol": "Open Inference Protocol v2 (gRPC), with Triton's ModelStreamInfer, ModelConfig and "
                    "ModelStatistics",
        "models": "every model of model_repository",
    },
)
"""The service this plugin provides."""


@streamserve.hookimpl
def streamserve_register(register: Callable[[streamserve.PluginSpec], None]) -> None:
    """Hand the core :data:`SPEC`."""
    register(SPEC)
