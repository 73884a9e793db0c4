"""Small text helpers shared by every layer (leaf module: imports nothing of the package)."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """Return the first line of an exception's message, or its type name if it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
