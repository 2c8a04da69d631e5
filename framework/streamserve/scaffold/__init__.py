"""``streamserve new-plugin NAME --dir DIR``: a complete plugin package that works as written.

It has a ``.proto`` with a bidirectional and a unary method and the code generated from it (inside
the package, so ``from <package> import <name>_pb2`` works), ``plugin.py`` with a ``Method`` that
keeps per-stream state (``open_state``), a tiny Keras model with its trainer as the default model,
``pyproject.toml`` with the entry point, a test on :mod:`streamserve.testing`, and a README with
the grpcurl calls. ``pip install -e DIR`` and ``streamserve serve`` serves it.
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path
from string import Template

from streamserve.errors import StreamserveError

__all__ = ["render", "write_plugin"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")

FILES = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "README.md": "README.md.tmpl",
    "src/{package}/__init__.py": "init.py.tmpl",
    "src/{package}/{name}.proto": "service.proto.tmpl",
    "src/{package}/plugin.py": "plugin.py.tmpl",
    "src/{package}/model.py": "model.py.tmpl",
    "tests/test_plugin.py": "test_plugin.py.tmpl",
}
"""Each file written (relative to DIR, with the names filled in) and its template."""


def names(name: str) -> dict[str, str]:
    """The names a plugin called ``name`` uses: its package, distribution and service."""
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise StreamserveError(
            f"plugin name {name!r}: use lower-case letters, digits and _, starting with a letter "
            "(it names the plugin, its proto package and its Python package)")
    return {
        "name": name,
        "package": f"streamserve_{name}",
        "dist": f"streamserve-{name.replace('_', '-')}",
        "service": "".join(part.capitalize() for part in name.split("_")) + "Service",
    }


def render(name: str) -> dict[str, str]:
    """Every file of the package, path (relative to its folder) -> text. No generated code."""
    values = names(name)
    templates = resources.files(__package__) / "templates"
    return {
        path.format(**values): Template((templates / template).read_text(encoding="utf-8"))
        .substitute(values)
        for path, template in FILES.items()
    }


def write_plugin(name: str, directory: Path) -> list[Path]:
    """Write the package for plugin ``name`` into ``directory`` (new or empty), and generate its
    code from the ``.proto``; returns the files written."""
    files = render(name)
    try:
        from grpc_tools import protoc
    except ImportError:
        raise StreamserveError("new-plugin generates the code of the .proto with grpcio-tools, "
                               "a dependency of streamserve: pip install grpcio-tools") from None
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise StreamserveError(f"{directory} exists and is not an empty folder: choose a new one")
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    values = names(name)
    src = directory / "src"
    proto = src / values["package"] / f"{name}.proto"
    # -I src with the proto under src/<package>/: protoc writes `from <package> import x_pb2`,
    # which works once the package is installed (-I. beside the file would write `import x_pb2`).
    args = ["protoc", f"-I{src}", f"-I{resources.files('grpc_tools') / '_proto'}",
            f"--python_out={src}", f"--pyi_out={src}", f"--grpc_python_out={src}", str(proto)]
    if protoc.main(args) != 0:
        raise StreamserveError(f"protoc failed on {proto}")
    generated = sorted((src / values["package"]).glob(f"{name}_pb2*"))
    return written + generated
