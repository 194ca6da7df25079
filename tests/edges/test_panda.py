"""PanDA statistics client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest
from werkzeug import Response

from autopyfactory.domain.demand import PandaError
from autopyfactory.edges.http import make_session
from autopyfactory.edges.panda import REASON_CHARS, STATS_PATH, PandaClient, PandaView, parse_stats

REAL_ANSWER = {
    "success": True,
    "message": "",
    "data": {
        "CERN": {"activated": 812, "assigned": 0, "running": 15320, "starting": 41, "holding": 77,
                 "transferring": 120, "defined": 3},
        "AGLT2": {"activated": 0, "assigned": 0, "running": 2210},
        "null": {"activated": 5, "assigned": 0, "running": 0},
    },
}  # fmt: skip


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def client_for(httpserver, retries=0, timeout=2.0, **kwargs) -> PandaClient:
    return PandaClient(httpserver.url_for("/"), make_session(retries, backoff=0), timeout, **kwargs)


def test_parses_the_real_envelope_and_ignores_jobs_without_a_site(httpserver):
    httpserver.expect_request(STATS_PATH, headers={"Accept": "application/json"}).respond_with_json(
        REAL_ANSWER
    )
    stats = client_for(httpserver).fetch()
    assert set(stats) == {"CERN", "AGLT2"}
    assert stats["CERN"].activated == 812
    assert stats["CERN"].transferring == 120
    assert stats["AGLT2"].transferring == 0


def test_sends_the_token_and_origin_when_configured(httpserver, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    httpserver.expect_request(
        STATS_PATH, headers={"Authorization": "Bearer s3cret", "Origin": "atlas"}
    ).respond_with_json(REAL_ANSWER)
    assert client_for(httpserver, token_file=str(token), vo="atlas").fetch()["CERN"].activated == 812


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"success": False, "message": "db down"}, "success=False: db down"),
        ({"success": True, "data": []}, "'data' is a list"),
        ({"success": True, "data": {"CERN": {"activated": "7"}}}, "activated='7' is not a count"),
        ({"success": True, "data": {"CERN": {"activated": -1}}}, "activated=-1 is not a count"),
        ({"success": True, "data": {"CERN": {"activated": True}}}, "activated=True is not a count"),
        ({"success": True, "data": {"CERN": [1, 2]}}, "counts are a list"),
        ({"success": "yes", "data": {}}, "success='yes'"),
        ([1, 2, 3], "answer is a list"),
    ],
)
def test_bad_answers_are_rejected_whole(payload, message):
    with pytest.raises(PandaError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_stats(payload)


def test_http_error_non_json_and_python_repr_are_no_data(httpserver):
    client = client_for(httpserver)
    httpserver.expect_oneshot_request(STATS_PATH).respond_with_data("boom", status=500)
    with pytest.raises(PandaError, match="HTTP 500"):
        client.fetch()
    httpserver.expect_oneshot_request(STATS_PATH).respond_with_data("{'CERN': {'activated': 3}}")
    with pytest.raises(PandaError, match="not JSON"):
        client.fetch()


def test_retries_a_server_error_then_succeeds(httpserver):
    httpserver.expect_ordered_request(STATS_PATH).respond_with_data("busy", status=503)
    httpserver.expect_ordered_request(STATS_PATH).respond_with_json(REAL_ANSWER)
    assert client_for(httpserver, retries=2).fetch()["CERN"].activated == 812
    assert len(httpserver.log) == 2


def test_a_slow_server_times_out(httpserver):
    import time

    def slow(_request):
        time.sleep(0.5)
        return Response(json.dumps(REAL_ANSWER), content_type="application/json")

    httpserver.expect_request(STATS_PATH).respond_with_handler(slow)
    with pytest.raises(PandaError):
        client_for(httpserver, timeout=0.1).fetch()


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (200, '{"success": false, "message": "Database failure getting the job statistics", "data": {}}',
         "Database failure"),
        (500, "internal error", "HTTP 500: internal error"),
        (200, "{'success': True}", "not JSON"),
    ],
    ids=["drained", "http-500", "repr"],
)  # fmt: skip
def test_a_failed_answer_is_no_data_even_right_after_a_good_one(httpserver, status, body, why):
    """Nothing PanDA no longer confirms is used: a drained server looks exactly like a failing one."""
    clock = Clock()
    view = PandaView(client_for(httpserver), clock=clock)
    httpserver.expect_oneshot_request(STATS_PATH).respond_with_json(REAL_ANSWER)
    reading = view.update()
    assert reading.ok
    assert reading.stats is not None
    assert reading.stats["CERN"].activated == 812
    assert reading.problem == ""
    assert reading.last_good == clock.now

    httpserver.expect_oneshot_request(STATS_PATH).respond_with_data(body, status=status)
    clock.now += 1
    reading = view.update()
    assert reading.stats is None
    assert not reading.ok
    assert why in reading.problem
    assert reading.last_good == clock.now - 1  # remembered for the reports, never reused
    assert reading.describe(clock.now + 4).startswith(
        "no PanDA data (last good answer 5 s old, not used), nothing submitted: PanDA: "
    )


def test_view_without_any_good_answer_has_no_data(httpserver):
    httpserver.expect_request(STATS_PATH).respond_with_json({"success": False, "message": "maintenance"})
    reading = PandaView(client_for(httpserver), Clock()).update()
    assert reading.stats is None
    assert reading.last_good is None
    assert "maintenance" in reading.problem
    assert "no good answer since start" in reading.describe(Clock().now)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, "ERROR : Token authentication failed\nmore", "HTTP 403: ERROR : Token authentication failed"),
        (403, "ERROR : method  is forbidden", "HTTP 403: ERROR : method  is forbidden"),
        (404, "", "HTTP 404"),
    ],
)  # fmt: skip
def test_http_errors_carry_the_servers_reason(httpserver, status, body, expected):
    httpserver.expect_request(STATS_PATH).respond_with_data(body, status=status)
    with pytest.raises(PandaError) as caught:
        client_for(httpserver).fetch()
    assert str(caught.value).endswith(expected)


def test_the_reason_is_the_first_line_and_bounded(httpserver):
    httpserver.expect_request(STATS_PATH).respond_with_data("\n  " + "x" * 5000 + "\nsecond", status=500)
    with pytest.raises(PandaError) as caught:
        client_for(httpserver).fetch()
    reason = str(caught.value).split("HTTP 500: ", 1)[1]
    assert len(reason) == REASON_CHARS
    assert reason.endswith("...")
    assert "second" not in reason


def test_unreachable_server_is_no_data():
    client = PandaClient("http://127.0.0.1:9", make_session(0), 1.0)
    with pytest.raises(PandaError):
        client.fetch()


def test_fetches_the_detailed_answer_when_asked(httpserver):
    from autopyfactory.edges.panda import DETAILED_PATH

    data = {"CERN": {"MCORE": {"managed": {"activated": 4, "assigned": 0, "running": 2}}}, "null": {}}
    httpserver.expect_request(DETAILED_PATH, headers={"Accept": "application/json"}).respond_with_json(
        {"success": True, "message": "", "data": data}
    )
    stats = client_for(httpserver).fetch(detailed=True)
    assert set(stats) == {"CERN"}
    assert stats["CERN"].activated == 4
    assert stats["CERN"].count("activated", "MCORE", ("managed",)) == 4
