"""What the cron helpers learn of pilots that left HTCondor: completed, removed, or withdrawn by an
operator's request (``autopyfactory pilots remove``, told apart by its RemoveReason)."""

from __future__ import annotations

from autopyfactory.batch.condor.backend import CondorBackend
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.interface import End, removed_pilot
from autopyfactory.domain.control import Removal

SUBMIT = (
    "universe = vanilla\nexecutable = /bin/true\ntransfer_executable = False\n"
    '+FactoryId = "hist"\n+MATCH_APF_QUEUE = "L"\nqueue 3\n'
)


def test_an_operator_s_removal_is_withdrawn_other_removals_are_removed(condor):
    first, second, third = condor.submit(SUBMIT)
    backend = CondorBackend("hist", Schedd(), timeout=30)
    request = Removal("ab12cd34", 0.0, pq="P", by="alice", reason="CE retired")
    backend.tidy([])  # nothing to do: no call
    condor.remove(first, reason=f"{request.remove_reason()} (by user alice)")
    condor.remove(second, reason="autopyfactory housekeeping: held too long (by user alice)")
    condor.complete(third, exit_code=0)
    ended = {pilot.job_id: pilot for pilot in backend.finished(lambda _source: 0.0).pilots}
    assert ended[first].end is End.WITHDRAWN
    assert (
        ended[first].reason
        == "Removed: autopyfactory pilots remove ab12cd34 by alice: CE retired (by user alice)"
    )
    assert ended[second].end is End.REMOVED
    assert ended[third].end is End.COMPLETED


def test_removed_pilot_without_a_reason():
    assert removed_pilot("1.0", "") == removed_pilot("1.0", "")
    assert removed_pilot("1.0", "").reason == "Removed"
    assert removed_pilot("1.0", "").end is End.REMOVED
