"""``GetModelMetadata``: the model's ``SignatureDef``, built from the signature the core read from it.

The request makes no model call (``Infer`` with no rows) but is routed like one, so an unknown model
or version is NOT_FOUND and a model not ready UNAVAILABLE, exactly as for ``Predict``. Only the one
signature the model is served with is listed: it is the only one ``Predict`` accepts.
"""

from __future__ import annotations

from typing import Any

from streamserve import Infer, InvalidArgument, Models, Outputs, Signature, TensorSpec
from streamserve.errors import Unavailable
from streamserve_tfserving.apis import GetModelMetadataResponse, SignatureDef, SignatureDefMap
from streamserve_tfserving.model_spec import fill_model_spec, resolve
from streamserve_tfserving.tensors import datatype

__all__ = ["PREDICT_METHOD_NAME", "SIGNATURE_DEF", "postprocess", "preprocess", "signature_def"]

SIGNATURE_DEF = "signature_def"
"""The one ``metadata_field`` TF Serving (and this plugin) answers."""

PREDICT_METHOD_NAME = "tensorflow/serving/predict"
"""``SignatureDef.method_name`` of a signature served through Predict."""


def preprocess(request: Any, models: Models) -> Infer:
    # Fields first: TF Serving rejects a request it cannot answer before looking the model up.
    if not request.metadata_field:
        raise InvalidArgument("metadata_field", "GetModelMetadataRequest must specify at least one "
                              f"metadata_field (supported: {SIGNATURE_DEF})")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF:
            raise InvalidArgument("metadata_field", f"Metadata field {field} is not supported "
                                  f"(supported: {SIGNATURE_DEF})")
    target = resolve(request, models)
    return Infer(model=target.name, rows={}, version=target.version)


def postprocess(outputs: Outputs, request: Any, models: Models) -> Any:
    name = request.model_spec.name
    info = models.get(name)  # the signature and version of one and the same loaded model
    if info.signature is None:
        raise Unavailable(f"model {name!r} is not ready: {info.reason or 'loading'}; retry shortly")
    signatures = SignatureDefMap()
    signatures.signature_def[info.signature.name].CopyFrom(signature_def(info.signature))
    response = GetModelMetadataResponse()
    fill_model_spec(response.model_spec, name, info.version)
    response.metadata[SIGNATURE_DEF].Pack(signatures)
    return response


def signature_def(signature: Signature) -> Any:
    """The ``SignatureDef`` TF Serving would list for ``signature``. Tensor names are ``<key>:0``: the
    graph's own names are not known here, and clients address tensors by key anyway."""
    result = SignatureDef(method_name=PREDICT_METHOD_NAME)
    for spec in signature.inputs:
        _tensor_info(result.inputs[spec.name], spec)
    for spec in signature.outputs:
        _tensor_info(result.outputs[spec.name], spec)
    return result


def _tensor_info(target: Any, spec: TensorSpec) -> None:
    target.name = f"{spec.name}:0"
    target.dtype = datatype(spec.dtype)
    for size in spec.shape:
        target.tensor_shape.dim.add(size=-1 if size is None else size)
