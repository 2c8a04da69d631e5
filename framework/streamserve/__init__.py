"""streamserve: a pluggable gRPC model server for streaming data.

Plugins are found through the entry-point group ``streamserve.plugins`` (see
:mod:`streamserve.plugins` for a short tutorial) and hand the core one :class:`PluginSpec` each.
"""

from streamserve.contract import Method, Outputs, PluginSpec, Rows, Signature, TensorSpec
from streamserve.errors import InvalidArgument
from streamserve.plugins.markers import hookimpl

__all__ = [
    "InvalidArgument",
    "Method",
    "Outputs",
    "PluginSpec",
    "Rows",
    "Signature",
    "TensorSpec",
    "hookimpl",
]
__version__ = "0.1.0"
