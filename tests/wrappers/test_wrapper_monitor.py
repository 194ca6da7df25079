"""The real wrapper against the real monitor (a SQLite service on 127.0.0.1): a factory that requires
pilot keys gets its pilot's reports when the wrapper carries the pilot's key, refuses them (403,
counted, not retried) when it carries another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from autopyfactory.domain.pilot_keys import key_digest, new_pilot_key
from tests.support.monitor import Monitor, start_monitor
from tests.support.wrapper_harness import CID, FID, JOB_ID, Wrapper
from tests.support.wrapper_servers import RecordingServer

pytestmark = pytest.mark.slow


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    service = start_monitor("sqlite:///" + str(tmp_path / "monitor.sqlite"))
    try:
        yield service
    finally:
        service.server.stop()


def _announce(monitor: Monitor, key: str) -> None:
    store = monitor.services.store
    token = store.add_factory(FID)
    store.set_pilot_keys(FID, required=True)
    job = {"cid": CID, "label": "KEYED-L", "factory": FID, "key_sha256": key_digest(key)}
    answer = requests.put(
        monitor.api + "/jobs", json=[job], headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text


def _job(monitor: Monitor) -> dict[str, object]:
    found: dict[str, object] = requests.get(f"{monitor.api}/jobs/{FID}:{CID}", timeout=10).json()
    return found


def test_the_pilots_key_gets_its_reports_in(
    wrapper: Wrapper, monitor: Monitor, server: RecordingServer
) -> None:
    key = new_pilot_key()
    _announce(monitor, key)
    wrapper.env.update({"APFMON": monitor.api, "APFMON_KEY": key})

    result = wrapper.run()

    assert result.rc == 0, result.stdout + result.stderr
    job = _job(monitor)
    assert (job["state"], job["rc"], job["ids"]) == ("EXITING", 0, JOB_ID)
    assert [e["new_state"] for e in job["events"]] == ["CREATED", "RUNNING", "EXITING"]  # type: ignore[attr-defined]


def test_another_key_is_refused_and_not_retried(wrapper: Wrapper, monitor: Monitor) -> None:
    _announce(monitor, new_pilot_key())
    wrapper.env.update({"APFMON": monitor.api, "APFMON_KEY": new_pilot_key(), "APFMON_RETRIES": "5"})

    result = wrapper.run()

    assert result.rc == 0  # the pilot is not affected
    assert result.log_lines("WARNING: monitor refused running (HTTP 403), not retrying")
    assert result.log_lines("WARNING: monitor refused exiting (HTTP 403), not retrying")
    assert _job(monitor)["state"] == "CREATED"
    detail = requests.get(f"{monitor.api}/factories/{FID}", timeout=10).json()
    assert detail["key_refusals"]["wrong_key"] == 2
