"""Writing a streamserve plugin, in ten lines.

1. Write a ``.proto`` with your service and generate its Python module (``grpc_tools.protoc``).
2. In a module of your package, describe how to serve it and register it::

       import streamserve
       from my_pkg import my_pb2

       SPEC = streamserve.PluginSpec(
           name="my-plugin",
           service=my_pb2.DESCRIPTOR.services_by_name["MyService"],
           methods={"Predict": streamserve.Method(preprocess=..., postprocess=...)},
           signature=streamserve.Signature(inputs=(...), outputs=(...)),
       )

       @streamserve.hookimpl
       def streamserve_register(register):
           register(SPEC)

3. Point the entry-point group at that module in your ``pyproject.toml``::

       [project.entry-points."streamserve.plugins"]
       my-plugin = "my_pkg.plugin"

4. ``pip install`` your package: ``streamserve plugins`` lists it and ``streamserve serve`` serves it
   (with its ``default_model``, or the ``model_path`` its section in the config names).

``streamserve new-plugin NAME --dir DIR`` writes a complete one to start from; the full guide is
``docs/writing-a-plugin.md``.
"""

from streamserve.plugins.manager import DiscoveredPlugin, discover
from streamserve.plugins.markers import ENTRY_POINT_GROUP, hookimpl, hookspec

__all__ = ["ENTRY_POINT_GROUP", "DiscoveredPlugin", "discover", "hookimpl", "hookspec"]
