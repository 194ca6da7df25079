"""The HTCondor batch backend: census with condor_q, submission with condor_submit.

Labels are grouped by schedd (``condorSchedd``/``condorPool``, per queue or factory-wide). Each
schedd is asked once per cycle; when one fails, its labels' supply is unknown (None) and the
others are unaffected. Schedds the factory submitted to before (a queue moved elsewhere) are
asked too, and their answer is checked against the recent submissions (condor/memory.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from autopyfactory.batch import BatchError, Census, SubmitContext, SubmitOutcome
from autopyfactory.condor.command import Schedd, run_condor
from autopyfactory.condor.memory import SubmissionMemory
from autopyfactory.condor.status import count_by_label, factory_constraint, query_pilots
from autopyfactory.condor.submit import submit_pilots
from autopyfactory.labels import Label
from autopyfactory.model import Pilot, Supply

log = logging.getLogger(__name__)


class CondorBackend:
    name = "condor"

    def __init__(
        self, factory_id: str, default: Schedd, timeout: float, memory: SubmissionMemory | None = None
    ) -> None:
        self._factory_id, self._default, self._timeout = factory_id, default, timeout
        self._memory = memory
        self._located: dict[tuple[str, str], Schedd] = {}  # (label, job id) -> schedd, from the census

    def schedd_of(self, label: Label) -> Schedd:
        return Schedd(label.submit.schedd or self._default.name, label.submit.pool or self._default.pool)

    def pilots(self, schedd: Schedd) -> list[Pilot]:
        """All of this factory's pilots in one schedd (raises BatchError)."""
        return query_pilots(schedd, self._factory_id, self._timeout)

    def census(self, labels: Sequence[Label]) -> Census:
        """Every schedd of today's labels and every one remembered (pilots of a queue that moved
        still count for their label and the factory's total); see condor/memory.py."""
        groups = self._by_schedd(labels)
        if self._memory is not None:
            self._memory.tidy(set(groups))
            for schedd in self._memory.schedds():
                groups.setdefault(schedd, [])
        pilots: dict[str, list[Pilot]] = {}
        unknown: set[str] = set()
        problems: list[str] = []
        located: dict[tuple[str, str], Schedd] = {}
        for schedd, members in sorted(groups.items(), key=lambda item: not item[1]):  # today's first
            try:
                found = self.pilots(schedd)
                self._check_plausible(schedd, found)
            except BatchError as exc:
                problems.append(str(exc))
                remembered = self._memory.labels_at(schedd) if self._memory else set()
                unknown.update({label.name for label in members} | remembered)
                continue
            if not members and not found and self._memory is not None:
                self._memory.forget(schedd)
            for pilot in found:
                pilots.setdefault(pilot.label, []).append(pilot)
                located.setdefault((pilot.label, pilot.job_id), schedd)
        self._located = located
        counts = count_by_label(p for found in pilots.values() for p in found)
        supply: dict[str, Supply | None] = {
            name: None if name in unknown else counts.get(name, Supply()) for name in (x.name for x in labels)
        }
        total = None if problems else sum(s.all for s in counts.values())
        return Census(
            supply, total, tuple(problems), {label: tuple(found) for label, found in pilots.items()}
        )

    def _check_plausible(self, schedd: Schedd, found: Sequence[Pilot]) -> None:
        """BatchError if pilots submitted here in the last few cycles are in neither condor_q's
        answer nor condor_history: condor_q answered wrongly (e.g. an empty answer with exit 0),
        so its count cannot be trusted and nothing may be submitted on it."""
        if self._memory is None:
            return
        listed = {pilot.job_id for pilot in found}
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
                f"condor_q ({schedd}) lists {len(found)} pilots of this factory, but {len(vanished)} it"
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

    def _where(self, label: Label, job_ids: Sequence[str]) -> dict[Schedd, list[str]]:
        """The schedd of each pilot as the last census found it (a moved queue's pilots stay in
        the old one), else the label's schedd."""
        groups: dict[Schedd, list[str]] = {}
        for job_id in job_ids:
            schedd = self._located.get((label.name, job_id), self.schedd_of(label))
            groups.setdefault(schedd, []).append(job_id)
        return groups

    def submit(self, label: Label, n: int, context: SubmitContext) -> SubmitOutcome:
        schedd = self.schedd_of(label)
        if self._memory is not None and not context.dry_run:
            try:
                self._memory.note_intent(schedd, label.name)
            except OSError as exc:
                return SubmitOutcome(
                    error=f"nothing submitted: cannot remember the submission to {schedd} in"
                    f" {self._memory.path}: {exc}"
                )
        outcome = submit_pilots(label, n, context, schedd, self._timeout)
        if self._memory is not None and outcome.job_ids:
            self._memory.note_submitted(schedd, outcome.job_ids)
        return outcome

    def remove(self, label: Label, job_ids: Sequence[str]) -> None:
        for schedd, ids in self._where(label, job_ids).items():
            run_condor("condor_rm", schedd, ids, self._timeout)

    def release(self, label: Label, job_ids: Sequence[str]) -> None:
        for schedd, ids in self._where(label, job_ids).items():
            run_condor("condor_release", schedd, ids, self._timeout)


def history_ids(schedd: Schedd, factory_id: str, job_ids: Sequence[str], timeout: float) -> set[str]:
    """Which of ``job_ids`` (this factory's) ``condor_history`` knows in ``schedd``."""
    pairs = (job_id.split(".") for job_id in job_ids)
    ids = " || ".join(f"(ClusterId == {int(c)} && ProcId == {int(p)})" for c, p in pairs)
    args = [
        "-constraint", f"{factory_constraint(factory_id)} && ({ids})", "-json",
        "-attributes", "ClusterId,ProcId", "-limit", str(len(job_ids)),
    ]  # fmt: skip
    text = run_condor("condor_history", schedd, args, timeout)
    try:
        ads = json.loads(text) if text.strip() else []
    except ValueError as exc:
        raise BatchError(f"condor_history ({schedd}): unparsable output ({exc}): {text[:80]!r}") from None
    if not isinstance(ads, list):
        raise BatchError(f"condor_history ({schedd}): expected a JSON list of job ads")
    return {f"{ad.get('ClusterId')}.{ad.get('ProcId')}" for ad in ads if isinstance(ad, dict)}
