"""Pilot keys: what the factory gives each pilot so that only that pilot can move its own record
at the monitor.

Each pilot gets its own random key in its own environment (:data:`KEY_VARIABLE`); the factory
announces only the key's SHA-256 digest with the pilot, and the monitor keeps only digests. The
monitor (monitor_service/pilot_keys.py) checks keys with these very definitions: ``apfp_`` and 43
characters of ``A-Z a-z 0-9 _ -`` (256 random bits); the wrapper sends a key of this shape and
no other. Making a key draws from the operating system's random source, nothing else.
"""

from __future__ import annotations

import hashlib
import re
import secrets

PILOT_KEY_PREFIX = "apfp_"
#: The pilot's environment variable that holds its key (the wrapper reads it).
KEY_VARIABLE = "APFMON_KEY"
KEY_PATTERN = r"^apfp_[A-Za-z0-9_-]{43}$"
DIGEST_PATTERN = r"^[0-9a-f]{64}$"
_KEY = re.compile(KEY_PATTERN)
_DIGEST = re.compile(DIGEST_PATTERN)


def new_pilot_key() -> str:
    """A fresh pilot key: the prefix and 256 random bits, URL-safe base64 without padding."""
    return PILOT_KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """The SHA-256 digest (64 lower-case hex digits) announced for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def is_pilot_key(text: str) -> bool:
    return _KEY.fullmatch(text) is not None


def is_digest(text: str) -> bool:
    return _DIGEST.fullmatch(text) is not None
