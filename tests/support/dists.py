"""Fake installed distributions, for testing real entry-point discovery without pip.

A distribution is a ``<name>-<version>.dist-info`` folder (``METADATA`` and ``entry_points.txt``) on
``sys.path`` next to its modules: exactly what ``importlib.metadata`` reads for a pip-installed
package, so :func:`streamserve.plugins.discover` goes through its real code path.
"""

from __future__ import annotations

import importlib
import itertools
import sys
from collections.abc import Mapping
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor

from streamserve.plugins import ENTRY_POINT_GROUP

__all__ = ["FakeSite", "client_streaming_service"]

_unique = itertools.count()


class FakeSite:
    """A folder of fake installed distributions. Put :attr:`root` on ``sys.path``; call
    :meth:`cleanup` afterwards so the modules it wrote do not leak into other tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def module_name(self, hint: str) -> str:
        """A module name no other test uses, so ``sys.modules`` never hands back a stale one."""
        return f"ssfake_{hint.replace('-', '_')}_{next(_unique)}"

    def install(
        self,
        name: str,
        version: str,
        *,
        entry_points: Mapping[str, str],
        modules: Mapping[str, str] | None = None,
    ) -> None:
        """Write distribution ``name`` with ``streamserve.plugins`` ``entry_points`` (entry-point
        name -> ``module[:attr]``) and ``modules`` (module name -> source)."""
        info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{ep} = {target}" for ep, target in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for module, source in (modules or {}).items():
            (self.root / f"{module}.py").write_text(source, encoding="utf-8")
            self.modules.append(module)
        importlib.invalidate_caches()

    def cleanup(self) -> None:
        for module in self.modules:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()


_POOL = descriptor_pool.DescriptorPool()  # kept alive: descriptors refer to their pool


def client_streaming_service() -> ServiceDescriptor:
    """``streamserve_test_collect.Collector`` with one client-streaming-only method, ``Collect``."""
    full_name = "streamserve_test_collect.Collector"
    try:
        return _POOL.FindServiceByName(full_name)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto(
        name="streamserve_test_collect.proto", package="streamserve_test_collect", syntax="proto3"
    )
    values = proto.message_type.add(name="Values")
    values.field.add(
        name="values",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    service = proto.service.add(name="Collector")
    service.method.add(
        name="Collect",
        input_type=".streamserve_test_collect.Values",
        output_type=".streamserve_test_collect.Values",
        client_streaming=True,
    )
    _POOL.Add(proto)
    return _POOL.FindServiceByName(full_name)
