"""The factory's reports to the monitoring webservice, as a cycle observer.

The cycle never waits for the monitor: :meth:`MonitorObserver.cycle_done` only files what is to be
said in an outbox and returns. A background thread sends it through the monitor client
(edges/monitor.py), most important first: the factory heartbeat (every cycle, even when nothing
was submitted), the labels (when they change), the pilots created (bulk ``PUT /jobs``) and the
labels' one-line cycle messages (bulk ``POST /factories/<id>/messages``; the per-label call when
the monitor is too old for that).

During a monitor outage (connection errors, 5xx) the thread retries the same request with a
growing pause (capped), so nothing is lost once it is back, and the outbox keeps only what still
matters: the latest heartbeat, the latest label list and the latest message *per label*
(superseded ones are coalesced away), and every pilot announcement. It is bounded
(``queue_size`` pilots and messages): when full, label messages go first, and a pilot
announcement is dropped only when no message is left to drop; drops are counted by kind.
Pilots the census lists for a label whose last condor_submit failed half-way (jobs queued, ids
unknown or kept from a failed call) and that the monitor was never told about are announced then;
a replayed announcement changes nothing on the monitor.

Requests are sized for a slow monitor: at most ``batch_size`` items per request, a timeout that
grows with the items (``timeout`` + ``per_item_timeout`` each, at most ``max_timeout``) and
doubles after a timed-out attempt, so a monitor still working on a large request is not sent it
again and again. A 4xx answer means the request itself is wrong: it is logged and dropped; but
a 401 or 403 is about the factory, not the request (a wrong ``monitorToken``, a factory the
monitor does not know): the request stays and is retried like during an outage, and
:attr:`MonitorObserver.refused` says why until the monitor accepts a request again.

A reload builds a new observer from the new configuration: :meth:`MonitorObserver.hand_over`
stops the old one and gives the new one everything unsent, the request in flight included, so a
token fixed by a reload delivers what was refused under the wrong one.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from autopyfactory import __version__
from autopyfactory.cycle.report import CycleReport
from autopyfactory.domain.label import Label
from autopyfactory.edges.monitor import MonitorClient

log = logging.getLogger(__name__)

PILOTS, MESSAGES, HEARTBEAT, LABELS = "pilots", "label messages", "heartbeat", "labels"
ANNOUNCED_CYCLES = 10


@dataclass(frozen=True)
class Event:
    method: str
    path: str  # below the API root
    body: Any
    what: str  # for logs
    kind: str = ""
    items: int = 1


@dataclass(frozen=True)
class MonitorSettings:
    url: str  # API root, e.g. http://apfmon.example.org/api
    token: str
    factory_id: str
    owner: str
    log_url: str
    timeout: float = 10.0
    queue_size: int = 10000
    max_backoff: float = 60.0
    batch_size: int = 500  # pilots or messages per request
    per_item_timeout: float = 0.02
    max_timeout: float = 120.0


class MonitorObserver:
    """Sends factory events in a background thread; see the module docstring."""

    def __init__(
        self,
        settings: MonitorSettings,
        session: requests.Session | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.settings = settings
        self._api = MonitorClient(
            settings.url, settings.token, settings.factory_id, session or requests.Session(), settings.timeout
        )
        self._lock = threading.Condition()
        self._heartbeat: Event | None = None
        self._labels: Event | None = None
        self._pilots: collections.deque[dict[str, str]] = collections.deque()
        self._messages: dict[str, str] = {}  # label -> its latest message, oldest label first
        self._closed = False
        self._stopping = threading.Event()
        self._pause = sleep or self._stopping.wait  # returns True when stopping
        self._thread = threading.Thread(target=self._work, name="monitor-client", daemon=True)
        self._last_labels: list[dict[str, str]] | None = None
        #: cids told (or queued to tell) the monitor, per cycle, for the last ANNOUNCED_CYCLES cycles
        self._announced: collections.deque[set[str]] = collections.deque(maxlen=ANNOUNCED_CYCLES)
        self._bulk_messages = True
        self._slow = 1.0  # timeout factor, doubled after a timed-out attempt
        self.dropped_by_kind: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self._refused = ""  # why the monitor refuses the factory (401/403); "" when it does not
        self._successor: MonitorObserver | None = None  # set by hand_over

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_kind.values())

    @property
    def refused(self) -> str:
        """Why the monitor refuses the factory's requests (HTTP 401/403), "" when it does not:
        a configuration error (``monitorToken``) that only a reload with a good one mends."""
        return self._refused

    # --- the cycle's side (never blocks) ---------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def cycle_done(self, report: CycleReport, labels: Sequence[Label]) -> None:
        s = self.settings
        heartbeat = {"url": s.log_url, "email": s.owner, "version": __version__}
        label_records = [self._label_record(label) for label in labels]
        created = [(cid, r.plan.label.name) for r in report.results for cid in r.outcome.job_ids]
        with self._lock:
            self._heartbeat = Event("PUT", self._api.factory_path(), heartbeat, HEARTBEAT, HEARTBEAT)
            if label_records != self._last_labels:
                what = f"{len(label_records)} labels"
                self._labels = Event("PUT", "/labels", label_records, what, LABELS, len(label_records))
                self._last_labels = label_records
            self._announce(created, report.recent)
            for result in report.results:
                self._message(result.plan.label.name, result.line())
            self._lock.notify()

    def _announce(self, created: Sequence[tuple[str, str]], recent: Mapping[str, tuple[str, ...]]) -> None:
        """Queue the created pilots, and the census's listed ones the monitor never heard of
        (the census lists the pilots of labels whose last submission failed half-way)."""
        missing = [
            (cid, label)
            for label, ids in recent.items()
            for cid in ids
            if not any(cid in cycle for cycle in self._announced)
        ]
        if missing:
            log.info(
                "monitor: announcing %d pilots found in the batch system it never heard of", len(missing)
            )
        this_cycle: set[str] = set()
        self._announced.append(this_cycle)
        for cid, label in (*created, *missing):
            if not self._room_for(PILOTS):
                self._drop(PILOTS, cid)
                continue
            this_cycle.add(cid)
            self._pilots.append({"cid": cid, "label": label, "factory": self.settings.factory_id})

    def _message(self, label: str, text: str) -> None:
        if label in self._messages:
            del self._messages[label]  # the older message is superseded; the label moves to the end
        elif not self._room_for(MESSAGES):
            self._drop(MESSAGES, label)
            return
        self._messages[label] = text

    def _room_for(self, kind: str) -> bool:
        """Room for one more item; makes room by dropping the oldest label message for a pilot."""
        if len(self._pilots) + len(self._messages) < self.settings.queue_size:
            return True
        if kind == PILOTS and self._messages:
            oldest = next(iter(self._messages))
            del self._messages[oldest]
            self._drop(MESSAGES, oldest)
            return True
        return False

    def _drop(self, kind: str, what: str) -> None:
        self.dropped_by_kind[kind] += 1
        total = self.dropped
        if total == 1 or total % 100 == 0:
            counts = ", ".join(f"{k} {n}" for k, n in sorted(self.dropped_by_kind.items()))
            log.warning("monitor: outbox full, dropped so far: %s (latest: %s %s)", counts, kind, what)

    def _label_record(self, label: Label) -> dict[str, str]:
        return {
            "name": label.name,
            "factory": self.settings.factory_id,
            "batchqueue": label.pq,
            "wmsqueue": label.siteid,
            "resource": label.ce.endpoint,
            "localqueue": label.ce.queue,
        }

    def pending(self) -> int:
        """Requests' worth of items still in the outbox (heartbeat, labels, pilots, messages)."""
        with self._lock:
            return (
                (self._heartbeat is not None)
                + (self._labels is not None)
                + len(self._pilots)
                + len(self._messages)
            )

    def close(self, timeout: float) -> None:
        """Send what is queued for at most ``timeout`` seconds, then stop; report what was left."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        self._stopping.set()
        left = self.pending()
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
        if left or self.dropped:
            log.warning("monitor: stopped with %d items unsent and %d dropped", left, self.dropped)

    # --- the thread's side -----------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            event = self._take()
            if event is None:
                return
            self._deliver(event)

    def _take(self) -> Event | None:
        """The next request to send, most important first; None when closed."""
        s = self.settings
        with self._lock:
            while True:
                if self._closed:
                    return None
                if self._heartbeat is not None:
                    event, self._heartbeat = self._heartbeat, None
                    return event
                if self._labels is not None:
                    event, self._labels = self._labels, None
                    return event
                if self._pilots:
                    batch = [self._pilots.popleft() for _ in range(min(s.batch_size, len(self._pilots)))]
                    return Event("PUT", "/jobs", batch, f"{len(batch)} created pilots", PILOTS, len(batch))
                if self._messages:
                    names = list(self._messages)[: s.batch_size]
                    body = [{"label": name, "status": self._messages.pop(name)} for name in names]
                    what = f"{len(body)} label messages"
                    path = f"{self._api.factory_path()}/messages"
                    return Event("POST", path, body, what, MESSAGES, len(body))
                self._lock.wait()

    def _deliver(self, event: Event) -> None:
        backoff = 0.5
        while True:
            outcome = self._send(event)
            if outcome == "old monitor":
                self._bulk_messages = False
                for item in event.body:
                    self._deliver(self._single_message(item["label"], item["status"]))
                return
            if outcome != "retry":
                return
            if self._pause(backoff):
                self._put_back(event)  # stopping: kept for the report, or for a successor
                return
            backoff = min(backoff * 2, self.settings.max_backoff)

    def _single_message(self, label: str, text: str) -> Event:
        return Event("POST", self._api.label_path(label), {"status": text}, f"{label} message", MESSAGES)

    def timeout_for(self, items: int) -> float:
        """Seconds to wait for an answer to a request of ``items`` items (see the module docstring)."""
        s = self.settings
        return min(s.max_timeout, (s.timeout + s.per_item_timeout * items) * self._slow)

    def _send(self, event: Event) -> str:
        if event.kind == MESSAGES and isinstance(event.body, list) and not self._bulk_messages:
            return "old monitor"
        try:
            answer = self._api.request(
                event.method, event.path, event.body, timeout=self.timeout_for(event.items)
            )
        except requests.Timeout as exc:
            self._slow = min(self._slow * 2, 8.0)  # it may still be working on it: wait longer next time
            log.debug("monitor: %s: %s", event.what, exc)
            return "retry"
        except requests.RequestException as exc:
            log.debug("monitor: %s: %s", event.what, exc)
            return "retry"
        if answer.status_code >= 500:
            return "retry"
        if answer.status_code in (404, 405) and event.kind == MESSAGES and isinstance(event.body, list):
            return "old monitor"  # no bulk message endpoint: one call per label
        if answer.status_code in (401, 403):
            return self._note_refused(event, answer)
        if answer.status_code >= 400:
            log.error("monitor: %s rejected: HTTP %d %s", event.what, answer.status_code, answer.text[:200])
            self.dropped_by_kind[f"rejected {event.kind}"] += 1
            return "dropped"
        self._slow = 1.0
        self.sent += 1
        self._note_rejected(event, answer)
        return "sent"

    def _note_refused(self, event: Event, answer: requests.Response) -> str:
        """The monitor refuses the factory itself: keep the request (retried), say why once."""
        refused = f"HTTP {answer.status_code} {answer.text[:200]}".strip()
        if refused != self._refused:
            log.error(
                "monitor: %s refused: %s; is monitorToken right? Kept and retried until the monitor"
                " accepts it (fix the configuration and reload)",
                event.what,
                refused,
            )
        self._refused = refused
        return "retry"

    def _note_rejected(self, event: Event, answer: requests.Response) -> None:
        """A bulk request is written except its invalid items, which the answer lists: log them."""
        if self._refused:
            log.info("monitor: accepted again (was refused: %s)", self._refused)
            self._refused = ""
        try:
            rejected = answer.json().get("rejected") or []
        except (ValueError, AttributeError):
            return
        if not isinstance(rejected, list) or not rejected:
            return
        first = rejected[0] if isinstance(rejected[0], dict) else {}
        log.error(
            "monitor: %s: %d items rejected as invalid (first: item %s: %s)",
            event.what,
            len(rejected),
            first.get("index", "?"),
            str(first.get("detail", ""))[:200],
        )

    # --- a reload's hand-over --------------------------------------------------------------

    def hand_over(self, successor: MonitorObserver, timeout: float) -> None:
        """Stop, and give ``successor`` (not started yet) all that is unsent and what was announced.

        A request still in flight after ``timeout`` seconds is put back into the successor when
        it ends unanswered. The session is closed: a reload leaves no connection behind. The
        label list is not taken over as sent: the successor sends it with its first cycle (its
        monitor, or its token, may be another).
        """
        self._stopping.set()
        with self._lock:
            self._closed = True
            self._lock.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock, successor._lock:
            self._successor = successor
            successor._heartbeat = successor._heartbeat or self._heartbeat
            successor._labels = successor._labels or self._labels
            successor._pilots.extendleft(reversed(self._pilots))
            successor._messages = {**self._messages, **successor._messages}
            successor._announced.extendleft(reversed(self._announced))
            successor._bulk_messages = self._bulk_messages
            successor.dropped_by_kind.update(self.dropped_by_kind)
            successor.sent += self.sent
            self._heartbeat, self._labels, self._pilots, self._messages = None, None, collections.deque(), {}
        self._api.close()

    def _put_back(self, event: Event) -> None:
        """An unsent request back into the outbox (the successor's, after a hand-over)."""
        with self._lock:
            target = self._successor
            if target is None:
                self._restore(event)
                return
        target._put_back(event)

    def _restore(self, event: Event) -> None:
        if event.kind == HEARTBEAT:
            self._heartbeat = self._heartbeat or event
        elif event.kind == LABELS:
            self._labels = self._labels or event
        elif event.kind == PILOTS:
            self._pilots.extendleft(reversed(event.body))
        elif event.kind == MESSAGES and isinstance(event.body, list):
            older = {item["label"]: item["status"] for item in event.body}
            self._messages = {**older, **self._messages}  # a newer message of a label wins
        # a single label message (an old monitor) is not kept: the next cycle says it anew
