"""Small helpers for the words in operator-facing output."""

from __future__ import annotations


def plural(n: int, noun: str, many: str = "") -> str:
    """``1 pilot``, ``2 pilots``, ``0 pilots``; ``many`` for irregular nouns (``1 query, 2 queries``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {many or noun + 's'}"
