"""The scaler plugin: serves a model y = f(x) through the Scaler service of scaler.proto.

Each message carries N values; each value is one model row, so a message is a chunk of N rows (and an
empty message needs no model call). The same Method serves the unary and the bidirectional method;
the server-streaming one only differs in its postprocessor, which yields one message per value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scaler_pb2  # type: ignore[import-not-found]

import streamserve
from streamserve import InvalidArgument, Method, PluginSpec, Rows, Signature, TensorSpec

SIGNATURE = Signature(
    inputs=(TensorSpec("x", "float32", (None,)),),
    outputs=(TensorSpec("y", "float32", (None,)),),
)


def preprocess(request: Any, state: Any) -> Rows:
    values = np.asarray(request.values, dtype=np.float32)
    if not np.isfinite(values).all():
        raise InvalidArgument("values", "every value must be finite")
    return {"x": values}


def postprocess(outputs: Rows, request: Any, state: Any) -> Any:
    return scaler_pb2.Values(values=outputs["y"])


def expand(outputs: Rows, request: Any, state: Any) -> Iterator[Any]:
    for y in outputs["y"]:
        yield scaler_pb2.Value(value=y)


def make_spec(default_model: Callable[[], Any] | None = None) -> PluginSpec:
    return PluginSpec(
        name="scaler",
        service=scaler_pb2.DESCRIPTOR.services_by_name["Scaler"],
        methods={
            "Scale": Method(preprocess, postprocess),
            "Expand": Method(preprocess, expand),
            "ScaleStream": Method(preprocess, postprocess),
        },
        signature=SIGNATURE,
        default_model=default_model,
    )


@streamserve.hookimpl
def streamserve_register(register: Callable[[PluginSpec], None]) -> None:
    register(make_spec())
