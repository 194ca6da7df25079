"""This factory's pilots as HTCondor sees them: one ``condor_q -json`` per schedd per cycle.

The query is constrained to ``FactoryId == "<id>"`` (ClassAd-quoted) and projects only the
attributes the factory uses. ``condor_q -json`` prints nothing at all when no job matches; that
is zero pilots, not an error. Output that is not a JSON list of job ads is an error: the census
of that schedd is unknown and nothing is submitted to it this cycle.

**When a running pilot started** (for ``Supply.started``, the pilots that stand for jobs PanDA
still counts as activated) is the later of ``JobCurrentStartDate`` and ``EnteredCurrentStatus``.
Seen on a real HTCondor 25.0 pool: a vanilla job has both at its start; an HTCondor-C (grid) job
has the CE side's start in ``JobCurrentStartDate`` (copied by the gridmanager) and in
``EnteredCurrentStatus`` the moment the gridmanager saw it running, a probe interval later. The
later one is on the safe side (counted a little longer, and never by a CE's clock running
behind). A running pilot with neither counts as started: it may just have taken a job.
"""

from __future__ import annotations

import codecs
import enum
import json
import re
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import classad2

from autopyfactory.batch.condor.command import Schedd, run_condor, stream_condor
from autopyfactory.batch.interface import BatchError
from autopyfactory.domain.model import JobStatus, Pilot, Supply

ATTRIBUTES = (
    "ClusterId", "ProcId", "JobStatus", "EnteredCurrentStatus", "MATCH_APF_QUEUE", "HoldReason",
    "HoldReasonCode", "QDate", "NumHolds",
)  # fmt: skip


#: Pilots queued this long before the newest one count as *recent* (see :class:`ScheddCensus`).
RECENT_SECONDS = 3600
#: What the cycle's census reads: counts, housekeeping of held (and stuck idle) pilots, log dirs.
CENSUS_ATTRIBUTES = (
    "ClusterId", "ProcId", "JobStatus", "MATCH_APF_QUEUE", "QDate", "EnteredCurrentStatus",
    "HoldReason", "HoldReasonCode", "NumHolds", "JobCurrentStartDate",
)  # fmt: skip
_STATUSES = range(1, 8)


@dataclass
class ScheddCensus:
    """One schedd's answer, read in one pass without an object per job.

    ``pilots``: Pilot objects only for held pilots, idle ones of the labels in ``keep_idle``
    (what housekeeping acts on) and all of the labels in ``keep_all`` (``pilots remove``).
    ``queued``: per label the QDates, floored to the hour (enough for the log directories'
    dates; 0 = unknown). ``recent``: per label the ids of
    pilots queued at most RECENT_SECONDS before the newest pilot of the schedd (no clock needed):
    what a submission of the last cycles queued, for the plausibility check only (recent
    submissions that condor_q does not list make its answer suspect, see
    ``CondorBackend._check_plausible``).
    """

    supply: dict[str, Supply] = field(default_factory=dict)
    total: int = 0
    pilots: dict[str, list[Pilot]] = field(default_factory=dict)
    queued: dict[str, set[int]] = field(default_factory=dict)
    recent: dict[str, list[str]] = field(default_factory=dict)
    started: dict[str, int] = field(default_factory=dict)  # running pilots started since the threshold


def census_query(
    schedd: Schedd,
    factory_id: str,
    timeout: float,
    keep_idle: Container[str],
    keep_all: Container[str] = (),
    stop: Callable[[], bool] | None = None,
    started_since: float | None = None,
) -> ScheddCensus:
    """This factory's pilots in one schedd, counted while condor_q's answer streams in (never
    held whole). Raises BatchError when the answer is unusable: a non-zero exit, a timeout, output
    that is not a complete JSON list of job ads (or the query was abandoned because ``stop()``).
    ``started_since``: count the running pilots started at or after it (see the module doc)."""
    attributes = ",".join(CENSUS_ATTRIBUTES)
    args = ["-constraint", factory_constraint(factory_id), "-json", "-attributes", attributes]
    origin = f"condor_q ({schedd})"
    counter = _Counter(origin, keep_idle, keep_all, started_since)
    ads = AdStream(origin, counter.ad)
    stream_condor("condor_q", schedd, args, timeout, ads.feed, stop)
    ads.close()
    return counter.result()


def read_census(
    output: str | Iterable[bytes],
    origin: str,
    keep_idle: Container[str] = (),
    keep_all: Container[str] = (),
    started_since: float | None = None,
) -> ScheddCensus:
    """Count ``condor_q -json`` output (a text, or its bytes in pieces) per label and state (see
    :class:`ScheddCensus`)."""
    counter = _Counter(origin, keep_idle, keep_all, started_since)
    ads = AdStream(origin, counter.ad)
    for piece in [output.encode()] if isinstance(output, str) else output:
        ads.feed(piece)
    ads.close()
    return counter.result()


_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


class _Expect(enum.Enum):
    """Where an AdStream is in ``[ ad , ad ... ]``: what may come next."""

    LIST = "'['"
    FIRST = "a job ad or ']'"
    MORE = "',' or ']'"
    AD = "a job ad"
    END = "nothing after ']'"


class AdStream:
    """The job ads of a ``condor_q -json`` answer, parsed one by one as its bytes arrive.

    ``feed`` any pieces of the output (split anywhere, even inside a UTF-8 character), then
    ``close``; ``on_ad`` gets each job ad (a dict) as soon as it is complete, so memory holds one
    piece plus an incomplete ad, never the answer. Empty output (what condor_q prints when no job
    matches) and ``[]`` are no job ads; anything else than a JSON list of objects, or a list that
    does not end, is a BatchError naming ``origin`` and the position. An incomplete ad is tried
    again only once the buffer has doubled, so even a huge ad costs linear time. Bytes that are
    not UTF-8 are replaced (a stray byte in a HoldReason must not make the census unknown).
    """

    def __init__(self, origin: str, on_ad: Callable[[dict[str, Any]], object]) -> None:
        self._origin, self._on_ad = origin, on_ad
        self._decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        self._scan = json.JSONDecoder().raw_decode
        self._buffer = ""
        self._offset = 0  # characters of the output before the buffer
        self._retry_at = 0  # parse again once the buffer is this long
        self._expect = _Expect.LIST
        self.count = 0

    def feed(self, data: bytes) -> None:
        self._buffer += self._decode(data)
        if len(self._buffer) >= self._retry_at:
            self._parse(final=False)

    def close(self) -> None:
        """The output ended: BatchError unless it was empty or a whole list."""
        self._buffer += self._decode(b"", final=True)
        self._parse(final=True)
        if self._expect not in (_Expect.LIST, _Expect.END):
            raise BatchError(
                f"{self._origin}: truncated output: the JSON list ends after {self.count} job ads"
                f" ({self._offset} characters), expected {self._expect.value}"
            )

    def _parse(self, final: bool) -> None:
        buffer, pos, expect = self._buffer, 0, self._expect
        end, batch = len(buffer), True
        while (pos := _SPACE.match(buffer, pos).end()) < end:  # type: ignore[union-attr]
            char = buffer[pos]
            if char == "{" and expect in (_Expect.FIRST, _Expect.AD):
                after = self._many(buffer, pos) if batch else -1
                batch = False  # tried once per piece: a failed try costs at most one more parse
                if after < 0 and (after := self._one(buffer, pos, final)) < 0:
                    break  # incomplete, or bad: decided when more (or all) of it is here
                pos, expect = after, _Expect.MORE
            elif char == "[" and expect is _Expect.LIST:
                pos, expect = pos + 1, _Expect.FIRST
            elif char == "," and expect is _Expect.MORE:
                pos, expect = pos + 1, _Expect.AD
            elif char == "]" and expect in (_Expect.FIRST, _Expect.MORE):
                pos, expect = pos + 1, _Expect.END
            else:
                raise self._error(pos, f"expected {expect.value}", buffer)
        self._buffer, self._offset, self._expect = buffer[pos:], self._offset + pos, expect
        self._retry_at = 2 * len(self._buffer)

    def _many(self, buffer: str, pos: int) -> int:
        """The ads from ``pos`` up to the buffer's last ``}`` in one ``json.loads``; where they end,
        or -1 when that is not a list of ads (the ``}`` is in a string or a nested object, or
        there is garbage: the caller goes ad by ad).

        If ``[`` + that text + ``]`` parses, the text is whole values exactly as in the whole
        answer: JSON is read left to right, and text cut inside a string or a nested value does
        not parse. Twice as fast as ad by ad: one call per piece, and the attribute names are
        made once per piece, not once per ad."""
        cut = buffer.rfind("}", pos) + 1
        if cut <= pos:
            return -1
        try:
            ads = json.loads(f"[{buffer[pos:cut]}]")
        except (ValueError, RecursionError):
            return -1
        if not all(type(ad) is dict for ad in ads):
            return -1
        for ad in ads:
            self.count += 1
            self._on_ad(ad)
        return cut

    def _one(self, buffer: str, pos: int, final: bool) -> int:
        """The ad at ``pos``; where it ends, or -1 when it may be incomplete (not ``final``)."""
        try:
            ad, after = self._scan(buffer, pos)
        except (ValueError, RecursionError) as exc:
            if final:
                why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise self._error(pos, f"a truncated or bad job ad ({why})", buffer) from None
            return -1
        self.count += 1
        self._on_ad(ad)
        return int(after)

    def _error(self, pos: int, what: str, buffer: str) -> BatchError:
        return BatchError(
            f"{self._origin}: unparsable output at character {self._offset + pos}"
            f" (after {self.count} job ads): {what}, got {buffer[pos : pos + 80]!r}"
        )


class _Counter:
    """The census of one answer, fed one job ad at a time (see :class:`AdStream`)."""

    def __init__(
        self, origin: str, keep_idle: Container[str], keep_all: Container[str], started_since: float | None
    ) -> None:
        self.origin, self.keep_idle, self.keep_all = origin, keep_idle, keep_all
        self.started_since = started_since
        self.tallies: dict[str, list[int]] = {}
        self.census = ScheddCensus()
        self.newest = 0
        self.candidates: list[tuple[int, str, object, object]] = []  # (QDate, label, cluster, proc)

    def ad(self, ad: dict[str, Any]) -> None:
        status, label, qdate = ad.get("JobStatus"), ad.get("MATCH_APF_QUEUE", ""), ad.get("QDate", 0)
        if type(status) is not int or status not in _STATUSES or type(qdate) is not int:
            raise BatchError(f"{self.origin}: bad job ad {json.dumps(ad)[:120]}: JobStatus or QDate")
        label = label if type(label) is str else str(label)
        tally = self.tallies.get(label)
        if tally is None:
            tally = self.tallies[label] = [0] * 8
            self.census.queued[label] = set()
        tally[status] += 1
        if status == 2 and self.started_since is not None and _started_since(ad, self.started_since):
            self.census.started[label] = self.census.started.get(label, 0) + 1
        self.census.queued[label].add(qdate - qdate % 3600 if qdate > 0 else 0)
        if status == 5 or (status == 1 and label in self.keep_idle) or label in self.keep_all:
            self.census.pilots.setdefault(label, []).append(_pilot(ad, self.origin))
        if qdate >= self.newest - RECENT_SECONDS:  # maybe recent: kept as ints, checked at the end
            self.newest = max(self.newest, qdate)
            self.candidates.append((qdate, label, ad.get("ClusterId"), ad.get("ProcId")))

    def result(self) -> ScheddCensus:
        for qdate, label, cluster, proc in self.candidates:
            if qdate >= self.newest - RECENT_SECONDS:
                if type(cluster) is not int or type(proc) is not int:
                    raise BatchError(f"{self.origin}: bad job ad: ClusterId={cluster!r} ProcId={proc!r}")
                self.census.recent.setdefault(label, []).append(f"{cluster}.{proc}")
        started = self.census.started
        self.census.supply = {
            label: _tally_supply(t, started.get(label, 0)) for label, t in self.tallies.items()
        }
        self.census.total = sum(s.all for s in self.census.supply.values())
        return self.census


def _tally_supply(t: list[int], started: int) -> Supply:
    idle, running, held = t[JobStatus.IDLE], t[JobStatus.RUNNING], t[JobStatus.HELD]
    other = t[JobStatus.TRANSFERRING_OUTPUT] + t[JobStatus.SUSPENDED]
    return Supply(idle=idle, running=running, held=held, total=idle + running + held + other, started=started)


def _started_since(ad: Mapping[str, object], since: float) -> bool:
    """A running pilot started at or after ``since``, or cannot tell when (see the module doc)."""
    times = [t for key in ("JobCurrentStartDate", "EnteredCurrentStatus") if type(t := ad.get(key)) is int]
    return not times or max(times) >= since


def factory_constraint(factory_id: str) -> str:
    return f"FactoryId == {classad2.quote(factory_id)}"


def query_pilots(schedd: Schedd, factory_id: str, timeout: float) -> list[Pilot]:
    """This factory's pilots in one schedd. Raises BatchError when the answer is unusable."""
    args = ["-constraint", factory_constraint(factory_id), "-json", "-attributes", ",".join(ATTRIBUTES)]
    return parse_ads(run_condor("condor_q", schedd, args, timeout), f"condor_q ({schedd})")


def parse_ads(text: str, origin: str) -> list[Pilot]:
    if not text.strip():
        return []
    try:
        ads = json.loads(text)
    except ValueError as exc:
        raise BatchError(f"{origin}: unparsable output ({exc}): {text[:80]!r}") from None
    if not isinstance(ads, list):
        raise BatchError(f"{origin}: expected a JSON list of job ads, got {type(ads).__name__}")
    return [_pilot(ad, origin) for ad in ads]


def _pilot(ad: object, origin: str) -> Pilot:
    if not isinstance(ad, dict):
        raise BatchError(f"{origin}: a job ad is a {type(ad).__name__}, not an object")
    try:
        status = JobStatus(_int(ad, "JobStatus"))
        return Pilot(
            job_id=f"{_int(ad, 'ClusterId')}.{_int(ad, 'ProcId')}",
            label=str(ad.get("MATCH_APF_QUEUE", "")),
            status=status,
            entered_status=_int(ad, "EnteredCurrentStatus", 0),
            queued=_int(ad, "QDate", 0),
            hold_reason=_text(ad, "HoldReason"),
            hold_reason_code=_int(ad, "HoldReasonCode", None) if "HoldReasonCode" in ad else None,
            num_holds=_int(ad, "NumHolds", 0),
        )
    except (ValueError, TypeError) as exc:
        raise BatchError(f"{origin}: bad job ad {json.dumps(ad)[:120]}: {exc}") from None


_MISSING = object()


def _text(ad: Mapping[str, object], key: str) -> str:
    """A string attribute; "" when missing or undefined (condor_q -json prints ``null``, e.g. for
    the HoldReason condor_hold -reason leaves undefined when the reason has a double quote)."""
    value = ad.get(key)
    return "" if value is None else str(value)


def _int(ad: Mapping[str, object], key: str, default: object = _MISSING) -> int:
    value = ad.get(key, default)
    if value is _MISSING:
        raise ValueError(f"no {key}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key}={value!r} is not an integer")
    return value


def count_by_label(pilots: Iterable[Pilot]) -> dict[str, Supply]:
    """Idle, running, held and total per label. Removed/completed jobs still listed are leaving
    the queue and are not counted; transferring-output and suspended ones count in the total."""
    tally: dict[str, Counter[JobStatus]] = {}
    for pilot in pilots:
        tally.setdefault(pilot.label, Counter())[pilot.status] += 1
    return {label: _supply(counts) for label, counts in tally.items()}


def _supply(counts: Counter[JobStatus]) -> Supply:
    idle, running, held = counts[JobStatus.IDLE], counts[JobStatus.RUNNING], counts[JobStatus.HELD]
    other = counts[JobStatus.TRANSFERRING_OUTPUT] + counts[JobStatus.SUSPENDED]
    return Supply(idle=idle, running=running, held=held, total=idle + running + held + other)
