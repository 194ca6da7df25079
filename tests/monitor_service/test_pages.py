"""The monitor's pages: pure helpers (message humaniser, ages, log links, SVG charts), the view
functions over a realistic data set, and the rendered HTML and JSON twins from a live server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from autopyfactory.monitor_service import pages
from autopyfactory.monitor_service.charts import Frame, activity_svg, points
from autopyfactory.monitor_service.queries import like
from tests.support.monitor import Monitor, local_session, new_factory, running_monitor, sqlite_url
from tests.support.monitor_dataset import (
    BNL_UCORE,
    EVIL,
    MCORE,
    MESSAGE,
    T0,
    UCORE,
    Dataset,
    fill,
)

# --- pure helpers ---------------------------------------------------------------------------------


def test_humanise_the_factory_message() -> None:
    assert (
        pages.humanise(MESSAGE) == "12 pilots submitted: 812 activated, 3 pending, 10 running, MaxPending 15"
    )


@pytest.mark.parametrize(
    ("text", "human"),
    [
        (
            "L pq=P activated=0 share=0 idle=0 running=0 held=0 decision=0 submitted=0 | "
            "Ready: in=0 activated=0 offset=0 pending=0 -> 0",
            "0 pilots submitted: 0 activated, 0 pending",
        ),
        (
            "L pq=P activated=unknown pilots=unknown decision=0 submitted=0 | Ready: in=0 -> 0",
            "0 pilots submitted: unknown activated",
        ),
        (
            "L pq=P activated=9 idle=1 running=0 held=2 decision=5 submitted=0 error='condor: boom x' | "
            "Ready: in=0 -> 9; MaxPerCycle: in=9 max=5 -> 5",
            "0 pilots submitted of 5 decided: 9 activated, 3 pending, 2 held, MaxPerCycle 5, "
            "error: condor: boom x",
        ),
        (
            "L decision=1 submitted=1 | Odd: in=7 -> 1; garbage; Other: in=2 -> 3",
            "1 pilot submitted: Odd 7 → 1",
        ),
        ("the factory said something else", None),
        ("", None),
    ],
)
def test_humanise_parses_defensively(text: str, human: str | None) -> None:
    assert pages.humanise(text) == human


def test_a_disabled_queue_shows_the_operators_reason() -> None:
    text = (
        "L pq=P activated=50 share=25 idle=0 running=0 held=0 decision=0 submitted=0 | Classic: in=0 "
        "activated=25 pending=0 nqueue=5 -> 5; Disabled: in=5 PQ P disabled by root since "
        "2026-11-30 11:58 UTC until 2026-11-30 18:00 UTC: CE upgrade -> 0"
    )
    human = pages.humanise(text)
    assert human == "0 pilots submitted: 50 activated, 0 pending, disabled by the operator: CE upgrade"


def test_ages_and_health_of_messages() -> None:
    now = T0
    assert pages.ago(None, now) == "never"
    assert pages.ago(now - timedelta(seconds=42), now) == "42 s"
    assert pages.ago(now - timedelta(minutes=12), now) == "12 min"
    assert pages.ago(now - timedelta(hours=3, minutes=5), now) == "3 h 5 min"
    assert pages.ago(now - timedelta(days=2, hours=4), now) == "2 d 4 h"
    assert pages.ago(now + timedelta(minutes=1), now) == "0 s"
    assert pages.message_health(now - timedelta(minutes=9), now) == "ok"
    assert pages.message_health(now - timedelta(minutes=10), now) == "warning"
    assert pages.message_health(now - timedelta(minutes=30), now) == "error"
    assert pages.message_health(None, now) == "error"


def test_log_links_use_the_utc_day_of_creation() -> None:
    created = datetime(2025, 3, 1, 23, 30, tzinfo=UTC)
    links = pages.log_links("https://apf.example.org/logs/", created, "A+B", "12.0")
    assert links == [
        (suffix, f"https://apf.example.org/logs/2025-03-01/A%2BB/12.0.{suffix}")
        for suffix in ("out", "err", "log")
    ]
    assert pages.log_links("", created, "A", "1.0") == []
    assert pages.log_links("javascript:alert(1)", created, "A", "1.0") == []


def test_activity_svg_is_escaped_and_scaled() -> None:
    svg = activity_svg({"created": [0, 4, 2], "fault": [1, 0, 0]}, span="<24 h>")
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert "&lt;24 h&gt;" in svg
    assert "<24 h>" not in svg
    assert "created 6, running 0, done 0, fault 1 in &lt;24 h&gt;" in svg
    assert svg.count("<polyline") == 1  # created; running and done are zero throughout
    assert '<g class="series-fault" fill="#d62728"><rect ' in svg
    assert svg.count("<rect ") == 1
    frame = Frame(width=20, height=30, left=0, right=0, top=0, bottom=10)
    assert points([0, 2, 4], 4, frame) == "0.0,20.0 10.0,10.0 20.0,0.0"
    assert points([0, 0], 0, frame) == "0.0,20.0 20.0,20.0"


def test_zero_faults_draw_nothing_red() -> None:
    quiet = activity_svg({"created": [3, 4, 2], "running": [1, 2, 2], "done": [0, 1, 0], "fault": [0, 0, 0]})
    assert "series-fault" not in quiet
    assert "#d62728" not in quiet
    assert quiet.count("<polyline") == 3
    some = activity_svg({"created": [3, 4, 2], "fault": [0, 2, 0]})
    assert some.count("<rect ") == 1
    assert "<title>fault 2</title>" in some


def test_chart_windows_fit_the_range_and_a_young_factory() -> None:
    from autopyfactory.monitor_service.queries import Window, bin_for

    assert [bin_for(timedelta(hours=h)) for h in (6, 24, 168)] == [
        timedelta(minutes=5),
        timedelta(minutes=10),
        timedelta(hours=1),
    ]
    day = Window.last(T0, timedelta(hours=24))
    assert (day.start, day.width, day.bins) == (T0 - timedelta(hours=24), timedelta(minutes=10), 144)
    young = Window.last(T0, timedelta(hours=24), born=T0 - timedelta(hours=2))
    assert (young.start, young.width, young.bins) == (T0 - timedelta(hours=2), timedelta(minutes=5), 24)
    newborn = Window.last(T0, timedelta(days=7), born=T0 - timedelta(minutes=3))
    assert (newborn.width, newborn.bins) == (timedelta(minutes=5), 12)  # at least an hour
    spans = [pages.span_text(m) for m in (45, 360, 1440, 10080, 1490)]
    assert spans == ["45 min", "6 h", "24 h", "7 d", "24.8 h"]


def test_like_escapes_wildcards() -> None:
    assert like("A_b%c\\") == "%a\\_b\\%c\\\\%"


# --- a realistic data set ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(db_url: str) -> Iterator[Dataset]:
    with running_monitor(db_url) as service, local_session() as http:
        yield fill(service, http)


def get(data: Dataset, path: str, status: int = 200) -> str:
    answer = requests.get(data.monitor.url + path, timeout=10)
    assert answer.status_code == status, answer.text[:500]
    return answer.text


def row_of(html: str, marker: str) -> str:
    """The ``<tr>`` of a table that contains ``marker``."""
    for row in re.findall(r"<tr.*?</tr>", html, flags=re.S):
        if marker in row:
            return row
    raise AssertionError(f"no row with {marker!r}")


# --- view functions ----------------------------------------------------------------------------------


def test_index_view(data: Dataset) -> None:
    page = pages.index_view(data.monitor.services)
    rows = {row["f"].name: row for row in page.context["rows"]}
    assert {name: row["f"].status for name, row in rows.items()} == {
        "BNL-apf02": "warning",
        "CERN-apf01": "ok",
        "stale-apf03": "error",
    }
    cern = rows["CERN-apf01"]["f"]
    assert cern.created_1h == 0  # the last pilots were created 1 h 42 min ago
    assert cern.running == 8  # two labels, the pilots of the last hour
    assert cern.faults_6h == 10  # MCORE: 2 per hour, 5 hours of the last 6
    assert sum(cern.activity.created) == 2 * 4 * 23  # the first hour is older than 24 h
    assert rows["CERN-apf01"]["age"] == "2 min"
    assert page.json == {"factories": "/api/overview"}


def test_factory_view(data: Dataset) -> None:
    page = pages.factory_view(data.monitor.services, "CERN-apf01")
    health = {row["label"].name: row["health"] for row in page.context["labels"]}
    assert health == {MCORE: "warning", UCORE: "ok"}
    ucore = next(row for row in page.context["labels"] if row["label"].name == UCORE)
    assert ucore["human"].startswith("12 pilots submitted: 812 activated")
    assert ucore["label"].counts.FAULT == 0
    assert ucore["label"].counts.RUNNING == 4
    assert "<svg" in page.context["chart"]


def test_label_view(data: Dataset) -> None:
    page = pages.label_view(data.monitor.services, "CERN-apf01", UCORE)
    ctx = page.context
    assert [m["human"].split(" ")[0] for m in ctx["messages"]] == ["12", "7", "3"]
    assert len(ctx["jobs"]) == ctx["total"] == 96
    newest = ctx["jobs"][0]
    assert newest["job"].cid == "1023.3"
    assert newest["job"].state.value == "CREATED"
    assert newest["logs"][0] == ("out", f"http://CERN-apf01.example.org/logs/2025-03-02/{UCORE}/1023.3.out")
    # 22 hours of exits in the last 24 h: rc 0, 0, 20, 0 per hour (two hours' DONE left the window)
    assert (ctx["outcomes"].payload, ctx["outcomes"].miss, ctx["outcomes"].other) == (66, 22, 0)


def test_job_view(data: Dataset) -> None:
    page = pages.job_view(data.monitor.services, "CERN-apf01", "2005.3")
    timeline = [(e["e"].old_state, e["e"].new_state.value) for e in page.context["events"]]
    assert [new for _, new in timeline] == ["CREATED", "RUNNING", "FAULT"]
    assert page.context["logs"][2][1].endswith(f"/2025-03-01/{MCORE}/2005.3.log")


def test_pq_view_spans_factories(data: Dataset) -> None:
    page = pages.pq_view(data.monitor.services, "CERN-PROD_UCORE")
    assert {(row["label"].factory, row["label"].name) for row in page.context["labels"]} == {
        ("BNL-apf02", BNL_UCORE),
        ("CERN-apf01", UCORE),
    }
    assert page.context["pq"].counts.RUNNING == 8


def test_report_view_worst_first(data: Dataset) -> None:
    report = pages.report_view(data.monitor.services, 24, 10, 20.0).context["r"]
    assert [(row.factory, row.label) for row in report.labels] == [("CERN-apf01", MCORE)]
    assert pages.report_view(data.monitor.services, 24, 10, 60.0).context["r"].labels == []


def test_search_view(data: Dataset) -> None:
    hits = pages.search_view(data.monitor.services, "cern-prod_u").context["hits"]
    assert {(hit.kind, hit.name) for hit in hits} == {
        ("label", UCORE),
        ("label", BNL_UCORE),
        ("pq", "CERN-PROD_UCORE"),
        ("site", "CERN-PROD_UCORE"),
    }
    assert pages.search_view(data.monitor.services, "%").context["hits"] == []
    assert pages.search_view(data.monitor.services, "  ").context["hits"] == []


# --- rendered pages and JSON twins -----------------------------------------------------------------


def test_index_page(data: Dataset) -> None:
    html = get(data, "/")
    assert 'class="health ok"' in row_of(html, "CERN-apf01")
    assert 'class="health warning"' in row_of(html, "BNL-apf02")
    assert 'class="health error"' in row_of(html, "stale-apf03")
    assert "<svg" in row_of(html, "CERN-apf01")
    assert "http://" not in html.split("<svg", 1)[0].split("<body>")[1]
    assert 'href="/api/overview"' in html
    assert 'href="/static/monitor.css"' in html


def test_pages_escape_what_factories_send(data: Dataset) -> None:
    html = get(data, "/factory/stale-apf03")
    assert EVIL not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; done" in html


def test_label_page(data: Dataset) -> None:
    html = get(data, f"/factory/CERN-apf01/{UCORE}")
    assert html.index('id="jobs"') < html.index('id="messages"')  # the pilots before the history
    assert "12 pilots submitted: 812 activated, 3 pending, 10 running, MaxPending 15" in html
    assert 'href="/job/CERN-apf01:1023.0"' in html
    assert f'href="http://CERN-apf01.example.org/logs/2025-03-02/{UCORE}/1023.0.err"' in html
    assert '<td class="num" id="miss">22</td>' in html


def test_chart_range_links(data: Dataset) -> None:
    six = get(data, "/factory/CERN-apf01?hours=6")
    assert "Activity, last 6 h</h2>" in six
    assert "<strong>6 h</strong>" in six
    assert 'href="/factory/CERN-apf01?hours=24"' in six
    assert 'href="/factory/CERN-apf01?hours=168"' in six
    assert 'href="/api/factories/CERN-apf01/activity?hours=6"' in six
    week = get(data, "/factory/CERN-apf01?hours=168")
    assert "<strong>7 d</strong>" in week
    assert "(all there is so far)" in week  # about a day old
    label = get(data, f"/factory/CERN-apf01/{UCORE}?hours=6")
    assert f'href="/factory/CERN-apf01/{UCORE}?hours=168"' in label
    assert 'href="/pq/CERN-PROD_UCORE?hours=6"' in get(data, "/pq/CERN-PROD_UCORE?hours=24")
    twin = requests.get(data.monitor.url + "/api/factories/CERN-apf01/activity?hours=6", timeout=10).json()
    assert (twin["bin_minutes"], len(twin["created"])) == (5, 72)


def test_factory_page_sorts_and_filters_labels_worst_first(data: Dataset) -> None:
    html = get(data, "/factory/CERN-apf01")
    assert html.index(f'data-label="{MCORE}"') < html.index(f'data-label="{UCORE}"')  # warning first
    assert '<span class="muted" id="shown">2 of 2 labels, <strong>worst first ▾</strong>' in html
    assert 'href="/factory/CERN-apf01?hours=24&amp;q=&amp;health=&amp;sort=name"' in html
    one = get(data, "/factory/CERN-apf01?q=prod_ucore")
    assert f'data-label="{UCORE}"' in one
    assert f'data-label="{MCORE}"' not in one
    assert ">1 of 2 labels" in one
    warning = get(data, "/factory/CERN-apf01?health=warning&sort=name")
    assert f'data-label="{MCORE}"' in warning
    assert f'data-label="{UCORE}"' not in warning
    assert "<strong>label ▾</strong>" in warning
    get(data, "/factory/CERN-apf01?sort=nonsense", status=422)


def test_worst_first_order() -> None:
    from types import SimpleNamespace

    def row(name: str, health: str, faults: int) -> dict[str, object]:
        counts = SimpleNamespace(FAULT=faults, RUNNING=0)
        return {"label": SimpleNamespace(name=name, counts=counts), "health": health}

    rows = [row("a", "ok", 9), row("b", "error", 0), row("c", "warning", 1), row("d", "ok", 50)]
    rows.append(row("e", "error", 3))
    assert [r["label"].name for r in pages.sort_labels(rows, "worst")] == ["e", "b", "c", "d", "a"]


def test_job_and_pq_and_report_pages(data: Dataset) -> None:
    html = get(data, "/job/CERN-apf01:2005.3")
    assert "FAULT" in html
    assert "127.0.0.1" in html
    assert "BNL-apf02" in get(data, "/pq/CERN-PROD_UCORE")
    report = get(data, "/report?hours=24&min_created=10&min_percent=20")
    assert MCORE in row_of(report, "suspect")
    assert 'href="/api/report/faults?hours=24&amp;min_created=10&amp;min_percent=20"' in report
    assert "No label above" in get(data, "/report?min_percent=90")


def test_search_page(data: Dataset) -> None:
    html = get(data, "/search?q=bnl")
    assert 'href="/factory/BNL-apf02"' in html
    assert 'value="bnl"' in html
    assert "Nothing matches" in get(data, "/search?q=nothing-like-this")


def test_unknown_names_are_404_pages(data: Dataset) -> None:
    for path in ("/factory/nope", "/factory/CERN-apf01/nope", "/job/CERN-apf01:9.9", "/job/x", "/pq/NOPE"):
        assert "Not found" in get(data, path, 404)


def test_static_css(data: Dataset) -> None:
    answer = requests.get(data.monitor.url + "/static/monitor.css", timeout=10)
    assert answer.status_code == 200
    assert ".health.ok" in answer.text


def test_json_twins(data: Dataset) -> None:
    base = data.monitor.api
    overview = requests.get(base + "/overview", timeout=10).json()
    assert [f["name"] for f in overview] == ["BNL-apf02", "CERN-apf01", "stale-apf03"]
    assert len(overview[1]["activity"]["created"]) == 144
    activity = requests.get(base + "/factories/CERN-apf01/activity", timeout=10).json()
    assert activity["created"] == overview[1]["activity"]["created"]
    label = requests.get(f"{base}/labels/CERN-apf01:{UCORE}/activity", timeout=10).json()
    assert sum(label["created"]) == 92
    outcomes = requests.get(f"{base}/labels/CERN-apf01:{UCORE}/outcomes", timeout=10).json()
    assert outcomes == {
        "hours": 24, "payload": 66, "miss": 22, "refused": 0, "getjob_failure": 0, "killed": 0, "wrapper": 0,
        "other": 0, "exited": 88, "no_job_percent": 25.0, "refused_percent": 0.0,
    }  # fmt: skip
    pq = requests.get(base + "/pqs/CERN-PROD_UCORE/activity", timeout=10).json()
    assert sum(pq["created"]) == 184
    hits = requests.get(base + "/search", params={"q": "infn"}, timeout=10).json()["hits"]
    assert {h["kind"] for h in hits} == {"label", "pq", "site"}
    assert requests.get(base + "/factories/nope/activity", timeout=10).status_code == 404


def test_empty_service_pages(tmp_path: Path, http: requests.Session) -> None:
    with running_monitor(sqlite_url(tmp_path)) as monitor:
        _empty_pages(monitor, http)


def _empty_pages(monitor: Monitor, http: requests.Session) -> None:
    assert "No factory has registered yet." in http.get(monitor.url + "/", timeout=10).text
    client = new_factory(monitor, http)
    client.labels("L1")
    html = http.get(f"{monitor.url}/factory/{client.name}", timeout=10).text
    assert "never" in html
    assert "(no message yet)" in html


@pytest.mark.parametrize(
    ("rc", "outcome"),
    [(0, "payload"), (20, "miss"), (79, "getjob_failure"), (137, "killed"), (143, "killed"), (114, "wrapper"),
     (118, "wrapper"), (1, "other"), (68, "other"), (128, "other"), (None, "other")],
)  # fmt: skip
def test_pilot_exit_codes_are_named_per_label(rc: int | None, outcome: str) -> None:
    """The wrapper's exit code table (docs/wrapper.md), as the label page counts it."""
    from autopyfactory.monitor_service.queries import rc_outcome

    assert rc_outcome(rc) == outcome
