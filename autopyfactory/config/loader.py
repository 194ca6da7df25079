"""Loading factory.conf (and queuesDir/*.conf) into typed settings, with file:line errors.

Sections: ``[Factory]`` (factory-wide settings, see ``settings.py``), ``[QueueDefaults]``
(defaults for every queue) and one section per queue nickname. Every value is checked against
the schema (schema.OPTIONS): an unknown key, a wrong type or a missing required key is an
error naming the file, the line, the key and, where one is close, the key that was probably meant.

Errors in ``[Factory]`` or ``[QueueDefaults]`` stop start-up (:class:`ConfigError` is raised);
errors in a queue section disable that queue only (they are returned in ``FactoryConfig.errors``).
The merge with schedconfig happens later, in autoconfigure.py, following the precedence
built-in default < [QueueDefaults] < schedconfig < the queue's own section.
"""

from __future__ import annotations

import configparser
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from autopyfactory.config import schema
from autopyfactory.config.schema import Scope
from autopyfactory.config.settings import FactorySettings
from autopyfactory.domain.label import Setting, Source

FACTORY_SECTION = "Factory"
DEFAULTS_SECTION = "QueueDefaults"


class ConfigError(Exception):
    """A configuration problem, located as precisely as possible."""

    def __init__(
        self, message: str, file: str = "", line: int = 0, section: str = "", key: str = "", hint: str = ""
    ) -> None:
        self.message, self.file, self.line = message, file, line
        self.section, self.key, self.hint = section, key, hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.line else (f"{self.file}: " if self.file else "")
        section = f"[{self.section}] " if self.section else ""
        key = f"{self.key}: " if self.key else ""
        hint = f" (did you mean {self.hint!r}?)" if self.hint else ""
        return f"{where}{section}{key}{self.message}{hint}"


@dataclass(frozen=True)
class QueueConfig:
    """One queue section: the settings from [QueueDefaults] and from the section itself, typed.

    ``local`` holds only the keys written in the queue's own section (they beat schedconfig);
    ``defaults`` holds built-in defaults overlaid with [QueueDefaults] (schedconfig beats them).
    """

    name: str
    file: str
    line: int
    defaults: Mapping[str, Setting]
    local: Mapping[str, Setting]

    def get(self, key: str) -> object:
        """The value before schedconfig is applied (local, else defaults)."""
        return (self.local.get(key) or self.defaults[key]).value

    @property
    def pq(self) -> str:
        """The PanDA queue this section serves."""
        return str(self.get("wmsqueue") or self.name)


@dataclass(frozen=True)
class FactoryConfig:
    path: str
    factory: FactorySettings
    queues: tuple[QueueConfig, ...]
    errors: tuple[ConfigError, ...]  # problems that disabled a queue (its section is not in queues)
    queue_defaults: Mapping[str, Setting] = field(default_factory=dict)  # built-in < [QueueDefaults]


# --- reading INI files with line numbers ---------------------------------------------------------


@dataclass(frozen=True)
class RawSection:
    name: str
    file: str
    line: int
    items: tuple[tuple[str, str, int], ...]  # (key as written, raw value, line)
    repeats: tuple[tuple[int, str, str], ...] = ()  # (line, key or "", message): repeated keys/headers


_SECTION_LINE = configparser.ConfigParser.SECTCRE
_OPTION_LINE = re.compile(r"(?P<key>[^=:\s][^=:]*?)\s*[=:]")


def read_ini(path: Path) -> list[RawSection]:
    """Parse one INI file, keeping the line of every section and key.

    A repeated section or key is not a file-wide error here (configparser's strict mode would make
    it one): it is recorded on its section, so that it disables only that queue.
    """
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, default_section="\0none", inline_comment_prefixes=("#", ";")
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)
        ) from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise _parse_error(exc, text, str(path)) from None
    lines, repeats = _line_index(text)
    return [
        RawSection(
            name,
            str(path),
            lines.get((name, ""), 0),
            tuple((key, value, lines.get((name, key), 0)) for key, value in parser[name].items()),
            tuple(repeats.get(name, ())),
        )
        for name in parser.sections()
    ]


def _parse_error(exc: configparser.Error, text: str, file: str) -> ConfigError:
    line = getattr(exc, "lineno", 0) or 0
    if isinstance(exc, configparser.MissingSectionHeaderError):
        message = "text before the first [section] header"
    elif isinstance(exc, configparser.ParsingError) and exc.errors:
        # a plain ParsingError has no lineno; its errors are (line number, repr of the line)
        line = exc.errors[0][0]
        shown = text.splitlines()[line - 1].strip() if 0 < line <= len(text.splitlines()) else ""
        message = f"cannot parse {shown!r} (expected [section], key = value or a comment)"
    else:
        message = str(exc).splitlines()[0]
    return ConfigError(message, file=file, line=line)


def _line_index(
    text: str,
) -> tuple[dict[tuple[str, str], int], dict[str, list[tuple[int, str, str]]]]:
    """(section, key as written) -> line number; (section, "") -> line of the header; and, per
    section, the headers and keys that appear again: (line, key or "", message).

    Follows configparser: a line indented deeper than the key before it continues that key's
    value; any other line (indented or not) is a header or a key.
    """
    index: dict[tuple[str, str], int] = {}
    repeats: dict[str, list[tuple[int, str, str]]] = {}
    section = ""
    in_value, indent = False, 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        current = len(line) - len(line.lstrip())
        if in_value and current > indent:
            continue
        indent = current
        header = _SECTION_LINE.match(stripped)
        if header:
            section, in_value = header.group("header"), False
            if (section, "") in index:
                first = index[(section, "")]
                repeats.setdefault(section, []).append(
                    (number, "", f"section appears twice (first at line {first})")
                )
            index.setdefault((section, ""), number)
            continue
        option = _OPTION_LINE.match(stripped)
        if option:
            in_value = True
            key = option.group("key").strip()
            if (section, key) in index:
                first = index[(section, key)]
                repeats.setdefault(section, []).append(
                    (number, key, f"key appears twice (first at line {first})")
                )
            index.setdefault((section, key), number)
    return index, repeats


# --- validating sections against the schema -----------------------------------------------------


def _hint(key: str, scope: Scope) -> str:
    candidates = {option.key.lower(): option.key for option in schema.options(scope)}
    close = difflib.get_close_matches(key.lower(), candidates, n=1, cutoff=0.6)
    return candidates[close[0]] if close else ""


def _parse_items(
    section: RawSection, scope: Scope, source: Source
) -> tuple[dict[str, Setting], list[ConfigError]]:
    values: dict[str, Setting] = {}
    errors = [_error(section, line, key, message) for line, key, message in section.repeats]
    seen: dict[str, int] = {}  # canonical key -> line (configparser only catches exact repeats)
    for key, raw, line in section.items:
        option = schema.find(key, scope)
        if option is None:
            errors.append(_unknown_key_error(section, key, line, scope))
            continue
        if option.key in seen:
            errors.append(_error(section, line, key, f"key appears twice (first at line {seen[option.key]})"))
            continue
        seen[option.key] = line
        try:
            values[option.key] = Setting(option.parse(raw), source, f"{section.file}:{line}")
        except schema.UnknownPluginError as exc:
            hint = difflib.get_close_matches(exc.name, exc.known, n=1, cutoff=0.5)
            message = f"unknown plugin {exc.name!r} (known: {', '.join(exc.known)})"
            errors.append(_error(section, line, key, message, hint[0] if hint else ""))
        except ValueError as exc:
            errors.append(_error(section, line, key, f"bad value: {exc}"))
    return values, errors


def _error(section: RawSection, line: int, key: str, message: str, hint: str = "") -> ConfigError:
    return ConfigError(message, file=section.file, line=line, section=section.name, key=key, hint=hint)


def _unknown_key_error(section: RawSection, key: str, line: int, scope: Scope) -> ConfigError:
    other = Scope.QUEUE if scope is Scope.FACTORY else Scope.FACTORY
    if schema.find(key, other) is not None:
        home = "[Factory]" if other is Scope.FACTORY else "[QueueDefaults] or a queue section"
        return _error(section, line, key, f"unknown key here; it belongs in {home}")
    return _error(section, line, key, "unknown key", _hint(key, scope))


def _factory_settings(section: RawSection | None, path: str) -> FactorySettings:
    if section is None:
        raise ConfigError(f"no [{FACTORY_SECTION}] section", file=path)
    values, errors = _parse_items(section, Scope.FACTORY, Source.LOCAL)
    given = {found.key for key, _, _ in section.items if (found := schema.find(key, Scope.FACTORY))}
    for option in schema.options(Scope.FACTORY):
        if option.required and option.key not in given:  # a bad value is reported as such
            errors.append(
                ConfigError(
                    "missing required key",
                    file=section.file,
                    line=section.line,
                    section=section.name,
                    key=option.key,
                )
            )
    if errors:
        raise ConfigErrors(errors)
    resolved = {
        o.key: values[o.key].value if o.key in values else o.default for o in schema.options(Scope.FACTORY)
    }
    return FactorySettings.from_values(resolved)


class ConfigErrors(ConfigError):
    """Several errors at once; start-up stops on them."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def _builtin_queue_defaults() -> dict[str, Setting]:
    return {o.key: Setting(o.default, Source.DEFAULT, "built-in") for o in schema.options(Scope.QUEUE)}


def _queue_config(section: RawSection, defaults: Mapping[str, Setting]) -> QueueConfig:
    local, errors = _parse_items(section, Scope.QUEUE, Source.LOCAL)
    queue = QueueConfig(section.name, section.file, section.line, defaults, local)
    if not errors:
        errors = _check_local_queue(queue, section)
    if errors:
        raise ConfigErrors(errors)
    return queue


def _check_local_queue(queue: QueueConfig, section: RawSection) -> list[ConfigError]:
    """A queue without schedconfig must name its CE itself; only such a queue names its label."""
    if queue.get("batch") == "local":
        return []
    if queue.get("autoconfigure"):
        if queue.get("labelName"):
            why = "labelName needs autoconfigure = false: schedconfig may list several CEs, one label each"
            return [_error(section, section.line, "labelName", why)]
        return []
    if queue.get("ceFlavour") is None:
        return [_error(section, section.line, "ceFlavour", "autoconfigure = false needs ceFlavour")]
    if queue.get("ceFlavour") != "LOCAL" and not queue.get("ceEndpoint"):
        return [_error(section, section.line, "ceEndpoint", "autoconfigure = false needs ceEndpoint")]
    return []


# --- the whole configuration ---------------------------------------------------------------------


def load(path: str | Path) -> FactoryConfig:
    """Load factory.conf and its queuesDir. Raises ConfigError for start-up-stopping problems."""
    path = Path(path)
    sections = read_ini(path)
    by_name = {s.name: s for s in sections}
    _reject_default_section(by_name)
    factory = _factory_settings(by_name.get(FACTORY_SECTION), str(path))
    defaults = _builtin_queue_defaults()
    if DEFAULTS_SECTION in by_name:
        overrides, errors = _parse_items(by_name[DEFAULTS_SECTION], Scope.QUEUE, Source.QUEUE_DEFAULTS)
        if errors:
            raise ConfigErrors(errors)
        defaults.update(overrides)
    queue_sections = [s for s in sections if s.name not in (FACTORY_SECTION, DEFAULTS_SECTION)]
    line = next((n for key, _, n in by_name[FACTORY_SECTION].items if key.lower() == "queuesdir"), 0)
    extra, errors = _queues_dir_sections(factory.identity.queues_dir, path, line)
    queue_sections += extra
    return _with_queues(str(path), factory, defaults, queue_sections, errors)


def _with_queues(
    path: str,
    factory: FactorySettings,
    defaults: Mapping[str, Setting],
    sections: list[RawSection],
    errors: list[ConfigError],
) -> FactoryConfig:
    queues: list[QueueConfig] = []
    seen: dict[str, RawSection] = {}
    for section in sections:
        if section.name in seen:
            first = seen[section.name]
            errors.append(
                ConfigError(
                    f"queue defined again (first at {first.file}:{first.line}); both disabled",
                    file=section.file,
                    line=section.line,
                    section=section.name,
                )
            )
            queues = [q for q in queues if q.name != section.name]
            continue
        seen[section.name] = section
        try:
            queues.append(_queue_config(section, defaults))
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    return FactoryConfig(path, factory, tuple(queues), tuple(errors), defaults)


def _reject_default_section(by_name: Mapping[str, RawSection]) -> None:
    for name in ("DEFAULT", "default"):
        if name in by_name:
            s = by_name[name]
            raise ConfigError(
                f"[{name}] is not used; put defaults for every queue in [{DEFAULTS_SECTION}]",
                file=s.file,
                line=s.line,
            )


def _queues_dir_sections(
    queues_dir: str, main: Path, line: int
) -> tuple[list[RawSection], list[ConfigError]]:
    """Queue sections from queuesDir/*.conf; an unreadable file disables its queues only."""
    if not queues_dir:
        return [], []
    directory = Path(queues_dir) if Path(queues_dir).is_absolute() else main.parent / queues_dir
    if not directory.is_dir():  # a [Factory] error: it stops start-up like the others
        raise ConfigError(
            f"{str(directory)!r} is not a directory",
            file=str(main),
            line=line,
            section=FACTORY_SECTION,
            key="queuesDir",
        )
    sections: list[RawSection] = []
    errors: list[ConfigError] = []
    for file in sorted(directory.glob("*.conf")):
        try:
            found = read_ini(file)
        except ConfigError as exc:
            errors.append(exc)
            continue
        for section in found:
            if section.name in (FACTORY_SECTION, DEFAULTS_SECTION, "DEFAULT"):
                errors.append(
                    ConfigError(
                        f"[{section.name}] belongs in the main factory.conf, not in queuesDir",
                        file=section.file,
                        line=section.line,
                    )
                )
            else:
                sections.append(section)
    return sections, errors
