"""Server-rendered pages (Jinja2, autoescaped; charts as inline SVG; CSS served by the service).

Each page is a *view function* (services and request values in, a :class:`Page` out: template
name, context and the JSON twins that return the same data) and a route that renders it. The
views read only through :class:`~autopyfactory.monitor_service.queries.Queries`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup

from autopyfactory import __version__
from autopyfactory.monitor_service.charts import Frame, activity_svg, legend
from autopyfactory.monitor_service.deps import Services, ServicesDep
from autopyfactory.monitor_service.errors import NotFound
from autopyfactory.monitor_service.queries import Activity
from autopyfactory.monitor_service.schemas import HOURS_MAX, JobOut, LabelOut
from autopyfactory.monitor_service.states import JobState

HERE = Path(__file__).parent
TEMPLATES, STATIC = HERE / "templates", HERE / "static"

Health = Literal["ok", "warning", "error"]
MESSAGE_WARNING = timedelta(minutes=10)  # a label's last cycle message older than this: warning
MESSAGE_ERROR = timedelta(minutes=30)  # older than this: error
LAST_JOBS = 100  # jobs listed on a label page
EVENTS_PAGE = 100  # events per job page
STATES = [state.value for state in JobState]
LOG_SUFFIXES = ("out", "err", "log")
WIDE = Frame(width=720, height=120, top=14, bottom=14)  # the chart of a factory, label or PQ page


@dataclass(frozen=True)
class Page:
    """What a view returns: the template, its values and the JSON twins of the page."""

    template: str
    context: dict[str, Any]
    json: dict[str, str] = field(default_factory=dict)  # name -> API path
    status: int = 200


# --- pure helpers ----------------------------------------------------------------------------------


def ago(when: datetime | None, now: datetime) -> str:
    """``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h`` (``never`` for None)."""
    if when is None:
        return "never"
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes} min"
    if hours < 24:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def message_health(at: datetime | None, now: datetime) -> Health:
    """A label's last cycle message: ok when fresh, warning after 10 min, error after 30 min."""
    if at is None:
        return "error"
    age = now - at
    if age < MESSAGE_WARNING:
        return "ok"
    return "warning" if age < MESSAGE_ERROR else "error"


_PAIR = re.compile(r"""(\w+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")
_STEP = re.compile(r"^([A-Za-z][\w.-]*): in=(-?\d+)(.*?) -> (-?\d+)$")


def message_fields(head: str) -> dict[str, str]:
    """The ``key=value`` pairs of a cycle message's head (quoted values unquoted)."""
    return {key: value.strip("'\"") for key, value in _PAIR.findall(head)}


def limiting_steps(tail: str) -> list[str]:
    """``MaxPending 15`` for every policy step that lowered the number (``in=N ... -> M``, M < N)."""
    found = []
    for text in tail.split("; "):
        match = _STEP.match(text.strip())
        if match is None or int(match[4]) >= int(match[2]):
            continue
        plugin, reason = match[1], message_fields(match[3])
        if plugin == "Disabled":  # autopyfactory queue disable: the operator's reason says why
            found.append(f"disabled by the operator: {match[3].rsplit(': ', 1)[-1].strip()}")
            continue
        found.append(f"{plugin} {reason['max']}" if "max" in reason else f"{plugin} {match[2]} → {match[4]}")
    return found


def humanise(text: str) -> str | None:
    """``12 pilots submitted: 812 activated, 3 pending, 10 running, MaxPending 15`` from a label's
    cycle message; None when the message is not in the factory's format (show it as it is)."""
    head, _, tail = text.partition(" | ")
    values = message_fields(head)
    if "decision" not in values or "submitted" not in values:
        return None
    submitted = values["submitted"]
    first = f"{submitted} pilot{'' if submitted == '1' else 's'} submitted"
    if values["decision"] != submitted:
        first += f" of {values['decision']} decided"
    details = [f"{values['activated']} activated"] if "activated" in values else []
    if "idle" in values and "held" in values and values["idle"].isdigit() and values["held"].isdigit():
        details.append(f"{int(values['idle']) + int(values['held'])} pending")
    details += [f"{values[key]} {key}" for key in ("running", "held") if values.get(key, "0") != "0"]
    details += limiting_steps(tail)
    if "error" in values:
        details.append(f"error: {values['error']}")
    return f"{first}: {', '.join(details)}" if details else first


def log_links(url: str, created_at: datetime, label: str, cid: str) -> list[tuple[str, str]]:
    """``(name, href)`` of a pilot's out/err/log under the factory's log URL; none without a URL
    (or with one that is not http(s), which a link must never run)."""
    if not url.startswith(("http://", "https://")):
        return []
    day = created_at.astimezone(UTC).strftime("%Y-%m-%d")
    base = f"{url.rstrip('/')}/{day}/{quote(label, safe='')}/{quote(cid, safe='')}"
    return [(suffix, f"{base}.{suffix}") for suffix in LOG_SUFFIXES]


def chart(activity: Activity, frame: Frame | None = None) -> Markup:
    """The activity chart, already escaped (see :func:`charts.activity_svg`)."""
    span = span_text(activity.bin_minutes * len(activity.created))
    return Markup(activity_svg(activity.series(), span, frame=frame))  # noqa: S704 - every text in it is escaped


#: The chart ranges the factory, label and PQ pages link (``?hours=``).
RANGES = ((6, "6 h"), (24, "24 h"), (168, "7 d"))


def span_text(minutes: int) -> str:
    """``45 min``, ``6 h``, ``7 d``: the length of a chart's window."""
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60 or minutes % (24 * 60):
        return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes / 60:.1f} h"
    return f"{minutes // (24 * 60)} d"


def ranges(hours: int) -> list[dict[str, Any]]:
    """The range links of a page shown over ``hours``."""
    return [{"hours": h, "text": text, "current": h == hours} for h, text in RANGES]


def chart_context(activity: Activity, hours: int) -> dict[str, Any]:
    """What the templates' chart block shows: the chart, its window, the range links."""
    shown = activity.bin_minutes * len(activity.created)
    return {
        "chart": chart(activity, WIDE),
        "span": span_text(shown),
        "young": shown < hours * 60,
        "ranges": ranges(hours),
    }


def label_row(label: LabelOut, now: datetime) -> dict[str, Any]:
    return {
        "label": label,
        "human": humanise(label.last_message),
        "age": ago(label.last_message_at, now),
        "health": message_health(label.last_message_at, now),
    }


def job_row(job: JobOut, url: str) -> dict[str, Any]:
    return {"job": job, "logs": log_links(url, job.created_at, job.label, job.cid)}


# --- views -----------------------------------------------------------------------------------------


def index_view(svc: Services) -> Page:
    now = svc.settings.clock()
    factories = svc.queries.overview()
    rows = [{"f": f, "age": ago(f.last_seen, now), "chart": chart(f.activity)} for f in factories]
    return Page("index.html", {"title": "Factories", "rows": rows}, {"factories": "/api/overview"})


#: How the factory page can order its labels (``?sort=``); ``worst`` first is the default.
Sort = Literal["worst", "name", "pq", "ce", "faults", "running", "message", "nojob", "refused"]
_HEALTH_RANK = {"error": 0, "warning": 1, "ok": 2}


def sort_labels(rows: list[dict[str, Any]], how: Sort) -> list[dict[str, Any]]:
    """Label rows in the order ``how``; ``worst``: stale or missing messages (error), then old
    ones (warning), then most faults, then by name."""
    keys: dict[str, Any] = {
        "worst": lambda r: (_HEALTH_RANK[r["health"]], -r["label"].counts.FAULT, r["label"].name),
        "name": lambda r: r["label"].name,
        "pq": lambda r: (r["label"].batchqueue, r["label"].name),
        "ce": lambda r: (r["label"].resource, r["label"].name),
        "faults": lambda r: (-r["label"].counts.FAULT, r["label"].name),
        "running": lambda r: (-r["label"].counts.RUNNING, r["label"].name),
        "message": lambda r: (r["label"].last_message_at is not None, r["label"].last_message_at or 0),
        "nojob": lambda r: (-r["label"].outcomes.no_job_percent, r["label"].name),
        "refused": lambda r: (-r["label"].outcomes.refused_percent, r["label"].name),
    }
    return sorted(rows, key=keys[how])


def filter_labels(rows: list[dict[str, Any]], text: str, health: str) -> list[dict[str, Any]]:
    """Rows whose label, PQ or CE contains ``text`` (any case) and whose health is ``health``."""
    needle = text.strip().lower()

    def keep(row: dict[str, Any]) -> bool:
        label = row["label"]
        haystack = f"{label.name} {label.batchqueue} {label.resource} {label.localqueue}".lower()
        return needle in haystack and (not health or row["health"] == health)

    return [row for row in rows if keep(row)]


def factory_view(
    svc: Services, fid: str, hours: int = 24, sort: Sort = "worst", q: str = "", health: str = ""
) -> Page:
    now = svc.settings.clock()
    detail = svc.queries.factory(fid, hours)
    every = [label_row(label, now) for label in svc.queries.labels(fid, hours)]
    labels = sort_labels(filter_labels(every, q, health), sort)
    context = {
        "title": f"Factory {fid}",
        "f": detail,
        "age": ago(detail.last_seen, now),
        "labels": labels,
        "all_labels": len(every),
        "sort": sort,
        "filter": {"q": q, "health": health, "hours": hours},
        **chart_context(svc.queries.factory_activity(fid, hours), hours),
    }
    api = f"/api/factories/{quote(fid)}"
    twins = {"factory": api, "labels": api + "/labels", "activity": f"{api}/activity?hours={hours}"}
    return Page("factory.html", context, twins)


def label_view(svc: Services, fid: str, name: str, hours: int = 24) -> Page:
    now = svc.settings.clock()
    detail = svc.queries.label(fid, name, hours)
    url = svc.queries.factory_url(fid)
    jobs = svc.queries.jobs(fid, name, None, LAST_JOBS, 0)
    messages = [{"m": m, "age": ago(m.at, now), "human": humanise(m.text)} for m in detail.messages]
    context = {
        "title": f"{fid} / {name}",
        "fid": fid,
        "l": detail,
        "row": label_row(detail, now),
        "outcomes": detail.outcomes,
        "messages": messages,
        "jobs": [job_row(job, url) for job in jobs.jobs],
        "total": jobs.total,
        **chart_context(svc.queries.label_activity(fid, name, hours), hours),
    }
    api = f"/api/labels/{quote(fid)}:{quote(name)}"
    twins = {
        "label": api,
        "jobs": api + "/jobs",
        "outcomes": api + "/outcomes",
        "activity": f"{api}/activity?hours={hours}",
    }
    return Page("label.html", context, twins)


def job_view(svc: Services, fid: str, cid: str, offset: int = 0) -> Page:
    now = svc.settings.clock()
    job = svc.queries.job(fid, cid, EVENTS_PAGE, offset)
    url = svc.queries.factory_url(fid)
    events = [{"e": e, "age": ago(e.at, now)} for e in job.events]
    pages = {
        "first": offset + 1 if job.events else offset,
        "last": offset + len(job.events),
        "previous": max(0, offset - EVENTS_PAGE) if offset > 0 else None,
        "next": offset + EVENTS_PAGE if offset + EVENTS_PAGE < job.events_total else None,
    }
    context = {"title": f"Job {fid}:{cid}", "j": job, "events": events, "pages": pages, **job_row(job, url)}
    api = f"/api/jobs/{quote(fid)}:{quote(cid)}" + (f"?limit={EVENTS_PAGE}&offset={offset}" if offset else "")
    return Page("job.html", context, {"job": api})


def pq_view(svc: Services, pq: str, hours: int = 24) -> Page:
    now = svc.settings.clock()
    detail = svc.queries.pq(pq, hours)
    context = {
        "title": f"PanDA queue {pq}",
        "pq": detail,
        "labels": [label_row(label, now) for label in detail.labels],
        **chart_context(svc.queries.pq_activity(pq, hours), hours),
    }
    api = f"/api/pqs/{quote(pq)}"
    return Page("pq.html", context, {"pq": api, "activity": f"{api}/activity?hours={hours}"})


def report_view(svc: Services, hours: int, min_created: int, min_percent: float) -> Page:
    report = svc.queries.faults(hours, min_created, min_percent)
    query = f"hours={hours}&min_created={min_created}&min_percent={min_percent:g}"
    return Page(
        "report.html", {"title": "Fault report", "r": report}, {"report": f"/api/report/faults?{query}"}
    )


def search_view(svc: Services, q: str) -> Page:
    result = svc.queries.search(q) if q.strip() else None
    hits = result.hits if result else []
    return Page("search.html", {"title": "Search", "hits": hits}, {"search": f"/api/search?q={quote(q)}"})


def not_found(message: str) -> Page:
    return Page("error.html", {"title": "Not found", "message": message}, status=404)


# --- rendering and routes ----------------------------------------------------------------------------


@functools.cache
def environment() -> jinja2.Environment:
    """The templates, autoescaped; an undefined name is an error, not an empty string."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(states=STATES, legend=Markup(legend()), version=__version__)  # noqa: S704
    return env


def render(page: Page, svc: Services, q: str = "") -> HTMLResponse:
    context = {**page.context, "json": page.json, "q": q, "now": svc.settings.clock()}
    html = environment().get_template(page.template).render(context)
    return HTMLResponse(html, status_code=page.status)


def show(svc: Services, view: Any, *args: Any) -> HTMLResponse:
    """Render ``view(svc, *args)``, or a 404 page when it names something unknown."""
    try:
        page: Page = view(svc, *args)
    except NotFound as exc:
        page = not_found(str(exc))
    return render(page, svc)


router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
Hours = Annotated[int, Query(ge=1, le=HOURS_MAX)]


@router.get("/")
def index(svc: ServicesDep) -> HTMLResponse:
    return show(svc, index_view)


@router.get("/factory/{fid}")
def factory(
    fid: str,
    svc: ServicesDep,
    hours: Hours = 24,
    sort: Sort = "worst",
    q: Annotated[str, Query(max_length=128)] = "",
    health: Literal["", "ok", "warning", "error"] = "",
) -> HTMLResponse:
    return show(svc, factory_view, fid, hours, sort, q, health)


@router.get("/factory/{fid}/{label}")
def label(fid: str, label: str, svc: ServicesDep, hours: Hours = 24) -> HTMLResponse:
    return show(svc, label_view, fid, label, hours)


@router.get("/job/{key}")
def job(key: str, svc: ServicesDep, offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> HTMLResponse:
    fid, sep, cid = key.partition(":")
    if not sep:
        return render(not_found(f"a job is <factory>:<cid>, not {key!r}"), svc)
    return show(svc, job_view, fid, cid, offset)


@router.get("/pq/{pq}")
def pq(pq: str, svc: ServicesDep, hours: Hours = 24) -> HTMLResponse:
    return show(svc, pq_view, pq, hours)


@router.get("/report")
def report(
    svc: ServicesDep,
    hours: Hours = 24,
    min_created: Annotated[int, Query(ge=1, le=10**9)] = 20,
    min_percent: Annotated[float, Query(ge=0, le=100, allow_inf_nan=False)] = 20.0,
) -> HTMLResponse:
    return show(svc, report_view, hours, min_created, min_percent)


@router.get("/search")
def search(svc: ServicesDep, q: Annotated[str, Query(max_length=128)] = "") -> HTMLResponse:
    return render(search_view(svc, q), svc, q)


def install(app: FastAPI) -> None:
    """Add the pages and their static files (``/static``) to ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
