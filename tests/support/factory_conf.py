"""The one way tests write a factory.conf: :func:`factory_conf` returns the text with the keys
``[Factory]`` requires already filled in, so a test names only what it is about.

Layout of the text (tests that check file:line rely on it): ``[Factory]`` on line 1, the required
keys on lines 2-5 in the order of :data:`REQUIRED`, then the test's own ``[Factory]`` keys; each
further section (``[QueueDefaults]``, then the queues in the given order) after one blank line.
``factory_conf()`` alone is exactly five lines, so whatever a test appends starts on line 6.

A section's settings are a mapping (``{"nqueue": 5, "holdRerun": True}``; booleans are written
``true``/``false``, a value with newlines as continuation lines), or where the exact text is the
subject (a typo, a comment, a continuation line) that text as it is, or a list of both. ``None``
as the value of a key leaves the key out (also a required one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from autopyfactory.config import loader
from autopyfactory.config.autoconfigure import build_labels
from autopyfactory.domain.label import Label
from tests.support.paths import CRIC_DUMP

#: What ``[Factory]`` must have, with values that reach nothing: no PanDA server answers there and
#: no schedconfig file exists (tests that need them serve their own, see tests/support/e2e.py).
REQUIRED: dict[str, object] = {
    "factoryId": "test-factory",
    "factoryOwner": "ops@example.org",
    "pandaserver": "https://pandaserver.example.org:25443",
    "schedconfig": "file:///nonexistent/cric.json",
}

Part = Mapping[str, object] | str
#: A section's settings: a mapping, a text as it is, or a list of them written in order.
Settings = Part | Sequence[Part]


def factory_conf(
    factory: Settings = (),
    defaults: Settings | None = None,
    queues: Mapping[str, Settings] | str = "",
) -> str:
    """A factory.conf: ``[Factory]`` with :data:`REQUIRED` and ``factory``; ``[QueueDefaults]``
    when ``defaults`` is given; one section per queue (or ``queues`` as the text of the sections).
    A key of :data:`REQUIRED` given in ``factory`` (as a mapping) replaces its value in place."""
    parts = _parts(factory)
    given = {key: value for part in parts if not isinstance(part, str) for key, value in part.items()}
    required = {key: given.get(key, value) for key, value in REQUIRED.items()}
    rest = [part if isinstance(part, str) else _without(part, REQUIRED) for part in parts]
    sections = [["[Factory]", *_body([required, *rest])]]
    if defaults is not None:
        sections.append(["[QueueDefaults]", *_body(defaults)])
    if isinstance(queues, str):
        sections.append(_text(queues))
    else:
        sections.extend([f"[{name}]", *_body(body)] for name, body in queues.items())
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"


def write_factory_conf(directory: Path, text: str | None = None, **sections: Any) -> Path:
    """``directory/factory.conf`` with ``text``, or with :func:`factory_conf` of ``sections``."""
    path = directory / "factory.conf"
    path.write_text(factory_conf(**sections) if text is None else text, encoding="utf-8")
    return path


def cric_dump() -> dict[str, Any]:
    """The CRIC records of tests/data/cric_dump.json (a fresh copy each time: tests change it)."""
    data: dict[str, Any] = json.loads(CRIC_DUMP.read_text())
    return data


def labels_from(
    path: Path, dump: Mapping[str, Any] | Literal["cric_dump.json"] | None = "cric_dump.json"
) -> list[Label]:
    """The labels the factory builds from the factory.conf at ``path`` and the CRIC records
    ``dump`` (tests/data/cric_dump.json by default; None: no CRIC record, every queue configured
    by hand), which must give them without an error or a problem."""
    cfg = loader.load(path)
    assert cfg.errors == (), cfg.errors
    built = build_labels(cfg, cric_dump() if dump == "cric_dump.json" else dump)
    assert built.problems == (), built.problems
    return list(built.labels)


def setting_lines(settings: Mapping[str, object]) -> list[str]:
    """``key = value`` per setting, as :func:`factory_conf` writes them (``None``: left out)."""
    return [f"{key} = {_value(value)}" for key, value in settings.items() if value is not None]


def _parts(settings: Settings) -> list[Part]:
    return [settings] if isinstance(settings, str | Mapping) else list(settings)


def _without(settings: Mapping[str, object], keys: Mapping[str, object]) -> dict[str, object]:
    return {key: value for key, value in settings.items() if key not in keys}


def _body(settings: Settings) -> list[str]:
    return [
        line
        for part in _parts(settings)
        for line in (_text(part) if isinstance(part, str) else setting_lines(part))
    ]


def _text(text: str) -> list[str]:
    stripped = text.strip("\n")
    return stripped.split("\n") if stripped else []


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "\n  ".join(str(value).split("\n"))
