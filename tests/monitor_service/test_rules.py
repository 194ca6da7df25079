"""The state machine as the API enforces it: illegal moves refused with 409 and recorded, replays
idempotent, pilots unable to create or resurrect jobs, concurrent reports serialised."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import sqlalchemy as sa

from tests.support.monitor import FactoryClient

LABEL = "L"


@pytest.mark.parametrize(
    ("steps", "refused", "final_state"),
    [
        (["exiting", "running"], "running", "EXITING"),  # running never after exiting
        (["running", "exiting", "running"], "running", "EXITING"),
        (["fault", "running"], "running", "FAULT"),  # FAULT is final
        (["fault", "exiting"], "exiting", "FAULT"),
        (["running", "fault", "fault", "exiting"], "exiting", "FAULT"),
    ],
)
def test_illegal_transitions_are_refused_and_recorded(
    factory: FactoryClient, steps: list[str], refused: str, final_state: str
) -> None:
    factory.create(LABEL, "1.0")
    answers = [factory.pilot("1.0", state=step) for step in steps]
    assert [a.status_code for a in answers[:-1]] == [200] * (len(steps) - 1)
    last = answers[-1]
    assert last.status_code == 409
    assert "illegal transition" in last.json()["detail"]
    job = factory.job("1.0")
    assert job["state"] == final_state
    events = job["events"]
    assert isinstance(events, list)
    rejected = [e for e in events if not e["accepted"]]
    assert len(rejected) == 1
    assert rejected[0]["new_state"] == refused.upper()
    assert rejected[0]["source"] == "127.0.0.1"
    assert rejected[0]["text"].startswith("illegal transition")


def test_done_is_final(factory: FactoryClient) -> None:
    factory.create(LABEL, "2.0")
    factory.pilot("2.0", state="running")
    factory.pilot("2.0", state="exiting", rc="0")
    factory.monitor.clock.advance(factory.monitor.settings.expiry.exiting * 2)
    factory.monitor.services.expiry.run()
    assert factory.job("2.0")["state"] == "DONE"
    for state in ("running", "exiting", "fault"):
        assert factory.pilot("2.0", state=state).status_code == 409


def test_replayed_reports_change_nothing(factory: FactoryClient) -> None:
    factory.create(LABEL, "3.0")
    first = factory.pilot("3.0", state="running")
    again = factory.pilot("3.0", state="running")
    assert (first.json()["changed"], again.json()["changed"]) == (True, False)
    assert again.status_code == 200
    factory.pilot("3.0", state="exiting", rc="0", ids="5")
    replay = factory.pilot("3.0", state="exiting", rc="1", ids="6")
    assert replay.status_code == 200
    assert replay.json()["changed"] is False
    job = factory.job("3.0")
    assert (job["rc"], job["ids"]) == (0, "5")  # the replay did not overwrite
    assert len(job["events"]) == 3  # type: ignore[arg-type]


def test_replayed_creates_are_idempotent(factory: FactoryClient) -> None:
    assert factory.create(LABEL, "4.0", "4.1").json()["created"] == 2
    factory.pilot("4.0", state="running")
    again = factory.create(LABEL, "4.0", "4.1", "4.2", "4.2")
    assert again.status_code == 200
    # 4.0 and 4.1 are recorded as asked already, 4.2 is new; its repetition is the duplicate
    assert again.json() == {"created": 3, "duplicates": 1, "labels_created": 0, "rejected": []}
    assert factory.job("4.0")["state"] == "RUNNING"  # a replayed create does not reset the job
    assert len(factory.job("4.1")["events"]) == 1  # type: ignore[arg-type]
    other_label = factory.create("OTHER", "4.1")
    assert other_label.json() == {"created": 0, "duplicates": 1, "labels_created": 1, "rejected": []}
    assert factory.job("4.1")["label"] == LABEL  # the first announcement stands


def _rows(factory: FactoryClient) -> tuple[int, ...]:
    """How many jobs, job events and labels the monitor holds, and the last job change."""
    with factory.monitor.services.db.read() as session:
        counts = session.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM job_events),"
                " (SELECT count(*) FROM labels), (SELECT count(*) FROM jobs WHERE state <> 'CREATED')"
            )
        ).one()
    return tuple(counts)


def test_a_repeated_bulk_create_is_answered_as_the_first(factory: FactoryClient) -> None:
    """A slow monitor's client sends a timed-out create again (several labels, pilot key digests,
    one pilot already running): the server writes nothing more (no job, event or label row, no
    state reset) and gives the same answer, so the factory's accounting is unchanged."""
    items = [
        {"cid": f"8.{n}", "label": f"{LABEL}-{n % 3}", "factory": factory.name}
        | ({"key_sha256": f"{n:064x}"} if n % 2 else {})
        for n in range(50)
    ]
    first = factory.call("PUT", "/jobs", items)
    assert first.status_code == 200
    assert first.json() == {"created": 50, "duplicates": 0, "labels_created": 3, "rejected": []}
    factory.pilot("8.0", state="running")
    before = _rows(factory)
    for _ in range(2):
        again = factory.call("PUT", "/jobs", items)
        assert again.status_code == 200
        assert again.json() == {**first.json(), "labels_created": 0}
        assert _rows(factory) == before
    assert factory.job("8.0")["state"] == "RUNNING"


def test_replayed_labels_update_in_place(factory: FactoryClient, http: requests.Session) -> None:
    assert factory.labels("A", "B").json() == {"created": 2, "updated": 0, "rejected": []}
    assert factory.labels("A", "B", pq="OTHER_PQ").json() == {"created": 0, "updated": 2, "rejected": []}
    labels = http.get(f"{factory.monitor.api}/factories/{factory.name}/labels", timeout=10).json()
    assert {lab["batchqueue"] for lab in labels} == {"OTHER_PQ"}


def test_pilots_cannot_create_jobs(factory: FactoryClient, http: requests.Session) -> None:
    answer = factory.pilot("99.0", state="running")
    assert answer.status_code == 404
    assert "has not announced it" in answer.json()["detail"]
    assert http.get(f"{factory.monitor.url}/mon/rn/{factory.name}/99.0/", timeout=10).status_code == 404
    assert http.get(f"{factory.monitor.api}/jobs/{factory.name}:99.0", timeout=10).status_code == 404


def test_same_cid_in_two_factories_are_two_jobs(make_factory: object) -> None:
    one, two = make_factory(), make_factory()  # type: ignore[operator]
    one.create(LABEL, "5.0")
    two.create(LABEL, "5.0")
    one.pilot("5.0", state="fault")
    assert two.job("5.0")["state"] == "CREATED"


def test_concurrent_reports_are_serialised(factory: FactoryClient, http: requests.Session) -> None:
    """Many wrappers at once, and the same report raced: one winner each, no error."""
    cids = [f"6.{n}" for n in range(20)]
    factory.create(LABEL, *cids)

    def report(cid: str) -> int:
        with requests.Session() as session:
            session.trust_env = False
            return session.post(
                f"{factory.monitor.api}/jobs/{factory.name}:{cid}", data={"state": "running"}, timeout=30
            ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(report, cids * 3))
    assert statuses == [200] * 60
    for cid in cids[:5]:
        job = factory.job(cid)
        assert job["state"] == "RUNNING"
        assert [e["new_state"] for e in job["events"]] == ["CREATED", "RUNNING"]  # type: ignore[attr-defined]


def test_concurrent_bulk_creates(factory: FactoryClient) -> None:
    cids = [f"7.{n}" for n in range(200)]

    def create(_: int) -> dict[str, int]:
        with requests.Session() as session:
            session.trust_env = False
            answer = session.put(
                f"{factory.monitor.api}/jobs",
                json=[{"cid": c, "label": LABEL, "factory": factory.name} for c in cids],
                headers={"Authorization": f"Bearer {factory.token}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            result: dict[str, int] = answer.json()
            return result

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(create, range(4)))
    assert [(r["created"], r["duplicates"]) for r in results] == [(200, 0)] * 4  # each as if it were first
    assert sum(r["labels_created"] for r in results) == 1
    assert [e["new_state"] for e in factory.job(cids[0])["events"]] == ["CREATED"]  # type: ignore[index]


def test_concurrent_bulk_creates_in_opposite_orders(factory: FactoryClient) -> None:
    """Replays of one announcement in different orders (PostgreSQL runs them in parallel
    transactions): no deadlock, each job created once with one CREATED event."""
    rounds = [[f"{cluster}.{n}" for n in range(300)] for cluster in range(20, 26)]

    def create(args: tuple[list[str], bool]) -> tuple[int, dict[str, int]]:
        cids, backwards = args
        items = [{"cid": c, "label": LABEL, "factory": factory.name} for c in cids]
        with requests.Session() as session:
            session.trust_env = False
            answer = session.put(
                f"{factory.monitor.api}/jobs",
                json=items[::-1] if backwards else items,
                headers={"Authorization": f"Bearer {factory.token}"},
                timeout=60,
            )
            return answer.status_code, answer.json()

    work = [(cids, n % 2 == 1) for cids in rounds for n in range(4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(create, work))
    assert [status for status, _ in answers] == [200] * len(work), answers
    assert [(body["created"], body["duplicates"]) for _, body in answers] == [(300, 0)] * len(work)
    for cids in rounds:
        assert [e["new_state"] for e in factory.job(cids[-1])["events"]] == ["CREATED"]  # type: ignore[index]
