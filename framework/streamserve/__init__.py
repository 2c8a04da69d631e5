"""streamserve: a pluggable gRPC model server for streaming data.

Plugins are found through the entry-point group ``streamserve.plugins`` (see
:mod:`streamserve.plugins` for a short tutorial) and hand the core one :class:`PluginSpec` each.
"""

from streamserve.contract import (
    Context,
    Infer,
    Method,
    ModelInfo,
    Models,
    ModelStatistics,
    Outputs,
    PluginSpec,
    Rows,
    Signature,
    TensorSpec,
)
from streamserve.errors import InvalidArgument, NotFound, StreamserveError, Unavailable, Unimplemented
from streamserve.plugins.markers import hookimpl

__all__ = [
    "Context",
    "Infer",
    "InvalidArgument",
    "Method",
    "ModelInfo",
    "ModelStatistics",
    "Models",
    "NotFound",
    "Outputs",
    "PluginSpec",
    "Rows",
    "Signature",
    "StreamserveError",
    "TensorSpec",
    "Unavailable",
    "Unimplemented",
    "hookimpl",
]
__version__ = "0.2.0"
