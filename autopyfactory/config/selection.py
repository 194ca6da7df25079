"""Queue selection from CRIC: ``queues = cric: pilot_manager=apf vo=atlas state=ACTIVE cloud=UK``.

APF 2 chose its PanDA queues from CRIC (AGIS before it) by the fields of their records; this is
the same idea, written in ``[Factory]``. Each word is ``field=value[,value...]`` (any of the
values) or ``field!=value[,value...]`` (none of them); a queue is selected when every word holds
for its record. Fields are CRIC panda-queue record fields (``vo`` is short for ``vo_name``);
values are compared as text, ignoring case (a missing field or ``null`` is the empty text, a list
matches when one of its items does).

A selected PanDA queue is served like an empty queue section of that name (``[QueueDefaults]``
and CRIC fill it in). A queue section of the configuration always wins: a PanDA queue that has one
(by its name or its ``wmsqueue``, enabled or not, even one disabled by an error in it) is served
by that section only, so a queue can be tuned, or turned off, by writing its section.

A word whose field no record has selects nothing at all (a typo must not widen the selection):
the problem is reported with the field that was probably meant.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

SOURCE = "cric:"
#: Short names for CRIC fields.
ALIASES: Mapping[str, str] = {"vo": "vo_name"}
_WORD = re.compile(r"^(?P<field>[A-Za-z_][A-Za-z0-9_]*)(?P<op>!=|=)(?P<values>.*)$")


@dataclass(frozen=True)
class Criterion:
    """One word of a selection: ``field`` is (``negated``: is not) one of ``values`` (lower case)."""

    field: str
    values: tuple[str, ...]
    negated: bool
    written: str  # as written in factory.conf

    def matches(self, record: Mapping[str, Any]) -> bool:
        found = any(value in self.values for value in _texts(record.get(self.field)))
        return found != self.negated

    def why_not(self, record: Mapping[str, Any]) -> str:
        """Why ``record`` fails this criterion: ``cloud is 'DE', not UK``."""
        shown = ", ".join(repr(text) for text in _texts(record.get(self.field)) if text) or "not set"
        return (
            f"{self.field} is {shown}, {'one of' if self.negated else 'not'} {self.written.split('=', 1)[1]}"
        )


def _texts(value: object) -> list[str]:
    """A record value as the lower-case texts it matches."""
    if isinstance(value, list | tuple):
        return [text for item in value for text in _texts(item)] or [""]
    if value is None:
        return [""]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [str(value).strip().lower()]


@dataclass(frozen=True)
class QueueSelection:
    """The ``queues`` key of ``[Factory]``, parsed."""

    criteria: tuple[Criterion, ...]
    text: str  # as written

    def __str__(self) -> str:
        return self.text


def parse_selection(text: str) -> QueueSelection | None:
    """``cric: field=value ...`` as a selection; None for an empty value. ValueError names the
    word that is wrong."""
    stripped = " ".join(text.split())
    if not stripped:
        return None
    if not stripped.lower().startswith(SOURCE):
        raise ValueError(f"expected 'cric: field=value ...' (queues chosen from CRIC), got {stripped!r}")
    words = stripped[len(SOURCE) :].split()
    if not words:
        raise ValueError("'cric:' needs at least one field=value (it would select every queue in CRIC)")
    return QueueSelection(tuple(_criterion(word) for word in words), f"{SOURCE} {' '.join(words)}")


def _criterion(word: str) -> Criterion:
    match = _WORD.match(word)
    values = tuple(v.strip().lower() for v in match.group("values").split(",")) if match else ()
    if match is None or not all(values):
        raise ValueError(f"{word!r}: expected field=value, field=value1,value2 or field!=value")
    field = ALIASES.get(match.group("field").lower(), match.group("field"))
    return Criterion(field, values, match.group("op") == "!=", word)


@dataclass(frozen=True)
class Selected:
    """What a selection chose from one CRIC dump, and why each other queue was not chosen."""

    selection: QueueSelection
    chosen: tuple[str, ...]  # PanDA queues served as selected (no section of their own)
    by_section: tuple[str, ...]  # selected, but served by their own queue section
    rejected: Mapping[str, str]  # PanDA queue -> why it was not selected
    problem: str = ""  # why nothing was selected at all ("" when the selection could be applied)

    def lines(self) -> list[str]:
        """The selection as ``check`` shows it: what was chosen, then why the others were not,
        grouped by reason."""
        if self.problem:
            return [f"queues = {self.selection}: {self.problem}"]
        total = len(self.chosen) + len(self.by_section) + len(self.rejected)
        head = f"queues = {self.selection}: {len(self.chosen)} of {total} PanDA queues selected"
        lines = [head + (f": {', '.join(self.chosen)}" if self.chosen else "")]
        if self.by_section:
            lines.append(f"  selected, served by their own queue section: {', '.join(self.by_section)}")
        by_reason: dict[str, list[str]] = {}
        for pq, why in self.rejected.items():
            by_reason.setdefault(why, []).append(pq)
        lines += [f"  not selected, {why}: {', '.join(pqs)}" for why, pqs in by_reason.items()]
        return lines


def select(
    selection: QueueSelection, dump: Mapping[str, Mapping[str, Any]], sections: Collection[str]
) -> Selected:
    """Apply ``selection`` to the dump; ``sections``: the PanDA queues that have a queue section."""
    unknown = [c for c in selection.criteria if not any(c.field in record for record in dump.values())]
    if unknown:
        fields = {field for record in dump.values() for field in record}
        hint = difflib.get_close_matches(unknown[0].field, sorted(fields), n=1)
        meant = f" (did you mean {hint[0]!r}?)" if hint else ""
        problem = f"no record in schedconfig has a field {unknown[0].field!r}{meant}: no queue selected"
        return Selected(selection, (), (), {}, problem)
    chosen: list[str] = []
    served: list[str] = []
    rejected: dict[str, str] = {}
    for pq in sorted(dump):
        failed = next((c for c in selection.criteria if not c.matches(dump[pq])), None)
        if failed is not None:
            rejected[pq] = failed.why_not(dump[pq])
        else:
            (served if pq in sections else chosen).append(pq)
    return Selected(selection, tuple(chosen), tuple(served), rejected)
