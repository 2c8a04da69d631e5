"""The scaler plugin: serves a model y = f(x) through the Scaler service of scaler.proto.

Each message carries N values; each value is one model row, so a message is a chunk of N rows (and an
empty message needs no model call). The same Method serves the unary and the bidirectional method;
the server-streaming one only differs in its postprocessor, which yields one message per value.
"""

from __future__ import annotations

import os
import time
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


SLOW_MODEL_ENV = "STREAMSERVE_TEST_SLOW_MODEL"
"""Set to a number of seconds: the plugin's default model then takes that long to "build" (a
model that loads slowly, for tests that stop a server in the middle of a load)."""


def _slow_default_model() -> Any:
    seconds = float(os.environ[SLOW_MODEL_ENV])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded by the deadline
        time.sleep(0.05)
    raise RuntimeError(f"{SLOW_MODEL_ENV}: this test model never loads")


@streamserve.hookimpl
def streamserve_register(register: Callable[[PluginSpec], None]) -> None:
    register(make_spec(_slow_default_model if SLOW_MODEL_ENV in os.environ else None))
