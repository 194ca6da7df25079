"""The HTCondor batch backend: census with condor_q, submission with condor_submit.

Labels are grouped by schedd (``condorSchedd``/``condorPool``, per queue or factory-wide). Each
schedd is asked once per cycle; when one fails, its labels' supply is unknown (None) and the
others are unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from autopyfactory.batch import BatchError, Census, SubmitContext, SubmitOutcome, SubmitRequests
from autopyfactory.condor.bulk import submit_batch
from autopyfactory.condor.command import Schedd, run_condor
from autopyfactory.condor.status import census_query, query_pilots
from autopyfactory.condor.submit import submit_pilots
from autopyfactory.labels import Label
from autopyfactory.model import Pilot, Supply

log = logging.getLogger(__name__)


class CondorBackend:
    name = "condor"

    def __init__(self, factory_id: str, default: Schedd, timeout: float, parallel: int = 4) -> None:
        self._factory_id, self._default, self._timeout = factory_id, default, timeout
        self._parallel = max(1, parallel)  # schedds submitted to at the same time

    def schedd_of(self, label: Label) -> Schedd:
        return Schedd(label.submit.schedd or self._default.name, label.submit.pool or self._default.pool)

    def pilots(self, schedd: Schedd) -> list[Pilot]:
        """All of this factory's pilots in one schedd (raises BatchError)."""
        return query_pilots(schedd, self._factory_id, self._timeout)

    def all_pilots(self, labels: Sequence[Label]) -> dict[str, tuple[Pilot, ...] | None]:
        """Every pilot of each label (the census keeps only those housekeeping needs); None for
        the labels of a schedd that did not answer. One ``condor_q`` per schedd."""
        found: dict[str, tuple[Pilot, ...] | None] = {}
        for schedd, members in self._by_schedd(labels).items():
            try:
                pilots = self.pilots(schedd)
            except BatchError:
                found.update(dict.fromkeys((label.name for label in members), None))
                continue
            for label in members:
                found[label.name] = tuple(p for p in pilots if p.label == label.name)
        return found

    def census(self, labels: Sequence[Label]) -> Census:
        """One ``condor_q`` per schedd, counted in one pass (see status.read_census)."""
        supply: dict[str, Supply | None] = {}
        pilots: dict[str, tuple[Pilot, ...]] = {}
        queued: dict[str, frozenset[int]] = {}
        recent: dict[str, tuple[str, ...]] = {}
        total: int | None = 0
        problems: list[str] = []
        keep_idle = {label.name for label in labels if label.housekeeping.idle_timeout > 0}
        for schedd, members in self._by_schedd(labels).items():
            try:
                found = census_query(schedd, self._factory_id, self._timeout, keep_idle)
            except BatchError as exc:
                problems.append(str(exc))
                supply.update(dict.fromkeys((label.name for label in members), None))
                total = None
                continue
            supply.update({label.name: found.supply.get(label.name, Supply()) for label in members})
            for name, held in found.pilots.items():
                pilots[name] = (*pilots.get(name, ()), *held)
            for name, dates in found.queued.items():
                queued[name] = queued.get(name, frozenset()) | dates
            for name, ids in found.recent.items():
                recent[name] = (*recent.get(name, ()), *ids)
            if total is not None:
                total += found.total
        return Census(supply, total, tuple(problems), pilots, queued, recent)

    def _by_schedd(self, labels: Sequence[Label]) -> dict[Schedd, list[Label]]:
        groups: dict[Schedd, list[Label]] = {}
        for label in labels:
            groups.setdefault(self.schedd_of(label), []).append(label)
        if not groups:
            groups[self._default] = []
        return groups

    def submit(self, label: Label, n: int, context: SubmitContext) -> SubmitOutcome:
        return submit_pilots(label, n, context, self.schedd_of(label), self._timeout)

    def submit_batch(self, requests: SubmitRequests, context: SubmitContext) -> dict[str, SubmitOutcome]:
        """One condor_submit per schedd (see bulk.py); schedds in parallel, at most ``parallel``."""
        by_schedd: dict[Schedd, list[tuple[Label, int]]] = {}
        for label, n in requests:
            by_schedd.setdefault(self.schedd_of(label), []).append((label, n))
        if len(by_schedd) <= 1 or self._parallel == 1:
            results = [submit_batch(items, context, s, self._timeout) for s, items in by_schedd.items()]
        else:
            with ThreadPoolExecutor(min(self._parallel, len(by_schedd)), "condor-submit") as pool:
                futures = [
                    pool.submit(submit_batch, items, context, s, self._timeout)
                    for s, items in by_schedd.items()
                ]
                results = [future.result() for future in futures]
        return {name: outcome for result in results for name, outcome in result.outcomes.items()}

    def remove(self, label: Label, job_ids: Sequence[str]) -> None:
        if job_ids:
            run_condor("condor_rm", self.schedd_of(label), list(job_ids), self._timeout)

    def release(self, label: Label, job_ids: Sequence[str]) -> None:
        if job_ids:
            run_condor("condor_release", self.schedd_of(label), list(job_ids), self._timeout)
