"""The one rule for label names, shared by the factory (which makes them) and the monitor (which
checks them), so that every name the factory makes is one the monitor accepts.

A label name is 1 to :data:`LABEL_MAX` characters from :data:`LABEL_CHARS`, not made only of dots
(``.`` and ``..`` are no names in a URL path or a directory). Pydantic's regular expressions have
no look-ahead, so the "not only dots" part is spelled as "at least one character that is not a dot".
"""

from __future__ import annotations

import hashlib
import re

LABEL_CHARS = r"A-Za-z0-9_.+@=-"
LABEL_MAX = 128
_NOT_DOT = r"A-Za-z0-9_+@=-"
LABEL_BODY = rf"[{LABEL_CHARS}]*[{_NOT_DOT}][{LABEL_CHARS}]*"
LABEL_PATTERN = rf"^{LABEL_BODY}$"
"""Checks the characters and "not only dots"; the length is checked separately (:data:`LABEL_MAX`)."""

_LABEL_RE = re.compile(LABEL_PATTERN)
_BAD_CHAR = re.compile(rf"[^{LABEL_CHARS}]")
_HASH_CHARS = 8


def label_problem(name: str) -> str | None:
    """Why ``name`` is not a valid label name, or None when it is."""
    if not name:
        return "empty"
    if len(name) > LABEL_MAX:
        return f"longer than {LABEL_MAX} characters"
    if _LABEL_RE.fullmatch(name) is None:
        if _BAD_CHAR.search(name):
            return f"only the characters {LABEL_CHARS} are allowed"
        return "made only of dots"
    return None


def label_name(raw: str) -> str:
    """A valid label name made from ``raw``: other characters become ``_``, leading dots go, and a
    name too long is cut and ends with a short digest of ``raw`` (so that two long names that share
    their beginning stay apart). Usable as a directory name and a URL path part."""
    name = _BAD_CHAR.sub("_", raw).lstrip(".") or "_"
    if len(name) > LABEL_MAX:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
        name = name[: LABEL_MAX - _HASH_CHARS - 1] + "-" + digest
    return name
