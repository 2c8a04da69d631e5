"""The hooks a streamserve plugin can implement."""

from __future__ import annotations

from collections.abc import Callable

from streamserve.contract import PluginSpec
from streamserve.plugins.markers import hookspec


@hookspec
def streamserve_register(register: Callable[[PluginSpec], None]) -> None:
    """Hand the core the plugin's servable spec(s).

    Fires once at start-up, after every plugin module is imported and before the config is applied.

    :param register: call it with one :class:`streamserve.PluginSpec` per service the plugin
        provides. The core checks each spec (unique name, every RPC method bound, a sane signature)
        and stops start-up with a message naming the plugin and its package if one is not.
    :returns: nothing; return values are ignored.
    """
