"""How the plugin compiles its per-point steps: Numba, cached on disk where it can be.

Numba keeps compiled code beside the module (``__pycache__``), or in ``NUMBA_CACHE_DIR`` or the
user's cache folder; a process then loads it in a fraction of a second instead of compiling it for
a few. Where none of those is writable (a read-only install with no writable home), Numba refuses
``cache=True`` outright; the plugin then compiles at every start rather than not start at all.

Two kinds: :func:`compiled` keeps the GIL (a step of a few microseconds: releasing the GIL for it
would hand it to any other busy thread and wait for it back, tens of microseconds), and
:func:`compiled_loop` releases it (a chunk's loop, long enough that the server's other threads
should run meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from numba import njit

__all__ = ["compiled", "compiled_loop"]

F = TypeVar("F", bound=Callable[..., Any])


def _compile(function: F, **options: Any) -> F:
    try:
        return njit(cache=True, **options)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(**options)(function)


def compiled(function: F) -> F:
    """``function`` compiled to machine code, cached if possible; it holds the GIL."""
    return _compile(function, nogil=False)


def compiled_loop(function: F) -> F:
    """``function`` compiled to machine code, cached if possible; it releases the GIL."""
    return _compile(function, nogil=True)
