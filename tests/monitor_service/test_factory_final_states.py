"""POST /api/factories/{fid}/jobs: the factory's batch view of its pilots (cron helpers), applied
through legal moves only, with a per-job answer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from autopyfactory.monitor_service.states import JobState
from autopyfactory.monitor_service.store import batch_plan
from tests.support.monitor import FactoryClient

LABEL = "CERN-PROD_UCORE-ce503.cern.ch-condor"


def _post(factory: FactoryClient, *reports: dict[str, object]) -> dict[str, object]:
    answer = factory.call("POST", f"/factories/{factory.name}/jobs", list(reports))
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def _events(factory: FactoryClient, cid: str) -> list[tuple[str | None, str]]:
    events = factory.job(cid)["events"]
    assert isinstance(events, list)
    return [(e["old_state"], e["new_state"]) for e in events]


def test_completed_while_running_passes_through_exiting(factory: FactoryClient) -> None:
    factory.create(LABEL, "1.0")
    factory.pilot("1.0", state="running")
    body = _post(factory, {"cid": "1.0", "state": "done", "rc": 0, "reason": "Completed"})
    assert body["changed"] == 1
    assert body["jobs"] == [
        {"cid": "1.0", "result": "changed", "state": "DONE", "detail": "RUNNING -> EXITING -> DONE"}
    ]
    job = factory.job("1.0")
    assert (job["state"], job["rc"]) == ("DONE", 0)
    assert _events(factory, "1.0")[-2:] == [("RUNNING", "EXITING"), ("EXITING", "DONE")]


def test_completed_while_created_is_a_fault(factory: FactoryClient) -> None:
    factory.create(LABEL, "2.0")
    body = _post(factory, {"cid": "2.0", "state": "done", "rc": 1})
    job = body["jobs"][0]  # type: ignore[index]
    assert (job["result"], job["state"]) == ("changed", "FAULT")
    assert "never reported running" in job["detail"]
    assert factory.job("2.0")["rc"] == 1


def test_completed_while_created_but_ran_passes_through_exiting(factory: FactoryClient) -> None:
    """All the wrapper's reports were lost (a monitor outage); the factory says from the batch
    system's exit code that the pilot ran: CREATED -> EXITING -> DONE with its rc, not FAULT."""
    factory.create(LABEL, "2.2", "2.3")
    body = _post(
        factory,
        {"cid": "2.2", "state": "done", "rc": 20, "ran": True},
        {"cid": "2.3", "state": "exiting", "rc": 0, "ran": True},
    )
    done, exiting = body["jobs"]  # type: ignore[misc]
    assert (done["result"], done["state"]) == ("changed", "DONE")
    assert done["detail"].startswith(
        "CREATED -> EXITING -> DONE (finished in the batch system, its exit code"
    )
    assert (factory.job("2.2")["state"], factory.job("2.2")["rc"]) == ("DONE", 20)
    assert _events(factory, "2.2")[-2:] == [("CREATED", "EXITING"), ("EXITING", "DONE")]
    assert (exiting["state"], factory.job("2.3")["rc"]) == ("EXITING", 0)


def test_wrapper_rc_wins_and_exiting_becomes_done(factory: FactoryClient) -> None:
    factory.create(LABEL, "3.0")
    factory.pilot("3.0", state="running")
    factory.pilot("3.0", state="exiting", rc="20")
    _post(factory, {"cid": "3.0", "state": "done", "rc": 0})
    job = factory.job("3.0")
    assert (job["state"], job["rc"]) == ("DONE", 20)


def test_replays_and_final_jobs_are_unchanged(factory: FactoryClient) -> None:
    factory.create(LABEL, "4.0", "4.1")
    factory.pilot("4.1", state="fault")
    first = _post(factory, {"cid": "4.0", "state": "fault", "reason": "Removed"})
    assert first["changed"] == 1
    again = _post(factory, {"cid": "4.0", "state": "fault"}, {"cid": "4.1", "state": "done"})
    assert (again["changed"], again["unchanged"]) == (0, 2)
    assert [j["detail"] for j in again["jobs"]] == ["already FAULT, final", "already FAULT, final"]  # type: ignore[union-attr]
    assert len(_events(factory, "4.0")) == 2  # created, fault: the replay left no trace


def test_unknown_cids_are_answered_not_refused(factory: FactoryClient) -> None:
    body = _post(factory, {"cid": "99.0", "state": "done"})
    assert (body["unknown"], body["jobs"][0]["result"], body["jobs"][0]["state"]) == (1, "unknown", None)  # type: ignore[index]


def test_flag_keeps_the_state_and_a_report_clears_it(factory: FactoryClient) -> None:
    factory.create(LABEL, "5.0")
    body = _post(factory, {"cid": "5.0", "state": "flag", "reason": "idle for 25 h"})
    assert body["jobs"][0]["detail"] == "flagged"  # type: ignore[index]
    job = factory.job("5.0")
    assert (job["state"], job["flagged"]) == ("CREATED", True)
    assert _post(factory, {"cid": "5.0", "state": "flag"})["unchanged"] == 1
    factory.pilot("5.0", state="running")
    assert factory.job("5.0")["flagged"] is False


def test_only_the_owner_may_report(factory: FactoryClient, make_factory: Callable[[], FactoryClient]) -> None:
    other = make_factory()
    factory.create(LABEL, "6.0")
    url = f"/factories/{factory.name}/jobs"
    assert other.call("POST", url, [{"cid": "6.0", "state": "fault"}]).status_code == 403
    assert factory.call("POST", url, [{"cid": "6.0", "state": "fault"}], headers={}).status_code == 401
    assert factory.job("6.0")["state"] == "CREATED"


@pytest.mark.parametrize(
    "report",
    [
        {"cid": "1.0", "state": "running"},
        {"cid": "x", "state": "done"},
        {"cid": "1.0", "state": "done", "rc": 300},
    ],
)
def test_bad_reports_are_left_out_and_the_good_ones_applied(
    factory: FactoryClient, report: dict[str, object]
) -> None:
    """One bad item of a bulk request costs only itself."""
    factory.create(LABEL, "9.0")
    good = {"cid": "9.0", "state": "fault"}
    answer = factory.call("POST", f"/factories/{factory.name}/jobs", [report, good])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [item["index"] for item in body["rejected"]] == [0]
    assert body["changed"] == 1
    assert factory.job("9.0")["state"] == "FAULT"


def test_the_list_is_bounded(factory: FactoryClient) -> None:
    reports = [{"cid": f"{n}.0", "state": "fault"} for n in range(5001)]
    assert factory.call("POST", f"/factories/{factory.name}/jobs", reports).status_code == 422


def test_many_reports_in_one_request(factory: FactoryClient) -> None:
    cids = [f"70.{n}" for n in range(600)]  # more than one store chunk
    factory.create(LABEL, *cids)
    body = _post(factory, *({"cid": cid, "state": "fault"} for cid in cids))
    assert body["changed"] == 600


@pytest.mark.parametrize("ran", [False, True])
@pytest.mark.parametrize("state", list(JobState))
@pytest.mark.parametrize("request_", ["done", "exiting", "fault", "removed", "flag"])
def test_every_planned_move_is_legal(state: JobState, request_: str, ran: bool) -> None:
    plan = batch_plan(request_, state, flagged=False, ran=ran)
    assert not (plan.path and state.final)
    if state.final:
        assert plan.path == ()
        assert not plan.flag
