"""``Predict``: the request's input tensors become one model call's rows, its outputs the response.

The state of a call is the repository's :class:`streamserve.Models` view. Input names, dtypes and
shapes are checked by the core against the model's signature; this module checks what only TF
Serving's API has: the signature name and ``output_filter``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamserve import Infer, InvalidArgument, Models, Outputs
from streamserve_tfserving.apis import PredictResponse
from streamserve_tfserving.model_spec import check_signature_name, fill_model_spec, resolve
from streamserve_tfserving.tensors import read_tensor, write_tensor

__all__ = ["postprocess", "preprocess"]


def preprocess(request: Any, models: Models) -> Infer:
    target = resolve(request, models)
    check_signature_name(request.model_spec.signature_name, target)
    signature = target.info.signature  # None while loading: the core then answers UNAVAILABLE
    if signature is not None:
        _check_output_filter(request.output_filter, [spec.name for spec in signature.outputs])
    if not request.inputs:
        # Empty rows would mean "no model call" to the core: a Predict always needs one.
        needed = ", ".join(s.describe() for s in signature.inputs) if signature else "its inputs"
        raise InvalidArgument("inputs", f"the request has no inputs; model {target.name!r} needs {needed}")
    rows = {name: read_tensor(tensor, name) for name, tensor in request.inputs.items()}
    return Infer(model=target.name, rows=rows, version=target.version)


def postprocess(outputs: Outputs, request: Any, models: Models) -> Any:
    name = request.model_spec.name
    # The signature's name is the model's configuration, the same for every version it serves.
    signature = models.get(name).signature
    response = PredictResponse()
    fill_model_spec(response.model_spec, name, outputs.model_version,
                    signature.name if signature else request.model_spec.signature_name)
    _check_output_filter(request.output_filter, list(outputs))  # again, had the model been loading
    for alias in request.output_filter or outputs:
        write_tensor(response.outputs[alias], outputs[alias])
    return response


def _check_output_filter(aliases: Iterable[str], served: list[str]) -> None:
    seen: set[str] = set()
    for alias in aliases:
        if alias not in served:
            raise InvalidArgument("output_filter", f"output tensor alias not found in signature: {alias} "
                                  f"Outputs expected to be in the set {{{','.join(served)}}}.")
        if alias in seen:
            raise InvalidArgument("output_filter", f"duplicate output tensor alias: {alias}")
        seen.add(alias)
