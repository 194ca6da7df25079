"""The HTCondor batch backend: census with condor_q, submission with autopyfactory-condor-submit.

Labels are grouped by schedd (``condorSchedd``/``condorPool``, per queue or factory-wide). Each
schedd is asked once per cycle; when one fails, its labels' supply is unknown (None) and the
others are unaffected. Schedds the factory submitted to before (a queue moved elsewhere) are
asked too, and each answer is checked against the recent submissions (batch/condor/schedds.py).

The cron helpers, which know no labels, ask every schedd the factory may have pilots in: the
factory-wide one, those the queue sections name (``configured``) and the remembered ones. Each is
one source with its own checkpoint (:func:`schedd_key`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from autopyfactory.batch.condor.bulk import BatchResult, BlockCache, submit_batch
from autopyfactory.batch.condor.census import ScheddCensus, census_query, factory_constraint, query_pilots
from autopyfactory.batch.condor.command import Schedd, run_condor
from autopyfactory.batch.condor.history import history_ids, ids_constraint, read_history
from autopyfactory.batch.condor.schedds import SubmissionMemory
from autopyfactory.batch.interface import (
    BatchError,
    End,
    EndedPilot,
    Finished,
    Removal,
    Stale,
    StalePilot,
    SubmitContext,
    SubmitOutcome,
    SubmitRequests,
    Tidy,
)
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census, JobStatus, Pilot, Supply

log = logging.getLogger(__name__)

#: At most this many job ids per condor_history constraint of the cron helpers.
IDS_PER_QUERY = 100
AWOL = "AWOL: in neither condor_q nor condor_history"
#: How ``autopyfactory schedd forget`` names the local schedd.
LOCAL_NAME = "local"

#: One schedd's share of a cycle's submissions.
Requests = list[tuple[Label, int]]


def schedd_key(schedd: Schedd) -> str:
    """A schedd's name as a source of the cron helpers (their checkpoint's key)."""
    return f"{schedd.name or '(local schedd)'}@{schedd.pool or '(local pool)'}"


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
        configured: Sequence[Schedd] = (),
        pilot_keys: bool = False,
    ) -> None:
        """``stop_requested``: census queries are abandoned when it says the factory is stopping
        (a submission in progress is not: it finishes). ``configured``: the schedds the queue
        sections name, for the cron helpers. ``pilot_keys``: each pilot gets its own key for
        its record at the monitor (bulk.py)."""
        self._factory_id, self._default, self._timeout = factory_id, default, timeout
        self._parallel = max(1, parallel)  # schedds submitted to at the same time
        self._blocks = BlockCache()
        self._memory, self._stop = memory, stop_requested
        self._configured = tuple(configured)
        self._pilot_keys = pilot_keys
        self._located: dict[tuple[str, str], Schedd] = {}  # (label, job id) -> schedd, from the census

    def schedd_of(self, label: Label) -> Schedd:
        return Schedd(label.submit.schedd or self._default.name, label.submit.pool or self._default.pool)

    def pilots(self, schedd: Schedd) -> list[Pilot]:
        """All of this factory's pilots in one schedd (raises BatchError)."""
        return query_pilots(schedd, self._factory_id, self._timeout)

    # -- census --

    def census(
        self, labels: Sequence[Label], keep: Collection[str] = (), started_since: float | None = None
    ) -> Census:
        """One ``condor_q`` per schedd, counted in one pass (see census.read_census): the schedds
        of today's labels and every one remembered, so that the pilots of a queue that moved
        still count for their label and the factory's total (see batch/condor/schedds.py). ``keep``:
        labels whose every pilot is listed (a ``pilots remove`` request waits for them);
        ``started_since``: see the Backend protocol.

        The schedds are asked at the same time, each with its own ``condorTimeout``: schedds that
        hang cost one timeout, not one each."""
        keep_idle = {label.name for label in labels if label.housekeeping.idle_timeout > 0}
        to_ask = self._schedds_to_ask(labels)
        found = self._ask_all([schedd for schedd, _ in to_ask], keep_idle, set(keep), started_since)
        answers = [
            (schedd, self._schedd_census(schedd, members, found[schedd])) for schedd, members in to_ask
        ]
        self._located = {}
        for schedd, answer in answers:
            for name, listed in answer.pilots.items():
                for pilot in listed:
                    self._located.setdefault((name, pilot.job_id), schedd)
        merged = Census.merge(answer for _, answer in answers)
        supply = {label.name: merged.supply.get(label.name, Supply()) for label in labels}
        return replace(merged, supply=supply)

    def _schedds_to_ask(self, labels: Sequence[Label]) -> list[tuple[Schedd, list[Label]]]:
        """The schedds of ``labels`` (the default one if none), then the remembered ones."""
        groups = self._by_schedd(labels)
        if self._memory is not None:
            self._memory.refresh()
            self._memory.tidy(set(groups))
            for schedd in self._memory.schedds():
                groups.setdefault(schedd, [])
        return sorted(groups.items(), key=lambda item: not item[1])  # today's first

    def _ask_all(
        self,
        schedds: Sequence[Schedd],
        keep_idle: set[str],
        keep: set[str],
        started_since: float | None = None,
    ) -> dict[Schedd, ScheddCensus | BatchError]:
        """Each schedd's checked answer (or why there is none), all asked at once."""
        recent = {schedd: self._memory.recent_ids(schedd) if self._memory else [] for schedd in schedds}

        def ask(schedd: Schedd) -> ScheddCensus | BatchError:
            try:
                found = census_query(
                    schedd, self._factory_id, self._timeout, keep_idle, keep, self._stop, started_since
                )
                self._check_plausible(schedd, found, recent[schedd])
            except BatchError as exc:
                return exc
            return found

        if len(schedds) == 1:
            return {schedds[0]: ask(schedds[0])}
        with ThreadPoolExecutor(len(schedds), "condor-census") as pool:
            return dict(zip(schedds, pool.map(ask, schedds), strict=True))

    def _schedd_census(
        self, schedd: Schedd, members: Sequence[Label], found: ScheddCensus | BatchError
    ) -> Census:
        """One schedd's census; a failed one has its labels (also remembered ones) unknown."""
        if isinstance(found, BatchError):
            remembered = self._memory.labels_at(schedd) if self._memory else set()
            unknown = {label.name for label in members} | remembered
            return Census(
                dict.fromkeys(unknown, None), None, (self._failed(schedd, members, remembered, found),)
            )
        if not members and not found.total and self._memory is not None:
            self._memory.forget(schedd)
        return Census(
            dict(found.supply),
            found.total,
            (),
            {name: tuple(held) for name, held in found.pilots.items()},
            {name: frozenset(dates) for name, dates in found.queued.items()},
        )

    @staticmethod
    def _failed(schedd: Schedd, members: Sequence[Label], remembered: set[str], error: BatchError) -> str:
        """The problem of a schedd that did not answer; for one the factory only remembers (a
        queue moved away from it), which labels it blocks and how to stop asking it."""
        moved = sorted(remembered - {label.name for label in members})
        if not moved:
            return str(error)
        shown = ", ".join(moved[:10]) + (f" and {len(moved) - 10} more" if len(moved) > 10 else "")
        where = f" --pool {schedd.pool}" if schedd.pool else ""
        return (
            f"{error}; schedd {schedd} is asked because this factory submitted there before (its pilots"
            f" there still count): labels {shown} are pilots=unknown and get nothing until it answers"
            f" or `autopyfactory schedd forget {schedd.name or LOCAL_NAME}{where}`"
        )

    def _check_plausible(self, schedd: Schedd, found: ScheddCensus, recent: Sequence[str]) -> None:
        """BatchError if pilots submitted here in the last few cycles (``recent``) are in neither
        condor_q's answer nor condor_history: condor_q answered wrongly (e.g. an empty answer with
        exit 0), so its count cannot be trusted and nothing may be submitted on it.

        The recent window is at most census.RECENT_SECONDS, so every recently submitted pilot
        that condor_q lists is among ``found.recent`` (or ``found.pilots``)."""
        if self._memory is None:
            return
        listed = {job_id for ids in found.recent.values() for job_id in ids}
        listed.update(pilot.job_id for held in found.pilots.values() for pilot in held)
        missing = [job_id for job_id in recent if job_id not in listed]
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

    # -- submission --

    def submit(self, requests: SubmitRequests, context: SubmitContext) -> dict[str, SubmitOutcome]:
        """One condor_submit per schedd (see bulk.py); schedds in parallel, at most ``parallel``.

        Each schedd/label is remembered before (a label that cannot be is not submitted)."""
        by_schedd, refused = self._remembered(requests, context)
        results = self._submit_each_schedd(by_schedd, context)
        if self._memory is not None:
            for schedd, result in zip(by_schedd, results, strict=True):
                ids = tuple(job_id for outcome in result.outcomes.values() for job_id in outcome.job_ids)
                if ids:
                    self._memory.note_submitted(schedd, ids)
        outcomes = {name: outcome for result in results for name, outcome in result.outcomes.items()}
        if any(outcome.error for outcome in outcomes.values()):
            self._blocks.made_dirs.clear()  # a log directory may have gone: make them again
        return refused | outcomes

    def _remembered(
        self, requests: SubmitRequests, context: SubmitContext
    ) -> tuple[dict[Schedd, Requests], dict[str, SubmitOutcome]]:
        """The requests by schedd, each remembered before, and the labels refused because their
        schedd could not be remembered."""
        by_schedd: dict[Schedd, Requests] = {}
        for label, n in requests:
            by_schedd.setdefault(self.schedd_of(label), []).append((label, n))
        refused: dict[str, SubmitOutcome] = {}
        for schedd, items in list(by_schedd.items()):
            refused.update(self._remember(schedd, [label for label, _ in items], context))
            by_schedd[schedd] = [(label, n) for label, n in items if label.name not in refused]
        return {schedd: items for schedd, items in by_schedd.items() if items}, refused

    def _submit_each_schedd(
        self, by_schedd: Mapping[Schedd, Requests], context: SubmitContext
    ) -> list[BatchResult]:
        """One batch per schedd, in the order of ``by_schedd``; in parallel when there are several."""

        def one(schedd: Schedd, items: Requests) -> BatchResult:
            result = submit_batch(items, context, schedd, self._timeout, self._blocks, self._pilot_keys)
            context.tell_submitted(result.outcomes)  # this schedd's pilots, not waiting for the others
            return result

        if len(by_schedd) <= 1 or self._parallel == 1:
            return [one(schedd, items) for schedd, items in by_schedd.items()]
        with ThreadPoolExecutor(min(self._parallel, len(by_schedd)), "condor-submit") as pool:
            return list(pool.map(one, by_schedd.keys(), by_schedd.values()))

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

    # -- removal --

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

    # -- the cron helpers --

    def all_schedds(self) -> list[Schedd]:
        """The factory-wide schedd, the configured ones, then the remembered ones (a queue that
        moved leaves its pilots in the old one: they must be neither lost nor AWOL), each once."""
        remembered = self._memory.schedds() if self._memory is not None else []
        return list(dict.fromkeys([self._default, *self._configured, *remembered]))

    def sources(self) -> tuple[str, ...]:
        """Every schedd :meth:`finished` reads, by its checkpoint key."""
        return tuple(schedd_key(schedd) for schedd in self.all_schedds())

    def finished(self, since: Callable[[str], float]) -> Finished:
        """Each schedd's condor_history since its time, and its condor_q (the ids still queued)."""
        ended: list[EndedPilot] = []
        queued: set[str] = set()
        sources: list[str] = []
        problems: list[str] = []
        constraint = factory_constraint(self._factory_id)
        for schedd in self.all_schedds():
            key = schedd_key(schedd)
            try:
                found = read_history(schedd, constraint, self._timeout, since(key))
                listed = self.pilots(schedd)
            except BatchError as exc:
                problems.append(str(exc))
                continue
            ended += found
            queued.update(pilot.job_id for pilot in listed)
            sources.append(key)
        return Finished(tuple(ended), frozenset(queued), tuple(sources), tuple(problems))

    def trace(self, job_ids: Sequence[str]) -> tuple[EndedPilot, ...]:
        """Each schedd's whole condor_history asked for the ids (in bounded batches); the ids in
        none are lost (AWOL). Raises BatchError."""
        found: list[EndedPilot] = []
        missing = list(job_ids)
        for schedd in self.all_schedds():
            for start in range(0, len(missing), IDS_PER_QUERY):
                part = missing[start : start + IDS_PER_QUERY]
                found += read_history(schedd, ids_constraint(self._factory_id, part), self._timeout)
            seen = {pilot.job_id for pilot in found}
            missing = [job_id for job_id in missing if job_id not in seen]
        return (*found, *(EndedPilot(job_id, End.LOST, None, AWOL) for job_id in missing))

    def stale(self, now: float, older_than: Mapping[JobStatus, int]) -> Stale:
        """Each schedd's condor_q; a schedd that cannot be asked is a problem."""
        found: list[StalePilot] = []
        problems: list[str] = []
        for schedd in self.all_schedds():
            try:
                pilots = self.pilots(schedd)
            except BatchError as exc:
                problems.append(str(exc))
                continue
            for pilot in pilots:
                age = int(now) - pilot.entered_status
                if pilot.status in older_than and age > older_than[pilot.status]:
                    found.append(StalePilot(pilot.job_id, pilot.status, age, schedd_key(schedd)))
        return Stale(tuple(found), tuple(problems))

    def remove_stale(self, pilots: Sequence[StalePilot], reason: str) -> Removal:
        """One condor_rm per schedd."""
        schedds = {schedd_key(schedd): schedd for schedd in self.all_schedds()}
        by_schedd: dict[str, list[str]] = {}
        for pilot in pilots:
            by_schedd.setdefault(pilot.source, []).append(pilot.job_id)
        removed: set[str] = set()
        problems: list[str] = []
        for key, ids in by_schedd.items():
            schedd = schedds.get(key)
            if schedd is None:
                problems.append(f"{', '.join(ids)} not removed: {key} is not one of this factory's schedds")
                continue
            try:
                run_condor("condor_rm", schedd, ["-reason", reason, *ids], self._timeout)
            except BatchError as exc:
                problems.append(str(exc))
                continue
            removed.update(ids)
        return Removal(frozenset(removed), tuple(problems))
