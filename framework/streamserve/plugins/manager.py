"""Finding plugins: entry points -> pluggy -> checked :class:`PluginSpec` objects.

Every way a plugin can be unusable (it fails to import, registers nothing sensible, reuses another
plugin's name, binds a method its service does not have) stops start-up with one
:class:`PluginError` naming the plugin and the package it came from, before any port is opened.
RPC methods it binds no Method to are allowed: they answer UNIMPLEMENTED.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass

import pluggy
from google.protobuf.descriptor import ServiceDescriptor

from streamserve.contract import Method, PluginSpec, Signature
from streamserve.errors import PluginError
from streamserve.plugins import hookspecs
from streamserve.plugins.markers import ENTRY_POINT_GROUP, PROJECT_NAME

__all__ = ["DiscoveredPlugin", "discover"]


@dataclass(frozen=True)
class DiscoveredPlugin:
    """A registered spec and where it came from."""

    spec: PluginSpec
    distribution: str
    """The package that provides it (``"<in-process>"`` for objects passed directly)."""
    version: str


@dataclass(frozen=True)
class _Origin:
    entry_point: str
    distribution: str
    version: str


def discover(extra: Iterable[object] = (), *, entry_points: bool = True) -> list[DiscoveredPlugin]:
    """Load every ``streamserve.plugins`` entry point, plus ``extra`` plugin objects.

    ``extra`` (modules or objects with hook implementations) lets tests and embedding programs add
    plugins without installing a package; they go through exactly the same checks.
    ``entry_points=False`` skips the installed plugins.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    origins: dict[int, _Origin] = {}
    installed = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points else ()
    for ep in sorted(installed, key=_ep_key):
        dist = ep.dist.name if ep.dist else "<unknown package>"
        version = ep.dist.version if ep.dist else "?"
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(
                f"failed to import {ep.value!r}: {type(exc).__name__}: {exc}",
                plugin=ep.name,
                distribution=dist,
            ) from exc
        _register(pm, obj, ep.name, dist)
        origins[id(obj)] = _Origin(ep.name, dist, version)
    for obj in extra:
        name = getattr(obj, "__name__", type(obj).__name__)
        _register(pm, obj, name, "<in-process>")
        origins[id(obj)] = _Origin(name, "<in-process>", "")
    try:
        pm.check_pending()  # a hook function with a misspelt name
    except pluggy.PluginValidationError as exc:
        origin = origins[id(exc.plugin)]
        raise PluginError(str(exc), plugin=origin.entry_point, distribution=origin.distribution) from exc

    found: dict[str, DiscoveredPlugin] = {}
    for impl in pm.hook.streamserve_register.get_hookimpls():
        origin = origins[id(impl.plugin)]

        def register(spec: object, origin: _Origin = origin) -> None:
            checked = _check_spec(spec, origin)
            if checked.name in found:
                other = found[checked.name].distribution
                raise PluginError(
                    f"the name {checked.name!r} is already taken by a plugin from package {other};"
                    " uninstall one of them or rename it",
                    plugin=checked.name,
                    distribution=origin.distribution,
                )
            found[checked.name] = DiscoveredPlugin(checked, origin.distribution, origin.version)

        try:
            impl.function(register=register)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"streamserve_register raised {type(exc).__name__}: {exc}",
                plugin=origin.entry_point,
                distribution=origin.distribution,
            ) from exc
    return sorted(found.values(), key=lambda p: p.spec.name)


def _ep_key(ep: importlib.metadata.EntryPoint) -> str:
    return ep.name


def _register(pm: pluggy.PluginManager, obj: object, name: str, dist: str) -> None:
    try:
        pm.register(obj, name=f"{dist}:{name}")
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise PluginError(str(exc), plugin=name, distribution=dist) from exc


def _check_spec(spec: object, origin: _Origin) -> PluginSpec:
    """Reject a registration that the core could not serve, saying exactly what is wrong."""

    def fail(reason: str, plugin: str = origin.entry_point) -> PluginError:
        return PluginError(reason, plugin=plugin, distribution=origin.distribution)

    if not isinstance(spec, PluginSpec):
        raise fail(f"register() takes a streamserve.PluginSpec, got {type(spec).__name__}")
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise fail("PluginSpec.name must be a non-empty string")
    if not isinstance(spec.service, ServiceDescriptor):
        raise fail(
            "PluginSpec.service must be a protobuf ServiceDescriptor "
            '(DESCRIPTOR.services_by_name["..."]), got ' + type(spec.service).__name__,
            spec.name,
        )
    if spec.signature is not None and not isinstance(spec.signature, Signature):
        raise fail("PluginSpec.signature must be a streamserve.Signature, or None for a plugin "
                   "that serves the model repository", spec.name)
    declared = set(spec.methods)
    rpc_names = {m.name for m in spec.service.methods}
    if unknown := sorted(declared - rpc_names):
        raise fail(
            f"Method(s) {unknown} are not RPC methods of {spec.service.full_name} "
            f"(it has {sorted(rpc_names)})",
            spec.name,
        )
    for method_name, method in spec.methods.items():
        if not isinstance(method, Method):
            raise fail(f"methods[{method_name!r}] must be a streamserve.Method", spec.name)
        rpc = spec.service.methods_by_name[method_name]
        if rpc.client_streaming and not rpc.server_streaming:
            raise fail(
                f"{method_name} is client-streaming only; streamserve serves unary, "
                "server-streaming and bidirectional methods",
                spec.name,
            )
    return spec

