"""The factory's reports to the monitoring webservice, as a cycle observer.

The cycle never waits for the monitor: :meth:`MonitorObserver.cycle_done` only files what is to be
said in an outbox and returns. A background thread sends it through the monitor client
(edges/monitor.py), most important first: the factory heartbeat (every cycle, even when nothing
was submitted), the labels (when they change), the pilots created (bulk ``PUT /jobs``) and the
labels' one-line cycle messages (bulk ``POST /factories/<id>/messages``; the per-label call when
the monitor is too old for that).

The pilots created are announced as soon as the batch system has their ids
(:meth:`MonitorObserver.pilots_created`, called by the cycle right after each submission, not at
the end of the cycle), so a pilot rarely reports to the monitor before the monitor knows it.

During a monitor outage (connection errors, 5xx) the thread retries the same request with a
growing pause (capped), so nothing is lost once it is back. The pilot announcements wait on disk,
in the state dir's outbox (observers/outbox.py: ``<stateDir>/outbox/``, at most
``monitorOutboxMB``, replayed oldest first, also after a restart; at that limit the oldest
announcements are dropped and counted). The rest is kept in memory and only what still matters:
the latest heartbeat, the latest label list and the latest message *per label* (superseded ones
are coalesced away), at most ``queue_size`` label messages (then the oldest label's message goes);
drops are counted by kind. A replayed announcement changes nothing on the monitor.

Requests are sized for the monitor's observed speed: the seconds per item of its recent answers
to pilots and messages are measured, and a request's timeout is ``timeout`` plus twice that per item (at least
``per_item_timeout``; at most ``max_timeout``), so a monitor still working on a large request is
not sent it again and again. A timed-out attempt counts as at least its timeout. The items per
request start at :data:`FIRST_BATCH`, double after each answer that came well within its timeout
and halve after a timeout (the items of a request that timed out go again at the new size,
not in the same request), never more than ``batch_size`` nor than fits in half of
``max_timeout`` at the measured speed. A 4xx answer means the request itself is wrong: it is logged
and dropped; but a 401 or 403 is about the factory, not the request (a wrong ``monitorToken``, a
factory the monitor does not know): the request stays and is retried like during an outage, and
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
from pathlib import Path
from typing import Any

import requests

from autopyfactory import __version__
from autopyfactory.cycle.report import CycleReport
from autopyfactory.domain.label import Label
from autopyfactory.edges.monitor import MonitorClient, pilot_item
from autopyfactory.observers.outbox import PilotOutbox

log = logging.getLogger(__name__)

PILOTS, MESSAGES, HEARTBEAT, LABELS = "pilots", "label messages", "heartbeat", "labels"
#: The requests whose size follows the monitor's speed.
_BULK = (PILOTS, MESSAGES)
#: Items in the first request of pilots or messages, before the monitor's speed is known.
FIRST_BATCH = 50
#: The size of the outbox directory's segments (``monitorOutboxMB``) by default.
OUTBOX_BYTES = 100 * 2**20


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
    queue_size: int = 10000  # label messages kept (one per label)
    max_backoff: float = 60.0
    batch_size: int = 500  # pilots or messages per request, at most
    per_item_timeout: float = 0.02  # seconds per item a request's timeout allows at least
    max_timeout: float = 120.0
    outbox_dir: str = ""  # the pilot announcements' outbox; "": in memory (see observers/outbox.py)
    outbox_bytes: int = OUTBOX_BYTES
    pilot_keys: bool = True  # the pilots get keys (monitorPilotKeys)


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
        outbox = Path(settings.outbox_dir) if settings.outbox_dir else None
        self._pilots = PilotOutbox(outbox, settings.outbox_bytes, self._pilots_dropped)
        self._messages: dict[str, str] = {}  # label -> its latest message, oldest label first
        self._closed = False
        self._stopping = threading.Event()
        self._pause = sleep or self._stopping.wait  # returns True when stopping
        self._thread = threading.Thread(target=self._work, name="monitor-client", daemon=True)
        self._last_labels: list[dict[str, str]] | None = None
        self._bulk_messages = True
        self._per_item = 0.0  # the monitor's measured seconds per item (0: not yet measured)
        self._batch = FIRST_BATCH  # items per request, before the bounds of batch_for()
        self.dropped_by_kind: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self._refused = ""  # why the monitor refuses the factory (401/403); "" when it does not
        self._successor: MonitorObserver | None = None  # set by hand_over
        self._keys_warned = False

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
        """File the heartbeat, the labels (when changed) and the labels' messages; the pilots
        were announced as the cycle submitted them (:meth:`pilots_created`)."""
        s = self.settings
        heartbeat = {"url": s.log_url, "email": s.owner, "version": __version__}
        label_records = [self._label_record(label) for label in labels]
        with self._lock:
            self._heartbeat = Event("PUT", self._api.factory_path(), heartbeat, HEARTBEAT, HEARTBEAT)
            if label_records != self._last_labels:
                what = f"{len(label_records)} labels"
                self._labels = Event("PUT", "/labels", label_records, what, LABELS, len(label_records))
                self._last_labels = label_records
            for result in report.results:
                self._message(result.plan.label.name, result.line())
            self._lock.notify()

    def pilots_created(
        self, label: str, job_ids: Sequence[str], key_digests: Mapping[str, str] | None = None
    ) -> None:
        """Announce these pilots of ``label`` (with their key digests, for those that have a key):
        on disk in the outbox before this returns (raises OSError when they cannot be kept; the
        cycle then keeps the label unsettled)."""
        if not job_ids:
            return
        digests = key_digests or {}
        with self._lock:
            self._pilots.add([self._announcement(cid, label, digests.get(cid, "")) for cid in job_ids])
            self._lock.notify()

    def _announcement(self, cid: str, label: str, key_sha256: str) -> dict[str, str]:
        """One pilot's announcement, the item of ``PUT /jobs``: built here and nowhere else (the
        key's digest only; the key itself never reaches the factory)."""
        return pilot_item(cid, label, self.settings.factory_id, key_sha256)

    def _message(self, label: str, text: str) -> None:
        if label in self._messages:
            del self._messages[label]  # the older message is superseded; the label moves to the end
        elif len(self._messages) >= self.settings.queue_size:
            oldest = next(iter(self._messages))
            del self._messages[oldest]
            self._drop(MESSAGES, oldest)
        self._messages[label] = text

    def _pilots_dropped(self, n: int) -> None:
        """The outbox reached its size limit and dropped ``n`` of its oldest announcements."""
        for _ in range(n):
            self._drop(PILOTS, "(the oldest announcement)")

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
        with self._lock:
            kept = len(self._pilots)
        if kept and self.settings.outbox_dir:
            where = self.settings.outbox_dir
            log.warning("monitor: %d pilot announcements kept in %s, sent after the next start", kept, where)

    # --- the thread's side -----------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            event = self._take()
            if event is None:
                return
            self._deliver(event)

    def _take(self) -> Event | None:
        """The next request to send, most important first; None when closed."""
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
                if len(self._pilots):
                    batch = self._pilots.peek(self.batch_for())
                    return Event("PUT", "/jobs", batch, f"{len(batch)} created pilots", PILOTS, len(batch))
                if self._messages:
                    names = list(self._messages)[: self.batch_for()]
                    body = [{"label": name, "status": self._messages.pop(name)} for name in names]
                    what = f"{len(body)} label messages"
                    path = f"{self._api.factory_path()}/messages"
                    return Event("POST", path, body, what, MESSAGES, len(body))
                self._lock.wait()

    def _deliver(self, event: Event) -> None:
        backoff = 0.5
        while True:
            outcome = self._send(event)
            if event.kind == PILOTS and outcome in ("sent", "dropped"):
                with self._lock:
                    self._pilots.sent(event.body)
            if outcome == "old monitor":
                self._bulk_messages = False
                for item in event.body:
                    self._deliver(self._single_message(item["label"], item["status"]))
                return
            if outcome not in ("retry", "timed out"):
                return
            if self._pause(backoff) or (outcome == "timed out" and event.kind in _BULK):
                # stopping: kept for the report, or for a successor; a bulk request that timed out
                # is taken again at the smaller size the timeout taught (pilots stay in the outbox)
                self._put_back(event)
                return
            backoff = min(backoff * 2, self.settings.max_backoff)

    def _single_message(self, label: str, text: str) -> Event:
        return Event("POST", self._api.label_path(label), {"status": text}, f"{label} message", MESSAGES)

    def timeout_for(self, items: int) -> float:
        """Seconds to wait for an answer to a request of ``items`` items (see the module docstring)."""
        s = self.settings
        return min(s.max_timeout, s.timeout + items * max(s.per_item_timeout, 2 * self._per_item))

    def batch_for(self) -> int:
        """Items in the next request of pilots or messages (see the module docstring)."""
        s = self.settings
        fits = s.batch_size
        if self._per_item > 0:
            fits = int((s.max_timeout / 2 - s.timeout) / (2 * self._per_item))
        return max(1, min(s.batch_size, self._batch, fits))

    def _answered(self, event: Event, seconds: float) -> None:
        """Learn the monitor's speed from an answer to pilots or messages that took ``seconds``
        (the heartbeat's and the labels' time is mostly the request's own, not per item)."""
        if event.kind not in _BULK:
            return
        per_item = seconds / max(1, event.items)
        # at once when it got slower, half-way when it got faster: one quick answer proves little
        self._per_item = per_item if per_item > self._per_item else (self._per_item + per_item) / 2
        if event.items >= self._batch and seconds < self.timeout_for(event.items) / 4:
            self._batch = min(self.settings.batch_size, self._batch * 2)

    def _timed_out(self, event: Event) -> None:
        """The monitor may still be working on it: it takes at least the timeout it was given."""
        if event.kind not in _BULK:
            return
        per_item = self.timeout_for(event.items) / max(1, event.items)
        self._per_item = min(self.settings.max_timeout, max(self._per_item, per_item))
        self._batch = max(1, min(self._batch, event.items) // 2)

    def _send(self, event: Event) -> str:
        if event.kind == MESSAGES and isinstance(event.body, list) and not self._bulk_messages:
            return "old monitor"
        try:
            answer = self._api.request(
                event.method, event.path, event.body, timeout=self.timeout_for(event.items)
            )
        except requests.Timeout as exc:
            self._timed_out(event)  # it may still be working on it: wait longer next time
            log.debug("monitor: %s: %s", event.what, exc)
            return "timed out"
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
        self._answered(event, answer.elapsed.total_seconds())
        self.sent += 1
        if event.kind == HEARTBEAT:
            self._check_key_policy(answer)
        self._note_rejected(event, answer)
        return "sent"

    def _check_key_policy(self, answer: requests.Response) -> None:
        """Say once that a monitor requiring pilot keys meets a factory whose pilots get none:
        it refuses every report of those pilots (the heartbeat's answer says which it is)."""
        try:
            found = answer.json()
        except ValueError:
            return
        required = isinstance(found, dict) and found.get("pilot_keys") == "required"
        if required and not self.settings.pilot_keys and not self._keys_warned:
            log.warning(
                "monitor: it requires pilot keys but monitorPilotKeys is off: it refuses every report"
                " of this factory's pilots; set monitorPilotKeys = true"
            )
            self._keys_warned = True

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
            successor._pilots.take_over(self._pilots)
            successor._messages = {**self._messages, **successor._messages}
            successor._bulk_messages = self._bulk_messages
            successor.dropped_by_kind.update(self.dropped_by_kind)
            successor.sent += self.sent
            self._heartbeat, self._labels, self._messages = None, None, {}
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
        """Pilots need nothing: they stay in the outbox until sent (or handed over)."""
        if event.kind == HEARTBEAT:
            self._heartbeat = self._heartbeat or event
        elif event.kind == LABELS:
            self._labels = self._labels or event
        elif event.kind == MESSAGES and isinstance(event.body, list):
            older = {item["label"]: item["status"] for item in event.body}
            self._messages = {**older, **self._messages}  # a newer message of a label wins
        # a single label message (an old monitor) is not kept: the next cycle says it anew
