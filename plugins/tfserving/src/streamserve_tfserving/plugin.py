"""The ``tfserving`` plugin: TF Serving's ``tensorflow.serving.PredictionService`` for the model repository.

Found through the entry point ``tfserving = "streamserve_tfserving.plugin"`` of the group
``streamserve.plugins``. A protocol plugin (``signature=None``): it serves every model of the
server's ``model_repository:`` by the name in the request's ``model_spec``. ``Predict`` and
``GetModelMetadata`` are served; ``Classify``, ``Regress`` and ``MultiInference`` (tf.Example
inputs and classification/regression signatures) answer UNIMPLEMENTED. Importing this module is
cheap: no TensorFlow (see :mod:`streamserve_tfserving.apis`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamserve
from streamserve import Context, Infer, Method, Models, Outputs, PluginSpec
from streamserve_tfserving import metadata, predict
from streamserve_tfserving.apis import PREDICTION_SERVICE

__all__ = ["SERVED_METHODS", "SPEC", "streamserve_register"]

SERVED_METHODS = ("Predict", "GetModelMetadata")


def open_state(context: Context) -> Models:
    """A call's state is the repository view: requests name their model."""
    assert context.models is not None  # a protocol plugin (signature=None) always gets the view
    return context.models


def _method(
    preprocess: Callable[[Any, Models], Infer], postprocess: Callable[[Outputs, Any, Models], Any]
) -> Method:
    return Method(preprocess, postprocess, open_state=open_state)


SPEC = PluginSpec(
    name="tfserving",
    service=PREDICTION_SERVICE,
    methods={
        "Predict": _method(predict.preprocess, predict.postprocess),
        "GetModelMetadata": _method(metadata.preprocess, metadata.postprocess),
        # Classify, Regress, MultiInference are not bound: the core answers them UNIMPLEMENTED,
        # naming the methods served.
    },
    signature=None,
    extra={
        "models": "every model of model_repository, by model_spec.name",
        "served": ", ".join(SERVED_METHODS),
    },
)
"""The one servable this plugin provides."""


@streamserve.hookimpl
def streamserve_register(register: Callable[[PluginSpec], None]) -> None:
    """Hand the core :data:`SPEC`."""
    register(SPEC)
