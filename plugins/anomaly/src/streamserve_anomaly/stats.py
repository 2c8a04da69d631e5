"""Exponential weights: the one constant the running statistics of a series are built from."""

from __future__ import annotations

__all__ = ["alpha_of"]


def alpha_of(halflife: float) -> float:
    """The per-value weight of an exponential average whose weights halve every ``halflife``."""
    return 1.0 - 0.5 ** (1.0 / halflife)
