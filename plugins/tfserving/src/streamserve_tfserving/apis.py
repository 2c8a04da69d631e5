"""TF Serving's API messages (PredictionService, TensorProto, SignatureDef...) without importing TensorFlow.

The generated modules of tensorflow-serving-api live inside the ``tensorflow`` package, and importing
any of them (even ``tensorflow.core.framework.tensor_pb2``) first runs ``tensorflow/__init__.py``: all
of TensorFlow, about 3 s, while the core imports every plugin just to list it. What those modules
register is plain data, a serialized ``FileDescriptorProto`` each, so this module reads it from the
installed generated files (parsing them, never running them) and adds it to protobuf's default pool.
Those are the very same file descriptors, so these message classes *are* the ones
``tensorflow_serving.apis.predict_pb2`` has, whether TensorFlow is imported before or after: adding
an identical file to the pool again is a no-op.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import EnumDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

__all__ = [
    "PREDICTION_SERVICE",
    "DataType",
    "GetModelMetadataResponse",
    "PredictResponse",
    "SignatureDef",
    "SignatureDefMap",
    "TensorProto",
]

_ROOT_FILE = "tensorflow_serving/apis/prediction_service.proto"
"""The service's file; every message it needs comes with its dependencies."""

_IMPORTED_PACKAGES = ("google",)
"""Top-level packages whose generated modules are cheap to import (protobuf's well-known types)."""


def _generated_file(proto: str) -> Path:
    """The installed ``*_pb2.py`` generated from ``proto`` (``a/b/c.proto`` -> ``a/b/c_pb2.py``)."""
    package, _, rest = proto.partition("/")
    spec = importlib.util.find_spec(package)  # a top-level name: nothing is imported
    for location in (spec and spec.submodule_search_locations) or ():
        candidate = Path(location) / (rest.removesuffix(".proto") + "_pb2.py")
        if candidate.is_file():
            return candidate
    raise ImportError(
        f"cannot find the generated module of {proto}: streamserve-tfserving needs the "
        "tensorflow-serving-api package (pip install tensorflow-serving-api)"
    )


def _serialized_descriptor(path: Path) -> bytes:
    """The bytes literal the generated module passes to ``AddSerializedFile``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile" and node.args):
            value = ast.literal_eval(node.args[0])
            if isinstance(value, bytes):
                return value
    raise ImportError(f"{path} does not look like a protoc-generated module (no AddSerializedFile)")


def _add_file(proto: str, pool: descriptor_pool.DescriptorPool) -> None:
    """Add ``proto`` and, first, every file it imports, to ``pool``; files already there stay."""
    try:
        pool.FindFileByName(proto)
        return
    except KeyError:
        pass
    if proto.partition("/")[0] in _IMPORTED_PACKAGES:
        importlib.import_module(proto.removesuffix(".proto").replace("/", ".") + "_pb2")
        return
    serialized = _serialized_descriptor(_generated_file(proto))
    for dependency in descriptor_pb2.FileDescriptorProto.FromString(serialized).dependency:
        _add_file(dependency, pool)
    pool.AddSerializedFile(serialized)


def _message(name: str) -> Any:
    return GetMessageClass(_POOL.FindMessageTypeByName(name))


_POOL = descriptor_pool.Default()
_add_file(_ROOT_FILE, _POOL)

PREDICTION_SERVICE: ServiceDescriptor = _POOL.FindServiceByName("tensorflow.serving.PredictionService")
DataType: EnumDescriptor = _POOL.FindEnumTypeByName("tensorflow.DataType")

# Typed Any: these are generated classes, whose fields mypy cannot see.
PredictResponse: Any = _message("tensorflow.serving.PredictResponse")
GetModelMetadataResponse: Any = _message("tensorflow.serving.GetModelMetadataResponse")
SignatureDefMap: Any = _message("tensorflow.serving.SignatureDefMap")
SignatureDef: Any = _message("tensorflow.SignatureDef")
TensorProto: Any = _message("tensorflow.TensorProto")
