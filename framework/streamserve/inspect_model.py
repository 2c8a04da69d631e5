"""``streamserve inspect MODEL_DIR``: a SavedModel's signatures, and the ``Signature(...)`` to paste.

The names a plugin declares are the signature's keys, which depend on how the model was saved, not
on the Python code that built it: Keras ``model.export(dir)`` keeps the ``Input``'s name and calls
the output ``output_0``; ``tf.saved_model.save(keras_model, dir)`` calls the input ``inputs`` (and
the output ``output_0``). Read them here instead of learning them from a load error.

The signatures are read from ``saved_model.pb`` itself: nothing of the model runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamserve.errors import ModelLoadError
from streamserve.runtime import resolve_version
from streamserve.runtime.tfimport import import_tensorflow

__all__ = ["SignatureInfo", "TensorInfo", "describe", "read_signatures", "signature_code"]

_INTERNAL = "__saved_model_init_op"  # TF's own initialiser entry, not a servable signature


@dataclass(frozen=True)
class TensorInfo:
    name: str
    """The key in the signature: what ``preprocess`` returns and ``postprocess`` reads."""
    dtype: str
    shape: tuple[int | None, ...] | None
    """None for a dimension of any size; None as a whole for an unknown rank."""

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.name}: {self.dtype}[unknown rank]"
        return f"{self.name}: {self.dtype}[{', '.join('?' if d is None else str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class SignatureInfo:
    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def read_signatures(path: Path) -> tuple[Path, str, list[SignatureInfo]]:
    """The SavedModel at ``path`` (or its newest numbered version): directory, version, signatures."""
    directory, version = resolve_version(path)
    tf = import_tensorflow()  # for its protobuf definitions and dtype names
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((directory / "saved_model.pb").read_bytes())
    except Exception as exc:  # a truncated or foreign file
        raise ModelLoadError(f"cannot read {directory / 'saved_model.pb'}: {exc}") from exc

    def tensors(entries: object) -> tuple[TensorInfo, ...]:
        assert hasattr(entries, "items")
        found = []
        for key, info in sorted(entries.items()):
            shape = None if info.tensor_shape.unknown_rank else tuple(
                None if dim.size < 0 else int(dim.size) for dim in info.tensor_shape.dim)
            found.append(TensorInfo(key, tf.as_dtype(info.dtype).name, shape))
        return tuple(found)

    signatures: dict[str, SignatureInfo] = {}
    for graph in saved.meta_graphs:
        for name, definition in graph.signature_def.items():
            if name != _INTERNAL and name not in signatures:
                signatures[name] = SignatureInfo(name, tensors(definition.inputs),
                                                 tensors(definition.outputs))
    ordered = sorted(signatures.values(), key=lambda s: (s.name != "serving_default", s.name))
    return directory, version, ordered


def signature_code(signature: SignatureInfo) -> str:
    """The ``streamserve.Signature(...)`` a plugin declares to be served this signature."""

    def spec(tensor: TensorInfo) -> str:
        note = ""
        shape = tensor.shape
        if shape is None:
            note, shape = "  # unknown rank: give the shape your rows have", (None,)
        elif not shape or shape[0] is not None:
            note = ("  # the model fixes the batch dimension: re-export it with None first to "
                    "batch it; streamserve needs None there")
            shape = (None, *shape[1:])
        dims = ", ".join("None" if d is None else str(d) for d in shape)
        dims += "," if len(shape) == 1 else ""
        return f'        TensorSpec("{tensor.name}", "{tensor.dtype}", ({dims})),{note}'

    lines = ["Signature("]
    lines += ["    inputs=(", *map(spec, signature.inputs), "    ),"]
    lines += ["    outputs=(", *map(spec, signature.outputs), "    ),"]
    if signature.name != "serving_default":
        lines.append(f'    name="{signature.name}",')
    lines.append(")")
    return "\n".join(lines)


def describe(path: Path) -> str:
    """What ``streamserve inspect`` prints."""
    directory, version, signatures = read_signatures(path)
    out = [f"{directory} (version {version or '-'})"]
    if not signatures:
        return out[0] + "\nno signatures: save it with one (serving_default) to serve it"
    for signature in signatures:
        out += ["", f"signature {signature.name!r}"]
        out += [f"  input   {t.describe()}" for t in signature.inputs]
        out += [f"  output  {t.describe()}" for t in signature.outputs]
    first = signatures[0]
    out += ["", "Paste into your plugin (from streamserve import Signature, TensorSpec):", ""]
    out += ["    " + line for line in signature_code(first).splitlines()]
    out += ["", "preprocess returns rows keyed by these input names; postprocess reads the outputs "
                "by these output names."]
    return "\n".join(out)
