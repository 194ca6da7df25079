"""One ``condor_submit`` per schedd and cycle, with each label's job ids known exactly.

Every label that gets pilots on a schedd becomes one block of the same submit description:
its own full description (:func:`render_submit`, validated on its own, so a label that cannot be
rendered drops out alone) followed by ``queue N``. Facts about condor_submit (checked against
HTCondor 25.0 in ``tests/htcondor/test_bulk_real.py``) that shape the file:

* A new cluster starts only when ``executable`` changes value between queue statements. Blocks
  alternate between ``<dir>/<name>`` and ``<dir>/./<name>`` (the same file), so each label gets
  its own cluster and ``-terse`` prints one ``C.0 - C.(N-1)`` line per label, in file order.
* Settings are inherited from the blocks above: an empty ``key =`` clears a ``+Attr`` and
  nothing else (``request_memory``, ``environment``, ``x509userproxy`` ... keep the previous
  block's value). So ``+Attr`` lines a block lacks are cleared, ``periodic_hold``/``periodic_remove``
  are set to ``False`` (their default), and labels whose other keys differ go to separate
  files (one condor_submit each; one file in the usual case of one CE flavour per schedd).
* One condor_submit is one transaction: when the schedd refuses a job (``MAX_JOBS_PER_OWNER``)
  nothing is queued and it exits 1 without ``-terse`` output.
* Several ``queue`` statements are deprecated in HTCondor 25 (a warning on stderr) and
  announced for removal in the 25.x feature series; when a condor_submit refuses them, the
  labels are submitted one call each, as before.

Ids are mapped to labels in file order. Whatever ``-terse`` printed is kept even when
condor_submit then fails or hangs (those jobs are queued); a label whose ids are incomplete or
unknown gets an error (and nothing more this cycle); the labels after it get "not submitted".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from autopyfactory.batch.condor.command import Schedd, run_condor_keep
from autopyfactory.batch.condor.submit import render_submit, validate, write_submit_file
from autopyfactory.batch.interface import BatchError, SubmitContext, SubmitOutcome
from autopyfactory.batch.pilot import SubmitRenderError, log_dir
from autopyfactory.domain.label import Label

log = logging.getLogger(__name__)

NEUTRAL = {"periodic_hold": "False", "periodic_remove": "False"}  # HTCondor's defaults
BATCH_DIR = "_submit"  # below <baseLogDir>/<date>/, beside the label directories
_TERSE_LINE = re.compile(r"^(\d+)\.(\d+)\s*-\s*(\d+)\.(\d+)$")
_MULTI_QUEUE_REFUSED = re.compile(r"multiple queue statements", re.IGNORECASE)
_SLUG = re.compile(r"[^A-Za-z0-9_.@-]+")
_COUNT = re.compile(r": \d+ pilots")


@dataclass(frozen=True)
class Block:
    """One label's part of a batch: its description without the queue statement, by key."""

    label: Label
    n: int
    comment: str
    lines: tuple[tuple[str, str], ...]  # (key, whole line), in rendered order

    @property
    def signature(self) -> frozenset[str]:
        """The keys that cannot be cleared, hence must be the same for all blocks of a file."""
        return frozenset(k for k, _ in self.lines if not k.startswith("+") and k not in NEUTRAL)


def render_block(label: Label, n: int, context: SubmitContext) -> Block:
    """The label's own description, validated; raises SubmitRenderError."""
    text = render_submit(label, n, context)
    validate(text)
    rendered = text.splitlines()
    lines = tuple((line.split("=", 1)[0].strip().lower(), line) for line in rendered[1:-1] if line.strip())
    return Block(label, n, rendered[0], lines)


class BlockCache:
    """Each label's rendered and validated block, kept while the label object and the context stay
    the same (labels are rebuilt only when schedconfig changes; the context changes daily): a
    steady cycle renders and validates nothing again, only the count changes."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Label, SubmitContext, Block]] = {}
        self.made_dirs: set[str] = set()  # label log directories known to exist
        self.one_by_one: set[Schedd] = set()  # schedds whose condor_submit refuses several queues

    def block(self, label: Label, n: int, context: SubmitContext) -> Block:
        entry = self._entries.get(label.name)
        if entry is not None and entry[0] is label and entry[1] == context:
            cached = entry[2]
            return (
                cached
                if cached.n == n
                else replace(cached, n=n, comment=_COUNT.sub(f": {n} pilots", cached.comment, 1))
            )
        block = render_block(label, n, context)
        self._entries[label.name] = (label, context, block)
        return block


def batch_text(blocks: Sequence[Block], header: str) -> str:
    """One description for all blocks (same signature), one cluster per block, in order."""
    out = [header]
    seen: dict[str, str] = {}  # clearable keys set so far -> their original spelling
    for index, block in enumerate(blocks):
        keys = {key for key, _ in block.lines}
        out.append(block.comment)
        for key, spelled in seen.items():
            if key not in keys:
                out.append(f"{spelled} = {NEUTRAL.get(key, '')}".rstrip())
        for key, line in block.lines:
            out.append(_alias_executable(line) if key == "executable" and index % 2 else line)
            if key.startswith("+") or key in NEUTRAL:
                seen.setdefault(key, line.split("=", 1)[0].strip())
        out.append(f"queue {block.n}")
    return "\n".join(out) + "\n"


def _alias_executable(line: str) -> str:
    """``executable = <dir>/./<name>``: the same file, another value (starts a new cluster)."""
    key, _, path = line.partition("=")
    path = path.strip()
    head, sep, tail = path.rpartition("/")
    return f"{key.strip()} = {head}/./{tail}" if sep else f"{key.strip()} = ./{path}"


def terse_clusters(output: str) -> list[tuple[str, ...]]:
    """The complete ``C.first - C.last`` lines of ``-terse`` output, as job ids per line.

    A last line cut short (no newline yet) is not used; other lines that are not terse lines
    raise BatchError.
    """
    clusters: list[tuple[str, ...]] = []
    lines = output.split("\n")
    for line in lines[:-1] if not output.endswith("\n") else lines:
        if not line.strip():
            continue
        match = _TERSE_LINE.match(line.strip())
        if not match or match[1] != match[3] or int(match[2]) > int(match[4]):
            raise BatchError(f"unexpected condor_submit output: {output.strip()[:300]!r}")
        clusters.append(tuple(f"{match[1]}.{proc}" for proc in range(int(match[2]), int(match[4]) + 1)))
    return clusters


def assign(
    blocks: Sequence[Block], clusters: Sequence[tuple[str, ...]], error: str
) -> dict[str, SubmitOutcome]:
    """Job ids per label, in file order: exact where ``-terse`` printed them all, else an error.

    condor_submit that exited with a message and printed nothing queued nothing (one
    transaction): every label gets "not submitted" (the backend still lists those labels' pilots
    in the next censuses, in case jobs were queued after all). Otherwise (a timeout, or fewer ids than
    asked for) the first label without all its ids keeps what was printed and it and all after it
    are "outcome unknown": their pilots, if any, are found by the next census.
    """
    ids = [job for cluster in clusters for job in cluster]
    if not ids and _refused(error):
        return {b.label.name: SubmitOutcome(error=f"not submitted: {error}") for b in blocks}
    outcomes: dict[str, SubmitOutcome] = {}
    position, known = 0, True
    for block in blocks:
        mine = tuple(ids[position : position + block.n]) if known else ()
        position += len(mine)
        if known and len(mine) == block.n:
            outcomes[block.label.name] = SubmitOutcome(job_ids=mine, error=error and f"batch: {error}")
            continue
        known = False
        why = error or "condor_submit printed fewer job ids than asked for"
        what = f"{len(mine)} of {block.n} pilots known" if mine else "outcome unknown"
        outcomes[block.label.name] = SubmitOutcome(job_ids=mine, error=f"{what}: {why}")
    return outcomes


def _refused(error: str) -> bool:
    """condor_submit said why and exited (not a timeout): nothing of the batch was queued."""
    return bool(error) and " exited " in error


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
) -> BatchResult:
    """Submit all ``requests`` (label, n) of one schedd; one outcome per label, never raises."""
    cache = cache or BlockCache()
    outcomes: dict[str, SubmitOutcome] = {}
    groups: dict[frozenset[str], list[Block]] = {}
    for label, n in requests:
        try:
            block = _prepare(label, n, context, cache)
        except (SubmitRenderError, OSError) as exc:
            log.error("%s: no submission: %s", label.name, exc)
            outcomes[label.name] = SubmitOutcome(error=str(exc))
            continue
        groups.setdefault(block.signature, []).append(block)
    calls = 0
    for blocks in groups.values():
        result, used = _submit_group(blocks, context, schedd, timeout, cache)
        outcomes.update(result)
        calls += used
    return BatchResult(outcomes, calls)


def _prepare(label: Label, n: int, context: SubmitContext, cache: BlockCache) -> Block:
    """The label's block, and its log directory made (once per cache); raises SubmitRenderError
    or OSError."""
    block = cache.block(label, n, context)
    directory = log_dir(context.base_log_dir, context.date, label.name)
    if directory not in cache.made_dirs:
        Path(directory).mkdir(parents=True, exist_ok=True)
        cache.made_dirs.add(directory)
    return block


def _submit_group(
    blocks: Sequence[Block], context: SubmitContext, schedd: Schedd, timeout: float, cache: BlockCache
) -> tuple[dict[str, SubmitOutcome], int]:
    """One submit file for ``blocks`` (same signature), and its condor_submit unless a dry run."""
    total = sum(b.n for b in blocks)
    header = f"# autopyfactory: {len(blocks)} labels, {total} pilots, {schedd}, one cluster per label"
    text = batch_text(blocks, header)
    try:
        path = write_batch_file(Path(context.base_log_dir, context.date, BATCH_DIR), str(schedd), text)
    except OSError as exc:
        log.error("%s: no submission: cannot write the submit file: %s", schedd, exc)
        return {b.label.name: SubmitOutcome(error=f"submit file: {exc}") for b in blocks}, 0
    if context.dry_run:
        log.info("%s: dry run, %d pilots of %d labels described in %s", schedd, total, len(blocks), path)
        return {b.label.name: SubmitOutcome(submit_file=str(path)) for b in blocks}, 0
    if len(blocks) > 1 and schedd in cache.one_by_one:
        return _one_by_one(blocks, context, schedd, timeout, path)
    return _submit_file(blocks, context, schedd, timeout, cache, path)


def _submit_file(
    blocks: Sequence[Block],
    context: SubmitContext,
    schedd: Schedd,
    timeout: float,
    cache: BlockCache,
    path: Path,
) -> tuple[dict[str, SubmitOutcome], int]:
    """condor_submit of the batch file: each label's ids, or one call per label from now on when
    this condor_submit refuses several queue statements."""
    output, error = run_condor_keep("condor_submit", schedd, ["-terse", str(path)], timeout)
    if error and len(blocks) > 1 and _MULTI_QUEUE_REFUSED.search(error) and not output.strip():
        log.warning("%s: condor_submit refuses several queue statements: one call per label from now", schedd)
        cache.one_by_one.add(schedd)
        outcomes, used = _one_by_one(blocks, context, schedd, timeout, path)
        return outcomes, used + 1
    try:
        clusters = terse_clusters(output)
    except BatchError as exc:
        clusters, error = [], f"{exc}; {error}" if error else str(exc)
    outcomes = assign(blocks, clusters, error)
    _log_batch(schedd, path, blocks, outcomes, error)
    return {name: _with_file(o, path) for name, o in outcomes.items()}, 1


def _one_by_one(
    blocks: Sequence[Block], context: SubmitContext, schedd: Schedd, timeout: float, path: Path
) -> tuple[dict[str, SubmitOutcome], int]:
    outcomes = {}
    for block in blocks:
        single = batch_text([block], f"# autopyfactory: label {block.label.name} alone")
        own = write_batch_file(path.parent, str(schedd), single)
        output, error = run_condor_keep("condor_submit", schedd, ["-terse", str(own)], timeout)
        try:
            clusters = terse_clusters(output)
        except BatchError as exc:
            clusters, error = [], str(exc)
        outcomes.update({k: _with_file(v, own) for k, v in assign([block], clusters, error).items()})
    return outcomes, len(blocks)


def _with_file(outcome: SubmitOutcome, path: Path) -> SubmitOutcome:
    return SubmitOutcome(outcome.job_ids, str(path), outcome.error, outcome.extra)


def _log_batch(
    schedd: Schedd, path: Path, blocks: Sequence[Block], outcomes: Mapping[str, SubmitOutcome], error: str
) -> None:
    submitted = sum(len(o.job_ids) for o in outcomes.values())
    wanted = sum(b.n for b in blocks)
    if error:
        log.error(
            "%s: condor_submit %s: %d of %d pilots known submitted: %s",
            schedd,
            path,
            submitted,
            wanted,
            error,
        )
    else:
        log.info(
            "%s: submitted %d pilots of %d labels in one call (%s)", schedd, submitted, len(blocks), path
        )


def write_batch_file(directory: Path, schedd: str, text: str) -> Path:
    """``<schedd>-<N>.sub`` (see :func:`write_submit_file`)."""
    return write_submit_file(directory, text, _SLUG.sub("_", schedd) or "schedd")
