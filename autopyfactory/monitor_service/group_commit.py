"""Group commit: the writes that arrive together share one transaction (and one fsync).

Request handlers hand their write to :class:`GroupCommit` as a function of a :class:`Batch` and
await its result. One writer thread takes whatever is queued (up to ``max_batch`` items), runs the
items one after the other in one write transaction, commits, and only then answers each of them:
an answer always means "committed". Items run in arrival order on the same session, so a report
sees the state the previous one left (the state machine is applied exactly as with one
transaction per report); in several worker processes on PostgreSQL the conditional
``UPDATE ... WHERE state = <judged state>`` still lets only one report win a step.

A :class:`~errors.MonitorError` raised by an item is that item's answer (404, 409); an item must
raise it before it writes anything. Any other failure rolls the batch back and its items are run
again one per transaction, so that one bad item cannot fail the others.

Why: with a transaction per request, concurrent reports queue on SQLite's write lock (whose busy
handler sleeps up to 100 ms between attempts) or on PostgreSQL's commit fsync; in one transaction
a report costs a few statements.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from autopyfactory.monitor_service.db import Database
from autopyfactory.monitor_service.errors import MonitorError
from autopyfactory.monitor_service.models import JobEvent
from autopyfactory.monitor_service.settings import Clock

JOB_EVENTS = cast(Table, JobEvent.__table__)

log = logging.getLogger(__name__)

T = TypeVar("T")


class Unavailable(MonitorError):
    """The write queue is full or the service is stopping: try again later."""

    status = 503


@dataclass
class Batch:
    """What the items of one transaction share: the session, the time, and the job events to
    insert in one statement before the commit."""

    session: Session
    now: datetime
    events: list[dict[str, Any]] = field(default_factory=list)
    factory_ids: dict[str, int] = field(default_factory=dict)  # looked up once per batch


Work = Callable[[Batch], Any]


@dataclass(frozen=True)
class _Item:
    work: Work
    future: Future[Any]


class GroupCommit:
    """The writer thread and its queue; see the module docstring."""

    def __init__(self, db: Database, clock: Clock, max_batch: int = 500, max_queued: int = 20000) -> None:
        self._db = db
        self._clock = clock
        self._max_batch = max_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queued)
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self.batches = 0
        self.items = 0

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

    def submit(self, work: Work) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._stopping:
                raise Unavailable("the service is stopping, try again later")
            try:
                self._queue.put_nowait(_Item(work, future))
            except queue.Full:
                raise Unavailable("too many writes waiting, try again later") from None
        return future

    async def run(self, work: Callable[[Batch], T]) -> T:
        """``work`` done and committed (or its MonitorError raised), without blocking the loop."""
        result: T = await asyncio.wrap_future(self.submit(work))
        return result

    # --- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, items: list[_Item]) -> None:
        # A request cancelled while queued (client gone) is dropped: nobody will read its answer.
        # The others can no longer be cancelled, so setting their result below cannot fail.
        items = [item for item in items if item.future.set_running_or_notify_cancel()]
        if not items:
            return
        try:
            results = self._transaction(items)
        except Exception as exc:
            if len(items) > 1:
                log.warning("group commit of %d writes failed (%s): one by one", len(items), exc)
                for item in items:
                    self._commit_alone(item)
                return
            items[0].future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(items)
        for item, (ok, value) in zip(items, results, strict=True):
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)

    def _commit_alone(self, item: _Item) -> None:
        try:
            ((ok, value),) = self._transaction([item])
        except Exception as exc:
            item.future.set_exception(exc)
            return
        if ok:
            item.future.set_result(value)
        else:
            item.future.set_exception(value)

    def _transaction(self, items: list[_Item]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        with self._db.write.begin() as session:
            batch = Batch(session, self._clock())
            for item in items:
                try:
                    results.append((True, item.work(batch)))
                except MonitorError as exc:
                    results.append((False, exc))
            if batch.events:
                session.connection().execute(insert(JOB_EVENTS), batch.events)
        return results
