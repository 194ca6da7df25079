"""The configuration schema: every key of factory.conf, its type, default and help, in one table.

The table drives parsing and validation (loader.py), the "did you mean" hints, ``check`` output
and the configuration reference in the README (``autopyfactory config-reference`` prints it; a
test keeps the README current). Keys are matched case-insensitively, as configparser does, and
shown in their canonical spelling. The policy steps' keys come from the policy's registry
(``domain/policy.py``), where each step declares its own.

The module is long because the table is: one entry per key with its help text. It stays one
table so that a key is defined in one place.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from autopyfactory.config.selection import parse_selection
from autopyfactory.config.submit_attributes import parse_submit_attributes
from autopyfactory.domain.names import label_problem
from autopyfactory.domain.policy import DEFAULT_CHAIN, STEPS, PolicyOption


class Scope(enum.Enum):
    FACTORY = "Factory"  # only in [Factory]
    QUEUE = "queue"  # in [QueueDefaults] and in queue sections


@dataclass(frozen=True)
class Kind:
    """A value type: its name for the docs and a parser that raises ValueError with a clear text."""

    name: str
    parse: Callable[[str], object]


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _parse_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


_BOOLEANS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def _parse_bool(text: str) -> bool:
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"expected true or false, got {text!r}") from None


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _optional(kind: Kind) -> Kind:
    """An optional value: empty (or ``none``) means unset."""

    def parse(text: str) -> object:
        return None if text.strip().lower() in ("", "none") else kind.parse(text)

    return Kind(f"{kind.name} (empty = unset)", parse)


def _choice(*choices: str) -> Kind:
    def parse(text: str) -> str:
        value = text.strip()
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise ValueError(f"expected one of {', '.join(choices)}; got {text!r}")

    return Kind("one of " + ", ".join(choices), parse)


def _identifier(text: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ValueError(f"expected 1-64 letters, digits, '_', '.' or '-'; got {text!r}")
    return value


def _plugins(text: str) -> tuple[str, ...]:
    names = _parse_list(text)
    if not names:
        raise ValueError("expected at least one plugin name")
    canonical = {name.lower(): name for name in STEPS.names()}
    unknown = [n for n in names if n.lower() not in canonical]
    if unknown:
        raise UnknownPluginError(unknown[0], sorted(STEPS.names()))
    return tuple(canonical[n.lower()] for n in names)


class UnknownPluginError(ValueError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown plugin {name!r}")
        self.name = name
        self.known = known


INT = Kind("integer", _parse_int)
FLOAT = Kind("number", _parse_float)
BOOL = Kind("boolean", _parse_bool)
STR = Kind("string", str.strip)
LIST = Kind("comma-separated list", _parse_list)


def _parse_int_list(text: str) -> frozenset[int]:
    return frozenset(_parse_int(item) for item in _parse_list(text))


def _panda_url(text: str) -> str:
    """A PanDA base URL, ``scheme://host[:port]``; a path is rejected with the URL to write instead.

    Rejected rather than cut: ``PANDA_URL_SSL`` (``.../server/panda``) is the usual thing to paste,
    and the factory builds both ``/api/v1/...`` and the pilot's ``--url`` from this value.
    """
    value = text.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected http(s)://host[:port], got {text.strip()!r}")
    if parts.path or parts.query or parts.fragment:
        base = f"{parts.scheme}://{parts.netloc}"
        raise ValueError(
            f"the base URL of the PanDA server takes no path ({parts.path or '?' + parts.query!r}); "
            f"write {base!r} (PANDA_URL_SSL's /server/panda is not part of it)"
        )
    return value


PANDA_URL = Kind("URL", _panda_url)
QUEUE_SELECTION = Kind("cric: field=value ... (empty = none)", parse_selection)


def _label_name(text: str) -> str:
    value = text.strip()
    problem = label_problem(value) if value else None
    if problem:
        raise ValueError(f"not a label name ({problem}): {value!r}")
    return value


LABEL_NAME = Kind("label name (empty = unset)", _label_name)

#: PanDA's resource types (its resource_types table); the sizing rules are in autoconfigure.py.
RESOURCE_TYPE_NAMES = ("SCORE", "MCORE", "SCORE_HIMEM", "MCORE_HIMEM")


def _resource_types(text: str) -> tuple[str, ...]:
    names = tuple(name.upper() for name in _parse_list(text))
    if names == ("AUTO",):
        return ("auto",)
    unknown = [name for name in names if name not in RESOURCE_TYPE_NAMES]
    if unknown:
        raise ValueError(f"expected auto or some of {', '.join(RESOURCE_TYPE_NAMES)}; got {unknown[0]!r}")
    return tuple(dict.fromkeys(names))


RESOURCE_TYPES = Kind("auto, or a list of resource types", _resource_types)
INT_SET = Kind("comma-separated whole numbers", _parse_int_list)
IDENT = Kind("identifier", _identifier)
PLUGIN_LIST = Kind("comma-separated plugin names", _plugins)
SUBMIT_ATTRIBUTES = Kind("HTCondor submit commands, one `key = value` per line", parse_submit_attributes)


@dataclass(frozen=True)
class Option:
    key: str
    kind: Kind
    default: object
    help: str
    scope: Scope = Scope.QUEUE
    required: bool = False
    minimum: float | None = None
    #: the CRIC panda-queue field that fills this queue option (precedence: above [QueueDefaults])
    schedconfig: str | None = None

    def parse(self, text: str) -> object:
        if self.required and not text.strip():
            raise ValueError("a value is required")
        value = self.kind.parse(text)
        if self.minimum is not None and isinstance(value, int | float) and value < self.minimum:
            raise ValueError(f"must be at least {self.minimum:g}, got {value}")
        return value


def _factory(key: str, kind: Kind, default: object, text: str, **extra: object) -> Option:
    return Option(key, kind, default, text, Scope.FACTORY, **extra)  # type: ignore[arg-type]


#: The value kind of each type a policy step's option may have.
_POLICY_KINDS: tuple[tuple[object, Kind], ...] = ((int, INT), (float, FLOAT), (int | None, _optional(INT)))


def _policy_option(declared: PolicyOption) -> Option:
    """A queue option declared by a policy step (see domain/policy.py)."""
    kind = next(kind for type_, kind in _POLICY_KINDS if type_ == declared.type)
    return Option(
        declared.key,
        kind,
        declared.default,
        declared.help,
        minimum=declared.minimum,
        schedconfig=declared.schedconfig,
    )


#: Pilot 3's own grammar (pilot.py): -q queue (required), -r resource, -s site, -j prodSourceLabel,
#: -i pilot type, --pilot-user (required), --url/-p the PanDA server, -w the workflow.
DEFAULT_ARGUMENTS = (
    "-q %(pq)s -r %(pq)s -s %(siteid)s -j %(jobLabel)s -i %(pilotType)s --pilot-user %(pilotUser)s "
    "--url %(pandaurl)s -p %(port)s -w generic"
)

OPTIONS: tuple[Option, ...] = (
    # ---- [Factory] ----
    _factory(
        "factoryId",
        IDENT,
        None,
        "This factory's name; tags every pilot (FactoryId) and the monitor.",
        required=True,
    ),
    _factory(
        "factoryOwner", STR, None, "Administrator's e-mail address, shown by the monitor.", required=True
    ),
    _factory(
        "pandaserver",
        PANDA_URL,
        None,
        "PanDA server base URL without a path, e.g. https://pandaserver.cern.ch:25443.",
        required=True,
    ),
    _factory(
        "schedconfig",
        STR,
        None,
        "CRIC panda-queue dump {PQ: record}: an http(s) URL, a file:// URL or a path.",
        required=True,
    ),
    _factory(
        "baseLogDir",
        STR,
        "/var/log/autopyfactory/pilots",
        "Directory for pilot logs: <baseLogDir>/<YYYY-MM-DD>/<label>/<cluster>.<proc>.{out,err,log}.",
    ),
    _factory(
        "baseLogDirUrl", STR, "", "URL under which baseLogDir is served (pilot GTAG and monitor links)."
    ),
    _factory("stateDir", STR, "/var/lib/autopyfactory", "Directory for the factory's state files."),
    _factory("sleep", INT, 120, "Seconds between the starts of two cycles.", minimum=1),
    _factory("schedconfigRefresh", INT, 600, "Seconds between two schedconfig downloads.", minimum=0),
    _factory(
        "schedconfigCache",
        STR,
        "",
        "Path of the last-good schedconfig copy; default <stateDir>/schedconfig.json.",
    ),
    _factory(
        "pandaMaxAge",
        INT,
        0,
        "Obsolete, accepted and ignored: PanDA numbers are never reused after a failed answer "
        "(a drained PanDA answers like a failing one), so a cycle without a good answer submits nothing.",
        minimum=0,
    ),
    _factory(
        "pandaLag",
        INT,
        120,
        "Seconds PanDA's activated counts lag behind (its statistics table is refreshed every 120 s "
        "at ATLAS, every 60 s on PostgreSQL) plus the time a pilot takes from its start to getJob: a "
        "running pilot that started within this many seconds still stands for a job in activated "
        "and counts against the demand like a pending one. Too long errs on the safe side (fewer "
        "pilots); 0 = no correction.",
        minimum=0,
    ),
    _factory(
        "httpTimeout",
        FLOAT,
        30.0,
        "Seconds to wait for PanDA and CRIC: each connect and read; a whole request, retries"
        " included, at most httpTimeout x (httpRetries + 1).",
        minimum=0.1,
    ),
    _factory("httpRetries", INT, 2, "Retries (with backoff) of a failed PanDA or CRIC request.", minimum=0),
    _factory("proxy", STR, "", "X.509 proxy for PanDA/CRIC HTTPS client authentication (optional)."),
    _factory(
        "caPath", STR, "", "CA directory (or bundle) to verify PanDA/CRIC servers; default: system CAs."
    ),
    _factory("pandaTokenFile", STR, "", "File with a bearer token for the PanDA API (optional)."),
    _factory("pandaVO", STR, "atlas", "VO sent as Origin with the PanDA token."),
    _factory("monitorURL", STR, "", "Monitoring API root, e.g. http://apfmon.example.org/api; empty = off."),
    _factory(
        "monitorToken", STR, "", "Bearer token of this factory at the monitor (see autopyfactory-monitor)."
    ),
    _factory(
        "monitorPilotKeys",
        BOOL,
        True,
        "Give each pilot its own random key (APFMON_KEY) for its record at the monitor and announce "
        "the key's SHA-256 digest; harmless with a monitor that does not require keys.",
    ),
    _factory(
        "monitorOutboxMB",
        FLOAT,
        100.0,
        "Disk space for the pilot announcements the monitor has not yet been sent (<stateDir>/outbox/,"
        " kept across restarts, sent oldest first); when full, the oldest are dropped and counted.",
        minimum=1.0,
    ),
    _factory("condorSchedd", STR, "", "Schedd to submit to and query (-name); empty = the local schedd."),
    _factory("condorPool", STR, "", "Collector of the schedd's pool (-pool); empty = the local pool."),
    _factory(
        "condorTimeout",
        FLOAT,
        60.0,
        "Seconds after which a condor_q or condor_submit call is abandoned.",
        minimum=1,
    ),
    _factory(
        "numFactories", INT, 1, "How many factories serve the same queues; each takes its share.", minimum=1
    ),
    _factory(
        "maxPerCycle", _optional(INT), None, "Most pilots the whole factory submits in one cycle.", minimum=0
    ),
    _factory(
        "maxPilots",
        _optional(INT),
        None,
        "Most pilots of this factory in the batch system at once.",
        minimum=0,
    ),
    _factory("queuesDir", STR, "", "Directory whose *.conf files add queue sections."),
    _factory(
        "unmigrated",
        STR,
        "",
        "What `autopyfactory migrate-apf2` could not carry over from APF 2, one setting a line with "
        "what to do instead; `check` warns about every line until it is deleted.",
    ),
    _factory(
        "queues",
        QUEUE_SELECTION,
        None,
        "PanDA queues chosen from CRIC by their fields, e.g. `cric: pilot_manager=apf vo=atlas "
        "state=ACTIVE cloud=UK` (field=a,b: any of them; field!=a: not it); each is served like an "
        "empty queue section. A queue section of its own always wins.",
    ),
    _factory(
        "proxyMinLifetime",
        INT,
        21600,
        "Submit nothing for queues whose x509userproxy/scitokensFile has less than this many seconds "
        "left (VOMS AC included); warn below twice that.",
        minimum=0,
    ),
    _factory(
        "logMinFreeGB",
        FLOAT,
        10.0,
        "Below this much free space (GB) under baseLogDir, delete the oldest pilot log days first "
        "(never those of pilots in the queue); 0 = off.",
        minimum=0,
    ),
    _factory("logCompressDays", INT, 0, "Gzip pilot logs of days older than this; 0 = off.", minimum=0),
    _factory("logCleanupInterval", INT, 3600, "Seconds between two pilot log cleanups.", minimum=60),
    _factory(
        "localMaxRunning",
        _optional(INT),
        None,
        "batch = local: most pilots running at once on this host; further ones wait as idle.",
        minimum=1,
    ),
    _factory(
        "localKillGrace",
        FLOAT,
        10.0,
        "batch = local: seconds between SIGTERM and SIGKILL when a local pilot is removed (the wrapper "
        "needs 9 s at most to stop its pilot, report and clean up).",
        minimum=0,
    ),
    _factory("metricsPort", INT, 0, "Port of the Prometheus metrics endpoint; 0 = off.", minimum=0),
    _factory("metricsAddress", STR, "127.0.0.1", "Address the metrics endpoint listens on (0.0.0.0 = all)."),
    _factory(
        "staleIdle", INT, 86400, "mon-stale: a pilot idle longer than this many seconds is stale.", minimum=60
    ),
    _factory(
        "staleRunning",
        INT,
        172800,
        "mon-stale: a pilot running longer than this many seconds is stale.",
        minimum=60,
    ),
    _factory("staleRemove", BOOL, False, "mon-stale: also condor_rm stale pilots (else only flag them)."),
    _factory("staleRemoveMax", INT, 50, "mon-stale: most pilots removed in one run.", minimum=0),
    _factory(
        "monExitingLookback",
        INT,
        86400,
        "mon-exiting: seconds of condor_history read on the first run (or after a long pause).",
        minimum=60,
    ),
    _factory(
        "awolGrace",
        INT,
        3600,
        "mon-exiting: a pilot active at the monitor, older than this many seconds and in neither "
        "condor_q nor condor_history, is reported as fault (AWOL).",
        minimum=60,
    ),
    # ---- queues: selection and identity ----
    Option("enabled", BOOL, True, "false keeps the queue configured but inactive."),
    Option(
        "autoconfigure",
        BOOL,
        True,
        "Fill the queue in from schedconfig; false = a local queue whose section gives the CE.",
    ),
    Option("wmsqueue", STR, "", "PanDA queue name in schedconfig and PanDA; default: the section name."),
    Option(
        "siteid",
        STR,
        "",
        "PanDA site id passed to the pilot (-s); default: the PanDA queue name.",
        schedconfig="siteid",
    ),
    Option(
        "status",
        _choice("online", "brokeroff", "test", "offline", "standby", "maintenance"),
        "online",
        "Queue status; standby and maintenance count as offline.",
        schedconfig="status",
    ),
    Option("cloud", STR, "", "PanDA cloud (informational).", schedconfig="cloud"),
    Option(
        "batch",
        _choice("condor", "local"),
        "condor",
        "Batch backend: condor (condor_submit to the CEs) or local (pilots as local processes).",
    ),
    # ---- queues: CE (only for autoconfigure = false; otherwise from schedconfig) ----
    Option(
        "ceFlavour",
        _choice("HTCONDOR-CE", "ARC-CE", "CREAM-CE", "OSG-CE", "LCG-CE", "LOCAL"),
        None,
        "CE flavour of a local queue (LOCAL = vanilla universe in this pool; CREAM-CE, OSG-CE and"
        " LCG-CE are refused: HTCondor has no cream/gt2 grid types).",
    ),
    Option("ceEndpoint", STR, "", "CE host[:port] of a local queue."),
    Option("ceQueue", STR, "", "Batch queue behind the CE of a local queue."),
    Option(
        "labelName",
        LABEL_NAME,
        "",
        "The name of the one label of a queue whose section gives its CE (autoconfigure = false, or "
        "batch = local), e.g. the name APF 2 gave it, so that its history at the monitor carries on. "
        "Empty: <section>-<ce host>[-<ce queue>]. With resourceTypes, -<type> is appended.",
    ),
    # ---- queues: resources ----
    Option(
        "corecount", INT, 1, "Cores per pilot (xcount / request_cpus).", minimum=1, schedconfig="corecount"
    ),
    Option(
        "maxrss",
        INT,
        2000,
        "Memory per pilot in MB (maxMemory / request_memory).",
        minimum=0,
        schedconfig="maxrss",
    ),
    Option(
        "maxtime",
        INT,
        172800,
        "Wall time per pilot in seconds (maxWallTime).",
        minimum=0,
        schedconfig="maxtime",
    ),
    Option(
        "maxwdir",
        INT,
        0,
        "Scratch space per pilot in MB (request_disk); 0 = not requested.",
        minimum=0,
        schedconfig="maxwdir",
    ),
    Option(
        "environ",
        STR,
        "",
        "Extra pilot environment, space-separated NAME=value pairs.",
        schedconfig="environ",
    ),
    # ---- queues: demand per resource type and job label ----
    Option(
        "resourceTypes",
        RESOURCE_TYPES,
        (),
        "Empty: one label per CE counting every job. auto: a unified queue (CRIC type unified or "
        "capability ucore) gets one label per CE and resource type it can run, others one as if empty. "
        "A list (SCORE, MCORE, SCORE_HIMEM, MCORE_HIMEM): one label per CE and listed type. A typed "
        "label counts only its type's jobs and is sized for it (docs/policy.md: demand per resource type).",
    ),
    Option(
        "demandJobLabels",
        LIST,
        (),
        "PanDA job labels (prodSourceLabel: managed, user, ...) whose jobs count as demand; empty = "
        "every job label the pilots can take (jobLabel, pilotType and the queue's status decide). "
        "It can only narrow that set: a job label the pilots cannot take is an error "
        "(docs/policy.md: which jobs the pilots can take).",
    ),
    # ---- queues: policy (the chain and every step's options, from the policy's registry) ----
    Option(
        "schedplugin",
        PLUGIN_LIST,
        DEFAULT_CHAIN,
        "Policy plugins applied left to right: Classic, or a chain of "
        + ", ".join(name for name in STEPS.names() if name != "Classic")
        + ".",
    ),
    *(_policy_option(o) for o in STEPS.options()),
    # ---- queues: submission ----
    Option("executable", STR, "/usr/libexec/autopyfactory/runpilot3-wrapper.sh", "The pilot wrapper."),
    Option(
        "arguments",
        STR,
        DEFAULT_ARGUMENTS,
        "Wrapper arguments (pilot 3's grammar); %(...)s fields: siteid, pq, label, port, pandaserver, "
        "pandaserver_host, pandaurl, pilotUser, jobLabel, pilotType, resourceType, corecount, maxrss, "
        "factoryId. `$` is passed on as written. Appended: --resource-type (when the label has one), "
        "--piloturl, --pilotversion, pilotExtraArgs.",
    ),
    Option("pilotUser", IDENT, "ATLAS", "Pilot 3 --pilot-user (the experiment plug-in)."),
    Option(
        "jobLabel",
        _optional(IDENT),
        None,
        "Pilot 3 -j: the job label (prodSourceLabel) the pilots ask PanDA for. Unset: by pilotType "
        "(RC rc_test2, ALRB rc_alrb, PT ptest) and for PR pilots by the queue (CRIC type unified: "
        "unified, analysis: user, else managed).",
    ),
    Option("pilotType", IDENT, "PR", "Pilot 3 -i: pilot type (PR; RC, PT, ALRB for release-candidate/test)."),
    Option(
        "pilotVersion",
        STR,
        "",
        "Wrapper --pilotversion: pilot3-<version>.tar.gz from CVMFS (empty = the current pilot3.tar.gz).",
    ),
    Option("pilotURL", STR, "", "Wrapper --piloturl: the pilot tarball's URL (http(s):// or file://)."),
    Option("pilotExtraArgs", STR, "", "More pilot.py arguments, appended as shell-like words (e.g. -d)."),
    Option("x509userproxy", STR, "", "X.509 proxy the pilots carry (condor x509userproxy)."),
    Option("scitokensFile", STR, "", "Token file the pilots carry (condor scitokens_file)."),
    Option(
        "submitAttributes",
        SUBMIT_ATTRIBUTES,
        (),
        "The site's own submit commands for the queue's pilots, one `key = value` per line (a"
        " multi-line value), written as in a submit file: accounting_group, +AccountingGroup,"
        " requirements, rank, + attributes a CE needs. Checked with HTCondor's submit parser; keys the"
        " factory writes itself (FactoryId, MATCH_APF_QUEUE, APF_*, periodic_*, credentials,"
        " environment, arguments, executable, output/error/log, universe, grid_resource, the pilot's"
        " size, queue) are refused.",
    ),
    Option("condorSchedd", STR, "", "Override of [Factory] condorSchedd for this queue."),
    Option("condorPool", STR, "", "Override of [Factory] condorPool for this queue."),
    Option(
        "holdIdleAfter",
        INT,
        3600,
        "Hold a grid pilot idle this many seconds, never accepted by the CE.",
        minimum=0,
    ),
    Option(
        "holdRerun",
        BOOL,
        True,
        "Hold a pilot that would start a second time (NumJobStarts; a schedd restart is not a start).",
    ),
    Option("removeHeldAfter", INT, 3600, "Remove a pilot held this many seconds.", minimum=0),
    Option("removeIdleAfter", INT, 86400, "Remove a pilot idle this many seconds.", minimum=0),
    Option("removeRunningAfter", INT, 604800, "Remove a pilot running this many seconds.", minimum=0),
    Option(
        "logKeepDays",
        INT,
        30,
        "Delete this label's pilot log directories older than this many days; 0 = keep forever.",
        minimum=0,
    ),
    # ---- queues: held and stuck pilots (the factory's own housekeeping, see domain/housekeeping.py) ----
    Option(
        "holdRecoverableCodes",
        INT_SET,
        frozenset(),
        "HoldReasonCodes worth a release (e.g. 6,12,13 for transient errors).",
    ),
    Option(
        "holdRecoverableReasons",
        LIST,
        ("Connection refused", "timed out", "Failed to connect"),
        "Hold reason substrings (case-insensitive) worth a release.",
    ),
    Option("holdMaxReleases", INT, 3, "Release a recoverable hold at most this many times.", minimum=0),
    Option(
        "holdReleaseBackoff", INT, 600, "Seconds held before the first release; doubles each time.", minimum=0
    ),
    Option(
        "holdTimeout", INT, 3600, "Remove a pilot held (and not to be released) this many seconds.", minimum=0
    ),
    Option("idleTimeout", INT, 0, "Remove a pilot idle this many seconds; 0 = never.", minimum=0),
    Option("maxActionsPerCycle", INT, 50, "Most releases and removals per label and cycle.", minimum=0),
)

_BY_SCOPE_AND_LOWER = {(option.scope, option.key.lower()): option for option in OPTIONS}


def find(key: str, scope: Scope) -> Option | None:
    """The option for ``key`` (case-insensitive) in ``scope``, or None."""
    return _BY_SCOPE_AND_LOWER.get((scope, key.lower()))


def options(scope: Scope) -> Iterator[Option]:
    return (option for option in OPTIONS if option.scope is scope)


def reference_markdown() -> str:
    """The configuration reference as Markdown, the generated part of docs/configuration-reference.md
    (``autopyfactory config-reference``; kept current by a test)."""
    lines: list[str] = []
    for scope, title in (
        (Scope.FACTORY, "`[Factory]`"),
        (Scope.QUEUE, "`[QueueDefaults]` and queue sections"),
    ):
        lines += [f"## {title}", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for option in options(scope):
            default = "**required**" if option.required else _show(option.default)
            # "<stateDir>" would be taken for an HTML tag and vanish from the rendered page
            meaning = option.help.replace("<", "&lt;") + (
                f" Filled from schedconfig `{option.schedconfig}`." if option.schedconfig else ""
            )
            lines.append(f"| `{option.key}` | {option.kind.name} | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _show(value: object) -> str:
    if value is None or value == "" or value == frozenset() or value == ():
        return "(unset)"
    if isinstance(value, frozenset):
        return "`" + ", ".join(str(v) for v in sorted(value)) + "`"
    if isinstance(value, tuple):
        return "`" + ", ".join(value) + "`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`"
