"""The monitor refusing the factory itself (HTTP 401/403: a wrong monitorToken) and a reload's
hand-over from the old monitor observer to the new one, against a real HTTP server on 127.0.0.1
that checks the token as the monitor does."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopyfactory.observers.monitor import MonitorObserver, MonitorSettings
from tests.support.cycle_data import observed_labels, tell_cycle
from tests.support.cycle_data import observed_report as report_for
from tests.support.refusing_monitor import TokenChecking, announced, refusals, serve_api
from tests.support.waiting import wait_for


@pytest.fixture
def labels(tmp_path):
    return observed_labels(tmp_path)


def observer(server, token: str, outbox: Path | None = None) -> MonitorObserver:
    """An observer that pauses for real between retries (hand_over wakes it); ``outbox``: the
    directory its pilot announcements wait in (none: in memory)."""
    settings = MonitorSettings(
        server.url_for("/api"), token, "mon-test", "o", "u", timeout=2.0, outbox_dir=str(outbox or "")
    )
    return MonitorObserver(settings)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_request_is_kept_and_said_why_not_dropped(httpserver, labels, status):
    serve_api(httpserver, TokenChecking("good", status))
    client = observer(httpserver, "wrong")
    client.start()
    tell_cycle(client, report_for(labels, job_ids=("1.0", "1.1")), labels)
    wait_for(lambda: refusals(httpserver) >= 2, what="the refused request tried again")
    assert client.refused == f"HTTP {status} invalid token"
    assert client.dropped == 0
    assert client.sent == 0
    assert client.pending() >= 3  # labels, pilots and messages wait behind the refused heartbeat
    client.close(0.1)


@pytest.mark.parametrize("on_disk", [True, False])
def test_a_reload_hands_the_refused_outbox_to_the_new_observer_and_every_pilot_arrives(
    httpserver, labels, tmp_path, on_disk
):
    """The new observer (the right token) gets every report the old one (the wrong token) could
    not send, once each: from the same outbox directory, or handed over in memory."""
    serve_api(httpserver, TokenChecking("good"))
    outbox = tmp_path / "outbox" if on_disk else None
    wrong = observer(httpserver, "wrong", outbox)
    wrong.start()
    tell_cycle(wrong, report_for(labels, job_ids=("1.0", "1.1")), labels)
    wait_for(lambda: refusals(httpserver) >= 2, what="the refused request tried again")

    right = observer(httpserver, "good", outbox)  # built before the swap, as a reload does
    tell_cycle(wrong, report_for(labels, job_ids=("2.0",)), labels)  # after it was built
    wrong.hand_over(right, timeout=5.0)
    right.start()
    wait_for(lambda: right.pending() == 0 and sorted(announced(httpserver)) == ["1.0", "1.1", "2.0"])
    assert right.refused == ""
    assert right.dropped == 0
    assert sorted(announced(httpserver)) == ["1.0", "1.1", "2.0"]  # each once
    if outbox is not None:
        assert list(outbox.iterdir()) == []  # every segment sent and gone
    right.close(1.0)


def test_the_refusal_ends_when_the_monitor_accepts_again(httpserver, labels):
    checking = TokenChecking("registered-later")
    serve_api(httpserver, checking)
    client = observer(httpserver, "tok")
    client.start()
    tell_cycle(client, report_for(labels, job_ids=("1.0",)), labels)
    wait_for(lambda: client.refused, what="the refusal")
    checking.token = "tok"  # the monitor's operator registers the factory's token
    wait_for(lambda: announced(httpserver) == ["1.0"], seconds=60)
    assert client.refused == ""
    client.close(1.0)
