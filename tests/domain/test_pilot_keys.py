"""The factory's pilot keys are the keys the monitor checks: one format on both sides."""

from __future__ import annotations

from autopyfactory.domain import pilot_keys
from autopyfactory.monitor_service import pilot_keys as monitor_keys


def test_a_factory_key_passes_the_monitors_check_and_another_does_not() -> None:
    key, other = pilot_keys.new_pilot_key(), pilot_keys.new_pilot_key()
    digest = pilot_keys.key_digest(key)
    assert key != other
    assert pilot_keys.is_pilot_key(key)
    assert pilot_keys.is_digest(digest)
    assert digest == monitor_keys.key_digest(key)
    assert monitor_keys.presented_key(f"Bearer {key}") == key
    assert monitor_keys.verdict(key, digest, required=True) is monitor_keys.KeyVerdict.OK
    assert monitor_keys.verdict(other, digest, required=True) is monitor_keys.KeyVerdict.WRONG


def test_the_formats_agree() -> None:
    assert pilot_keys.PILOT_KEY_PREFIX == monitor_keys.PILOT_KEY_PREFIX
    assert pilot_keys.DIGEST_PATTERN == monitor_keys.DIGEST_PATTERN
    assert not pilot_keys.is_pilot_key("apfp_short")
    assert not pilot_keys.is_digest("A" * 64)
