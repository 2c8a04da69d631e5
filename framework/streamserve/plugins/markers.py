"""The project's pluggy markers. Plugins decorate their hook functions with :data:`hookimpl`."""

import pluggy

__all__ = ["ENTRY_POINT_GROUP", "PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "streamserve"
ENTRY_POINT_GROUP = "streamserve.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
