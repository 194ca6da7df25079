"""PanDA statistics client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest
from werkzeug import Response

from autopyfactory.http import make_session
from autopyfactory.panda import STATS_PATH, PandaClient, PandaError, PandaView, parse_stats

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


def test_view_keeps_the_last_good_answer_until_it_is_too_old(httpserver):
    clock = Clock()
    view = PandaView(client_for(httpserver), max_age=600, clock=clock)
    httpserver.expect_oneshot_request(STATS_PATH).respond_with_json(REAL_ANSWER)
    stats, problem = view.update()
    assert stats is not None and stats["CERN"].activated == 812 and problem == ""

    httpserver.expect_oneshot_request(STATS_PATH).respond_with_data("down", status=500)
    clock.now += 300
    stats, problem = view.update()
    assert stats is not None and stats["CERN"].activated == 812 and problem == ""

    httpserver.expect_oneshot_request(STATS_PATH).respond_with_data("down", status=500)
    clock.now += 301
    stats, problem = view.update()
    assert stats is None
    assert "last good statistics are 601 s old (pandaMaxAge 600)" in problem


def test_view_without_any_good_answer_has_no_data(httpserver):
    httpserver.expect_request(STATS_PATH).respond_with_json({"success": False, "message": "maintenance"})
    stats, problem = PandaView(client_for(httpserver), 600, Clock()).update()
    assert stats is None
    assert "maintenance" in problem and "no earlier statistics" in problem


def test_unreachable_server_is_no_data():
    client = PandaClient("http://127.0.0.1:9", make_session(0), 1.0)
    with pytest.raises(PandaError):
        client.fetch()
