"""One Census.merge for the cycle (several backends) and the HTCondor backend (several schedds)."""

from __future__ import annotations

from autopyfactory.domain.model import Census, JobStatus, Pilot, Supply


def pilot(job_id: str, label: str, queued: int) -> Pilot:
    return Pilot(job_id, label, JobStatus.HELD, queued, queued)


def test_a_labels_supplies_add_up_and_unknown_wins() -> None:
    one = Census({"A": Supply(1, 2, 3), "B": Supply(idle=1), "C": None}, 6)
    two = Census({"A": Supply(4, 5, 6, total=16), "B": None, "D": Supply(running=1)}, 17)
    merged = Census.merge([one, two])
    assert merged.supply == {"A": Supply(5, 7, 9, total=22), "B": None, "C": None, "D": Supply(running=1)}
    assert merged.total == 23


def test_the_total_is_unknown_when_one_is_and_every_problem_is_kept() -> None:
    merged = Census.merge([Census({}, 3, ("schedd a down",)), Census({}, None, ("schedd b down",))])
    assert (merged.total, merged.problems) == (None, ("schedd a down", "schedd b down"))
    assert Census.merge([]) == Census({}, 0, (), {}, {})


def test_pilots_and_dates_are_all_kept() -> None:
    local = Census({"L": Supply(running=1)}, 1, (), {"L": (pilot("1.0", "L", 7200),)})  # dates from pilots
    first = Census({}, 1, (), {"A": (pilot("5.0", "A", 0),)}, {"A": frozenset({3600})})
    second = Census({}, 1, (), {"A": (pilot("5.0", "A", 0),)}, {"A": frozenset({0})})
    merged = Census.merge([local, first, second])
    assert {name: [p.job_id for p in found] for name, found in merged.pilots.items()} == {
        "L": ["1.0"],
        "A": ["5.0", "5.0"],  # the same id in two schedds: two pilots
    }
    assert merged.queued_by_label() == {"L": frozenset({7200}), "A": frozenset({0, 3600})}
