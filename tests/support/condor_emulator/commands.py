"""The emulated tools: condor_submit, condor_q, condor_history, condor_rm, condor_release, and the
factory's own submission program ``autopyfactory-condor-submit`` with an emulated schedd (bindings.py).

``main(command, argv)`` is what the executables in the fixture's ``bin`` directory call. Each call
is logged, may suffer an injected fault, and otherwise does what the real tool does for the options
the factory uses; output and error texts follow the HTCondor sources (rm.cpp, history.cpp,
queue.cpp, condor_submit) where the factory or an operator could see them.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import classad2

from autopyfactory.batch.condor import submitter

from . import ads as adlib
from .ads import JobStatus
from .bindings import EmulatedSchedd, hang
from .state import Ad, Fault, Schedd, State, UnknownScheddError
from .submit import MULTI_QUEUE_WARNING, Context, SubmitError, executable_of, job_ads, parse_blocks

TRUNCATED_JSON = '[\n{\n  "ClusterId": 1,\n  "JobStatus": 1,\n  "MATCH_APF_QUEUE": "CERN-PR'
NOT_JSON = "<html><body><h1>503 Service Unavailable</h1></body></html>\n"
WRONG_SHAPE = '{\n  "ClusterId": 1,\n  "JobStatus": 1,\n  "ProcId": 0\n}\n'
SUBMIT_GARBAGE = "Submitting job(s).\nLogging submit event(s).\n"

SUBMITTER = "autopyfactory-condor-submit"
#: Lines a program may print besides its answer: what ``queued-noise`` puts around each line.
NOISE = "Submitting job(s).\n"

UNKNOWN_SCHEDD = {
    "condor_submit": "\nERROR: Can't find address of schedd {name}\n",
    "condor_q": "Error: Collector has no record of schedd/submitter\n",
    "condor_history": "Unable to locate remote schedd (name={name}, pool={pool}).\n",
    "condor_rm": "Error: cannot get address of schedd {name}\n",
    "condor_release": "Error: cannot get address of schedd {name}\n",
}
_ADDRESS = "<127.0.0.1:9618?addrs=127.0.0.1-9618>"
_CONNECT = f"CEDAR:6001:Failed to connect to {_ADDRESS}\n"
_JOB_ID = re.compile(r"\d+\.\d+")
_CLUSTER = re.compile(r"\d+")


@dataclass
class Outcome:
    out: str = ""
    err: str = ""
    code: int = 0


class UsageError(Exception):
    """A command line the real tool would refuse; the message is its stderr."""


@dataclass
class Args:
    options: dict[str, list[str]] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return self.options.get(name, [])

    def value(self, name: str) -> str | None:
        values = self.values(name)
        return values[-1] if values else None

    def flag(self, name: str) -> bool:
        return name in self.options


def main(command: str, argv: list[str]) -> int:
    state = State.from_env()
    fault = state.begin_call(command, argv)
    if fault and fault.kind.startswith("queued-"):
        return _after_work(state, command, argv, fault)
    if fault and fault.kind == "hang-in":
        return _hang_in(state, argv, fault)
    outcome = _suffer(state, command, argv, fault) if fault else None
    if outcome is None:
        outcome = run(state, command, argv)
    sys.stdout.write(outcome.out)
    sys.stderr.write(outcome.err)
    return outcome.code


def run(state: State, command: str, argv: list[str]) -> Outcome:
    flags, valued, handler = _COMMANDS[command]
    try:
        args = parse_args(argv, flags, ("name", "pool", *valued))
    except UsageError as exc:
        return Outcome(err=f"{exc}\n", code=1)
    try:
        return handler(state, args, argv)
    except UsageError as exc:
        return Outcome(err=f"{exc}\n", code=1)
    except UnknownScheddError as exc:
        message = UNKNOWN_SCHEDD[command].format(name=exc.args[0], pool=args.value("pool") or "")
        return Outcome(err=message, code=1)


def parse_args(argv: Sequence[str], flags: Sequence[str], valued: Sequence[str]) -> Args:
    """Condor-style options: one dash, unambiguous prefixes allowed (``-const`` = ``-constraint``)."""
    args = Args()
    words = iter(argv)
    for word in words:
        if not word.startswith("-") or word == "-":
            args.positional.append(word)
            continue
        name = _option(word, (*valued, *flags))
        if name in flags:
            args.options[name] = [""]
            continue
        value = next(words, None)
        if value is None:
            raise UsageError(f"Error: Argument {word} requires another parameter")
        args.options.setdefault(name, []).append(value)
    return args


def schedd_of(command: str, argv: Sequence[str]) -> str | None:
    """The -name given to a command, None for the local schedd (also used to read the call log)."""
    flags, valued, _ = _COMMANDS[command]
    try:
        return parse_args(argv, flags, ("name", "pool", *valued)).value("name")
    except UsageError:
        return None


def _option(word: str, names: Sequence[str]) -> str:
    key = word.lstrip("-")
    if key in names:
        return key
    for name in names:
        if key and name.startswith(key):
            return name
    raise UsageError(f"Error: unrecognized argument {word}")


def _after_work(state: State, command: str, argv: list[str], fault: Fault) -> int:
    """Do the work and print its output, then fail (``queued-exit``) or hang (``queued-hang``)."""
    outcome = run(state, command, argv)
    out = outcome.out if fault.output is None else fault.output
    if fault.kind == "queued-noise":
        out = NOISE + "".join(f"{line}\n{NOISE}" for line in out.splitlines())
    sys.stdout.write(out)
    sys.stdout.flush()
    if fault.kind == "queued-hang":
        with state.hanging():
            time.sleep(fault.seconds)
    message = fault.message if fault.message is not None else "\nERROR: lost the connection to the schedd\n"
    sys.stderr.write(message)
    return fault.exit_code


def _hang_in(state: State, argv: list[str], fault: Fault) -> int:
    """The submission program whose schedd hangs at its ``fault.after + 1``-th label: the lines of
    the labels before are printed (and flushed) as they are submitted."""

    def connect(name: str, pool: str) -> EmulatedSchedd:
        return EmulatedSchedd(state, name, pool, fault.after, hang(state, fault.seconds))

    return submitter.run(argv, connect, sys.stdout)


def _suffer(state: State, command: str, argv: list[str], fault: Fault) -> Outcome | None:
    """Apply an injected fault; None means "now behave normally" (a hang that was not killed)."""
    if fault.kind == "hang":
        with state.hanging():
            time.sleep(fault.seconds)
        return None
    if fault.kind == "garbage":
        default = SUBMIT_GARBAGE if command == "condor_submit" else TRUNCATED_JSON
        return Outcome(out=default if fault.output is None else fault.output)
    schedd = schedd_of(command, argv) or "local schedd"
    if fault.message is not None:
        message = fault.message
    elif command in ("condor_q", "condor_history"):
        message = f"\n-- Failed to fetch ads from: {_ADDRESS} : {schedd}\n{_CONNECT}"
    else:
        message = f"\nERROR: Failed to connect to queue manager {schedd}\n{_CONNECT}"
    return Outcome(err=message, code=fault.exit_code)


# --- condor_submit -----------------------------------------------------------------------------


def condor_submit(state: State, args: Args, _argv: list[str]) -> Outcome:
    state.load(args.value("name"))  # like condor_submit: find the schedd before reading the file
    path = args.positional[0] if args.positional else "-"
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        return Outcome(err=f"\nERROR: Failed to open command file ({exc.strerror})\n", code=1)
    try:
        clusters = queue_clusters(state, args.value("name"), text, os.getcwd())
    except SubmitError as exc:
        dots = "Submitting job(s)." if "MAX_JOBS_PER_OWNER" in str(exc) and not args.flag("terse") else ""
        return Outcome(out=dots, err=f"\nERROR: {exc}\n", code=1)
    warning = MULTI_QUEUE_WARNING if len(parse_blocks(text)) > 1 else ""
    return Outcome(out=submit_output(clusters, terse=args.flag("terse")), err=warning)


def submit_output(clusters: Sequence[list[Ad]], terse: bool) -> str:
    """What condor_submit prints: one ``C.first - C.last`` line per cluster with -terse."""
    clusters = [jobs for jobs in clusters if jobs]
    if terse:
        return "".join(f"{adlib.job_id(jobs[0])} - {adlib.job_id(jobs[-1])}\n" for jobs in clusters)
    if not clusters:
        return ""
    dots = "." * sum(len(jobs) for jobs in clusters)
    lines = "".join(f"{len(jobs)} job(s) submitted to cluster {jobs[0]['ClusterId']}.\n" for jobs in clusters)
    return f"Submitting job(s){dots}\n{lines}"


def queue_jobs(state: State, schedd: str | None, text: str, cwd: str) -> list[Ad]:
    """Parse a submit file and queue its jobs; nothing is queued on an error."""
    return [ad for jobs in queue_clusters(state, schedd, text, cwd) for ad in jobs]


def queue_clusters(state: State, schedd: str | None, text: str, cwd: str) -> list[list[Ad]]:
    """Queue the jobs of every queue statement, in one transaction: all of them or none.

    A new cluster starts when ``executable`` changed since the previous statement; the schedd's
    ``MAX_JOBS_PER_OWNER`` and ``SUBMIT_REQUIREMENTS`` (see :meth:`State.set_config`) refuse the
    whole submission.
    """
    blocks = parse_blocks(text)
    with state.update(schedd) as queue:
        limit = state.config(queue.name).get("MAX_JOBS_PER_OWNER")
        owner, now = current_user(), int(time.time())
        clusters: list[list[Ad]] = []
        previous: str | None = None
        for block in blocks:
            executable = executable_of(block)
            if previous is None or executable != previous or not clusters or not clusters[-1]:
                clusters.append([])
                cluster = queue.next_cluster + len(clusters) - 1
            previous, current = executable, clusters[-1]
            base = (
                current[-1] if current else (clusters[-2][-1] if len(clusters) > 1 and clusters[-2] else None)
            )
            context = Context(cluster, now, owner, cwd, queue.name)
            current.extend(job_ads(block, context, len(current), base))
        queued = sum(1 for ad in queue.jobs if ad.get("Owner") == owner)
        if limit is not None and queued + sum(len(c) for c in clusters) > int(limit):
            raise SubmitError(
                "Failed to create proc\nNumber of submitted jobs would exceed MAX_JOBS_PER_OWNER"
            )
        clusters = [jobs for jobs in clusters if jobs]
        _check_requirements(state.config(queue.name).get("SUBMIT_REQUIREMENTS", {}), clusters)
        queue.next_cluster += len(clusters)
        for jobs in clusters:
            queue.jobs.extend(jobs)
    return clusters


def _check_requirements(requirements: dict[str, list[str]], clusters: Sequence[list[Ad]]) -> None:
    """The schedd's SUBMIT_REQUIREMENT_<name> (expression, reason expression) for every job: one
    that is not true refuses the whole transaction with the reason, as a real schedd does."""
    for name, (expression, reason) in requirements.items():
        for ad in (ad for jobs in clusters for ad in jobs):
            if adlib.parse_expr(expression).eval(adlib.to_classad(ad)) is not True:
                why = adlib.parse_expr(reason).eval(adlib.to_classad(ad)) if reason else f"{name} is false"
                raise SubmitError(f"Failed to commit job submission into the queue.\nERROR: {why}")


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def submission_program(state: State, argv: list[str]) -> Outcome:
    """``autopyfactory-condor-submit``: the factory's program, its schedd emulated (bindings.py)."""
    out, err = io.StringIO(), io.StringIO()

    def connect(name: str, pool: str) -> EmulatedSchedd:
        return EmulatedSchedd(state, name, pool)

    with contextlib.redirect_stderr(err):
        code = submitter.run(argv, connect, out)
    return Outcome(out.getvalue(), err.getvalue(), code)


# --- condor_q and condor_history ---------------------------------------------------------------


def condor_q(state: State, args: Args, argv: list[str]) -> Outcome:
    if not args.flag("json"):
        raise UsageError("condor_emulator: condor_q is emulated with -json output only")
    for constraint in args.values("constraint"):
        if adlib.parse_expr(constraint) is None:
            index = argv.index(constraint) + 1  # condor counts argv[0]
            raise UsageError(f"Error: Argument {index} ({constraint}) is not a valid constraint")
    expr = _filter(args, "Error: {} is not a valid constraint")
    jobs = adlib.by_job_id(state.load(args.value("name")).jobs)
    selected = [ad for ad in jobs if adlib.matches(expr, ad)]
    return Outcome(out=adlib.json_list(selected, _attributes(args), empty=""))


def condor_history(state: State, args: Args, _argv: list[str]) -> Outcome:
    """Newest first; stops at the -since job id or when the -since expression becomes true."""
    if not args.flag("json"):
        raise UsageError("condor_emulator: condor_history is emulated with -json output only")
    expr = _filter(args, "Error:  could not parse constraint {}")
    since = _since(args.value("since"))
    limit = int(args.value("limit") or args.value("match") or 0)
    scanlimit = int(args.value("scanlimit") or 0)
    selected: list[Ad] = []
    for scanned, ad in enumerate(reversed(state.load(args.value("name")).history), start=1):
        if since is not None and adlib.matches(since, ad):
            break
        if adlib.matches(expr, ad):
            selected.append(ad)
        if (limit and len(selected) >= limit) or (scanlimit and scanned >= scanlimit):
            break
    return Outcome(out=adlib.json_list(selected, _attributes(args), empty="[\n]\n"))


def _filter(args: Args, error: str) -> classad2.ExprTree:
    clauses = [*args.values("constraint"), adlib.id_constraint(args.positional)]
    text = " && ".join(f"({clause})" for clause in clauses if clause) or "true"
    expr = adlib.parse_expr(text)
    if expr is None:
        raise UsageError(error.format(text))
    return expr


def _since(value: str | None) -> classad2.ExprTree | None:
    if value is None:
        return None
    if _JOB_ID.fullmatch(value) or _CLUSTER.fullmatch(value):
        return adlib.parse_expr(adlib.target_constraint(value))
    expr = adlib.parse_expr(value)
    if expr is None:
        hint = "constraint must be a job-id, or expression."
        raise UsageError(f"Error: invalid -since constraint: {value}\n\t{hint}")
    return expr


def _attributes(args: Args) -> list[str] | None:
    value = args.value("attributes")
    return [name.strip() for name in re.split(r"[,\s]+", value) if name.strip()] if value else None


# --- condor_rm and condor_release --------------------------------------------------------------


@dataclass(frozen=True)
class _Action:
    verb: str  # for "Couldn't find/<verb> all jobs ..."
    done: str  # for "Job 1.0 <done>" and "All jobs ... have been <done>"
    applies: Callable[[Ad], bool]
    apply: Callable[[Schedd, Ad, int, str], None]


def remove_job(schedd: Schedd, ad: Ad, at: int, reason: str) -> None:
    """Removed jobs leave the queue at once (no lingering "X" state) and go to the history."""
    adlib.finish(ad, JobStatus.REMOVED, at, reason=reason)
    schedd.jobs.remove(ad)
    schedd.history.append(ad)


def release_job(_schedd: Schedd, ad: Ad, at: int, reason: str) -> None:
    adlib.enter(ad, JobStatus.IDLE, at)
    ad["ReleaseReason"] = reason


def _is_held(ad: Ad) -> bool:
    return bool(ad["JobStatus"] == JobStatus.HELD)


_REMOVE = _Action("remove", "marked for removal", lambda ad: True, remove_job)
_RELEASE = _Action("release", "released", _is_held, release_job)


def condor_rm(state: State, args: Args, _argv: list[str]) -> Outcome:
    return _job_action(state, args, _REMOVE, args.value("reason") or "via condor_rm")


def condor_release(state: State, args: Args, _argv: list[str]) -> Outcome:
    return _job_action(state, args, _RELEASE, "via condor_release")


def _job_action(state: State, args: Args, action: _Action, reason: str) -> Outcome:
    """Job ids one by one (one message each), then clusters/users/-constraint/-all together."""
    ids = [word for word in args.positional if _JOB_ID.fullmatch(word)]
    constraint, described = _action_constraint(args)
    if not ids and constraint is None:
        raise UsageError("You did not specify any jobs")
    outcome = Outcome()
    reason = f"{reason} (by user {current_user()})"
    with state.update(args.value("name")) as schedd:
        now = int(time.time())
        for job_id in ids:
            _act_on_id(schedd, job_id, action, now, reason, outcome)
        if constraint is not None:
            _act_on_constraint(schedd, constraint, described, action, (now, reason), outcome)
    return outcome


def _action_constraint(args: Args) -> tuple[str | None, str]:
    """The combined constraint and how condor_rm describes it ("matching constraint (...)")."""
    words = [word for word in args.positional if not _JOB_ID.fullmatch(word)]
    clauses = [*args.values("constraint"), *([adlib.id_constraint(words)] if words else [])]
    if args.flag("all"):
        return "ClusterId >= 0", ""
    if not clauses:
        return None, ""
    if len(words) == 1 and not args.values("constraint"):
        kind = "in cluster" if _CLUSTER.fullmatch(words[0]) else "of user"
        shown = words[0] if kind == "in cluster" else classad2.quote(words[0])
        return clauses[0], f" {kind} {shown}"
    text = clauses[0] if len(clauses) == 1 else " && ".join(f"({clause})" for clause in clauses)
    return text, f" matching constraint ({text})"


def _act_on_id(schedd: Schedd, job_id: str, action: _Action, now: int, reason: str, outcome: Outcome) -> None:
    ad = next((ad for ad in schedd.jobs if adlib.job_id(ad) == job_id), None)
    if ad is None:
        outcome.err += f"Job {job_id} not found\n"
    elif not action.applies(ad):
        outcome.err += f"Job {job_id} not held to be released\n"
    else:
        action.apply(schedd, ad, now, reason)
        outcome.out += f"Job {job_id} {action.done}\n"
        return
    outcome.code = 1


def _act_on_constraint(
    schedd: Schedd, constraint: str, described: str, action: _Action, when: tuple[int, str], outcome: Outcome
) -> None:
    expr = adlib.parse_expr(constraint)
    jobs = schedd.jobs if expr is not None else []
    selected = [ad for ad in jobs if adlib.matches(expr, ad) and action.applies(ad)]
    for ad in selected:
        action.apply(schedd, ad, *when)
    if selected:
        outcome.out += f"All jobs{described} have been {action.done}\n"
    elif not schedd.jobs:
        outcome.err += f"condor_{'rm' if action is _REMOVE else 'release'}:0:There are no jobs in the queue\n"
    else:
        outcome.err += f"Couldn't find/{action.verb} all jobs{described}\n"
        outcome.code = 1


_Handler = Callable[[State, Args, list[str]], Outcome]
_COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], _Handler]] = {
    "condor_submit": (("terse",), (), condor_submit),
    "condor_q": (("json", "allusers", "nobatch"), ("constraint", "attributes"), condor_q),
    "condor_history": (("json",), ("constraint", "attributes", "since", "limit", "match", "scanlimit"),
                       condor_history),
    "condor_rm": (("all",), ("constraint", "reason"), condor_rm),
    "condor_release": (("all",), ("constraint",), condor_release),
    SUBMITTER: ((), (), lambda state, _args, argv: submission_program(state, argv)),
}  # fmt: skip
COMMAND_NAMES = tuple(_COMMANDS)
