"""Small activity charts as inline SVG, drawn on the server: pure functions from numbers to markup,
so pages work offline and a text-only capture still reads the totals (``<title>``/``<desc>``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

# The series of an activity chart, in drawing order, with their CSS colours.
SERIES: tuple[tuple[str, str], ...] = (
    ("created", "#1f77b4"),
    ("running", "#2ca02c"),
    ("done", "#7f7f7f"),
    ("fault", "#d62728"),
)


@dataclass(frozen=True)
class Frame:
    """The drawing area: the whole image and the plot's margins, in pixels."""

    width: int = 320
    height: int = 72
    left: int = 4
    right: int = 4
    top: int = 12
    bottom: int = 12

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom


def points(values: Sequence[int], peak: int, frame: Frame) -> str:
    """The ``points`` of a polyline: ``values`` spread over the plot, 0 at the bottom, ``peak`` on top."""
    if not values:
        return ""
    step = frame.plot_width / max(len(values) - 1, 1)
    scale = frame.plot_height / peak if peak > 0 else 0.0
    bottom = frame.top + frame.plot_height
    return " ".join(f"{frame.left + i * step:.1f},{bottom - v * scale:.1f}" for i, v in enumerate(values))


def bars(name: str, colour: str, values: Sequence[int], peak: int, frame: Frame) -> str:
    """One thin bar per non-zero value, at the x of the line charts' point for that bin."""
    step = frame.plot_width / max(len(values) - 1, 1)
    scale = frame.plot_height / peak if peak > 0 else 0.0
    bottom = frame.top + frame.plot_height
    width = max(1.0, min(3.0, step))
    rects = "".join(
        f'<rect x="{frame.left + i * step - width / 2:.1f}" y="{bottom - v * scale:.1f}" '
        f'width="{width:.1f}" height="{v * scale:.1f}"><title>{name} {v}</title></rect>'
        for i, v in enumerate(values)
        if v
    )
    return f'<g class="series-{name}" fill="{colour}">{rects}</g>'


def summary(series: Mapping[str, Sequence[int]], span: str) -> str:
    """``created 120, running 30, done 80, fault 5 in 24 h``: the chart's totals as text."""
    totals = ", ".join(f"{name} {sum(series.get(name, ()))}" for name, _ in SERIES)
    return f"{totals} in {span}"


#: Series drawn as bars where they are non-zero, not as a line: rare events whose zero must not
#: paint the baseline (a red line along the bottom reads as "faults" at a glance).
BARS = frozenset({"fault"})


def activity_svg(series: Mapping[str, Sequence[int]], span: str = "24 h", frame: Frame | None = None) -> str:
    """An SVG chart of the series named in :data:`SERIES`: lines, except :data:`BARS`; a series
    that is zero throughout is not drawn at all (its total still is in the title).

    Every text is escaped here: the result is safe to insert unescaped into a page."""
    frame = frame or Frame()
    length = max((len(values) for values in series.values()), default=0)
    peak = max((max(values, default=0) for values in series.values()), default=0)
    text = escape(summary(series, span))
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{frame.width}" '
        f'height="{frame.height}" viewBox="0 0 {frame.width} {frame.height}" role="img">',
        f"<title>{text}</title><desc>{text}</desc>",
        _axes(frame, peak, span),
    ]
    for name, colour in SERIES:
        values = list(series.get(name, ())) or [0] * length
        if not any(values):
            continue
        if name in BARS:
            parts.append(bars(name, colour, values, peak, frame))
            continue
        parts.append(
            f'<polyline class="series-{name}" fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{points(values, peak, frame)}"><title>{name}</title></polyline>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _axes(frame: Frame, peak: int, span: str) -> str:
    bottom = frame.top + frame.plot_height
    right = frame.left + frame.plot_width
    small = 'font-size="9" fill="#555"'
    return (
        f'<line x1="{frame.left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#bbb"/>'
        f'<text x="{frame.left}" y="{frame.height - 2}" {small}>-{escape(span)}</text>'
        f'<text x="{right}" y="{frame.height - 2}" text-anchor="end" {small}>now</text>'
        f'<text x="{frame.left}" y="9" {small}>max {peak}</text>'
    )


def legend() -> str:
    """The colour key shared by every chart of a page."""
    items = "".join(
        f'<span class="key"><svg width="10" height="10"><rect width="10" height="10" fill="{colour}"/></svg>'
        f" {name}</span>"
        for name, colour in SERIES
    )
    return f'<span class="legend">{items}</span>'
