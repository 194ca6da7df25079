"""Submit files to job ads, the way condor_submit builds them, for what the factory uses.

The file is parsed by the real ``htcondor2.Submit`` (so anything it rejects is rejected here) and
macros such as ``$(Cluster).$(Process)`` are expanded by ``Submit.expand`` per job, with the same
live macros condor_submit sets (Cluster/ClusterId, Process/ProcId, Step, ItemIndex/Row, Item and
the queue loop variables). ``Submit.jobs()``/``procs()`` are not implemented in htcondor2, so the
mapping of submit keys to job attributes below is ours: it covers the keys a pilot factory writes.

Several ``queue`` statements in one file behave as in HTCondor 25.0 (checked against a real
schedd): each statement queues the jobs of the file *so far*; a new cluster starts only when the
value of ``executable`` changed since the previous statement; a job ad starts from the previous
statement's one, so a later empty ``key =`` clears a ``+Attr`` and nothing else; condor_submit
prints a deprecation warning on stderr.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import classad2
import htcondor2

from .ads import GRID_UNIVERSE, JobStatus, from_classad, to_classad
from .state import Ad

UNIVERSES = {"vanilla": 5, "docker": 5, "container": 5, "scheduler": 7, "grid": 9, "java": 10,
             "parallel": 11, "local": 12, "vm": 13}  # fmt: skip
_QUEUE = re.compile(r"\s*queue\b", re.IGNORECASE)
_COUNT = re.compile(r"\s*(\d+)")
_NOTIFICATION = {"never": 0, "always": 1, "complete": 2, "error": 3}


class SubmitError(Exception):
    """The submit file is invalid; the message is what condor_submit prints after ``ERROR:``."""


@dataclass(frozen=True)
class Context:
    """What condor_submit knows besides the file: the cluster id, the time, who and where."""

    cluster: int
    now: int
    owner: str
    cwd: str
    schedd: str


MULTI_QUEUE_WARNING = (
    "\nWarning: Use of multiple queue statements in a single submit file is deprecated.\n"
    "         This functionality will be removed in the 25.x feature series. To see\n"
    "         how multiple queue statements can be converted into one visit:\n"
    "https://htcondor.readthedocs.io/en/latest/auto-redirect.html?category=example&tag=convert-multi-queue-statements\n"
)


def parse(text: str) -> htcondor2.Submit:
    """The description of a file with exactly one queue statement."""
    blocks = parse_blocks(text)
    if len(blocks) > 1:
        raise SubmitError("parse() takes one queue statement; use parse_blocks()")
    return blocks[0]


def parse_blocks(text: str) -> list[htcondor2.Submit]:
    """One description per queue statement: the file up to it (earlier queue lines left out)."""
    lines = text.splitlines()
    ends = _queue_lines(lines)
    if not ends:
        raise SubmitError("no queue statement in the submit file")
    blocks = []
    for end in ends:
        upto = [line for number, line in enumerate(lines[: end + 1]) if number == end or number not in ends]
        try:
            blocks.append(htcondor2.Submit("\n".join(upto) + "\n"))
        except (ValueError, RuntimeError) as exc:
            raise SubmitError(f"on Line {_first_bad_line(text)} of submit file: {exc}") from None
    return blocks


def job_ads(
    submit: htcondor2.Submit, context: Context, first_proc: int = 0, base: Ad | None = None
) -> list[Ad]:
    """One ad per job of the queue statement, ProcIds from ``first_proc`` in ``context.cluster``;
    each ad starts from ``base`` (the previous queue statement's last ad, if any)."""
    procs = _procs(submit)
    ads = []
    for offset, macros in enumerate(procs):
        proc_id = first_proc + offset
        macros.update(Cluster=str(context.cluster), ClusterId=str(context.cluster),
                      Process=str(proc_id), ProcId=str(proc_id))  # fmt: skip
        for name, value in macros.items():
            submit[name] = value
        ads.append(_job_ad(submit, context, proc_id, first_proc + len(procs), base))
    return ads


def executable_of(submit: htcondor2.Submit) -> str:
    """The raw value of ``executable``: a change of it starts a new cluster."""
    return str(submit.get("executable", ""))


def _queue_lines(lines: list[str]) -> list[int]:
    """Line numbers of the queue statements (an item list in parentheses ends at its ``)``)."""
    found, in_items = [], False
    for number, line in enumerate(lines):
        if in_items:
            in_items = ")" not in line
            if not in_items:
                found[-1] = number
        elif _QUEUE.match(line):
            found.append(number)
            in_items = "(" in line and ")" not in line
    return found


def _first_bad_line(text: str) -> int:
    """Where htcondor2 most likely stopped: the first statement that is not ``name = value``."""
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and "=" not in stripped and not _QUEUE.match(line):
            return number
    return len(lines)


def _procs(submit: htcondor2.Submit) -> list[dict[str, str]]:
    """The live macros of each job: ``queue N [vars in/from/matching items]``."""
    count_match = _COUNT.match(submit.getQArgs() or "")
    count = int(count_match[1]) if count_match else 1
    try:
        items = list(submit.itemdata() or [{}])
    except ValueError as exc:
        raise SubmitError(f"invalid queue statement: {exc}") from None
    procs = []
    for row, item in enumerate(items):
        variables = {"Item": item} if isinstance(item, str) else dict(item)
        for step in range(count):
            procs.append({**variables, "Step": str(step), "ItemIndex": str(row), "Row": str(row)})
    return procs


def _job_ad(submit: htcondor2.Submit, context: Context, proc_id: int, total: int, base: Ad | None) -> Ad:
    universe = _universe(submit)
    iwd = _absolute(_get(submit, "initialdir") or context.cwd, context.cwd)
    ad = classad2.ClassAd()
    if base:
        ad.update(to_classad(base))
    ad.update({
        "ClusterId": context.cluster, "ProcId": proc_id, "JobStatus": int(JobStatus.IDLE),
        "EnteredCurrentStatus": context.now, "QDate": context.now, "Owner": context.owner,
        "JobUniverse": universe, "Iwd": iwd, "JobRunCount": 0, "NumJobStarts": 0, "JobPrio": 0,
        "CompletionDate": 0, "LastJobStatus": 0, "TotalSubmitProcs": total, "MyType": "Job",
        "TargetType": "Machine", "In": "/dev/null", "Out": "/dev/null", "Err": "/dev/null",
        "GlobalJobId": f"{context.schedd}#{context.cluster}.{proc_id}#{context.now}",
    })  # fmt: skip
    for key, attribute, convert in _KEYS:
        value = _get(submit, key)
        if value is not None:
            ad[attribute] = convert(value, iwd)
    _executable(submit, ad, iwd)
    _arguments_and_environment(submit, ad)
    _check_grid_and_log(ad, universe)
    for key in submit:
        if not key.lower().startswith("my."):
            continue
        if (value := _get(submit, key)) is not None:
            ad[key[3:]] = _expr(value, f"{key[3:]} = {value}")
        elif key[3:] in ad:  # an empty +Attr clears what an earlier queue statement set
            ad[key[3:]] = classad2.ExprTree("undefined")  # condor_q -json: null
    return from_classad(ad)


def _get(submit: htcondor2.Submit, key: str) -> str | None:
    """The expanded value of a submit key, None when absent or empty (condor's "not set")."""
    if key not in submit:
        return None
    try:
        return submit.expand(key).strip() or None
    except KeyError:  # htcondor2 cannot expand a key set to nothing (``+Attr =``)
        return None


def _universe(submit: htcondor2.Submit) -> int:
    name = (_get(submit, "universe") or "vanilla").lower()
    if name not in UNIVERSES:
        raise SubmitError(f"I don't know about the '{name}' universe.")
    return UNIVERSES[name]


def _executable(submit: htcondor2.Submit, ad: classad2.ClassAd, iwd: str) -> None:
    executable = _get(submit, "executable")
    if executable is None:
        raise SubmitError("No 'executable' parameter was provided")
    path = _absolute(executable, iwd)
    transfer = (_get(submit, "transfer_executable") or "true").lower() not in ("false", "no", "0")
    if transfer and not os.path.exists(path):
        raise SubmitError(f"Executable file {path} does not exist")
    ad["Cmd"] = path


def _arguments_and_environment(submit: htcondor2.Submit, ad: classad2.ClassAd) -> None:
    """New syntax (double-quoted) goes to Arguments/Environment, old syntax to Args/Env."""
    for key, new, old in (("arguments", "Arguments", "Args"), ("environment", "Environment", "Env")):
        value = _get(submit, key)
        if value is None:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            ad[new] = value[1:-1].replace('""', '"')
        else:
            ad[old] = value


def _check_grid_and_log(ad: classad2.ClassAd, universe: int) -> None:
    if universe == GRID_UNIVERSE and "GridResource" not in ad:
        raise SubmitError("grid_resource must be set for universe = grid")
    if "UserLog" in ad and not os.path.isdir(os.path.dirname(ad["UserLog"])):
        raise SubmitError(f'Invalid log file: "{ad["UserLog"]}" (No such file or directory)')


def _absolute(path: str, iwd: str) -> str:
    return os.path.normpath(Path(iwd, path))


def _string(value: str, _iwd: str) -> str:
    return value


def _path(value: str, iwd: str) -> str:
    return _absolute(value, iwd)


def _upper(value: str, _iwd: str) -> str:
    return value.upper()


def _bool(value: str, _iwd: str) -> bool:
    return value.lower() in ("true", "yes", "1", "t", "y")


def _notification(value: str, _iwd: str) -> int:
    return _NOTIFICATION.get(value.lower(), 0)


def _expression(value: str, _iwd: str) -> classad2.ExprTree:
    return _expr(value, value)


def _expr(value: str, shown: str) -> classad2.ExprTree:
    try:
        return classad2.ExprTree(value)
    except classad2.ClassAdException:
        raise SubmitError(f"Parse error in expression: \n\t{shown}\n\t") from None


_KEYS: list[tuple[str, str, Callable[[str, str], Any]]] = [
    ("output", "Out", _string), ("error", "Err", _string), ("input", "In", _string),
    ("log", "UserLog", _path), ("x509userproxy", "x509userproxy", _path),
    ("scitokens_file", "ScitokensFile", _path), ("grid_resource", "GridResource", _string),
    ("batch_name", "JobBatchName", _string), ("globus_rsl", "GlobusRSL", _string),
    ("globusrsl", "GlobusRSL", _string), ("nordugrid_rsl", "NordugridRSL", _string),
    ("arc_resources", "ArcResources", _string), ("arc_rte", "ArcRte", _string),
    ("should_transfer_files", "ShouldTransferFiles", _upper),
    ("when_to_transfer_output", "WhenToTransferOutput", _upper),
    ("transfer_executable", "TransferExecutable", _bool), ("stream_output", "StreamOut", _bool),
    ("stream_error", "StreamErr", _bool), ("notification", "JobNotification", _notification),
    ("request_cpus", "RequestCpus", _expression), ("request_memory", "RequestMemory", _expression),
    ("request_disk", "RequestDisk", _expression), ("requirements", "Requirements", _expression),
    ("rank", "Rank", _expression), ("periodic_hold", "PeriodicHold", _expression),
    ("periodic_release", "PeriodicRelease", _expression),
    ("periodic_remove", "PeriodicRemove", _expression), ("on_exit_hold", "OnExitHold", _expression),
    ("on_exit_remove", "OnExitRemove", _expression),
]  # fmt: skip
