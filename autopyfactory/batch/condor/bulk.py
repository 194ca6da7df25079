"""One submission per schedd and cycle, each label its own cluster, every job id known.

Every label that gets pilots on a schedd is rendered on its own (:func:`render_submit`, validated
with HTCondor's parser, so a label that cannot be rendered drops out alone). The labels'
descriptions go into one request file per schedd and cycle,
``<baseLogDir>/<date>/_submit/<schedd>-NNNN.json`` (kept for troubleshooting:
``autopyfactory-condor-submit -name <schedd> <file>`` replays it by hand), and one run of
``autopyfactory-condor-submit`` (submitter.py) submits them: one transaction, one cluster per
label, from nothing but the label's own description. So no setting of one label can reach another
label's pilots, and a schedd's refusal of one label (its reason) costs that label only.

The program is found on PATH like condor's own tools, else run with this Python
(``-m autopyfactory.batch.condor.submitter``). It prints one line per label as soon as the schedd
answered; the factory keeps every line that arrived, also when the program then fails, hangs past
``condorTimeout`` or prints stray lines:

* ``submitted``: the label's job ids, exactly, and with pilot keys each job's key digest (the
  program makes the keys, so no key is ever in the request file or in the factory);
* ``refused``: "not submitted" with the schedd's reason (nothing was queued);
* ``unknown`` or no line for a label the program was at when it stopped: "outcome unknown"
  (the label stays unsettled until a census lists its pilots, which are then announced: nothing
  queued is lost);
* no line for a label after that one: "not submitted" (the program works through the labels in
  order and had not reached it).

Nothing is submitted again in the same cycle: the next cycle decides afresh from its census.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopyfactory.batch.condor.command import Schedd, run_program_keep
from autopyfactory.batch.condor.submit import render_submit, validate, write_submit_file
from autopyfactory.batch.condor.submitter import FORMAT
from autopyfactory.batch.interface import SubmitContext, SubmitOutcome
from autopyfactory.batch.pilot import SubmitRenderError, log_dir
from autopyfactory.domain.label import Label
from autopyfactory.domain.pilot_keys import is_digest

log = logging.getLogger(__name__)

#: The submission program (setup.py's console script); without it on PATH, this Python runs it.
SUBMITTER = "autopyfactory-condor-submit"
SUBMITTER_MODULE = "autopyfactory.batch.condor.submitter"
BATCH_DIR = "_submit"  # below <baseLogDir>/<date>/, beside the label directories
_SLUG = re.compile(r"[^A-Za-z0-9_.@-]+")
_OUTCOMES = ("submitted", "refused", "unknown")


def submitter_command() -> list[str]:
    """How to run the submission program: from PATH, else as a module of this Python."""
    found = shutil.which(SUBMITTER)
    return [found] if found else [sys.executable, "-m", SUBMITTER_MODULE]


@dataclass(frozen=True)
class Rendered:
    """One label's validated description without its count (the first and last lines)."""

    label: Label
    context: SubmitContext
    body: str
    keyed: bool = False

    def description(self, n: int) -> str:
        label = self.label
        comment = " ".join(
            f"# autopyfactory label {label.name}: {n} pilots for PanDA queue {label.pq}".splitlines()
        )
        return f"{comment}\n{self.body}queue {n}\n"


def render_label(label: Label, context: SubmitContext, keyed: bool = False) -> Rendered:
    """The label's own description, validated; raises SubmitRenderError."""
    text = render_submit(label, 1, context, keyed)
    validate(text)
    lines = text.splitlines(keepends=True)
    return Rendered(label, context, "".join(lines[1:-1]), keyed)


class BlockCache:
    """Each label's rendered and validated description, kept while the label object and the
    context stay the same (labels are rebuilt only when schedconfig changes; the context changes
    daily): a steady cycle renders and validates nothing again, only the count changes."""

    def __init__(self) -> None:
        self._entries: dict[str, Rendered] = {}
        self.made_dirs: set[str] = set()  # label log directories known to exist

    def description(self, label: Label, n: int, context: SubmitContext, keyed: bool = False) -> str:
        if n < 1:
            raise SubmitRenderError(f"{label.name}: cannot submit {n} pilots")
        entry = self._entries.get(label.name)
        if entry is None or entry.label is not label or entry.context != context or entry.keyed != keyed:
            entry = self._entries[label.name] = render_label(label, context, keyed)
        return entry.description(n)


@dataclass(frozen=True)
class BatchResult:
    outcomes: dict[str, SubmitOutcome]
    calls: int


def submit_batch(
    requests: Sequence[tuple[Label, int]],
    context: SubmitContext,
    schedd: Schedd,
    timeout: float,
    cache: BlockCache | None = None,
    pilot_keys: bool = False,
) -> BatchResult:
    """Submit all ``requests`` (label, n) of one schedd; one outcome per label, never raises.

    ``pilot_keys`` (and a monitor to report to): the program gives each pilot its own key (see
    the module doc); the request file says only that keys are wanted."""
    cache = cache or BlockCache()
    keyed = pilot_keys and bool(context.monitor_url)
    outcomes: dict[str, SubmitOutcome] = {}
    entries: list[dict[str, Any]] = []
    for label, n in requests:
        try:
            description = _prepare(label, n, context, cache, keyed)
            entries.append(
                {"label": label.name, "count": n, "description": description}
                | ({"keys": True} if keyed else {})
            )
        except (SubmitRenderError, OSError) as exc:
            log.error("%s: no submission: %s", label.name, exc)
            outcomes[label.name] = SubmitOutcome(error=str(exc))
    if not entries:
        return BatchResult(outcomes, 0)
    text = json.dumps({"format": FORMAT, "labels": entries}, indent=1) + "\n"
    try:
        path = write_batch_file(Path(context.base_log_dir, context.date, BATCH_DIR), str(schedd), text)
    except OSError as exc:
        log.error("%s: no submission: cannot write the request file: %s", schedd, exc)
        return BatchResult(
            outcomes | {e["label"]: SubmitOutcome(error=f"request file: {exc}") for e in entries}, 0
        )
    total = sum(e["count"] for e in entries)
    if context.dry_run:
        log.info("%s: dry run, %d pilots of %d labels described in %s", schedd, total, len(entries), path)
        return BatchResult(outcomes | {e["label"]: SubmitOutcome(submit_file=str(path)) for e in entries}, 0)
    ran = run_program_keep([*submitter_command(), *schedd.options(), str(path)], SUBMITTER, schedd, timeout)
    lines, stray = read_lines(ran.stdout, {e["label"] for e in entries})
    if stray:
        log.warning("%s: %s printed lines that are not its own (ignored): %s", schedd, SUBMITTER, stray[:3])
    asked = [(e["label"], e["count"]) for e in entries]
    found = assign(asked, lines, ran.error, ran.started)
    _log_batch(schedd, path, asked, found, ran.error)
    return BatchResult(outcomes | {name: _with_file(o, path) for name, o in found.items()}, 1)


def _prepare(label: Label, n: int, context: SubmitContext, cache: BlockCache, keyed: bool) -> str:
    """The label's description, and its log directory made (once per cache); raises
    SubmitRenderError or OSError."""
    description = cache.description(label, n, context, keyed)
    directory = log_dir(context.base_log_dir, context.date, label.name)
    if directory not in cache.made_dirs:
        Path(directory).mkdir(parents=True, exist_ok=True)
        cache.made_dirs.add(directory)
    return description


def read_lines(output: str, labels: set[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The program's line for each label, and the lines that are none (stray output).

    A last line cut short (no newline yet: the program was killed while writing it) is not used.
    """
    found: dict[str, dict[str, Any]] = {}
    stray: list[str] = []
    complete = output.split("\n")[:-1]
    for line in complete:
        if not line.strip():
            continue
        item = _line(line, labels)
        if item is None:
            stray.append(line.strip()[:200])
        else:
            found.setdefault(item["label"], item)
    return found, stray


def _line(line: str, labels: set[str]) -> dict[str, Any] | None:
    """One of the program's lines, checked; None for anything else."""
    try:
        item = json.loads(line)
    except ValueError:
        return None
    if not isinstance(item, dict) or item.get("label") not in labels or item.get("outcome") not in _OUTCOMES:
        return None
    if item["outcome"] != "submitted":
        return item if isinstance(item.get("error"), str) else None
    numbers = [item.get(key) for key in ("cluster", "first", "count")]
    valid = all(type(n) is int and n >= 0 for n in numbers) and item["cluster"] > 0
    return item if valid and _digests_fit(item) else None


def _digests_fit(item: Mapping[str, Any]) -> bool:
    """A submitted line's key digests, if any: one digest per job queued, in job order."""
    digests = item.get("key_sha256")
    if digests is None:
        return True
    return (
        isinstance(digests, list)
        and len(digests) == item["count"]
        and all(isinstance(d, str) and is_digest(d) for d in digests)
    )


def assign(
    asked: Sequence[tuple[str, int]], lines: Mapping[str, Mapping[str, Any]], error: str, started: bool = True
) -> dict[str, SubmitOutcome]:
    """Each label's outcome from the program's lines (see the module doc); ``error``: how the run
    ended when it did not end well, ``started``: whether the program ran at all."""
    reported = [index for index, (name, _) in enumerate(asked) if name in lines]
    in_flight = (reported[-1] + 1) if reported else 0
    why = error or "the submission program said nothing about it"
    outcomes: dict[str, SubmitOutcome] = {}
    for index, (name, n) in enumerate(asked):
        line = lines.get(name)
        if line is not None:
            outcomes[name] = _outcome(name, n, line)
        elif not started or (error and index > in_flight):
            outcomes[name] = SubmitOutcome(error=f"not submitted: {why}")
        else:
            outcomes[name] = SubmitOutcome(error=f"outcome unknown: {why}")
    return outcomes


def _outcome(name: str, n: int, line: Mapping[str, Any]) -> SubmitOutcome:
    if line["outcome"] == "refused":
        return SubmitOutcome(error=f"not submitted: {line['error']}")
    if line["outcome"] == "unknown":
        return SubmitOutcome(error=f"outcome unknown: {line['error']}")
    cluster, first, count = line["cluster"], line["first"], line["count"]
    if count != n:
        log.warning("%s: asked for %d pilots, the schedd queued %d", name, n, count)
    job_ids = tuple(f"{cluster}.{proc}" for proc in range(first, first + count))
    digests = dict(zip(job_ids, line.get("key_sha256") or (), strict=False))
    return SubmitOutcome(job_ids=job_ids, key_digests=digests)


def _with_file(outcome: SubmitOutcome, path: Path) -> SubmitOutcome:
    return SubmitOutcome(outcome.job_ids, str(path), outcome.error, outcome.extra, outcome.key_digests)


def _log_batch(
    schedd: Schedd,
    path: Path,
    asked: Sequence[tuple[str, int]],
    outcomes: Mapping[str, SubmitOutcome],
    error: str,
) -> None:
    submitted = sum(len(outcomes[name].job_ids) for name, _ in asked)
    refused = sum(1 for name, _ in asked if outcomes[name].error)
    wanted = sum(n for _, n in asked)
    summary = (
        f"{submitted} of {wanted} pilots submitted, {len(asked) - refused} of {len(asked)} labels ({path})"
    )
    if error:
        log.error("%s: %s: %s", schedd, summary, error)
    elif refused:
        log.warning("%s: %s", schedd, summary)
    else:
        log.info("%s: %s", schedd, summary)


def write_batch_file(directory: Path, schedd: str, text: str) -> Path:
    """``<schedd>-<N>.json`` (see :func:`write_submit_file`)."""
    return write_submit_file(directory, text, _SLUG.sub("_", schedd) or "schedd", ".json")
