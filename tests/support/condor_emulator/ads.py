"""Job ads: conversion to real ClassAds, constraints, condor's JSON output, status transitions.

Ads are stored as ``json.loads`` of condor's JSON form of a ClassAd (what a client of
``condor_q -json`` sees): literals are plain values and unevaluated expressions are the strings
``"/Expr(<expr>)/"``. Everything that condor itself would compute (constraint evaluation, the JSON
text) goes through the real ``classad2`` so the emulator cannot drift from condor's syntax.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import Any

import classad2

from .state import Ad

GRID_UNIVERSE = 9
_EXPR = re.compile(r"/Expr\((.*)\)/", re.DOTALL)
_JOB_ID = re.compile(r"(\d+)\.(\d+)")
_CLUSTER = re.compile(r"\d+")


class JobStatus(IntEnum):
    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7


FINISHED = (JobStatus.REMOVED, JobStatus.COMPLETED)


def to_classad(ad: Ad) -> classad2.ClassAd:
    result = classad2.ClassAd()
    for name, value in ad.items():
        result[name] = _classad_value(value)
    return result


def from_classad(ad: classad2.ClassAd) -> Ad:
    stored: Ad = json.loads(ad.printJson())
    return stored


def _classad_value(value: Any) -> Any:
    if isinstance(value, str) and (match := _EXPR.fullmatch(value)):
        return classad2.ExprTree(match[1])
    if value is None:
        return classad2.ExprTree("undefined")
    return value


def job_id(ad: Ad) -> str:
    return f"{ad['ClusterId']}.{ad['ProcId']}"


def by_job_id(ads: Iterable[Ad]) -> list[Ad]:
    return sorted(ads, key=lambda ad: (ad["ClusterId"], ad["ProcId"]))


# --- constraints -------------------------------------------------------------------------------


def parse_expr(text: str) -> classad2.ExprTree | None:
    """The parsed expression, or None when condor would reject it as a constraint."""
    try:
        return classad2.ExprTree(text)
    except classad2.ClassAdException:
        return None


def matches(expr: classad2.ExprTree, ad: Ad) -> bool:
    """Condor's EvalExprBool: true for boolean true or a non-zero number, else false."""
    value = expr.eval(to_classad(ad))
    if isinstance(value, bool):
        return value
    return isinstance(value, int | float) and value != 0


def id_constraint(words: Sequence[str]) -> str | None:
    """condor_q/condor_history positional arguments: job ids, clusters, owners (OR-ed)."""
    clauses = []
    for word in words:
        if match := _JOB_ID.fullmatch(word):
            clauses.append(f"ClusterId == {match[1]} && ProcId == {match[2]}")
        elif _CLUSTER.fullmatch(word):
            clauses.append(f"ClusterId == {word}")
        else:
            clauses.append(f"Owner == {classad2.quote(word)}")
    return " || ".join(f"({clause})" for clause in clauses) or None


def target_constraint(target: str) -> str:
    """A job id (``12.0``), a cluster (``12``) or already a constraint, as a constraint."""
    is_id = _CLUSTER.fullmatch(target) or _JOB_ID.fullmatch(target)
    return (id_constraint([target]) or target) if is_id else target


# --- condor's JSON output ----------------------------------------------------------------------


def json_list(ads: Iterable[Ad], attributes: Sequence[str] | None, empty: str) -> str:
    """A list of ads as condor prints it: ``[``, ads separated by ``,``, ``]``, one per line.

    ``empty`` is what the tool prints when no ad is printed: nothing at all for condor_q
    (CondorClassAdListWriter writes the brackets only around ads), ``[\\n]\\n`` for condor_history
    (it prints its header and footer unconditionally).
    """
    chunks = [chunk for chunk in (json_ad(ad, attributes) for ad in ads) if chunk]
    if not chunks:
        return empty
    return "[\n" + ",\n".join(chunk + "\n" for chunk in chunks) + "]\n"


def json_ad(ad: Ad, attributes: Sequence[str] | None) -> str:
    """One ad, projected and sorted case-insensitively like condor; "" if nothing is left.

    Each attribute is printed by classad2's own JSON unparser (one single-attribute ClassAd at a
    time, because the unparser prints in hash order and condor prints in sorted order).
    """
    classad = to_classad(ad)
    wanted = {name.lower() for name in attributes} if attributes else None
    names = sorted((name for name in classad if wanted is None or name.lower() in wanted), key=str.lower)
    parts = []
    for name in names:
        single = classad2.ClassAd()
        single[name] = classad.lookup(name)
        parts.append(single.printJson()[2:-2])  # strip the "{\n" and "\n}" around the attribute
    return "{\n" + ",\n".join(parts) + "\n}" if parts else ""


# --- status transitions ------------------------------------------------------------------------


def enter(ad: Ad, status: JobStatus, at: int, started: int | None = None) -> None:
    """Move a job to ``status`` as the schedd does (run counters, hold and grid attributes).

    ``started``: when a running job really started, if earlier than ``at`` (an HTCondor-C job's
    JobCurrentStartDate is the CE side's start, copied by the gridmanager, while its
    EnteredCurrentStatus is when the gridmanager saw it running: seen on a real 25.0 pool)."""
    if ad["JobStatus"] == JobStatus.HELD and status != JobStatus.HELD:
        _forget_hold(ad)
    ad["LastJobStatus"] = ad["JobStatus"]
    ad["JobStatus"] = int(status)
    ad["EnteredCurrentStatus"] = at
    if status == JobStatus.RUNNING:
        ad["JobRunCount"] = ad.get("JobRunCount", 0) + 1
        ad["NumJobStarts"] = ad.get("NumJobStarts", 0) + 1
        ad["JobCurrentStartDate"] = at if started is None else started
        ad.setdefault("JobStartDate", ad["JobCurrentStartDate"])


def hold(ad: Ad, at: int, reason: str, code: int, subcode: int = 0) -> None:
    enter(ad, JobStatus.HELD, at)
    ad.update(HoldReason=reason, HoldReasonCode=code, HoldReasonSubCode=subcode)
    ad["NumHolds"] = int(ad.get("NumHolds", 0)) + 1  # the schedd counts every hold


def set_grid_status(ad: Ad, status: JobStatus, grid_status: str | None) -> None:
    """What an HTCondor-CE reports for a grid job: its remote status name and remote job id.

    A grid job that no CE has accepted yet has neither (the "never accepted" case the factory's
    periodic_hold looks for); any status the test sets means the CE has seen the job.
    """
    if ad.get("JobUniverse") != GRID_UNIVERSE:
        return
    default = {JobStatus.IDLE: "IDLE", JobStatus.RUNNING: "RUNNING", JobStatus.COMPLETED: "COMPLETED"}
    grid_status = grid_status or default.get(status)
    if grid_status:
        ad["GridJobStatus"] = grid_status
        ad.setdefault("GridJobId", f"{ad.get('GridResource', 'condor')} {job_id(ad)}")


def finish(ad: Ad, status: JobStatus, at: int, *, exit_code: int | None = None, reason: str = "") -> None:
    """Completed (with an exit code) or Removed (with a reason): the job leaves the queue."""
    enter(ad, status, at)
    ad["CompletionDate"] = at
    if status == JobStatus.COMPLETED:
        ad.update(ExitCode=exit_code or 0, ExitBySignal=False)
    else:
        ad["RemoveReason"] = reason


def periodic_action(ad: Ad) -> tuple[str, str] | None:
    """What the schedd's periodic policy does to a job now: ("hold"|"release"|"remove", reason).

    Like condor's UserPolicy: PeriodicHold for jobs not held, PeriodicRelease for held jobs, then
    PeriodicRemove; an expression counts only when it evaluates to true (undefined does not).
    """
    held = ad["JobStatus"] == JobStatus.HELD
    classad = to_classad(ad)
    for attribute, action, applies in (("PeriodicHold", "hold", not held),
                                       ("PeriodicRelease", "release", held),
                                       ("PeriodicRemove", "remove", True)):  # fmt: skip
        if applies and attribute in classad and classad.eval(attribute) is True:
            expr = classad.lookup(attribute)
            return action, f"The job attribute {attribute} expression '{expr}' evaluated to TRUE"
    return None


def _forget_hold(ad: Ad) -> None:
    ad["LastHoldReason"] = ad.pop("HoldReason", "")
    ad["LastHoldReasonCode"] = ad.pop("HoldReasonCode", 0)
    ad.pop("HoldReasonSubCode", None)
