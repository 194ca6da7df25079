"""Pilot keys: one format, made by the factory and checked by the monitor with the same
definitions (autopyfactory/domain/pilot_keys.py)."""

from __future__ import annotations

import pytest

from autopyfactory.domain import pilot_keys
from autopyfactory.monitor_service import pilot_keys as monitor_keys


def test_a_factory_key_passes_the_monitors_check_and_another_does_not() -> None:
    key, other = pilot_keys.new_pilot_key(), pilot_keys.new_pilot_key()
    digest = pilot_keys.key_digest(key)
    assert key != other
    assert pilot_keys.is_pilot_key(key)
    assert pilot_keys.is_digest(digest)
    assert monitor_keys.presented_key(f"Bearer {key}") == key
    assert monitor_keys.verdict(key, digest, required=True) is monitor_keys.KeyVerdict.OK
    assert monitor_keys.verdict(other, digest, required=True) is monitor_keys.KeyVerdict.WRONG


@pytest.mark.parametrize(
    "text",
    [
        "apfp_short",
        "apfp_" + "A" * 44,
        "apfq_" + "A" * 43,
        "apfp_" + "A" * 42 + "=",
        "apfp_" + "A" * 43 + "\n",
    ],
)
def test_a_key_of_another_shape_is_no_pilot_key_for_either_side(text: str) -> None:
    """Too short or long, another prefix, a character outside ``A-Z a-z 0-9 _ -``, a trailing
    newline: the factory would not make it, and the monitor takes it as a wrong key even from a
    factory that does not require keys."""
    assert not pilot_keys.is_pilot_key(text)
    assert monitor_keys.verdict(text, "", required=False) is monitor_keys.KeyVerdict.WRONG


def test_a_digest_is_64_lower_case_hex_digits() -> None:
    assert pilot_keys.is_digest(pilot_keys.key_digest("apfp_x"))
    assert not pilot_keys.is_digest("A" * 64)
    assert not pilot_keys.is_digest("a" * 63)
