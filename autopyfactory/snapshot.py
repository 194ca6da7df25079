"""A view of an external system with the time it was taken (the TARDIS idea).

Edges whose answers may be reused (schedconfig) keep their last good answer as a
:class:`Snapshot`. Consumers ask :meth:`Snapshot.fresh` with their own age limit; an answer too old
is treated exactly like no answer, so the policy decides 0 for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    data: T
    taken_at: float  # seconds since the epoch
    source: str  # where it came from, for logs ("https://...", "last-good copy /var/lib/...")

    def age(self, now: float) -> float:
        return max(0.0, now - self.taken_at)

    def fresh(self, now: float, max_age: float) -> bool:
        return self.age(now) <= max_age
