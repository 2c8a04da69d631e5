"""Which model a request's ``ModelSpec`` names, and the ``ModelSpec`` a response carries.

Errors and their messages follow TF Serving's (``ServerCore::ServableRequestFromModelSpec``,
``predict_util.cc``), so clients that match on them keep working; streamserve's core answers
NOT_FOUND for an unknown model or a version that is not the one served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from streamserve import InvalidArgument, ModelInfo, Models
from streamserve.errors import StreamserveError

__all__ = ["SignatureNotFound", "Target", "check_signature_name", "fill_model_spec", "resolve"]


class SignatureNotFound(StreamserveError):
    """The request names a signature the model does not serve: FAILED_PRECONDITION, as TF Serving."""

    code = grpc.StatusCode.FAILED_PRECONDITION


@dataclass(frozen=True, slots=True)
class Target:
    """The model a request is for: its name, the version asked for (``""``: the served one), and
    what the repository says about it now."""

    name: str
    version: str
    info: ModelInfo


def resolve(request: Any, models: Models) -> Target:
    """The model ``request.model_spec`` names. InvalidArgument for a missing spec, an empty name or a
    version label; NotFound (from ``models``) for an unknown model or a version not served."""
    if not request.HasField("model_spec"):
        raise InvalidArgument("model_spec", "Missing ModelSpec")
    spec = request.model_spec
    if not spec.name:
        raise InvalidArgument("model_spec.name", "ModelSpec has no name specified.")
    choice = spec.WhichOneof("version_choice")
    if choice == "version_label":
        # TF Serving's answer for a label its config does not define; streamserve defines none (it
        # serves one version per model, the highest), so every label is one.
        raise InvalidArgument(
            "model_spec.version_label",
            f"Unrecognized servable version label: {spec.version_label} (this server has no version "
            "labels; give model_spec.version or leave it unset for the served version)",
        )
    version = str(spec.version.value) if choice == "version" else ""
    return Target(spec.name, version, models.get(spec.name, version))


def check_signature_name(requested: str, target: Target) -> None:
    """``requested`` ("" is the default) must be the one signature the model is served with."""
    signature = target.info.signature
    if signature is None or not requested or requested == signature.name:
        return  # not loaded yet: the core answers UNAVAILABLE before any signature matters
    raise SignatureNotFound(
        f'Serving signature key "{requested}" not found. (model {target.name!r} is served with '
        f'signature "{signature.name}" only; set model_spec.signature_name to it or leave it empty)'
    )


def fill_model_spec(spec: Any, name: str, version: str, signature_name: str = "") -> None:
    """A response's ``model_spec``, as TF Serving fills it: the name, the version that answered (when
    the model has numbered versions) and, for Predict, the signature used."""
    spec.name = name
    if version.isdigit():
        spec.version.value = int(version)
    if signature_name:
        spec.signature_name = signature_name
