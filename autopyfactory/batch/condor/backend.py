"""The HTCondor batch backend: census with condor_q, submission with condor_submit.

Labels are grouped by schedd (``condorSchedd``/``condorPool``, per queue or factory-wide). Each
schedd is asked once per cycle; when one fails, its labels' supply is unknown (None) and the
others are unaffected. Schedds the factory submitted to before (a queue moved elsewhere) are
asked too, and each answer is checked against the recent submissions (batch/condor/schedds.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor

from autopyfactory.batch.condor.bulk import BatchResult, BlockCache, submit_batch
from autopyfactory.batch.condor.census import ScheddCensus, census_query, factory_constraint, query_pilots
from autopyfactory.batch.condor.command import Schedd, run_condor
from autopyfactory.batch.condor.history import history_ads
from autopyfactory.batch.condor.schedds import SubmissionMemory
from autopyfactory.batch.condor.submit import submit_pilots
from autopyfactory.batch.interface import BatchError, SubmitContext, SubmitOutcome, SubmitRequests, Tidy
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census, Pilot, Supply

log = logging.getLogger(__name__)

WATCH_CENSUSES = 3


class CondorBackend:
    name = "condor"

    def __init__(
        self,
        factory_id: str,
        default: Schedd,
        timeout: float,
        parallel: int = 4,
        memory: SubmissionMemory | None = None,
        stop_requested: Callable[[], bool] | None = None,
    ) -> None:
        """``stop_requested``: census queries are abandoned when it says the factory is stopping
        (a submission in progress is not: it finishes)."""
        self._factory_id, self._default, self._timeout = factory_id, default, timeout
        self._parallel = max(1, parallel)  # schedds submitted to at the same time
        self._blocks = BlockCache()
        #: labels whose last submission's outcome is not exactly known -> censuses left to list
        #: their pilots' ids in (so the monitor hears of pilots queued by a failed condor_submit)
        self._watch: dict[str, int] = {}
        self._memory, self._stop = memory, stop_requested
        self._located: dict[tuple[str, str], Schedd] = {}  # (label, job id) -> schedd, from the census

    def schedd_of(self, label: Label) -> Schedd:
        return Schedd(label.submit.schedd or self._default.name, label.submit.pool or self._default.pool)

    def pilots(self, schedd: Schedd) -> list[Pilot]:
        """All of this factory's pilots in one schedd (raises BatchError)."""
        return query_pilots(schedd, self._factory_id, self._timeout)

    def census(self, labels: Sequence[Label], keep: Collection[str] = ()) -> Census:
        """One ``condor_q`` per schedd, counted in one pass (see status.read_census): the schedds
        of today's labels and every one remembered, so that the pilots of a queue that moved
        still count for their label and the factory's total (see batch/condor/schedds.py). ``keep``:
        labels whose every pilot is listed (a ``pilots remove`` request waits for them)."""
        groups = self._by_schedd(labels)
        if self._memory is not None:
            self._memory.tidy(set(groups))
            for schedd in self._memory.schedds():
                groups.setdefault(schedd, [])
        counts: dict[str, Supply] = {}
        unknown: set[str] = set()
        pilots: dict[str, tuple[Pilot, ...]] = {}
        queued: dict[str, frozenset[int]] = {}
        recent: dict[str, tuple[str, ...]] = {}
        total = 0
        problems: list[str] = []
        located: dict[tuple[str, str], Schedd] = {}
        keep_idle = {label.name for label in labels if label.housekeeping.idle_timeout > 0}
        watched = set(self._watch)
        self._watch = {name: left - 1 for name, left in self._watch.items() if left > 1}
        for schedd, members in sorted(groups.items(), key=lambda item: not item[1]):  # today's first
            try:
                found = census_query(
                    schedd, self._factory_id, self._timeout, keep_idle, set(keep), self._stop
                )
                self._check_plausible(schedd, found)
            except BatchError as exc:
                problems.append(str(exc))
                remembered = self._memory.labels_at(schedd) if self._memory else set()
                unknown.update({label.name for label in members} | remembered)
                continue
            if not members and not found.total and self._memory is not None:
                self._memory.forget(schedd)
            for name, found_supply in found.supply.items():
                counts[name] = _add(counts.get(name), found_supply)
            for name, held in found.pilots.items():
                pilots[name] = (*pilots.get(name, ()), *held)
                for pilot in held:
                    located.setdefault((name, pilot.job_id), schedd)
            for name, dates in found.queued.items():
                queued[name] = queued.get(name, frozenset()) | dates
            for name in watched.intersection(found.recent):  # a half-failed submission's pilots: announced
                recent[name] = (*recent.get(name, ()), *found.recent[name])
            total += found.total
        self._located = located
        supply: dict[str, Supply | None] = {
            name: None if name in unknown else counts.get(name, Supply()) for name in (x.name for x in labels)
        }
        return Census(supply, None if problems else total, tuple(problems), pilots, queued, recent)

    def _check_plausible(self, schedd: Schedd, found: ScheddCensus) -> None:
        """BatchError if pilots submitted here in the last few cycles are in neither condor_q's
        answer nor condor_history: condor_q answered wrongly (e.g. an empty answer with exit 0),
        so its count cannot be trusted and nothing may be submitted on it.

        The recent window is at most status.RECENT_SECONDS, so every recently submitted pilot
        that condor_q lists is among ``found.recent`` (or ``found.pilots``)."""
        if self._memory is None:
            return
        listed = {job_id for ids in found.recent.values() for job_id in ids}
        listed.update(pilot.job_id for held in found.pilots.values() for pilot in held)
        missing = [job_id for job_id in self._memory.recent_ids(schedd) if job_id not in listed]
        if not missing:
            return
        try:
            finished = history_ids(schedd, self._factory_id, missing, self._timeout)
        except BatchError as exc:
            raise BatchError(f"{exc} (checking {len(missing)} recent pilots missing from condor_q)") from None
        vanished = [job_id for job_id in missing if job_id not in finished]
        if vanished:
            raise BatchError(
                f"condor_q ({schedd}) lists {found.total} pilots of this factory, but {len(vanished)} it"
                f" submitted there in the last {self._memory.recent_window:g} s ({', '.join(vanished[:5])}"
                f"{', ...' if len(vanished) > 5 else ''}) are in neither condor_q nor condor_history:"
                " census suspect, nothing submitted to this schedd this cycle"
            )

    def _by_schedd(self, labels: Sequence[Label]) -> dict[Schedd, list[Label]]:
        groups: dict[Schedd, list[Label]] = {}
        for label in labels:
            groups.setdefault(self.schedd_of(label), []).append(label)
        if not groups:
            groups[self._default] = []
        return groups

    def submit(self, label: Label, n: int, context: SubmitContext) -> SubmitOutcome:
        schedd = self.schedd_of(label)
        refused = self._remember(schedd, [label], context)
        if refused:
            return refused[label.name]
        outcome = submit_pilots(label, n, context, schedd, self._timeout)
        if self._memory is not None and outcome.job_ids:
            self._memory.note_submitted(schedd, outcome.job_ids)
        return outcome

    def submit_batch(self, requests: SubmitRequests, context: SubmitContext) -> dict[str, SubmitOutcome]:
        """One condor_submit per schedd (see bulk.py); schedds in parallel, at most ``parallel``.

        Each schedd/label is remembered before (a label that cannot be is not submitted)."""
        refused: dict[str, SubmitOutcome] = {}
        by_schedd: dict[Schedd, list[tuple[Label, int]]] = {}
        for label, n in requests:
            by_schedd.setdefault(self.schedd_of(label), []).append((label, n))
        for schedd, items in list(by_schedd.items()):
            refused.update(self._remember(schedd, [label for label, _ in items], context))
            by_schedd[schedd] = [(label, n) for label, n in items if label.name not in refused]
        by_schedd = {schedd: items for schedd, items in by_schedd.items() if items}

        def one(schedd: Schedd, items: list[tuple[Label, int]]) -> BatchResult:
            return submit_batch(items, context, schedd, self._timeout, self._blocks)

        if len(by_schedd) <= 1 or self._parallel == 1:
            results = [one(schedd, items) for schedd, items in by_schedd.items()]
        else:
            with ThreadPoolExecutor(min(self._parallel, len(by_schedd)), "condor-submit") as pool:
                results = list(pool.map(one, by_schedd.keys(), by_schedd.values()))
        if self._memory is not None:
            for schedd, result in zip(by_schedd, results, strict=True):
                ids = tuple(job_id for outcome in result.outcomes.values() for job_id in outcome.job_ids)
                if ids:
                    self._memory.note_submitted(schedd, ids)
        outcomes = {name: outcome for result in results for name, outcome in result.outcomes.items()}
        for name, outcome in outcomes.items():
            if outcome.error and not context.dry_run:  # even "not submitted": condor may be wrong
                self._watch[name] = WATCH_CENSUSES
                self._blocks.made_dirs.clear()  # a log directory may have gone: make them again
        return refused | outcomes

    def _remember(
        self, schedd: Schedd, labels: Sequence[Label], context: SubmitContext
    ) -> dict[str, SubmitOutcome]:
        """Remember that ``labels`` submit to ``schedd``; the labels refused because it failed."""
        if self._memory is None or context.dry_run:
            return {}
        refused = {}
        for label in labels:
            try:
                self._memory.note_intent(schedd, label.name)
            except OSError as exc:
                refused[label.name] = SubmitOutcome(
                    error=f"nothing submitted: cannot remember the submission to {schedd} in"
                    f" {self._memory.path}: {exc}"
                )
        return refused

    def _where(self, label: Label, job_ids: Sequence[str]) -> dict[Schedd, list[str]]:
        """The schedd of each pilot as the last census found it (a moved queue's pilots stay in
        the old one), else the label's schedd."""
        groups: dict[Schedd, list[str]] = {}
        for job_id in job_ids:
            schedd = self._located.get((label.name, job_id), self.schedd_of(label))
            groups.setdefault(schedd, []).append(job_id)
        return groups

    def remove(self, label: Label, job_ids: Sequence[str], reason: str = "") -> None:
        """condor_rm; ``reason`` becomes the jobs' RemoveReason (else "via condor_rm")."""
        for schedd, ids in self._where(label, job_ids).items():
            run_condor("condor_rm", schedd, ["-reason", reason, *ids] if reason else ids, self._timeout)

    def release(self, label: Label, job_ids: Sequence[str]) -> None:
        for schedd, ids in self._where(label, job_ids).items():
            run_condor("condor_release", schedd, ids, self._timeout)

    def tidy(self, work: Sequence[Tidy]) -> dict[str, str]:
        """One ``condor_release`` per schedd and one ``condor_rm`` per schedd and reason, for all
        labels together: a CE outage that holds the pilots of hundreds of labels costs a few
        calls, not hundreds. A failed call fails every label it carried (HTCondor may still have
        acted on some of the jobs; the next census shows which)."""
        calls: dict[tuple[str, Schedd, str], list[tuple[str, str]]] = {}  # -> (label, job id)
        for item in work:
            name = item.label.name
            for schedd, ids in self._where(item.label, item.release).items():
                calls.setdefault(("condor_release", schedd, ""), []).extend((name, i) for i in ids)
            for reason, job_ids in item.remove.items():
                for schedd, ids in self._where(item.label, job_ids).items():
                    calls.setdefault(("condor_rm", schedd, reason), []).extend((name, i) for i in ids)
        failed: dict[str, str] = {}
        for (tool, schedd, reason), jobs in calls.items():
            ids = [job_id for _, job_id in jobs]
            try:
                run_condor(tool, schedd, ["-reason", reason, *ids] if reason else ids, self._timeout)
            except BatchError as exc:
                for name, _ in jobs:
                    failed.setdefault(name, str(exc))
        return failed


def _add(a: Supply | None, b: Supply) -> Supply:
    """Two schedds' counts of one label, summed."""
    if a is None:
        return b
    return Supply(a.idle + b.idle, a.running + b.running, a.held + b.held, a.all + b.all)


def history_ids(schedd: Schedd, factory_id: str, job_ids: Sequence[str], timeout: float) -> set[str]:
    """Which of ``job_ids`` (this factory's) ``condor_history`` knows in ``schedd``."""
    pairs = (job_id.split(".") for job_id in job_ids)
    ids = " || ".join(f"(ClusterId == {int(c)} && ProcId == {int(p)})" for c, p in pairs)
    args = [
        "-constraint", f"{factory_constraint(factory_id)} && ({ids})",
        "-attributes", "ClusterId,ProcId", "-limit", str(len(job_ids)),
    ]  # fmt: skip
    return {f"{ad.get('ClusterId')}.{ad.get('ProcId')}" for ad in history_ads(schedd, args, timeout)}
