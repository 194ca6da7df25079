"""How a pilot is invoked, whatever starts it: its argument words, its environment, its log dir.

Both backends start the same wrapper with the same words and variables; only the way they hand
them over differs. This module returns them exactly as the pilot must see them. A backend that
writes them into a file another program reads applies that program's escaping itself (the
HTCondor submit layer writes ``$`` as ``$(DOLLAR)`` and ``$$`` as ``$$(DOLLARDOLLAR)``, so that HTCondor
expands no macro of the operator's); the local backend passes them to ``posix_spawn`` as they are.

``arguments`` is a template: it is split into words like a shell would (quotes group words, a
backslash escapes, nothing is expanded), then ``%(field)s`` is filled in each word, and each word
reaches the wrapper as exactly one argument whatever it contains. A ``$`` the operator wrote is
passed on as it is. Fields:

    siteid            the PanDA site id (schedconfig ``siteid``; default the PanDA queue)
    pq                the PanDA queue name
    label             this label's name
    port              the PanDA server's port: from its URL, else 25443 (https) / 25080 (http)
    pandaserver       the PanDA server URL without the port: ``https://pandaserver.cern.ch``
    pandaserver_host  the PanDA server's host name
    pandaurl          ``scheme://host`` of the PanDA server (pilot 3's ``--url``)
    pilotUser         pilot 3's ``--pilot-user`` (``pilotUser``, default ATLAS)
    jobLabel          the job label the pilot asks for (``jobLabel``; by default what the queue runs)
    pilotType         pilot type / version tag (``pilotType``, default PR)
    resourceType      the label's PanDA resource type (SCORE, MCORE...; empty when it has none)
    corecount         cores per pilot
    maxrss            memory per pilot in MB
    factoryId         this factory's id

Write ``%%`` for a literal ``%``. An unknown field is a :class:`SubmitRenderError`.

After the template's words the factory appends, in this order: ``--resource-type <type>`` when
the label has a resource type and the template does not name ``--resource-type`` itself, the
wrapper's ``--piloturl <pilotURL>`` and ``--pilotversion <pilotVersion>`` when those are set, and
the words of ``pilotExtraArgs`` (split like the template, passed on to ``pilot.py``).

The environment is schedconfig's ``environ`` followed by the factory's own variables, which the
wrapper and the monitor rely on: ``APFFID`` (factory id), ``APFCID`` (the pilot's job id,
``cluster.proc``), ``APFMON`` (the monitor's URL), ``FACTORYQUEUE`` (the label), ``GTAG`` (the URL of
the pilot's stdout), ``PANDA_JSID`` (factory id) and, when the factory gives its pilots keys,
``APFMON_KEY`` (this pilot's own key for its record at the monitor, domain/pilot_keys.py). A key
is made per pilot by the backend at the moment it queues or starts that pilot, and is kept
nowhere else: never in a file under ``baseLogDir`` or the state directory, never in a log.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from urllib.parse import quote as url_quote
from urllib.parse import urlsplit

from autopyfactory.batch.interface import SubmitContext
from autopyfactory.domain.label import Label
from autopyfactory.domain.pilot_keys import KEY_VARIABLE

TEMPLATE_FIELDS = (
    "siteid", "pq", "label", "port", "pandaserver", "pandaserver_host", "pandaurl", "pilotUser", "jobLabel",
    "pilotType", "resourceType", "corecount", "maxrss", "factoryId",
)  # fmt: skip
DEFAULT_PANDA_PORTS = {"https": 25443, "http": 25080}
#: The variables the factory sets itself; schedconfig's ``environ`` cannot override them.
FACTORY_VARIABLES = ("APFFID", "APFCID", "APFMON", "FACTORYQUEUE", "GTAG", "PANDA_JSID", KEY_VARIABLE)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SubmitRenderError(ValueError):
    """A submission cannot be described (template, label, executable...); the message says why."""


def _panda_server(url: str) -> tuple[str, str, int]:
    """(URL without the port, host, port) of the PanDA server."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PANDA_PORTS or not parts.hostname:
        raise SubmitRenderError(f"pandaserver {url!r} is not an http(s) URL")
    try:
        port = parts.port or DEFAULT_PANDA_PORTS[parts.scheme]
    except ValueError as exc:
        raise SubmitRenderError(f"pandaserver {url!r}: {exc}") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{parts.path.rstrip('/')}", parts.hostname, port


def template_fields(label: Label, context: SubmitContext) -> dict[str, str | int]:
    """The values of the ``arguments`` template's fields for ``label`` (see the module doc)."""
    server, host, port = _panda_server(context.pandaserver)
    parts = urlsplit(server)
    pilot = label.pilot
    return {
        "siteid": label.siteid,
        "pq": label.pq,
        "label": label.name,
        "port": port,
        "pandaserver": server,
        "pandaserver_host": host,
        "pandaurl": f"{parts.scheme}://{parts.netloc}",
        "pilotUser": pilot.user,
        "jobLabel": pilot.job_label,
        "pilotType": pilot.pilot_type,
        "resourceType": label.resource_type or "",
        "corecount": label.resources.corecount,
        "maxrss": label.resources.maxrss,
        "factoryId": context.factory_id,
    }


def split_words(what: str, text: str) -> list[str]:
    """``text`` split like a shell line (nothing expanded); SubmitRenderError naming ``what``."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise SubmitRenderError(f"{what} {text!r}: {exc}") from None


def render_arguments(template: str, fields: Mapping[str, str | int]) -> list[str]:
    """The template's words with the fields filled in (see the module doc)."""
    words = split_words("arguments template", template)
    try:
        return [word % fields for word in words]
    except KeyError as exc:
        known = ", ".join(TEMPLATE_FIELDS)
        raise SubmitRenderError(
            f"arguments template {template!r}: unknown field %({exc.args[0]})s (known: {known})"
        ) from None
    except (ValueError, TypeError) as exc:
        raise SubmitRenderError(
            f"arguments template {template!r}: {exc} (write %% for a literal %)"
        ) from None


def pilot_arguments(label: Label, context: SubmitContext) -> list[str]:
    """The wrapper's argument words for ``label``: the template, then the appended options."""
    words = render_arguments(label.submit.arguments, template_fields(label, context))
    pilot = label.pilot
    if label.resource_type and not any(w.split("=")[0] == "--resource-type" for w in words):
        words += ["--resource-type", label.resource_type]
    if pilot.url:
        words += ["--piloturl", pilot.url]
    if pilot.version:
        words += ["--pilotversion", pilot.version]
    return words + split_words("pilotExtraArgs", pilot.extra_args)


def log_dir(base_log_dir: str, date: str, label: str) -> str:
    """``<baseLogDir>/<date>/<label>``: where a label's pilot logs and submit files go."""
    if not _DATE.match(date):
        raise SubmitRenderError(f"date {date!r} is not YYYY-MM-DD")
    if "/" in label or label in ("", ".", "..") or "\0" in label:
        raise SubmitRenderError(f"label {label!r} cannot name a directory")
    return f"{base_log_dir.rstrip('/') or '/'}/{date}/{label}"


def gtag(context: SubmitContext, label: str, job_id: str) -> str:
    """The URL of this pilot's stdout (empty when no baseLogDirUrl is configured)."""
    base = context.base_log_dir_url.rstrip("/")
    if not base:
        return ""
    return f"{base}/{context.date}/{url_quote(label, safe='')}/{job_id}.out"


def pilot_environment(
    label: Label, context: SubmitContext, job_id: str, key: str = ""
) -> list[tuple[str, str]]:
    """The pilot's environment: schedconfig ``environ`` first, then the factory's own variables
    (empty ones left out); ``job_id`` is the pilot's ``cluster.proc``, ``key`` its pilot key
    ("" for none).

    An ``environ`` entry that names one of the factory's variables is dropped (even when the
    factory leaves that variable out): the monitor and the logs rely on the factory's values.
    """
    own = dict.fromkeys(FACTORY_VARIABLES, "") | {
        "APFFID": context.factory_id,
        "APFCID": job_id,
        "APFMON": context.monitor_url,
        "FACTORYQUEUE": label.name,
        "GTAG": gtag(context, label.name, job_id),
        "PANDA_JSID": context.factory_id,
        KEY_VARIABLE: key,
    }
    extra = [(name, value) for name, value in label.resources.environ if name not in own]
    return extra + [(name, value) for name, value in own.items() if value]
