"""Factory tokens: every factory write needs one, and a token only writes its own factory's data;
pilot reports need none; tokens are stored as digests and can be replaced."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from autopyfactory.monitor_service.auth import token_digest
from autopyfactory.monitor_service.errors import AlreadyExists
from autopyfactory.monitor_service.models import Factory
from tests.support.monitor import FactoryClient

Write = Callable[[FactoryClient, dict[str, str]], requests.Response]

WRITES: dict[str, Write] = {
    "heartbeat": lambda f, h: f.call("PUT", f"/factories/{f.name}", {"version": "1"}, h),
    "labels": lambda f, h: f.call(
        "PUT", "/labels", [{"name": "L", "factory": f.name, "batchqueue": "PQ"}], h
    ),
    "jobs": lambda f, h: f.call("PUT", "/jobs", [{"cid": "1.0", "label": "L", "factory": f.name}], h),
    "message": lambda f, h: f.call("POST", f"/labels/{f.name}:L", {"status": "hello"}, h),
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
@pytest.mark.parametrize(
    "token",
    [
        "",  # "Authorization: Bearer " with nothing
        "apfm_" + "x" * 43,  # the right shape, unknown
        "not-a-token",
        "apfm_" + "é" * 10,
    ],
)
def test_invalid_tokens_get_401(factory: FactoryClient, write: Write, token: str) -> None:
    answer = write(factory, bearer(token))
    assert answer.status_code == 401, answer.text
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert "token" in answer.json()["detail"]


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}],
    ids=["none", "basic", "empty"],
)
def test_missing_authorization_gets_401(
    factory: FactoryClient, write: Write, headers: dict[str, str]
) -> None:
    answer = write(factory, headers)
    assert answer.status_code == 401, answer.text
    assert "missing" in answer.json()["detail"]


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_another_factorys_token_gets_403(make_factory: Callable[[], FactoryClient], write: Write) -> None:
    victim, intruder = make_factory(), make_factory()
    answer = write(victim, bearer(intruder.token))
    assert answer.status_code == 403, answer.text
    assert intruder.name in answer.json()["detail"]
    assert write(victim, bearer(victim.token)).status_code == 200


def test_a_bulk_write_with_one_foreign_record_is_refused_whole(
    make_factory: Callable[[], FactoryClient],
) -> None:
    mine, other = make_factory(), make_factory()
    jobs = [
        {"cid": "1.0", "label": "L", "factory": mine.name},
        {"cid": "1.1", "label": "L", "factory": other.name},
    ]
    assert mine.call("PUT", "/jobs", jobs).status_code == 403
    assert mine.session.get(f"{mine.monitor.api}/jobs/{mine.name}:1.0", timeout=10).status_code == 404


def test_unknown_factory_in_path_with_a_valid_token_is_403(factory: FactoryClient) -> None:
    assert factory.call("PUT", "/factories/nobody", {"version": "1"}).status_code == 403


def test_pilot_reports_and_reads_need_no_token(factory: FactoryClient, http: requests.Session) -> None:
    factory.create("L", "1.0")
    assert (
        http.post(f"{factory.monitor.api}/jobs/{factory.name}:1.0", data={"state": "running"}).status_code
        == 200
    )
    assert http.get(f"{factory.monitor.api}/factories/{factory.name}/labels", timeout=10).status_code == 200


def test_tokens_are_stored_as_digests_and_can_be_replaced(factory: FactoryClient) -> None:
    store = factory.monitor.services.store
    with factory.monitor.services.db.read() as session:
        stored = session.query(Factory.token_hash).filter(Factory.name == factory.name).scalar()
    assert stored == token_digest(factory.token)
    assert factory.token not in stored
    with pytest.raises(AlreadyExists):
        store.add_factory(factory.name)
    old = factory.token
    factory.token = store.add_factory(factory.name, new_token_if_exists=True)
    assert factory.heartbeat().status_code == 200
    assert factory.call("PUT", f"/factories/{factory.name}", {}, bearer(old)).status_code == 401
