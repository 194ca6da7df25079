"""``autopyfactory-condor-submit``: a cycle's pilots to one schedd, each label its own cluster.

    autopyfactory-condor-submit [-name SCHEDD] [-pool POOL] REQUESTS.json

``REQUESTS.json`` (written by ``bulk.py``, kept beside the pilot logs) lists each label's complete
submit description and pilot count::

    {"format": 1, "labels": [{"label": NAME, "count": N, "description": TEXT, "keys": true}, ...]}

(``keys`` optional, default false).

For each label, in order, the program makes one ``Schedd.submit(Submit(description), count=N)``
with HTCondor's Python bindings: one transaction and one cluster per label, from nothing but that
label's own description. Nothing of one label can reach another's pilots (one cluster's jobs share
its first job's environment and every attribute a later job leaves unset, so labels never share a
cluster), and a schedd that refuses a label (``SUBMIT_REQUIREMENT``, ``MAX_JOBS_PER_OWNER``)
refuses that label's transaction only. It prints one JSON line per label on stdout, flushed at
once, so that whatever happens later, every submitted cluster is known to the factory::

    {"label": NAME, "outcome": "submitted", "cluster": C, "first": P, "count": K,
     "key_sha256": [DIGEST, ...]}                           the digests only with "keys"
    {"label": NAME, "outcome": "refused", "error": WHY}   nothing queued: the schedd said why,
                                                            or the label was never sent
    {"label": NAME, "outcome": "unknown", "error": WHY}   the schedd's answer to the commit was
                                                            lost: its jobs may be queued

After an unknown outcome or a broken connection the labels after it are not tried (``refused``,
``not tried: ...``): nothing is ever sent twice. The exit code is 0 when every label has its line,
2 for a bad command line or request file (then nothing was submitted).

**Pilot keys.** For a label with ``keys``, the program makes a fresh pilot key per job
(domain/pilot_keys.py) and submits the label's jobs as item data, one row per job, each row
setting the submit variable ``APF_PILOT_KEY`` that the description's ``environment`` names
(``APFMON_KEY=$(APF_PILOT_KEY)``): still one transaction and one cluster, but each job's
``Environment`` holds its own key. The keys live only in this process's memory and in the jobs;
the line it prints carries their SHA-256 digests, in job order, which the factory announces to the
monitor. The request file, which stays on disk beside the pilot logs, holds no key.

Why a program of its own rather than the bindings inside the factory: the factory's deadline
(``condorTimeout``) holds for a schedd that hangs (the program is killed, with its process group,
like any condor tool), and the bindings' C code shares no process with the factory. Why the
bindings rather than condor_submit: one condor_submit per label costs a process per label (about
seven times slower at 400 labels), and one condor_submit for many labels either needs several
``queue`` statements (deprecated in HTCondor 25) or one cluster for all (which leaks, see above);
docs/performance.md has the measurements.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import htcondor2

from autopyfactory.batch.condor.submit import KEY_MACRO_NAME
from autopyfactory.domain.pilot_keys import key_digest, new_pilot_key

FORMAT = 1
USAGE = "usage: autopyfactory-condor-submit [-name SCHEDD] [-pool POOL] REQUESTS.json"
EXIT_USAGE = 2

#: The schedd's refusal codes of a new job (condor_qmgr.h NEWJOB_ERR_*), as condor_submit says them.
NEW_JOB_REFUSALS = {
    -2: "Number of submitted jobs would exceed MAX_JOBS_SUBMITTED",
    -3: "Number of submitted jobs would exceed MAX_JOBS_PER_OWNER",
    -4: "Number of submitted jobs would exceed MAX_JOBS_PER_SUBMISSION",
    -5: "Owner is disabled in this schedd",
    -6: "Owner is not known to this schedd",
    -7: "Owner is not allowed to submit to this schedd",
    -10: "internal error of the schedd",
}
_NEW_PROC = re.compile(r"Schedd says (-\d+)")


class ScheddClient(Protocol):
    """One schedd, as far as this program uses it (the bindings' Schedd, or the test emulator's)."""

    def submit(
        self, description: str, count: int, items: Sequence[Mapping[str, str]] = ()
    ) -> tuple[int, int, int]:
        """Queue ``count`` jobs of ``description`` in one transaction: (cluster, first proc, procs);
        with ``items``, one job per item instead, each with the item's submit variables. Raises an
        exception whose message is the bindings' (see :func:`judge`)."""
        ...


Connect = Callable[[str, str], ScheddClient]


@dataclass(frozen=True)
class Request:
    label: str
    count: int
    description: str
    keys: bool = False


@dataclass(frozen=True)
class Verdict:
    """What a failed ``Schedd.submit`` means: ``outcome`` refused or unknown; ``stop``: the
    connection is broken, so the labels after it are not tried."""

    outcome: str
    error: str
    stop: bool


def judge(message: str) -> Verdict:
    """The verdict on a failed submission from the bindings' message (htcondor2's schedd.cpp).

    Only a failed commit can have queued anything, and only when the schedd's answer was lost: a
    refusing schedd answers with its reason (``SCHEDD:<code>:<why>``). Every failure before the
    commit aborts the transaction, so nothing was queued.
    """
    text = " ".join(message.split()) or "no message"
    if text.startswith("Unable to commit transaction"):
        if "SCHEDD:" in text:
            return Verdict("refused", text.split("SCHEDD:", 1)[1].split(":", 1)[-1].strip() or text, False)
        return Verdict("unknown", text, True)
    refusal = _NEW_PROC.search(text)
    if refusal and int(refusal[1]) in NEW_JOB_REFUSALS:
        return Verdict("refused", NEW_JOB_REFUSALS[int(refusal[1])], False)
    broken = text.startswith(("Failed to connect", "Failed to send", "Failed to get parent ad"))
    return Verdict("refused", text, broken)


Emit = Callable[[dict[str, Any]], None]


def submit_all(
    requests: Sequence[Request], client: ScheddClient | None, emit: Emit, why_none: str = ""
) -> None:
    """Submit each request in order and ``emit`` its line (see the module doc); ``client`` None:
    the schedd could not be found (``why_none``), nothing is tried."""
    stopped = "" if client is not None else why_none
    for request in requests:
        if stopped:
            emit({"label": request.label, "outcome": "refused", "error": f"not tried: {stopped}"})
            continue
        assert client is not None
        keys = [new_pilot_key() for _ in range(request.count)] if request.keys else []
        try:
            check_executable(request.description)
            items = [{KEY_MACRO_NAME: key} for key in keys]
            cluster, first, procs = client.submit(request.description, request.count, items)
        except Exception as exc:  # noqa: BLE001  the bindings raise HTCondorException, ValueError, RuntimeError
            verdict = judge(str(exc))
            emit({"label": request.label, "outcome": verdict.outcome, "error": verdict.error})
            stopped = verdict.error if verdict.stop else ""
            continue
        line: dict[str, Any] = {
            "label": request.label,
            "outcome": "submitted",
            "cluster": cluster,
            "first": first,
            "count": procs,
        }
        if keys:
            line["key_sha256"] = [key_digest(key) for key in keys[:procs]]
        emit(line)


def check_executable(description: str) -> None:
    """What condor_submit checks and the bindings do not: the executable to transfer is there
    (else every pilot would be held, unable to start). ValueError in condor_submit's words."""
    parsed = htcondor2.Submit(description)
    transfer = str(parsed.get("transfer_executable", "true")).strip().lower()
    path = parsed.expand("executable") if "executable" in parsed else ""
    if transfer not in ("false", "no", "0") and path and not os.access(path, os.R_OK):
        why = "No such file or directory" if not os.path.exists(path) else "not readable"
        raise ValueError(f"Can't access executable file {path}: {why}")


def read_requests(text: str) -> list[Request]:
    """The request file's labels; ValueError naming what is wrong."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("labels"), list):
        raise ValueError(f"not a format-{FORMAT} request file")
    requests = []
    for item in data["labels"]:
        label, count, description = item.get("label"), item.get("count"), item.get("description")
        keys = item.get("keys", False)
        if not (
            isinstance(label, str)
            and isinstance(description, str)
            and type(count) is int
            and count > 0
            and isinstance(keys, bool)
        ):
            raise ValueError(f"bad entry {json.dumps(item)[:120]}")
        requests.append(Request(label, count, description, keys))
    return requests


def parse_argv(argv: Sequence[str]) -> tuple[str, str, str]:
    """(schedd name, pool, request file) from the command line; ValueError for anything else."""
    name = pool = path = ""
    words = iter(argv)
    for word in words:
        if word in ("-name", "-pool"):
            value = next(words, None)
            if value is None:
                raise ValueError(f"{word} needs a value")
            name, pool = (value, pool) if word == "-name" else (name, value)
        elif word.startswith("-") or path:
            raise ValueError(f"unexpected argument {word!r}")
        else:
            path = word
    if not path:
        raise ValueError("no request file")
    return name, pool, path


def run(argv: Sequence[str], connect: Connect, out: IO[str]) -> int:
    """The program: ``argv`` without the program name; lines to ``out``; the exit code."""
    try:
        name, pool, path = parse_argv(argv)
        with open(path, encoding="utf-8") as handle:
            requests = read_requests(handle.read())
    except (OSError, ValueError) as exc:
        print(f"autopyfactory-condor-submit: {exc}\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE

    def emit(line: dict[str, Any]) -> None:
        out.write(json.dumps(line) + "\n")
        out.flush()

    try:
        client: ScheddClient | None = connect(name, pool)
        why = ""
    except Exception as exc:  # noqa: BLE001  a schedd that cannot be found or asked: every label says why
        client, why = None, " ".join(str(exc).split()) or type(exc).__name__
    submit_all(requests, client, emit, why)
    return 0


class BindingsSchedd:
    """A schedd through HTCondor's Python bindings (htcondor2), found like condor_submit finds it."""

    def __init__(self, name: str, pool: str) -> None:
        if name:
            ad = htcondor2.Collector(pool or None).locate(htcondor2.DaemonType.Schedd, name)
            if ad is None:
                raise LookupError(f"cannot find the address of schedd {name} in pool {pool or '(local)'}")
            self._schedd = htcondor2.Schedd(ad)
        else:
            self._schedd = htcondor2.Schedd()

    def submit(
        self, description: str, count: int, items: Sequence[Mapping[str, str]] = ()
    ) -> tuple[int, int, int]:
        """``items``: one job per item (count 1 each: the description's own ``queue N`` would
        otherwise queue N jobs per item)."""
        submit = htcondor2.Submit(description)
        if items:
            result = self._schedd.submit(submit, count=1, itemdata=iter([dict(item) for item in items]))
        else:
            result = self._schedd.submit(submit, count=count)
        return result.cluster(), result.first_proc(), result.num_procs()


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, BindingsSchedd, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
