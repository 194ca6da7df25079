"""The factory's client of the monitoring webservice (apfmon API v2).

The cycle never waits for the monitor: :meth:`MonitorClient.cycle_done` only puts events on a
bounded queue and returns. A background thread sends them in order: the factory heartbeat
(every cycle, even when nothing was submitted), the labels (when they change), the pilots created
(one bulk ``PUT /jobs`` per cycle) and each label's one-line cycle message. When the monitor is
down or answers 5xx, the thread retries the same event with a growing pause (capped), so events
arrive once it is back; when the queue is full, new events are dropped and counted. A 4xx answer
means the event itself is wrong: it is logged and dropped.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from autopyfactory import __version__
from autopyfactory.factory import CycleReport
from autopyfactory.labels import Label

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    method: str
    path: str  # below the API root
    body: Any
    what: str  # for logs


@dataclass(frozen=True)
class MonitorSettings:
    url: str  # API root, e.g. http://apfmon.example.org/api
    token: str
    factory_id: str
    owner: str
    log_url: str
    timeout: float = 5.0
    queue_size: int = 10000
    max_backoff: float = 60.0


class MonitorClient:
    """Sends factory events in a background thread; see the module docstring."""

    def __init__(
        self,
        settings: MonitorSettings,
        session: requests.Session | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.settings = settings
        self._session = session or requests.Session()
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=settings.queue_size)
        self._stopping = threading.Event()
        self._pause = sleep or self._stopping.wait  # returns True when stopping
        self._thread = threading.Thread(target=self._work, name="monitor-client", daemon=True)
        self._last_labels: list[dict[str, str]] | None = None
        self.dropped = 0
        self.sent = 0
        self.failed_attempts = 0
        self.rejected_items = 0  # items of bulk requests the monitor left out as invalid

    # --- the cycle's side (never blocks) ---------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def cycle_done(self, report: CycleReport, labels: Sequence[Label]) -> None:
        s = self.settings
        self._put(
            Event(
                "PUT",
                f"/factories/{s.factory_id}",
                {"url": s.log_url, "email": s.owner, "version": __version__},
                "heartbeat",
            )
        )
        label_records = [self._label_record(label) for label in labels]
        if label_records != self._last_labels:
            self._put(Event("PUT", "/labels", label_records, f"{len(label_records)} labels"))
            self._last_labels = label_records
        created = [
            {"cid": cid, "label": r.plan.label.name, "factory": s.factory_id}
            for r in report.results
            for cid in r.outcome.job_ids
        ]
        if created:
            self._put(Event("PUT", "/jobs", created, f"{len(created)} created pilots"))
        for result in report.results:
            name = result.plan.label.name
            self._put(
                Event("POST", f"/labels/{s.factory_id}:{name}", {"status": result.line()}, f"{name} message")
            )

    def _label_record(self, label: Label) -> dict[str, str]:
        return {
            "name": label.name,
            "factory": self.settings.factory_id,
            "batchqueue": label.pq,
            "wmsqueue": label.siteid,
            "resource": label.ce.endpoint,
            "localqueue": label.ce.queue,
        }

    def _put(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning(
                    "monitor: queue full, %d events dropped so far (latest: %s)", self.dropped, event.what
                )

    def close(self, timeout: float) -> None:
        """Send what is queued for at most ``timeout`` seconds, then stop; report what was left."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        self._stopping.set()
        left = self._queue.qsize()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
        if left or self.dropped:
            log.warning("monitor: stopped with %d events unsent and %d dropped", left, self.dropped)

    # --- the thread's side -----------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            event = self._queue.get()
            if event is None:
                return
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        backoff = 0.5
        while True:
            outcome = self._send(event)
            if outcome != "retry":
                return
            self.failed_attempts += 1
            if self._pause(backoff):
                return
            backoff = min(backoff * 2, self.settings.max_backoff)

    def _send(self, event: Event) -> str:
        s = self.settings
        try:
            answer = self._session.request(
                event.method,
                s.url.rstrip("/") + event.path,
                json=event.body,
                headers={"Authorization": f"Bearer {s.token}"},
                timeout=s.timeout,
            )
        except requests.RequestException as exc:
            log.debug("monitor: %s: %s", event.what, exc)
            return "retry"
        if answer.status_code >= 500:
            return "retry"
        if answer.status_code >= 400:
            log.error("monitor: %s rejected: HTTP %d %s", event.what, answer.status_code, answer.text[:200])
            self.dropped += 1
            return "dropped"
        self.sent += 1
        self._note_rejected(event, answer)
        return "sent"

    def _note_rejected(self, event: Event, answer: requests.Response) -> None:
        """A bulk request is written except its invalid items, which the answer lists: log them."""
        try:
            rejected = answer.json().get("rejected") or []
        except (ValueError, AttributeError):
            return
        if not isinstance(rejected, list) or not rejected:
            return
        self.rejected_items += len(rejected)
        first = rejected[0] if isinstance(rejected[0], dict) else {}
        log.error(
            "monitor: %s: %d items rejected as invalid (first: item %s: %s)",
            event.what,
            len(rejected),
            first.get("index", "?"),
            str(first.get("detail", ""))[:200],
        )
