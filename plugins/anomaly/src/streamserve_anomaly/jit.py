"""How the plugin compiles its per-point steps: Numba, cached on disk where it can be.

Numba keeps compiled code beside the module (``__pycache__``), or in ``NUMBA_CACHE_DIR`` or the
user's cache folder; a process then loads it in a fraction of a second instead of compiling it for
a few. Where none of those is writable (a read-only install with no writable home), Numba refuses
``cache=True`` outright; the plugin then compiles at every start rather than not start at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from numba import njit

__all__ = ["compiled"]

F = TypeVar("F", bound=Callable[..., Any])


def compiled(function: F) -> F:
    """``function`` compiled to machine code (no GIL held while it runs), cached if possible."""
    try:
        return njit(cache=True, nogil=True)(function)  # type: ignore[return-value]
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(nogil=True)(function)  # type: ignore[return-value]
