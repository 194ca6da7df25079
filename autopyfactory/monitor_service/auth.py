"""Factory tokens: random, shown once by ``add-factory``, stored as a SHA-256 digest.

A token carries 256 random bits, so a plain (unsalted, fast) digest is enough: nobody can guess a
preimage, and a digest lets the service find the factory of a token with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_PREFIX = "apfm_"  # noqa: S105 (a prefix that makes tokens recognisable, not a secret)
_TOKEN_RE = re.compile(r"apfm_[A-Za-z0-9_-]{43}")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(token: str) -> bool:
    """Cheap shape check before touching the database."""
    return _TOKEN_RE.fullmatch(token) is not None
