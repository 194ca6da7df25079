"""Group commit: the writes that arrive together share one transaction (and one fsync).

Request handlers hand their write to :class:`GroupCommit` as a function of a :class:`Batch` and
await its result. One writer thread takes whatever is queued (up to ``max_batch`` items), runs the
items one after the other in one write transaction, commits, and only then answers each of them:
an answer always means "committed". Items run in arrival order on the same session, so a report
sees the state the previous one left (the state machine is applied exactly as with one
transaction per report); in several worker processes on PostgreSQL the conditional
``UPDATE ... WHERE state = <judged state>`` still lets only one report win a step.

Items submitted with :meth:`GroupCommit.run_together` are data for a ``together`` function, which
does consecutive ones in one call (the pilot reports of a batch: one SELECT and one UPDATE
statement for all of them instead of two statements each); it must give the same results as doing
them one after the other, and, like any item, raises only before it writes anything.

A :class:`~errors.MonitorError` raised by an item is that item's answer (404, 409); an item must
raise it before it writes anything. Any other failure rolls the batch back and its items are run
again one per transaction, so that one bad item cannot fail the others.

Why: with a transaction per request, concurrent reports queue on SQLite's write lock (whose busy
handler sleeps up to 100 ms between attempts) or on PostgreSQL's commit fsync; in one transaction
a report costs a few statements.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from autopyfactory.monitor_service.bulk import insert_events
from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.errors import MonitorError
from autopyfactory.monitor_service.settings import Clock

log = logging.getLogger(__name__)

T = TypeVar("T")


class Unavailable(MonitorError):
    """The write queue is full or the service is stopping: try again later."""

    status = 503


@dataclass
class Batch:
    """What the items of one transaction share: the session, the time, the job events to insert
    in one statement before the commit, and work that must follow that insert (``after``)."""

    session: Session
    now: datetime
    events: list[dict[str, Any]] = field(default_factory=list)
    after: list[Callable[[Session], None]] = field(default_factory=list)

    def finish(self) -> None:
        """Insert the events, then run ``after`` (e.g. pruning old events): before the commit."""
        insert_events(self.session.connection(), self.events)
        for work in self.after:
            work(self.session)


Work = Callable[[Batch], Any]
Outcome = tuple[bool, Any]  # (True, result) or (False, the MonitorError that is the answer)
Together = Callable[[Batch, list[Any]], list[Outcome]]
"""Does several items (in arrival order) at once: one outcome per item."""


@dataclass(frozen=True)
class _Item:
    work: Any  # a Work, or the data of a Together
    future: Future[Any]
    weight: int  # rows it writes, about: a batch stops growing at max_weight
    together: Together | None = None


class GroupCommit:
    """The writer thread and its queue; see the module docstring."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        max_batch: int = 500,
        max_weight: int = 2000,
        max_queued: int = 20000,
    ) -> None:
        self._db = db
        self._clock = clock
        self._max_batch = max_batch
        self._max_weight = max_weight
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queued)
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new work, finish (and answer) what is queued, then stop the thread."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        if not self._thread.is_alive():
            return
        self._queue.put(None)  # after every queued item: they are all committed first
        self._thread.join(timeout)

    def submit(self, work: Any, weight: int = 1, together: Together | None = None) -> Future[Any]:
        """Queue ``work`` (a :data:`Work`, or with ``together`` its data); ``weight``: about how
        many rows it writes (a bulk create of 1,000 jobs is not batched with many others, so that
        each answer comes soon after its own work)."""
        future: Future[Any] = Future()
        with self._lock:
            if self._stopping:
                raise Unavailable("the service is stopping, try again later")
            try:
                self._queue.put_nowait(_Item(work, future, weight, together))
            except queue.Full:
                raise Unavailable("too many writes waiting, try again later") from None
        return future

    async def run(self, work: Callable[[Batch], T], weight: int = 1) -> T:
        """``work`` done and committed (or its MonitorError raised), without blocking the loop."""
        result: T = await asyncio.wrap_future(self.submit(work, weight))
        return result

    async def run_together(self, together: Together, item: Any) -> Any:
        """``item`` done by ``together`` (with the items queued next to it) and committed."""
        return await asyncio.wrap_future(self.submit(item, together=together))

    # --- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._commit(batch)
            if stop:
                return

    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        """``first`` and what is queued behind it, up to the limits; True when told to stop."""
        batch = [first]
        weight = first.weight
        while len(batch) < self._max_batch and weight < self._max_weight:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
            if item is None:
                return batch, True
            batch.append(item)
            weight += item.weight
        return batch, False

    def _commit(self, items: list[_Item]) -> None:
        # A request cancelled while queued (client gone) is dropped: nobody will read its answer.
        # The others can no longer be cancelled, so setting their result below cannot fail.
        items = [item for item in items if item.future.set_running_or_notify_cancel()]
        if not items:
            return
        try:
            results = self._transaction(items)
        # Whatever a transaction raises goes to the requests waiting for it; the writer lives on.
        except Exception as exc:  # noqa: BLE001
            if len(items) > 1:
                log.warning("group commit of %d writes failed (%s): one by one", len(items), exc)
                for item in items:
                    self._commit_alone(item)
                return
            items[0].future.set_exception(exc)
            return
        for item, (ok, value) in zip(items, results, strict=True):
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)

    def _commit_alone(self, item: _Item) -> None:
        try:
            ((ok, value),) = self._transaction([item])
        except Exception as exc:  # noqa: BLE001  the waiting request raises it; the writer lives on
            item.future.set_exception(exc)
            return
        if ok:
            item.future.set_result(value)
        else:
            item.future.set_exception(value)

    def _transaction(self, items: list[_Item]) -> list[Outcome]:
        results: list[Outcome] = []
        with self._db.write.begin() as session:
            batch = Batch(session, self._clock())
            for together, run in itertools.groupby(items, key=lambda item: item.together):
                if together is None:
                    results.extend(_alone(batch, item.work) for item in run)
                    continue
                works = [item.work for item in run]
                outcomes = together(batch, works)
                if len(outcomes) != len(works):
                    raise RuntimeError(f"{together}: {len(outcomes)} outcomes for {len(works)} items")
                results.extend(outcomes)
            batch.finish()
        return results


def _alone(batch: Batch, work: Work) -> Outcome:
    try:
        return True, work(batch)
    except MonitorError as exc:
        return False, exc
