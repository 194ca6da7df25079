"""Submission: one HTCondor submit description per label and cycle.

:func:`render_submit` turns a label into submit-description text. It is pure (no clock, no
files) so the text can be tested line by line; :func:`validate` checks it with HTCondor's own
parser. How the descriptions reach the schedds (one cluster per label, one program run per
schedd and cycle) is ``bulk.py``'s and ``submitter.py``'s.

CE flavours (CONTRACTS §3)::

    HTCONDOR-CE  universe = grid, grid_resource = condor <host> <host>:<port, default 9619>
    ARC-CE       universe = grid, grid_resource = arc https://<host>:443/arex (2811 -> 443),
                 resources as ADL elements in arc_resources, ENV/PROXY in arc_rte with a proxy
    LOCAL        universe = vanilla in the schedd's own pool, request_cpus/memory/disk

CREAM-CE, OSG-CE and LCG-CE (grid types ``cream`` and ``gt2``) are gone from HTCondor: its
condor_submit accepts only the grid types in :data:`GRID_TYPES`. Such CEs get no label
(config/autoconfigure.py), and a description for any other grid type is refused here, before condor_submit.

The pilot's argument words, environment and log directory come from :mod:`autopyfactory.batch.pilot`
(the same for every backend, as the pilot must see them); this module writes them in condor's
syntax. A ``$`` the operator wrote reaches the pilot as written (condor never expands it): only the
factory's own macros (``$(Cluster)``, ``$(Process)`` and a pilot key's ``$(APF_PILOT_KEY)`` in the
environment) expand. The site's own
submit commands (``submitAttributes``, checked when the configuration is loaded) follow the
factory's lines verbatim, in the submit language: the site writes them as it would in a submit file.

Quoting: every ClassAd string (``+FactoryId = "…"`` and the like) goes through
``classad2.quote``; ``arguments`` and ``environment`` use condor's "new syntax" (the whole value
in double quotes, doubled inside; single quotes group words, doubled inside). ``$`` has two
meanings in HTCondor: ``$(name)`` is expanded by condor_submit, ``$$(name)`` later, when the job is
matched (or handed to the gridmanager), from the machine's ad. So a single ``$`` from
configuration or schedconfig is written ``$(DOLLAR)`` (condor_submit writes a ``$``), and each
``$$`` is written ``$$(DOLLARDOLLAR)``, which condor_submit keeps and the match turns into ``$$``
(a ``$(DOLLAR)$(DOLLAR)`` would become ``$$(DOLLAR)``, a reference to a machine attribute DOLLAR,
and the job would be held: "Cannot expand $$ expression"). Paths condor_submit reads itself (the
executable, credentials, logs) are read before any match, so they may hold a ``$`` but not ``$$``.
Values cannot contain line breaks (a submit description is line-based).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import classad2
import htcondor2

from autopyfactory.batch.interface import SubmitContext
from autopyfactory.batch.pilot import SubmitRenderError, log_dir, pilot_arguments, pilot_environment
from autopyfactory.domain.label import CE, Label, Resources, SubmitSettings
from autopyfactory.domain.model import JobStatus

HTCONDOR_CE_PORT = 9619
ARC_REST_PORT = 443
ARC_GRIDFTP_PORT = 2811  # the old ARC interface; the same host serves REST on 443
#: The grid types HTCondor's condor_submit accepts (25.0: "Must be one of: condor, batch, arc,
#: ec2, gce, or azure").
GRID_TYPES = frozenset({"condor", "batch", "arc", "ec2", "gce", "azure"})
#: Submit commands HTCondor evaluates as ClassAd expressions; validate() parses them.
EXPRESSION_COMMANDS = ("periodic_hold", "periodic_remove")

_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_DOLLAR_RUN = re.compile(r"\$+")


# ---- quoting -----------------------------------------------------------------------------------


def _no_line_break(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise SubmitRenderError(f"value {text!r} contains a line break")
    return text


def _dollars(run: re.Match[str]) -> str:
    pairs, odd = divmod(len(run[0]), 2)
    return "$$(DOLLARDOLLAR)" * pairs + "$(DOLLAR)" * odd


def literal(text: str) -> str:
    """``text`` safe to place in a submit-description value that the job ad keeps and the pilot
    sees: it reaches the pilot exactly as written, whatever its ``$`` (see the module doc)."""
    return _DOLLAR_RUN.sub(_dollars, _no_line_break(text))


def path_literal(text: str) -> str:
    """A path condor_submit reads itself (executable, credential, log): ``$`` never starts a macro;
    ``$$`` cannot be written, since condor_submit would read the unexpanded text."""
    if "$$" in text:
        raise SubmitRenderError(f"path {text!r}: a path with '$$' cannot be written in a submit description")
    return _no_line_break(text).replace("$", "$(DOLLAR)")


def classad_string(text: str) -> str:
    """A ClassAd string literal (``"…"``, escaped by classad2) for a ``+Attr = …`` line."""
    return literal(str(classad2.quote(text)))


def _condor_word(word: str) -> str:
    """One argument or environment entry in condor's new syntax (before the outer quoting)."""
    if word and not any(c.isspace() or c in "'\"" for c in word):
        return word
    return "'" + word.replace("'", "''") + "'"


def _condor_list(words: Iterable[str]) -> str:
    """Condor's new syntax: double quotes around the whole, doubled double quotes inside."""
    return '"' + " ".join(_condor_word(w) for w in words).replace('"', '""') + '"'


def condor_arguments(words: Sequence[str]) -> str:
    """``arguments`` value: each word reaches the program as exactly one argument."""
    return _condor_list(words)


def condor_environment(pairs: Iterable[tuple[str, str]]) -> str:
    """``environment`` value in the new syntax: ``"A=1 B='x y' C='it''s'"``."""
    return _condor_list(f"{name}={value}" for name, value in pairs)


def xml_escape(text: str) -> str:
    """Text content for an XML element."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---- periodic expressions ----------------------------------------------------------------------


def in_status_longer_than(status: JobStatus, seconds: int) -> str:
    """True for a job that has been in ``status`` for more than ``seconds``."""
    return f"JobStatus == {int(status)} && time() - EnteredCurrentStatus > {seconds}"


def never_accepted_longer_than(seconds: int) -> str:
    """An idle grid job the CE has never reported a status for, for more than ``seconds``.

    ``GridJobStatus`` is the status as reported by the remote system and stays undefined until
    the CE has answered for the job; ``GridJobId`` alone proves nothing (gt2 and CREAM save the id
    before the submission is committed). A job the CE queued reports ``IDLE``/``PENDING``/… and is
    left to ``removeIdleAfter``.
    """
    return f"{in_status_longer_than(JobStatus.IDLE, seconds)} && GridJobStatus =?= undefined"


def started_again(grid: bool) -> str:
    """A pilot that has started before and is about to start (idle) or has started (> 1) again.

    A bare ``NumJobStarts > 0`` would hold every pilot during its first run. ``NumJobStarts``
    counts real starts in every universe: the shadow (vanilla), the starter (local) and the
    gridmanager (grid) move it. ``JobRunCount`` counts shadow starts instead, and a schedd
    restart reconnects a running pilot with a new shadow (``JobRunCount`` 2, ``NumJobStarts``
    1): it would hold pilots HTCondor has kept running. The gridmanager sets ``JobRunCount`` too.

    For HTCondor-C the gridmanager copies ``NumJobStarts`` from the CE's job ad, and when the CE
    reports the job ``COMPLETED`` it copies the counter without passing the local job through
    Running: a pilot whose whole run fell between two polls is seen idle with ``NumJobStarts``
    1 (and ``GridJobStatus`` ``"COMPLETED"``) just before it terminates. Only an idle pilot the
    CE has not finished is about to start again. ``?: 0`` keeps the expression defined before
    the first start.
    """
    count = "(NumJobStarts ?: 0)"
    idle_again = f"JobStatus == {int(JobStatus.IDLE)} && {count} > 0"
    if grid:
        idle_again += ' && GridJobStatus =!= "COMPLETED"'
    return f"{count} > 1 || ({idle_again})"


def any_of(clauses: Iterable[str]) -> str:
    """The clauses joined with ``||``; empty when there are none (the command is then omitted)."""
    return " || ".join(f"({c})" for c in clauses)


def periodic_hold(settings: SubmitSettings, grid: bool) -> str:
    """Hold a grid pilot its CE never accepted, and a pilot that would run a second time."""
    clauses = []
    if grid and settings.hold_idle_after > 0:
        clauses.append(never_accepted_longer_than(settings.hold_idle_after))
    if settings.hold_rerun:
        clauses.append(started_again(grid))
    return any_of(clauses)


def periodic_remove(settings: SubmitSettings) -> str:
    """Remove pilots held, idle or running for longer than their ages (0 disables an age)."""
    ages = (
        (JobStatus.HELD, settings.remove_held_after),
        (JobStatus.IDLE, settings.remove_idle_after),
        (JobStatus.RUNNING, settings.remove_running_after),
    )
    return any_of(in_status_longer_than(status, seconds) for status, seconds in ages if seconds > 0)


# ---- the pieces of a description ---------------------------------------------------------------


def condor_words(words: Iterable[str]) -> list[str]:
    """The pilot's argument words as condor_submit must read them (``$`` is no macro)."""
    return [literal(word) for word in words]


#: Stand for the pilot's job id and key in the neutral environment until condor's macros replace
#: them. They cannot clash with a real value: an environment variable cannot hold a NUL.
_JOB_ID = "\0job-id\0"
_KEY = "\0pilot-key\0"
#: condor_submit's macro for a pilot's job id.
JOB_ID_MACRO = "$(Cluster).$(Process)"
#: The submit variable that holds a pilot's key: each job's own item data row sets it
#: (autopyfactory-condor-submit makes the keys, submitter.py), so each pilot of a label's cluster
#: gets its own. Without item data it expands to nothing, and the pilot has no key.
KEY_MACRO_NAME = "APF_PILOT_KEY"
KEY_MACRO = f"$({KEY_MACRO_NAME})"


def _with_macros(value: str) -> str:
    """A neutral value escaped for condor_submit, its placeholders as condor's macros."""
    return JOB_ID_MACRO.join(
        KEY_MACRO.join(literal(part) for part in piece.split(_KEY)) for piece in value.split(_JOB_ID)
    )


def condor_pilot_environment(
    label: Label, context: SubmitContext, keyed: bool = False
) -> list[tuple[str, str]]:
    """The pilot's environment (batch/pilot.py) as condor_submit must read it: values escaped,
    the job id condor's own macro and, ``keyed``, the key the job's item data (:data:`KEY_MACRO`)."""
    return [
        (literal(name), _with_macros(value))
        for name, value in pilot_environment(label, context, _JOB_ID, _KEY if keyed else "")
    ]


def _port(ce: CE, default: int) -> int:
    return ce.port or default


def _host(ce: CE) -> str:
    if not _HOST.match(ce.host):
        raise SubmitRenderError(f"CE host {ce.host!r} is not a host name")
    return ce.host


def minutes(seconds: int) -> int:
    """Seconds to whole minutes, rounded up (a wall-time limit must not shrink)."""
    return -(-seconds // 60)


def grid_attributes(ce: CE, resources: Resources) -> list[str]:
    """The HTCondor-CE conventions every grid pilot carries: queue, cores, memory, wall time."""
    lines = [f"+remote_queue = {classad_string(ce.queue)}"] if ce.queue else []
    lines.append(f"+xcount = {resources.corecount}")
    if resources.maxrss > 0:
        lines.append(f"+maxMemory = {resources.maxrss}")
    if resources.maxtime > 0:
        lines.append(f"+maxWallTime = {minutes(resources.maxtime)}")
    return lines


def _htcondor_ce(ce: CE, resources: Resources, submit: SubmitSettings) -> list[str]:
    host = _host(ce)
    return [
        "universe = grid",
        f"grid_resource = condor {host} {host}:{_port(ce, HTCONDOR_CE_PORT)}",
        *grid_attributes(ce, resources),
    ]


def arc_resources(ce: CE, resources: Resources) -> str:
    """ADL ``<Resources>`` elements (arc_resources) for the pilot's memory, cores, queue, time.

    ARC's memory is per slot, so the pilot's memory is divided by its cores. Cores, memory and
    queue are given only here (no request_cpus/request_memory/batch_queue), so HTCondor does not
    add a second copy of them.
    """
    parts = []
    if resources.maxrss > 0:
        per_core = -(-resources.maxrss // resources.corecount)
        parts.append(f"<IndividualPhysicalMemory>{per_core * 1024 * 1024}</IndividualPhysicalMemory>")
    if resources.corecount > 1:
        slots = f"<NumberOfSlots>{resources.corecount}</NumberOfSlots>"
        parts.append(
            f"<SlotRequirement>{slots}<SlotsPerHost>{resources.corecount}</SlotsPerHost></SlotRequirement>"
        )
    if ce.queue:
        parts.append(f"<QueueName>{xml_escape(ce.queue)}</QueueName>")
    if resources.maxtime > 0:
        parts.append(f"<WallTime>{resources.maxtime}</WallTime>")
    return literal("".join(parts))


def _arc_ce(ce: CE, resources: Resources, submit: SubmitSettings) -> list[str]:
    port = ARC_REST_PORT if ce.port in (None, ARC_GRIDFTP_PORT) else ce.port
    lines = ["universe = grid", f"grid_resource = arc https://{_host(ce)}:{port}/arex"]
    lines += grid_attributes(ce, resources)
    resources_xml = arc_resources(ce, resources)
    if resources_xml:
        lines.append(f"arc_resources = {resources_xml}")
    if submit.x509userproxy:  # makes the delegated proxy available to the pilot on the node
        lines.append("arc_rte = ENV/PROXY")
    return lines


def _local(ce: CE, resources: Resources, submit: SubmitSettings) -> list[str]:
    lines = ["universe = vanilla", f"request_cpus = {resources.corecount}"]
    if resources.maxrss > 0:
        lines.append(f"request_memory = {resources.maxrss}")
    if resources.maxwdir > 0:
        lines.append(f"request_disk = {resources.maxwdir * 1024}")
    return lines


FlavourLines = Callable[[CE, Resources, SubmitSettings], list[str]]
FLAVOURS: Mapping[str, FlavourLines] = {
    "HTCONDOR-CE": _htcondor_ce,
    "ARC-CE": _arc_ce,
    "LOCAL": _local,
}


def _credentials(submit: SubmitSettings) -> list[str]:
    lines = [f"x509userproxy = {path_literal(submit.x509userproxy)}"] if submit.x509userproxy else []
    if submit.scitokens_file:
        lines.append(f"scitokens_file = {path_literal(submit.scitokens_file)}")
    return lines


def _policy(submit: SubmitSettings, grid: bool) -> list[str]:
    hold, remove = periodic_hold(submit, grid), periodic_remove(submit)
    return ([f"periodic_hold = {hold}"] if hold else []) + ([f"periodic_remove = {remove}"] if remove else [])


def _files(context: SubmitContext, label: str) -> list[str]:
    where = path_literal(log_dir(context.base_log_dir, context.date, label))
    return [
        f"{name} = {where}/$(Cluster).$(Process).{ext}"
        for name, ext in (("output", "out"), ("error", "err"), ("log", "log"))
    ]


STANDARD = (
    "notification = Never",
    "transfer_executable = True",
    "should_transfer_files = YES",
    "when_to_transfer_output = ON_EXIT_OR_EVICT",
)


def _check_grid_type(name: str, lines: list[str]) -> list[str]:
    """``lines``, when their grid_resource (if any) names a grid type HTCondor has."""
    for line in lines:
        key, _, value = line.partition(" = ")
        if key == "grid_resource" and value.split(" ", 1)[0] not in GRID_TYPES:
            known = ", ".join(sorted(GRID_TYPES))
            raise SubmitRenderError(f"{name}: grid_resource {value!r}: HTCondor's grid types are {known}")
    return lines


def render_submit(label: Label, n: int, context: SubmitContext, keyed: bool = False) -> str:
    """The submit description for ``n`` pilots of ``label``: deterministic text, no I/O.
    ``keyed``: each pilot's ``APFMON_KEY`` is the submit variable :data:`KEY_MACRO_NAME`, which
    the submission sets per job from item data (the key itself is never in the text)."""
    if n < 1:
        raise SubmitRenderError(f"{label.name}: cannot submit {n} pilots")
    flavour_lines = FLAVOURS.get(label.ce.flavour)
    if flavour_lines is None:
        raise SubmitRenderError(f"{label.name}: unsupported CE flavour {label.ce.flavour!r}")
    submit = label.submit
    flavour = _check_grid_type(label.name, flavour_lines(label.ce, label.resources, submit))
    words = condor_words(pilot_arguments(label, context))
    lines = [
        " ".join(f"# autopyfactory label {label.name}: {n} pilots for PanDA queue {label.pq}".splitlines()),
        *flavour,
        f"executable = {path_literal(submit.executable)}",
        f"arguments = {condor_arguments(words)}",
        f"environment = {condor_environment(condor_pilot_environment(label, context, keyed))}",
        f"+FactoryId = {classad_string(context.factory_id)}",
        f"+MATCH_APF_QUEUE = {classad_string(label.name)}",
        f"+APF_PANDA_QUEUE = {classad_string(label.pq)}",
        *([f"+APF_RESOURCE_TYPE = {classad_string(label.resource_type)}"] if label.resource_type else []),
        *_credentials(submit),
        *_policy(submit, grid=label.ce.flavour != "LOCAL"),
        *STANDARD,
        *_files(context, label.name),
        *(f"{key} = {value}" for key, value in submit.site_attributes),
        f"queue {n}",
    ]
    return "\n".join(lines) + "\n"


# ---- validation --------------------------------------------------------------------------------


def validate(text: str) -> None:
    """Check a description with HTCondor's parser, and what that parser lets through.

    ``htcondor2.Submit`` rejects only lines that are not statements; it accepts a missing or
    non-numeric queue statement, ignores anything after the first ``queue`` and does not parse
    ClassAd expressions. Those are checked here.
    """
    try:
        description = htcondor2.Submit(text)
    except (ValueError, RuntimeError, htcondor2.HTCondorException) as exc:
        raise SubmitRenderError(f"condor cannot parse the submit description: {exc}") from None
    _check_queue(text, str(description.getQArgs()))
    for key in ("universe", "executable"):
        if not str(description.get(key, "")).strip():
            raise SubmitRenderError(f"submit description has no {key}")
    for key in description:
        if key.startswith("MY.") or key.lower() in EXPRESSION_COMMANDS:
            _check_expression(key, str(description[key]))


def _check_queue(text: str, qargs: str) -> None:
    if not qargs.strip().isdigit() or int(qargs) < 1:
        raise SubmitRenderError(f"submit description must end with 'queue N' (N >= 1), found {qargs!r}")
    last = [line.strip() for line in text.splitlines() if line.strip()][-1]
    if not last.lower().startswith("queue"):
        raise SubmitRenderError(f"submit description has lines after its queue statement: {last!r}")


def _check_expression(key: str, value: str) -> None:
    try:
        classad2.ExprTree(value)
    except classad2.ClassAdException as exc:
        name = key.removeprefix("MY.")
        raise SubmitRenderError(f"{name} = {value!r} is not a ClassAd expression: {exc}") from None


# ---- files -------------------------------------------------------------------------------------


def write_submit_file(directory: Path, text: str, stem: str = "submit", suffix: str = ".sub") -> Path:
    """Write ``<stem>-<N><suffix>``, N one past the highest present; a name is reserved
    exclusively, so two cycles of one day (or two factories sharing the directory) never overwrite
    each other. No fsync: the file is read once, right away, and kept for troubleshooting.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"^{re.escape(stem)}-(\d+){re.escape(suffix)}$")
    numbers = [int(m[1]) for m in (pattern.match(name) for name in os.listdir(directory)) if m]
    number = max(numbers, default=0) + 1
    while True:
        path = directory / f"{stem}-{number:04d}{suffix}"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            number += 1
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        path.unlink(missing_ok=True)
        raise
    return path
