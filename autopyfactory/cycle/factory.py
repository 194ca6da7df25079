"""The factory cycle: labels -> PanDA -> batch census -> policy -> caps -> submit -> report.

The I/O happens in :class:`Factory` (one method per edge, each edge reached through a port of
``ports.py`` or the batch interface); the decision for all labels is the pure function
:func:`~autopyfactory.domain.planning.plan`, which joins the policy with the PanDA shares and the
factory-wide caps. A failure in one label never stops the others, and a cycle that raises is
logged with its traceback by the service, which goes on with the next one.

Every pilot queued is announced to the monitor, and as soon as its submission returns (the
observers that are :class:`~autopyfactory.cycle.report.PilotListener`). A label is recorded as
*unsettled* (port ``UnsettledLabels``, a state-dir file) before its submission starts, and settled
once all the pilots it queued were announced: at once when the submission gave every id, else when
a later census of that label answers (whatever happened in between: a failed submission, a
SIGKILL, a restart, a reload, failed censuses), by announcing every pilot it lists as queued
since the label was recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from autopyfactory.batch.interface import Backend, BatchError, SubmitContext, SubmitOutcome, Tidy
from autopyfactory.cycle.ports import (
    CredentialGate,
    CycleSettings,
    LabelSource,
    LogCleanup,
    PandaSource,
    RuntimeControl,
    UnsettledLabels,
)
from autopyfactory.cycle.report import CycleObserver, CycleReport, LabelResult, PilotListener, Problem
from autopyfactory.domain.control import (
    ControlError,
    Controls,
    Removal,
    drop_removals,
    plan_removals,
    removal_views,
)
from autopyfactory.domain.credentials import CredentialVerdicts
from autopyfactory.domain.demand import JobStats, PandaReading
from autopyfactory.domain.housekeeping import Action, ActionKind, plan_actions, removals_by_cause, summarize
from autopyfactory.domain.label import Label, LabelSet, needs_detailed_statistics
from autopyfactory.domain.log_retention import dirs_in_use
from autopyfactory.domain.model import Census, EdgeKind
from autopyfactory.domain.planning import LabelPlan, plan
from autopyfactory.domain.sharing import FactoryCaps

log = logging.getLogger(__name__)

#: The census of a cycle in which the factory is stopping: not asked, nothing is known.
_NO_CENSUS = Census({}, None)
#: Seconds the schedd's clock (a pilot's QDate) may be behind the factory's: an unsettled label's
#: pilots queued this long before it was recorded are announced too.
CLOCK_SKEW = 300


def _tidy_work(label: Label, actions: Sequence[Action]) -> Tidy:
    """A label's housekeeping actions as its backend's work: releases, and removals by cause."""
    releases = tuple(a.job_id for a in actions if a.kind is ActionKind.RELEASE)
    removals = {
        f"autopyfactory housekeeping: {cause}": tuple(job_ids)
        for cause, job_ids in removals_by_cause(actions).items()
    }
    return Tidy(label, releases, removals)


def _with_housekeeping(
    result: LabelResult, planned: Mapping[str, Sequence[Action]], failed: Mapping[str, str]
) -> LabelResult:
    name = result.plan.label.name
    if name in failed:
        return replace(result, housekeeping=f"failed: {failed[name]}")
    if name in planned:
        return replace(result, housekeeping=summarize(planned[name]))
    return result


class Factory:
    """One factory's cycles over its ports; a port left out (None) is not used."""

    def __init__(
        self,
        settings: CycleSettings,
        labels: LabelSource,
        panda: PandaSource,
        backends: Mapping[str, Backend],
        clock: Callable[[], float] = time.time,
        observers: Sequence[CycleObserver] = (),
        stop_requested: Callable[[], bool] = lambda: False,
        credentials: CredentialGate | None = None,
        log_cleanup: LogCleanup | None = None,
        observer_failed: Callable[[str], None] = lambda _name: None,
        controls: RuntimeControl | None = None,
        unsettled: UnsettledLabels | None = None,
    ) -> None:
        """``observer_failed(name)`` is told when an observer raised (the metrics count it)."""
        self._settings = settings
        self._label_source, self._panda, self._backends = labels, panda, backends
        self._clock, self._dry_run, self._observers = clock, settings.dry_run, observers
        self._stop_requested = stop_requested  # checked before census, submissions, housekeeping
        self._credentials, self._log_cleanup = credentials, log_cleanup
        self._controls = controls
        self._observer_failed = observer_failed
        self._unsettled = unsettled
        self._listeners = [o for o in observers if isinstance(o, PilotListener)]

    @property
    def backends(self) -> Mapping[str, Backend]:
        """The batch backends by name (a reload's new factory takes over what the old ones hold)."""
        return self._backends

    def run_cycle(self, cycle: int) -> CycleReport:
        """One cycle: read the edges (labels, PanDA, controls, census), decide and submit, tidy up,
        then tell the log and every observer."""
        started = self._clock()
        problems: list[Problem] = []
        label_set = self._labels(problems)
        labels = label_set.labels
        reading = self._read_panda(labels, problems)
        controls = self._controls.read_or_hold() if self._controls else Controls()
        unsettled = self._unsettled_labels(labels, problems)
        census = self._take_census(labels, problems, controls, started - self._settings.panda_lag, unsettled)
        self._settle_listed(unsettled, census)
        credentials = self._check_credentials(labels, started)
        disabled = controls.disabled_labels(labels, started)
        notes = self._remove_requested(controls, labels, census)
        results = self._decide_and_submit(
            cycle, labels, reading.stats, census, credentials.blocked, disabled, started
        )
        if not self._stop_requested():
            self._clean_logs(labels, census, started)
        if controls.problem:
            problems.append(Problem(EdgeKind.CONTROL, controls.problem))
        report = CycleReport(
            cycle,
            started,
            self._clock() - started,
            results,
            tuple(problems),
            skipped_queues=label_set.problems,
            credentials=credentials.checks,
            panda=reading,
            control=(*(f"{name}: {reason}" for name, reason in disabled.items()), *notes),
        )
        self._log(report)
        self._notify(report, labels)
        return report

    def _read_panda(self, labels: Sequence[Label], problems: list[Problem]) -> PandaReading:
        """This cycle's PanDA answer; the detailed statistics only when a label needs them."""
        reading = self._panda.update(detailed=needs_detailed_statistics(labels))
        if not reading.ok:
            problems.append(Problem(EdgeKind.PANDA, reading.problem))
        return reading

    def _take_census(
        self,
        labels: Sequence[Label],
        problems: list[Problem],
        controls: Controls,
        started_since: float,
        unsettled: Collection[str] = (),
    ) -> Census:
        """The batch system's pilots (those started since ``started_since`` counted apart: they
        stand for jobs PanDA still counts activated; every one of the ``unsettled`` labels
        listed); none at all (so nothing is submitted) once a stop is asked."""
        if self._stop_requested():
            return _NO_CENSUS
        keep = {*controls.removal_targets(labels), *unsettled}
        return self._census(labels, problems, keep, started_since)

    # -- the pilots the monitor must hear of --

    def _unsettled_labels(self, labels: Sequence[Label], problems: list[Problem]) -> dict[str, float]:
        """This cycle's labels whose earlier submission is unsettled, each with when it was
        recorded; none when they cannot be read: a problem, and as recording a submission then
        fails too, nothing is submitted (and nothing settled) until they can."""
        if self._unsettled is None:
            return {}
        try:
            recorded = self._unsettled.labels()
        except OSError as exc:
            problems.append(Problem(EdgeKind.STATE, f"cannot read the unsettled labels: {exc}"))
            return {}
        return {label.name: recorded[label.name] for label in labels if label.name in recorded}

    def _settle_listed(self, unsettled: Mapping[str, float], census: Census) -> None:
        """Announce the pilots the census lists of an unsettled label it answered for, those queued
        since the label was recorded (or at an unknown time), and settle the label; one it could
        not answer for stays unsettled."""
        settled = []
        for name, since in sorted(unsettled.items()):
            if census.supply.get(name) is None:
                continue
            job_ids = [
                pilot.job_id
                for pilot in census.pilots.get(name, ())
                if pilot.queued <= 0 or pilot.queued >= since - CLOCK_SKEW
            ]
            if self._announce(name, job_ids, {}):
                log.info(
                    "%s: its last submission is settled: the census lists %d pilots queued since, all"
                    " announced",
                    name,
                    len(job_ids),
                )
                settled.append(name)
        self._settle(settled)

    def _announce(self, label: str, job_ids: Sequence[str], key_digests: Mapping[str, str]) -> bool:
        """Tell every pilot listener of these pilots (and their key digests, for those that have
        one); False when one could not keep them."""
        told = True
        for listener in self._listeners:
            try:
                listener.pilots_created(label, job_ids, key_digests)
            except Exception as exc:  # noqa: BLE001  a listener's failure is never the cycle's
                name = type(listener).__name__
                log.warning(
                    "%s: %s could not keep %d pilots: %s: %s",
                    label,
                    name,
                    len(job_ids),
                    type(exc).__name__,
                    exc,
                )
                self._observer_failed(name)
                told = False
        return told

    def _settle(self, names: Collection[str]) -> None:
        if self._unsettled is None or not names:
            return
        try:
            self._unsettled.settle(names)
        except OSError as exc:  # they stay unsettled: announced again after a good census
            log.warning("could not record %d labels as settled: %s", len(names), exc)

    def _decide_and_submit(
        self,
        cycle: int,
        labels: Sequence[Label],
        stats: JobStats | None,
        census: Census,
        blocked: Mapping[str, str],
        disabled: Mapping[str, str],
        started: float,
    ) -> tuple[LabelResult, ...]:
        """The policy per label under the factory's caps, then the submissions and their tidy-up."""
        f = self._settings
        caps = FactoryCaps(f.max_per_cycle, f.max_pilots, census.total)
        plans = plan(labels, stats, census, f.num_factories, caps, cycle, blocked, disabled)
        return self._tidy(self._submit_all(plans, started), census, started)

    def _notify(self, report: CycleReport, labels: Sequence[Label]) -> None:
        """Tell every observer; one that fails (a full state disk) is a warning, never a failed
        cycle, and the others still hear of it."""
        for observer in self._observers:
            try:
                observer.cycle_done(report, labels)
            except Exception as exc:  # noqa: BLE001  an observer's failure is never the cycle's
                name = type(observer).__name__
                why = f"{type(exc).__name__}: {exc}"
                log.warning("cycle %d: observer %s failed: %s", report.cycle, name, why)
                self._observer_failed(name)

    def _remove_requested(self, controls: Controls, labels: Sequence[Label], census: Census) -> list[str]:
        """Carry out the ``autopyfactory pilots remove`` requests: each backend once for all of
        them (one ``condor_rm`` per schedd and request, the request as the pilots' RemoveReason);
        a request is dropped only when all its removals worked. Returns one note per request."""
        if self._controls is None or not controls.removals or self._dry_run:
            return []
        targets = controls.removal_targets(labels)  # the census listed every pilot of these
        plan = plan_removals(controls.removals, removal_views(labels, census, targets))
        notes = list(plan.notes)
        requests = {removal.id: removal for removal in controls.removals}
        failed = self._remove_pilots(plan.by_request, requests, {label.name: label for label in labels})
        for request_id, labels_failed in failed.items():
            errors, names = "; ".join(sorted(set(labels_failed.values()))), ", ".join(sorted(labels_failed))
            notes.append(
                f"{requests[request_id].describe()}: removing the pilots of {names} failed ({errors}):"
                " kept, tried again next cycle"
            )
        done = [request_id for request_id in plan.by_request if request_id not in failed]
        try:
            self._controls.update(lambda current: drop_removals(current, done))
        except (ControlError, OSError) as exc:  # the pilots are gone; a repeat would find none
            log.error("could not mark removal requests done: %s", exc)
        return notes

    def _remove_pilots(
        self,
        by_request: Mapping[str, Mapping[str, tuple[str, ...]]],
        requests: Mapping[str, Removal],
        by_name: Mapping[str, Label],
    ) -> dict[str, dict[str, str]]:
        """The removals of every request, each backend asked once; request -> label -> error of
        those that failed."""
        work: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {}  # backend -> label -> reason -> ids
        for request_id, found in by_request.items():
            reason = requests[request_id].remove_reason()
            for name, job_ids in found.items():
                work.setdefault(by_name[name].batch, {}).setdefault(name, {})[reason] = job_ids
        errors: dict[str, str] = {}
        for batch, items in work.items():
            backend = self._backends.get(batch)
            try:
                if backend is None:
                    raise BatchError(f"no batch backend {batch!r}")
                errors |= backend.tidy(
                    [Tidy(by_name[name], (), removals) for name, removals in items.items()]
                )
            except Exception as exc:  # noqa: BLE001  one backend's failure never stops the others
                errors |= dict.fromkeys(items, f"{type(exc).__name__}: {exc}")
        failed: dict[str, dict[str, str]] = {}
        for request_id, found in by_request.items():
            mine = {name: errors[name] for name in found if name in errors}
            if mine:
                failed[request_id] = mine
        return failed

    def _labels(self, problems: list[Problem]) -> LabelSet:
        """This cycle's labels; without schedconfig those of the queues that need none."""
        reading = self._label_source.read()
        if reading.schedconfig_problem:
            problems.append(Problem(EdgeKind.SCHEDCONFIG, reading.schedconfig_problem))
        return reading.label_set

    def _check_credentials(self, labels: Sequence[Label], now: float) -> CredentialVerdicts:
        """Each credential the labels' pilots carry, checked once; labels whose one is too short."""
        if self._credentials is None:
            return CredentialVerdicts()
        return self._credentials.check_labels(labels, now)

    def _clean_logs(self, labels: Sequence[Label], census: Census, now: float) -> None:
        """Pilot log cleanup, at most every logCleanupInterval; never while pilots' dirs are unknown."""
        if self._log_cleanup is None or self._dry_run or not self._log_cleanup.claim():
            return
        in_use = None
        if census.total is not None:
            unknown = [name for name, supply in census.supply.items() if supply is None]
            in_use = dirs_in_use(census.queue_dates(), unknown_labels=unknown)
        keep_days = {label.name: label.log_keep_days for label in labels}
        try:
            self._log_cleanup.clean(keep_days, in_use, datetime.fromtimestamp(now, UTC).date())
        except Exception:  # cleanup must never take the cycle down
            log.exception("log cleanup failed")

    def _census(
        self,
        labels: Sequence[Label],
        problems: list[Problem],
        keep: Collection[str] = (),
        started_since: float | None = None,
    ) -> Census:
        """All backends' censuses as one (a backend no label uses is not asked); every pilot of
        the labels in ``keep`` is listed (the others' only as far as housekeeping needs)."""
        censuses = []
        for name, backend in self._backends.items():
            members = [label for label in labels if label.batch == name]
            if members:
                censuses.append(backend.census(members, keep, started_since))
        census = Census.merge(censuses)
        problems.extend(Problem(EdgeKind.BATCH, message) for message in census.problems)
        return census

    def _submit_all(self, plans: Sequence[LabelPlan], started: float) -> list[LabelResult]:
        """Every label's submission: one batch per backend (one condor_submit per schedd)."""
        outcomes: dict[str, SubmitOutcome] = {}
        by_backend: dict[str, list[tuple[Label, int]]] = {}
        for p in plans:
            if p.decision.n > 0:
                by_backend.setdefault(p.label.batch, []).append((p.label, p.decision.n))
        for name, requests in by_backend.items():
            outcomes.update(self._submit_batch(name, requests, started))
        return [LabelResult(p, outcomes.get(p.label.name, SubmitOutcome())) for p in plans]

    def _submit_batch(
        self, name: str, requests: Sequence[tuple[Label, int]], started: float
    ) -> dict[str, SubmitOutcome]:
        backend = self._backends.get(name)
        if backend is None:
            return {label.name: SubmitOutcome(error=f"no batch backend {name!r}") for label, _ in requests}
        if self._stop_requested():
            return {
                label.name: SubmitOutcome(error="not submitted: the factory is stopping")
                for label, _ in requests
            }
        refused = self._mark_unsettled(requests, started)
        if refused:
            return refused
        announced: dict[str, bool] = {}  # label -> whether every listener kept its pilots

        def submitted(label: str, outcome: SubmitOutcome) -> None:
            announced[label] = self._announce(label, outcome.job_ids, outcome.key_digests)

        try:
            outcomes = backend.submit(requests, self._submit_context(started, submitted))
        except Exception as exc:  # one backend's failure never stops the others
            log.exception("%s: submission failed", name)
            outcomes = {}
            error = SubmitOutcome(error=f"{type(exc).__name__}: {exc}")
        else:
            error = SubmitOutcome(error="no outcome from the batch backend")
        found = {label.name: outcomes.get(label.name, error) for label, _ in requests}
        self._announce_submitted(found, announced)
        return found

    def _submit_context(
        self, started: float, submitted: Callable[[str, SubmitOutcome], None]
    ) -> SubmitContext:
        f = self._settings
        return SubmitContext(
            f.factory_id,
            f.pandaserver,
            f.base_log_dir,
            f.base_log_dir_url,
            f.monitor_url,
            datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d"),
            self._dry_run,
            submitted,
        )

    def _mark_unsettled(self, requests: Sequence[tuple[Label, int]], now: float) -> dict[str, SubmitOutcome]:
        """Record the labels as unsettled before they are submitted; when that is impossible,
        submit none of them (their pilots could be lost to the monitor): their outcomes."""
        if self._unsettled is None or self._dry_run:
            return {}
        try:
            self._unsettled.mark([label.name for label, _ in requests], now)
        except OSError as exc:
            error = f"nothing submitted: cannot record the submission in the state dir: {exc}"
            return {label.name: SubmitOutcome(error=error) for label, _ in requests}
        return {}

    def _announce_submitted(self, outcomes: Mapping[str, SubmitOutcome], announced: dict[str, bool]) -> None:
        """Announce the pilots queued that the backend did not tell of as its schedds answered;
        settle the labels whose every pilot is known and was announced."""
        settled = []
        for name, outcome in outcomes.items():
            if name not in announced and outcome.job_ids:
                announced[name] = self._announce(name, outcome.job_ids, outcome.key_digests)
            if announced.get(name, True) and not outcome.error:
                settled.append(name)
        self._settle(settled)

    def _tidy(self, results: Sequence[LabelResult], census: Census, now: float) -> tuple[LabelResult, ...]:
        """Release or remove the labels' held and stuck pilots (see housekeeping.py), each backend
        for all its labels at once."""
        if self._dry_run or self._stop_requested():
            return tuple(results)
        planned: dict[str, list[Action]] = {}
        work: dict[str, list[Tidy]] = {}
        for result in results:
            label = result.plan.label
            actions = plan_actions(census.pilots.get(label.name, ()), label.housekeeping, now)
            if not actions or label.batch not in self._backends:
                continue
            for action in actions:
                log.info("%s: %s %s: %s", label.name, action.kind.value, action.job_id, action.reason)
            planned[label.name] = actions
            work.setdefault(label.batch, []).append(_tidy_work(label, actions))
        failed: dict[str, str] = {}
        for batch, items in work.items():
            try:
                failed |= self._backends[batch].tidy(items)
            except Exception as exc:  # one backend's failure never stops the others
                log.exception("%s: housekeeping failed", batch)
                failed |= {item.label.name: f"{type(exc).__name__}: {exc}" for item in items}
        return tuple(_with_housekeeping(r, planned, failed) for r in results)

    def _log(self, report: CycleReport) -> None:
        for problem in (*report.problems, *report.skipped_queues):
            log.warning("%s", problem)
        info = log.isEnabledFor(logging.INFO)
        for note in report.control:
            log.info("control: %s", note)
        for result in report.results:
            if result.outcome.error:
                log.warning("%s", result.line())
            elif info:
                log.info("%s", result.line())
        log.info("%s", report.summary())
