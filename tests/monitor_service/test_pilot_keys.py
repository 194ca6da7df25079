"""Pilot keys: each pilot can carry a capability for its own record only. By default a factory's
pilots need none (the production ATLAS wrapper sends none); a factory set to require them has
reports without their pilot's key, or with another one, refused (403) and counted, and its API
v1 GET reports off."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from autopyfactory.domain.pilot_keys import key_digest, new_pilot_key
from autopyfactory.monitor_service.cli import main
from autopyfactory.monitor_service.pilot_keys import KeyVerdict, presented_key, verdict
from tests.support.monitor import FactoryClient

LABEL = "KEYS-L"


def create(factory: FactoryClient, keys: dict[str, str | None]) -> None:
    """Announce pilots, each with the digest of its key (None: announced without one)."""
    jobs = [
        {
            "cid": cid,
            "label": LABEL,
            "factory": factory.name,
            **({"key_sha256": key_digest(key)} if key else {}),
        }
        for cid, key in keys.items()
    ]
    answer = factory.call("PUT", "/jobs", jobs)
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == len(jobs)


def report(factory: FactoryClient, cid: str, key: str | None, **form: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"{factory.monitor.api}/jobs/{factory.name}:{cid}"
    return factory.session.post(url, data=form or {"state": "running"}, headers=headers, timeout=10)


def refusals(factory: FactoryClient) -> dict[str, object]:
    detail = factory.session.get(f"{factory.monitor.api}/factories/{factory.name}", timeout=10).json()
    found: dict[str, object] = detail["key_refusals"]
    return found


def require(factory: FactoryClient) -> None:
    factory.monitor.services.store.set_pilot_keys(factory.name, required=True)


def test_keys_are_random_and_only_their_digest_is_kept() -> None:
    one, two = new_pilot_key(), new_pilot_key()
    assert one != two
    assert one.startswith("apfp_")
    assert len(one) == 48
    assert key_digest(one) == key_digest(one) != key_digest(two)
    assert len(key_digest(one)) == 64
    assert presented_key(f"Bearer {one}") == one
    assert presented_key(f"bearer  {one} ") == one
    assert presented_key("Bearer apfm_" + "x" * 43) is None  # a factory token is no pilot key
    assert presented_key("Basic dXNlcjpwYXNz") is None
    assert presented_key(None) is None


@pytest.mark.parametrize(
    ("presented", "digest", "required", "legacy", "expected"),
    [
        (None, "", False, False, KeyVerdict.OK),
        (None, "D", False, False, KeyVerdict.OK),  # the default: an unsigned report is fine
        (None, "D", True, False, KeyVerdict.UNSIGNED),
        (None, "", False, True, KeyVerdict.OK),  # API v1 by default
        ("K", "D", True, True, KeyVerdict.UNSIGNED),  # API v1 with keys required: off
        ("apfp_short", "", False, False, KeyVerdict.WRONG),
        ("K", "", False, False, KeyVerdict.OK),  # nothing to check it against
        ("K", "", True, False, KeyVerdict.WRONG),
        ("K", "D", False, False, KeyVerdict.OK),
        ("K", "D", True, False, KeyVerdict.OK),
        ("L", "D", False, False, KeyVerdict.WRONG),  # another pilot's key: refused even by default
        ("L", "D", True, False, KeyVerdict.WRONG),
    ],
)
def test_the_verdict_table(
    presented: str | None, digest: str, required: bool, legacy: bool, expected: KeyVerdict
) -> None:
    keys = {"K": "apfp_" + "K" * 43, "L": "apfp_" + "L" * 43}
    key = keys.get(presented, presented) if presented else None
    stored = key_digest(keys["K"]) if digest == "D" else ""
    assert verdict(key, stored, required, legacy=legacy) is expected


def test_by_default_reports_need_no_key(factory: FactoryClient, http: requests.Session) -> None:
    """The production ATLAS wrapper signs nothing: its reports (v2 and v1) are accepted, also for
    pilots announced with a key; a key that is not the pilot's is refused and counted."""
    key = new_pilot_key()
    create(factory, {"1.0": key, "2.0": None, "3.0": key})
    assert factory.heartbeat().json()["pilot_keys"] == "optional"
    assert report(factory, "1.0", None).status_code == 200
    assert http.get(f"{factory.monitor.url}/mon/rn/{factory.name}/2.0/", timeout=10).status_code == 200
    assert report(factory, "3.0", key).status_code == 200
    wrong = report(factory, "1.0", new_pilot_key(), state="fault")
    assert wrong.status_code == 403
    assert "wrong pilot key" in wrong.json()["detail"]
    assert factory.job("1.0")["state"] == "RUNNING"
    assert refusals(factory)["wrong_key"] == 1


def test_required_keys_refuse_unsigned_and_foreign_reports(
    factory: FactoryClient, http: requests.Session
) -> None:
    keys = {"1.0": new_pilot_key(), "2.0": new_pilot_key()}
    create(factory, {**keys, "3.0": None})
    require(factory)
    assert factory.heartbeat().json()["pilot_keys"] == "required"
    mon = f"{factory.monitor.url}/mon"
    attempts = [
        report(factory, "1.0", None, state="fault"),  # unsigned
        report(factory, "1.0", keys["2.0"], state="fault"),  # another pilot's key: its own record only
        report(factory, "1.0", "apfp_" + "0" * 43, state="fault"),
        report(factory, "3.0", new_pilot_key()),  # announced without a key: nothing can match
        report(factory, "1.0", factory.token, state="fault"),  # the factory's token is no pilot key
        http.get(f"{mon}/rn/{factory.name}/1.0/", timeout=10),  # v1: a link or an image tag
        http.get(f"{mon}/ex/{factory.name}/1.0/7/", timeout=10),
    ]
    assert [a.status_code for a in attempts] == [403] * len(attempts)
    assert "requires pilot keys" in attempts[0].json()["detail"]
    assert "API v1 GET reports are off" in attempts[-1].json()["detail"]
    job = factory.job("1.0")
    assert job["state"] == "CREATED"
    assert len(job["events"]) == 1  # type: ignore[arg-type]
    counted = refusals(factory)
    assert (counted["unsigned"], counted["wrong_key"]) == (4, 3)
    assert counted["last_at"] is not None
    assert counted["active_without_key"] == 1
    assert report(factory, "1.0", keys["1.0"]).status_code == 200
    assert report(factory, "1.0", keys["1.0"], state="exiting", rc="0", ids="42").json()["state"] == "EXITING"
    assert report(factory, "2.0", keys["2.0"], state="fault").status_code == 200


def test_another_factory_cannot_use_its_keys_here(make_factory: Callable[[], FactoryClient]) -> None:
    mine, other = make_factory(), make_factory()
    key = new_pilot_key()
    create(mine, {"1.0": key})
    create(other, {"1.0": new_pilot_key()})
    require(other)
    assert report(other, "1.0", key).status_code == 403
    assert report(mine, "1.0", key).status_code == 200


def test_a_replayed_create_cannot_change_a_key(factory: FactoryClient) -> None:
    key = new_pilot_key()
    create(factory, {"1.0": key})
    again = factory.call(
        "PUT",
        "/jobs",
        [{"cid": "1.0", "label": LABEL, "factory": factory.name, "key_sha256": key_digest("x")}],
    )
    assert again.json()["duplicates"] == 1
    require(factory)
    assert report(factory, "1.0", key).status_code == 200


def test_a_bad_digest_is_rejected_item_by_item(factory: FactoryClient) -> None:
    jobs = [
        {"cid": "1.0", "label": LABEL, "factory": factory.name, "key_sha256": "F" * 64},
        {"cid": "2.0", "label": LABEL, "factory": factory.name, "key_sha256": "f" * 64},
    ]
    answer = factory.call("PUT", "/jobs", jobs)
    assert answer.json()["created"] == 1
    assert [r["errors"][0]["where"] for r in answer.json()["rejected"]] == ["key_sha256"]


def test_the_command_sets_and_shows_the_requirement(
    factory: FactoryClient, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", factory.monitor.settings.db_url]
    create(factory, {"1.0": None})
    assert main([*db, "pilot-keys", factory.name]) == 0
    assert f"factory {factory.name}: pilot keys optional" in capsys.readouterr().out
    assert main([*db, "pilot-keys", factory.name, "--require"]) == 0
    captured = capsys.readouterr()
    assert "pilot keys required" in captured.out
    assert "active pilots announced without a key: 1" in captured.out
    assert "those 1 pilots are now refused" in captured.err
    assert report(factory, "1.0", None).status_code == 403
    assert main([*db, "pilot-keys", factory.name, "--optional"]) == 0
    assert report(factory, "1.0", None).status_code == 200
    assert main([*db, "pilot-keys", "no-such-factory"]) == 1
    assert main([*db, "add-factory", f"{factory.name}-strict", "--require-pilot-keys"]) == 0
    capsys.readouterr()
    assert main([*db, "pilot-keys", f"{factory.name}-strict"]) == 0
    assert "pilot keys required" in capsys.readouterr().out


def test_the_factory_page_shows_the_setting_and_the_refusals(
    factory: FactoryClient, http: requests.Session
) -> None:
    create(factory, {"1.0": new_pilot_key()})
    require(factory)
    report(factory, "1.0", None)
    html = http.get(f"{factory.monitor.url}/factory/{factory.name}", timeout=10).text
    assert "required; refused reports: 1 without a key, 0 with a wrong one" in html
