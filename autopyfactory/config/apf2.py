"""``autopyfactory migrate-apf2``: an APF 2 ``autopyfactory.conf`` + ``queues.conf`` as factory.conf.

APF 2 reads both files with Python's ConfigParser (``[DEFAULT]`` applies to every queue,
``%(key)s`` interpolates; keys only used that way are helpers, not settings). Each APF 2 queue
section names one PanDA queue (``batchqueue``) and one CE (its batchsubmit plugin's options), so
each becomes a queue section with ``autoconfigure = false`` and that CE: the same pilots to the
same place, under the same label name (``labelName``: the monitor's history of the label carries
on). What needs translating rather than renaming is in ``apf2_translate.py``: the pilot's
arguments (pilot 1's grammar to this factory's keys), the submit attributes and the ARC RSL.

What the translation decided is written as comments at the top of the output. Every APF 2 setting
with no equivalent is listed, never dropped silently: on stderr and in ``[Factory] unmigrated``,
about which ``autopyfactory check`` warns until the lines are deleted. ``None`` is APF 2's
"unset", never a value.

Two things work differently here and are converted, saying so: APF 2 gave every queue section
all of its PanDA queue's activated jobs, so a queue served through several CEs (and factories)
carried a ``Scale`` factor of ``1 / CEs / factories``; this factory shares the jobs itself, so
the factor is multiplied back (at most 1: one pilot per activated job). And the PanDA server the
pilots were given (``-w``, ``-p``) is ``pandaserver`` here.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from autopyfactory.config.apf2_translate import (
    PQ,
    SITE,
    Translation,
    attribute_items,
    rsl_relations,
    translate_arguments,
    translate_attributes,
    translate_rsl,
)
from autopyfactory.config.schema import DEFAULT_ARGUMENTS
from autopyfactory.domain.label import retired
from autopyfactory.domain.model import plural

#: APF 2 scheduler plugins that this factory has under the same name.
SAME_PLUGINS = frozenset(
    {
        "Ready",
        "Scale",
        "MaxPerCycle",
        "MinPerCycle",
        "MaxPending",
        "MinPending",
        "MaxToRun",
        "StatusTest",
        "StatusOffline",
        "Fixed",
    }
)

#: APF 2 queue keys -> ours (same meaning).
QUEUE_KEYS: Mapping[str, str] = {
    "enabled": "enabled",
    "status": "status",
    "cloud": "cloud",
    "cleanlogs.keepdays": "logKeepDays",
    "sched.ready.offset": "sched.ready.offset",
    "sched.scale.factor": "sched.scale.factor",
    "sched.maxpercycle.maximum": "sched.maxpercycle.maximum",
    "sched.minpercycle.minimum": "sched.minpercycle.minimum",
    "sched.maxpending.maximum": "sched.maxpending.maximum",
    "sched.minpending.minimum": "sched.minpending.minimum",
    "sched.maxtorun.maximum": "sched.maxtorun.maximum",
    "sched.statustest.pilots": "sched.statustest.pilots",
    "sched.statusoffline.pilots": "sched.statusoffline.pilots",
    "sched.fixed.pilotspercycle": "sched.fixed.pilots",
    # APF 1 / SimpleNQueue keys: our Classic plugin
    "nqueue": "nqueue",
    "depthboost": "depthboost",
    "idlepilotsupression": "idlepilotsuppression",
    "idlepilotsuppression": "idlepilotsuppression",
    "pilotlimit": "pilotlimit",
    "transferringlimit": "transferringlimit",
    "sched.simplenqueue.nqueue": "nqueue",
    "sched.simplenqueue.depthboost": "depthboost",
    "sched.simplenqueue.pilotlimit": "pilotlimit",
    "sched.simplenqueue.transferringlimit": "transferringlimit",
}

#: APF 2 keys that need nothing here (the factory always asks PanDA and condor itself; the
#: arguments and the CE are translated from the keys they are in).
NOT_NEEDED = frozenset(
    {
        "batchstatusplugin",
        "wmsstatusplugin",
        "configplugin",
        "autofill",
        "override",
        "batchqueue",
        "wmsqueue",
        "batchsubmitplugin",
        "schedplugin",
        "executable",
        "executable.arguments",
        "executable.defaultarguments",
        "apfqueue.sleep",
        "sched.statustest.allowed",
        "sched.statusoffline.allowed",
        "vo",  # only ever interpolated into wrapper.sh's arguments
        "grid",
    }
)

#: APF 2 batchsubmit plugin -> (our ceFlavour, default port); None: no equivalent.
FLAVOURS: Mapping[str, tuple[str, str] | None] = {
    "condorosgce": ("HTCONDOR-CE", "9619"),
    "condorce": ("HTCONDOR-CE", "9619"),
    "condornordugrid": ("ARC-CE", ""),
    "condorcream": ("CREAM-CE", "8443"),
    "condorgt2": ("OSG-CE", ""),
    "condorgt5": ("OSG-CE", ""),
    "condorlocal": ("LOCAL", ""),
    "condorec2": None,
    "condorssh": None,
    "condorbosco": None,
    "condorlsf": None,
    "condorpbs": None,
    "exec": None,
}
#: Each plugin reads its parents' options too (APF 2's filterkeys); the child's win.
PARENTS: Mapping[str, tuple[str, ...]] = {
    "condorosgce": ("condorbase", "condorgrid", "condorce"),
    "condorce": ("condorbase", "condorgrid"),
    "condornordugrid": ("condorbase", "condorgrid", "condorce"),
    "condorcream": ("condorbase", "condorgrid"),
    "condorgt2": ("condorbase", "condorgrid"),
    "condorgt5": ("condorbase", "condorgrid"),
    "condorlocal": ("condorbase",),
}
#: Plugin options that give the CE's endpoint (read by _endpoint).
_CE_OPTIONS = frozenset({"gridresource", "webservice", "port", "batch", "queue"})
#: APF 2's own wrappers: replaced by this factory's runpilot3-wrapper.sh.
_APF_WRAPPER = re.compile(r"^(wrapper.*|runpilot[0-9]?(-wrapper)?)\.sh$")

#: autopyfactory.conf [Factory] keys -> ours.
FACTORY_KEYS: Mapping[str, str] = {
    "factoryId": "factoryId",
    "factoryAdminEmail": "factoryOwner",
    "factoryOwner": "factoryOwner",
    "baseLogDir": "baseLogDir",
    "baseLogDirUrl": "baseLogDirUrl",
    "monitorURL": "monitorURL",
    "queuesconfig.agis.numfactories": "numFactories",
}

#: autopyfactory.conf keys that need nothing here, and why (a note in the output).
FACTORY_NOT_NEEDED: Mapping[str, str] = {
    "cycles": "`autopyfactory run --cycles N`",
    "factory.sleep": "sleep (the cycle); APF 2's apfqueue.sleep is used if set",
    "enablequeues": "queues are enabled unless a section says enabled = false",
    "queueConf": "queue sections are in this file (or in queuesDir)",
    "mappingsConf": "built in (CRIC flavours and statuses)",
    "wmsstatus.panda.sleep": "PanDA is asked once every cycle",
    "wmsstatus.panda.maxage": "PanDA's numbers are never reused after a failed answer",
    "wmsstatus.condor.sleep": "HTCondor is asked once every cycle",
    "wmsstatus.condor.maxage": "HTCondor's numbers are never reused after a failed answer",
    "batchstatus.condor.sleep": "HTCondor is asked once every cycle",
    "batchstatus.condor.maxage": "HTCondor's numbers are never reused after a failed answer",
    "queuesconfig.agis.jobsperpilot": "one pilot per activated job (the Scale factors are converted)",
    "queuesconfig.agis.sleep": "schedconfigRefresh",
}

#: autopyfactory.conf keys with what to do instead (listed in unmigrated: check warns).
FACTORY_NOTES: Mapping[str, str] = {
    "factoryUser": "the service runs as User=autopyfactory (systemd) or `run --runas USER`",
    "factorySMTPServer": "no e-mail alerts: alert on `autopyfactory status --check` (Nagios, Icinga)",
    "factoryMinEmailRepeatSeconds": "no e-mail alerts (see factorySMTPServer)",
    "logserver.enabled": "serve baseLogDir with httpd: etc/httpd/autopyfactory-pilots.conf",
    "logserver.index": "directory indexes are in etc/httpd/autopyfactory-pilots.conf",
    "logserver.allowrobots": "etc/httpd/autopyfactory-pilots.conf (add a robots.txt if wanted)",
    "proxyConf": "no proxy manager: renew the proxy files yourself and name them in x509userproxy",
    "proxymanager.enabled": "no proxy manager (see proxyConf)",
    "proxymanager.sleep": "no proxy manager (see proxyConf)",
    "authConf": "no auth manager: renew the proxy files yourself and name them in x509userproxy",
    "authmanager.enabled": "no auth manager (see authConf)",
    "authmanager.sleep": "no auth manager (see authConf)",
    "monitorConf": "set monitorURL (and monitorToken) in [Factory]",
    "queueDirConf": "queuesDir (files in this factory's format)",
    "queuesconfig.agis.baseurl": "schedconfig (AGIS is retired: a CRIC URL is written)",
}
#: AGIS's own selection (APF 2's queues config plugin) -> CRIC fields of `queues = cric: ...`.
AGIS_SELECTION: Mapping[str, str] = {
    "queuesconfig.agis.vos": "vo",
    "queuesconfig.agis.clouds": "cloud",
    "queuesconfig.agis.activities": "type",
}

#: A section added to every parsed file to read [DEFAULT]'s values with interpolation.
PROBE = "migrate-apf2: DEFAULT"
PANDASERVER = "https://pandaserver.cern.ch:25443"
SCHEDCONFIG = "https://atlas-cric.cern.ch/api/atlas/pandaqueue/query/?json"
#: The key of [Factory] that lists what was not migrated (``check`` warns about every line).
UNMIGRATED = "unmigrated"


class MigrationError(Exception):
    """The input cannot be read as APF 2 configuration."""


@dataclass
class Migration:
    factory: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    queues: dict[str, dict[str, str]] = field(default_factory=dict)
    #: "key = value: what instead" -> the sections it is in (APF 2 settings with no equivalent)
    _unmapped: dict[str, list[str]] = field(default_factory=dict)
    #: "what was translated how" -> the sections it is in
    _notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, where: str, key: str, value: str, instead: str) -> None:
        """An APF 2 setting with no equivalent."""
        _add(self._unmapped, f"{key} = {_one_line(value)}: {instead}", where)

    def info(self, where: str, text: str) -> None:
        """How an APF 2 setting was translated, or why it is not needed."""
        _add(self._notes, _one_line(text), where)

    @property
    def unmapped(self) -> list[str]:
        """``[where, ...] key = value: what instead``, one per setting (the same in several
        sections once)."""
        return [f"[{', '.join(where)}] {text}" for text, where in self._unmapped.items()]

    @property
    def notes(self) -> list[str]:
        return [f"[{', '.join(where)}] {text}" for text, where in self._notes.items()]


def _add(entries: dict[str, list[str]], text: str, where: str) -> None:
    sections = entries.setdefault(text, [])
    if where not in sections:
        sections.append(where)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def read_apf(path: Path) -> configparser.ConfigParser:
    """An APF 2 file as APF 2 reads it (BasicInterpolation, case-preserving keys)."""
    parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation(), strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        text = path.read_text()
    except OSError as exc:
        raise MigrationError(f"{path}: {exc.strerror or exc}") from None
    # our argument template knows the site and the queue by these names
    text = text.replace("%(wmsqueue)s", "%" + SITE).replace("%(batchqueue)s", "%" + PQ)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise MigrationError(f"{path}: {exc}") from None
    parser.add_section(PROBE)
    return parser


def read_profiles(path: Path) -> dict[str, str]:
    """APF 2's credential profiles (auth.conf ``x509.proxyfile``, proxy.conf ``proxyfile`` or
    ``proxy``) as profile -> proxy file; empty when the file cannot be read."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(), source=str(path))
    except (OSError, configparser.Error):
        return {}
    profiles = {}
    for name in parser.sections():
        for key in ("x509.proxyfile", "proxyfile", "proxy"):
            value = parser.get(name, key, fallback="").strip()
            if value and value.lower() != "none":
                profiles[name] = value
                break
    return profiles


def _sections(parser: configparser.ConfigParser) -> list[str]:
    return [s for s in parser.sections() if s != PROBE]


def _helpers(parser: configparser.ConfigParser) -> frozenset[str]:
    """Keys other values interpolate (``%(req)s``): helpers of the file, not settings."""
    raw = [parser.get(s, key, raw=True) for s in (PROBE, *_sections(parser)) for key in parser.options(s)]
    return frozenset(name for value in raw for name in re.findall(r"%\(([^)]+)\)s", value))


def migrate(
    factory_conf: configparser.ConfigParser,
    queues_conf: configparser.ConfigParser,
    profiles: Mapping[str, str] | None = None,
) -> Migration:
    """The migration of both files; ``profiles``: APF 2's credential profiles (read_profiles)."""
    result = Migration()
    _factory(factory_conf, result)
    _sleep(queues_conf, result)
    reader = _QueueReader(queues_conf, result, profiles or {})
    result.defaults = {**result.defaults, **reader.defaults()}  # queues.conf's [DEFAULT] is nearer
    servers = {section: reader.queue(section) for section in _sections(queues_conf)}
    _pandaserver(reader.default_server, servers, result)
    _shared_scale(result)
    result.queues = {
        name: {k: v for k, v in queue.items() if result.defaults.get(k) != v}
        for name, queue in result.queues.items()
    }
    if result.unmapped:
        result.factory[UNMIGRATED] = "\n".join(_safe_in_ini(entry) for entry in result.unmapped)
    return result


def _safe_in_ini(text: str) -> str:
    """``text`` as a factory.conf value line: ``#`` and ``;`` after a blank would start a comment."""
    return re.sub(r"\s+(?=[#;])", "", text)


def _sleep(parser: configparser.ConfigParser, result: Migration) -> None:
    sleeps = {_get(parser, s, "apfqueue.sleep") for s in _sections(parser)} - {""}
    if len(sleeps) == 1:
        result.factory["sleep"] = sleeps.pop()
    elif sleeps:
        result.note("queues", "apfqueue.sleep", ", ".join(sorted(sleeps)), "one sleep for all: the shortest")
        result.factory["sleep"] = str(min(int(s) for s in sleeps))


def _get(parser: configparser.ConfigParser, section: str, key: str) -> str:
    """A value as APF 2 sees it; ``None`` (APF 2's "unset") is ""."""
    try:
        where = PROBE if section == parser.default_section else section
        value = parser.get(where, key, fallback="").strip()
    except configparser.InterpolationError as exc:
        raise MigrationError(f"[{section}] {key}: {exc}") from None
    return "" if value.lower() == "none" else value


def _factory(parser: configparser.ConfigParser, result: Migration) -> None:
    if not parser.has_section("Factory"):
        raise MigrationError("autopyfactory.conf has no [Factory] section")
    agis: list[str] = []
    plugin = _get(parser, "Factory", "queuesconfigplugin")
    for key in parser.options("Factory"):
        value = _get(parser, "Factory", key)
        if value:
            _factory_key(key, value, plugin, result, agis)
    if agis:
        line = f"queues = cric: pilot_manager=apf {' '.join(agis)}"
        result.note(
            "Factory",
            "queuesconfig.agis.*",
            " ".join(agis),
            "APF 2 chose its queues from AGIS; the"
            f" sections below are those it chose then. To choose them from CRIC every cycle, write `{line}`"
            " in [Factory] (a queue's own section still wins)",
        )
    result.factory.setdefault("pandaserver", PANDASERVER)
    result.factory.setdefault("schedconfig", SCHEDCONFIG)


def _factory_key(key: str, value: str, plugin: str, result: Migration, agis: list[str]) -> None:
    """One [Factory] key of autopyfactory.conf: mapped, noted, or collected for the CRIC selection."""
    if key.startswith("queuesconfig.") and "agis" not in plugin.lower():
        result.info("Factory", f"{key} = {value}: not used by APF 2 either (queuesconfigplugin = {plugin})")
    elif key == "queuesconfigplugin" or key.startswith("queuesconfig.agis.defaultsfile"):
        result.info("Factory", f"{key} = {value}: the queues.conf it made holds the queues and [DEFAULT]")
    elif key in FACTORY_KEYS:
        result.factory[FACTORY_KEYS[key]] = value
    elif key == "cleanlogs.keepdays":
        result.defaults["logKeepDays"] = value
    elif key in AGIS_SELECTION:
        agis.append(f"{AGIS_SELECTION[key]}={value.replace(' ', '')}")
    elif key in FACTORY_NOT_NEEDED:
        result.info("Factory", f"{key} = {value}: not needed: {FACTORY_NOT_NEEDED[key]}")
    elif key in FACTORY_NOTES:
        result.note("Factory", key, value, FACTORY_NOTES[key])
    else:
        result.note("Factory", key, value, "no equivalent")


class _QueueReader:
    """Translates the queue sections of one queues.conf (and its [DEFAULT])."""

    def __init__(self, parser: configparser.ConfigParser, result: Migration, profiles: Mapping[str, str]):
        self._parser, self._result, self._profiles = parser, result, profiles
        self._helpers = _helpers(parser)
        self.default_server = ""
        self._from_defaults: set[str] = set()  # what translating [DEFAULT]'s arguments reported

    def defaults(self) -> dict[str, str]:
        """[QueueDefaults] from [DEFAULT]: what every queue inherits (its CE options are read per queue)."""
        keys = list(self._parser.defaults())
        values = {key: _get(self._parser, self._parser.default_section, key) for key in keys}
        mapped = self._plain(self._parser.default_section, values, set(keys))
        arguments = self._arguments("DEFAULT", values, set(keys), mapped)
        self.default_server = arguments.server
        return mapped

    def queue(self, section: str) -> str:
        """Translate ``section`` into the result; the PanDA server its pilots were given ("": none)."""
        own = set(self._parser._sections.get(section, {}))  # type: ignore[attr-defined]
        values = {key: _get(self._parser, section, key) for key in self._parser.options(section)}
        mapped = self._plain(section, values, own)
        mapped.update(_names(values))
        mapped.update(self._ce(section, values, own))
        arguments = self._arguments(section, values, own, mapped)
        self._result.queues[section] = mapped
        return arguments.server

    def _plain(self, section: str, values: Mapping[str, str], own: set[str]) -> dict[str, str]:
        """The keys that map one to one, the executable and the plugin chain."""
        where = "DEFAULT" if section == self._parser.default_section else section
        mapped: dict[str, str] = {}
        for key, value in values.items():
            if not value:
                continue
            if key in QUEUE_KEYS:
                mapped[QUEUE_KEYS[key]] = _bool(value) if key == "enabled" else value
            elif (
                key in NOT_NEEDED or key in self._helpers or key.startswith(("batchsubmit.", "nordugridrsl."))
            ):
                continue
            elif key in own:
                self._result.note(where, key, value, _instead(key))
        if values.get("executable") and ("executable" in own or where == "DEFAULT"):
            self._executable(where, values["executable"])
        if values.get("schedplugin"):
            mapped.update(_plugins(values["schedplugin"], where, self._result, "schedplugin" in own))
        return mapped

    def _executable(self, where: str, path: str) -> None:
        if _APF_WRAPPER.match(Path(path).name):
            self._result.info(
                where,
                f"executable = {path}: this factory's runpilot3-wrapper.sh instead"
                " (it runs pilot 3; the arguments are translated for it)",
            )
        else:
            self._result.note(
                where,
                "executable",
                path,
                "a wrapper of the site's own: left at"
                " runpilot3-wrapper.sh, with the arguments translated for pilot 3; set"
                " executable (and arguments) if it must run instead",
            )

    def _arguments(
        self, where: str, values: Mapping[str, str], own: set[str], mapped: dict[str, str]
    ) -> Translation:
        """The pilot's arguments as keys (``executable.arguments``, else ``.defaultarguments``)."""
        key = "executable.arguments" if values.get("executable.arguments") else "executable.defaultarguments"
        text = values.get(key, "")
        translation = translate_arguments(text) if text else Translation()
        mapped.update(translation.keys)
        if key in own:
            self._report(where, key, translation)
            keys = ", ".join(f"{k} = {v}" for k, v in translation.keys.items())
            server = f"pandaserver {translation.server}" if translation.server else ""
            said = "; ".join(part for part in (keys, server) if part) or "nothing of their own"
            self._result.info(where, f"{key} = {text}: pilot 3's arguments, from {said}")
        return translation

    def _report(self, where: str, key: str, translation: Translation) -> None:
        """What a translation left out or decided, once: not again for each queue that inherits it."""
        for entry in translation.unmapped:
            if where == "DEFAULT" or entry not in self._from_defaults:
                what, _, instead = entry.partition(": ")
                self._result.note(where, key, what, instead)
        for entry in translation.notes:
            if where == "DEFAULT" or entry not in self._from_defaults:
                self._result.info(where, f"{key}: {entry}")
        if where == "DEFAULT":
            self._from_defaults.update(translation.unmapped + translation.notes)

    def _ce(self, section: str, values: Mapping[str, str], own: set[str]) -> dict[str, str]:
        plugin = values.get("batchsubmitplugin", "")
        key = plugin.lower()
        if not plugin:
            self._result.note(section, "batchsubmitplugin", "(unset)", "no CE given: queue disabled")
            return {"enabled": "false"}
        flavour = FLAVOURS.get(key)
        if flavour is None:
            self._result.note(section, "batchsubmitplugin", plugin, "no equivalent: queue disabled")
            return {"enabled": "false"}
        options = _plugin_options(key, values)
        ce: dict[str, str] = {"labelName": section, "autoconfigure": "false", "ceFlavour": flavour[0]}
        if flavour[0] != "LOCAL":
            ce.update(_endpoint(options, flavour[1]))
        ce.update(self._ce_options(section, options, own))
        if key == "condornordugrid":
            ce.update(self._rsl(section, values, ce))
        if retired(flavour[0]):
            self._result.note(section, "batchsubmitplugin", plugin, f"{retired(flavour[0])}: queue disabled")
            ce["enabled"] = "false"
        return ce

    def _ce_options(
        self, section: str, options: Mapping[str, tuple[str, str]], own: set[str]
    ) -> dict[str, str]:
        """The plugin's options (``name`` -> (APF 2 key, value)) and the RSL keys as ours."""
        ce: dict[str, str] = {}
        attributes: list[tuple[str, str]] = []
        for option, (key, value) in options.items():
            if option in _CE_OPTIONS or option == "nordugridrsl" or not value:
                continue
            where = section if key in own else "DEFAULT"
            if option == "environ":
                ce["environ"] = value
            elif option == "proxyfile":
                ce["x509userproxy"] = value
            elif option == "proxy":
                ce.update(self._proxy(where, key, value))
            elif option.startswith("condor_attributes"):
                attributes += attribute_items(option, value)
            else:
                self._result.note(where, key, value, "no equivalent")
        translation = translate_attributes(attributes)
        ce.update(translation.keys)
        self._report(section, "condor_attributes", translation)
        if translation.attributes:
            ce["submitAttributes"] = "\n".join(f"{name} = {value}" for name, value in translation.attributes)
        return ce

    def _rsl(self, section: str, values: Mapping[str, str], ce: Mapping[str, str]) -> dict[str, str]:
        """An ARC queue's RSL (``batchsubmit.condornordugrid.nordugridrsl``, ``nordugridrsl.*``) as
        keys; ``nordugridrsl.addenv.*`` as environment."""
        relations: list[tuple[str, str]] = []
        environ = [ce["environ"]] if ce.get("environ") else []
        for key, value in values.items():
            name = key.removeprefix("nordugridrsl.")
            if not value or (name == key and key != "batchsubmit.condornordugrid.nordugridrsl"):
                continue
            if name.startswith("addenv."):
                environ.append(f"{name.removeprefix('addenv.')}={value}")
            elif name in ("nordugridrsl", "nordugridrsladd", "batchsubmit.condornordugrid.nordugridrsl"):
                relations += rsl_relations(value)
            else:
                relations.append((name.lower(), value))
        translation = translate_rsl(relations)
        self._report(section, "nordugridrsl", translation)
        return {**translation.keys, **({"environ": " ".join(environ)} if environ else {})}

    def _proxy(self, where: str, key: str, value: str) -> dict[str, str]:
        """A credential profile of APF 2's auth/proxy manager, as the proxy file it renews."""
        first = value.split(",")[0].strip()
        if first in self._profiles:
            self._result.info(
                where,
                f"{key} = {value}: x509userproxy = {self._profiles[first]} (that"
                " profile's proxy file; renew it yourself, this factory has no proxy manager)",
            )
            return {"x509userproxy": self._profiles[first]}
        self._result.note(
            where,
            key,
            value,
            "set x509userproxy to the proxy file this profile of APF 2's"
            " auth.conf (proxy.conf) renewed, and keep it renewed",
        )
        return {}


def _instead(key: str) -> str:
    if key.startswith("executable."):
        return "no equivalent: runpilot3-wrapper.sh takes its options from the arguments"
    if key.startswith("globusrsl."):
        return "no equivalent (GRAM RSL)"
    if key in ("periodic_hold", "periodic_remove"):
        return "holdIdleAfter, removeHeldAfter, removeIdleAfter, removeRunningAfter"
    if key == "monitorsection":
        return "monitorURL in [Factory]"
    return "no equivalent"


def _bool(value: str) -> str:
    return "true" if value.lower() in ("true", "yes", "1", "on") else "false"


def _plugins(chain: str, section: str, result: Migration, own: bool) -> dict[str, str]:
    names = [name.strip() for name in chain.split(",") if name.strip()]
    kept = [name for name in names if name in SAME_PLUGINS]
    for name in names:
        if name not in SAME_PLUGINS and own:
            result.note(section, "schedplugin", chain, f"plugin {name} has no equivalent (left out)")
    return {"schedplugin": ", ".join(kept)} if kept else {}


def _names(values: Mapping[str, str]) -> dict[str, str]:
    """APF 2 ``batchqueue`` is the PanDA queue (our wmsqueue); its ``wmsqueue`` the site (siteid)."""
    names: dict[str, str] = {}
    pq = values.get("batchqueue", "")
    if pq:
        names["wmsqueue"] = pq
    site = values.get("wmsqueue", "")
    if site and site != pq:
        names["siteid"] = site
    return names


def _plugin_options(plugin: str, values: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """The options a plugin reads (its parents' first, its own win): name -> (APF 2 key, value)."""
    options: dict[str, tuple[str, str]] = {}
    for prefix in (*PARENTS.get(plugin, ()), plugin):
        start = f"batchsubmit.{prefix}."
        options.update({k[len(start) :]: (k, v) for k, v in values.items() if k.startswith(start)})
    return options


def _endpoint(options: Mapping[str, tuple[str, str]], default_port: str) -> dict[str, str]:
    def get(name: str) -> str:
        return options.get(name, ("", ""))[1]

    resource = get("gridresource") or get("webservice")
    host = resource.split("/", 1)[0].split()[0] if resource.strip() else ""  # gt2: host/jobmanager-pbs
    if ":" not in host:
        port = get("port") or default_port
        host = f"{host}:{port}" if port and host else host
    found = {"ceEndpoint": host} if host else {}
    if get("queue"):
        found["ceQueue"] = get("queue")
    return found


# --- after every queue: the server and the shared activated jobs ---------------------------------


def _pandaserver(default: str, servers: Mapping[str, str], result: Migration) -> None:
    """``pandaserver`` is the server of the [DEFAULT] arguments (else of the first queue naming one);
    a queue whose pilots were sent elsewhere keeps that server in its own ``arguments``."""
    named = [server for server in (default, *servers.values()) if server]
    if not named:
        return
    result.factory["pandaserver"] = named[0]
    for section, server in servers.items():
        if server and server != named[0]:
            scheme_host, _, port = server.rpartition(":")
            arguments = DEFAULT_ARGUMENTS.replace("%(pandaurl)s", scheme_host).replace("%(port)s", port)
            result.queues[section]["arguments"] = arguments
            result.info(section, f"its pilots were sent to {server}, not {named[0]}: kept in its arguments")


def _shared_scale(result: Migration) -> None:
    """APF 2 gave each section all activated jobs of its PanDA queue (hence ``sched.scale.factor =
    1 / CEs / factories`` from its AGIS plugin); here they are shared between the labels of the PanDA
    queue and the factories, so the factor is multiplied back by both, to at most 1."""
    factories = float(result.factory.get("numFactories", "1") or 1)
    pqs: dict[str, list[str]] = {}
    for name, queue in result.queues.items():
        if (queue.get("enabled") or result.defaults.get("enabled", "true")) != "false":
            pqs.setdefault(queue.get("wmsqueue") or name, []).append(name)
    for sections in pqs.values():
        for name in sections:
            queue = result.queues[name]
            chain = queue.get("schedplugin") or result.defaults.get("schedplugin", "")
            factor = queue.get("sched.scale.factor") or result.defaults.get("sched.scale.factor")
            if "Scale" not in chain or not factor:
                continue
            shared = min(1.0, float(factor) * len(sections) * factories)
            if shared != float(factor):
                queue["sched.scale.factor"] = f"{shared:.4g}"
                result.info(
                    name,
                    f"sched.scale.factor = {factor} -> {shared:.4g}: this factory shares the PanDA queue's"
                    f" activated jobs between its {plural(len(sections), 'CE')} and"
                    f" {plural(int(factories), 'factory', 'factories')} itself",
                )


# --- output ---------------------------------------------------------------------------------

HEADER = """\
# factory.conf written by `autopyfactory migrate-apf2` from
#   {factory}
#   {queues}
# Check it with `autopyfactory check -c <this file>`: it warns about every line of [Factory]
# unmigrated (APF 2 settings with no equivalent here) until you have handled and deleted it.
# Each APF 2 queue names its CE (autoconfigure = false) and keeps its name at the monitor
# (labelName); its status is the section's (default online), not CRIC's. schedconfig is not an
# APF 2 setting: check it.
"""


def render(migration: Migration, factory_path: Path, queues_path: Path) -> str:
    lines = [HEADER.format(factory=factory_path, queues=queues_path)]
    if migration.notes:
        lines.append("# How APF 2 settings were translated:")
        lines += [f"#   {entry}" for entry in migration.notes]
        lines.append("")
    lines += _section("Factory", migration.factory)
    lines += _section("QueueDefaults", migration.defaults)
    for name, values in migration.queues.items():
        lines += _section(name, values)
    return "\n".join(lines).rstrip() + "\n"


#: Keys whose value is a list of lines: written one line each, indented, also when there is one.
LINE_LISTS = frozenset({"submitAttributes", UNMIGRATED})


def _section(name: str, values: Mapping[str, str]) -> list[str]:
    """An INI section; a list of lines (``submitAttributes``, ``unmigrated``) goes one item a
    continuation line, as they are read."""
    lines = [f"[{name}]"]
    for key, value in values.items():
        if key in LINE_LISTS or "\n" in value:
            lines.append(f"{key} =")
            lines += [f"    {line}" for line in value.splitlines()]
        else:
            lines.append(f"{key} = {value}")
    return [*lines, ""]
