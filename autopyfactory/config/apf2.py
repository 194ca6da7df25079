"""``autopyfactory migrate-apf2``: an APF 2 ``autopyfactory.conf`` + ``queues.conf`` as factory.conf.

APF 2 reads both files with Python's ConfigParser (``[DEFAULT]`` applies to every queue,
``%(key)s`` interpolates). Each APF 2 queue section names one PanDA queue (``batchqueue``) and one
CE (its batchsubmit plugin's options), so each becomes a queue section with ``autoconfigure =
false`` and that CE: the same pilots to the same place. Scheduler plugins and their options map
one to one where this factory has the plugin. Every APF 2 key that has no equivalent here is
listed (as comments at the top of the output and on stderr), never dropped silently.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: APF 2 scheduler plugins that this factory has under the same name.
SAME_PLUGINS = frozenset(
    {"Ready", "Scale", "MaxPerCycle", "MinPerCycle", "MaxPending", "MinPending", "MaxToRun",
     "StatusTest", "StatusOffline", "Fixed"}
)  # fmt: skip

#: APF 2 queue keys -> ours (same meaning).
QUEUE_KEYS: Mapping[str, str] = {
    "enabled": "enabled",
    "status": "status",
    "cloud": "cloud",
    "executable": "executable",
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

#: APF 2 keys that need nothing here (the factory always asks PanDA and condor itself).
NOT_NEEDED = frozenset(
    {"batchstatusplugin", "wmsstatusplugin", "configplugin", "autofill", "override", "batchqueue",
     "wmsqueue", "batchsubmitplugin", "schedplugin", "executable.arguments",
     "executable.defaultarguments", "apfqueue.sleep"}
)  # fmt: skip

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

#: autopyfactory.conf [Factory] keys -> ours.
FACTORY_KEYS: Mapping[str, str] = {
    "factoryId": "factoryId",
    "factoryAdminEmail": "factoryOwner",
    "factoryOwner": "factoryOwner",
    "baseLogDir": "baseLogDir",
    "baseLogDirUrl": "baseLogDirUrl",
    "monitorURL": "monitorURL",
    "wmsstatus.panda.maxage": "pandaMaxAge",
    "queuesconfig.agis.numfactories": "numFactories",
}

#: autopyfactory.conf keys with what to do instead.
FACTORY_NOTES: Mapping[str, str] = {
    "factoryUser": "the service runs as User=autopyfactory (systemd) or `run --runas USER`",
    "cycles": "`autopyfactory run --cycles N`",
    "cleanlogs.keepdays": "logKeepDays (per queue; written to [QueueDefaults])",
    "logserver.enabled": "serve baseLogDir with httpd: etc/httpd/autopyfactory-pilots.conf",
    "logserver.index": "directory indexes are in etc/httpd/autopyfactory-pilots.conf",
    "logserver.allowrobots": "etc/httpd/autopyfactory-pilots.conf (add a robots.txt if wanted)",
    "proxyConf": "no proxy manager: renew the proxy files yourself and name them in x509userproxy",
    "proxymanager.enabled": "no proxy manager (see proxyConf)",
    "proxymanager.sleep": "no proxy manager (see proxyConf)",
    "authConf": "no auth manager: x509userproxy / scitokensFile name the files",
    "authmanager.enabled": "no auth manager (see authConf)",
    "authmanager.sleep": "no auth manager (see authConf)",
    "monitorConf": "set monitorURL (and monitorToken) in [Factory]",
    "mappingsConf": "built in (CRIC flavours and statuses)",
    "queueConf": "queue sections are in this file (or in queuesDir)",
    "queueDirConf": "queuesDir (files in this factory's format)",
    "queuesconfigplugin": "autoconfigure from schedconfig (CRIC), per queue",
    "queuesconfig.agis.baseurl": "schedconfig (AGIS is retired: a CRIC URL is written)",
    "factory.sleep": "sleep (the cycle); APF 2's apfqueue.sleep is used if set",
}

#: A section added to every parsed file to read [DEFAULT]'s values with interpolation.
PROBE = "migrate-apf2: DEFAULT"
PANDASERVER = "https://pandaserver.cern.ch:25443"
SCHEDCONFIG = "https://atlas-cric.cern.ch/api/atlas/pandaqueue/query/?json"


class MigrationError(Exception):
    """The input cannot be read as APF 2 configuration."""


@dataclass
class Migration:
    factory: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    queues: dict[str, dict[str, str]] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)  # "where: key = value: what instead"

    def note(self, where: str, key: str, value: str, instead: str) -> None:
        self.unmapped.append(f"[{where}] {key} = {value}: {instead}")


def read_apf(path: Path) -> configparser.ConfigParser:
    """An APF 2 file as APF 2 reads it (BasicInterpolation, case-preserving keys)."""
    parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation(), strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        text = path.read_text()
    except OSError as exc:
        raise MigrationError(f"{path}: {exc.strerror or exc}") from None
    # our argument template knows the site and the queue by these names
    text = text.replace("%(wmsqueue)s", "%%(siteid)s").replace("%(batchqueue)s", "%%(pq)s")
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise MigrationError(f"{path}: {exc}") from None
    parser.add_section(PROBE)
    return parser


def _sections(parser: configparser.ConfigParser) -> list[str]:
    return [s for s in parser.sections() if s != PROBE]


def migrate(factory_conf: configparser.ConfigParser, queues_conf: configparser.ConfigParser) -> Migration:
    result = Migration()
    _factory(factory_conf, result)
    sleeps = {_get(queues_conf, s, "apfqueue.sleep") for s in _sections(queues_conf)} - {""}
    if len(sleeps) == 1:
        result.factory["sleep"] = sleeps.pop()
    elif sleeps:
        result.note("queues", "apfqueue.sleep", ", ".join(sorted(sleeps)), "one sleep for all: the shortest")
        result.factory["sleep"] = str(min(int(s) for s in sleeps))
    result.defaults = _queue(queues_conf, queues_conf.default_section, result, defaults_only=True)
    for section in _sections(queues_conf):
        mapped = _queue(queues_conf, section, result, defaults_only=False)
        result.queues[section] = {k: v for k, v in mapped.items() if result.defaults.get(k) != v}
    return result


def _get(parser: configparser.ConfigParser, section: str, key: str) -> str:
    try:
        where = PROBE if section == parser.default_section else section
        return parser.get(where, key, fallback="").strip()
    except configparser.InterpolationError as exc:
        raise MigrationError(f"[{section}] {key}: {exc}") from None


def _factory(parser: configparser.ConfigParser, result: Migration) -> None:
    if not parser.has_section("Factory"):
        raise MigrationError("autopyfactory.conf has no [Factory] section")
    for key in parser.options("Factory"):
        value = _get(parser, "Factory", key)
        if key in FACTORY_KEYS:
            result.factory[FACTORY_KEYS[key]] = value
        elif key == "cleanlogs.keepdays":
            result.defaults["logKeepDays"] = value
        elif key in FACTORY_NOTES:
            result.note("Factory", key, value, FACTORY_NOTES[key])
        else:
            result.note("Factory", key, value, "no equivalent")
    result.factory.setdefault("pandaserver", PANDASERVER)
    result.factory.setdefault("schedconfig", SCHEDCONFIG)


def _queue(
    parser: configparser.ConfigParser, section: str, result: Migration, defaults_only: bool
) -> dict[str, str]:
    """Our keys for one APF 2 section (with [DEFAULT] applied, as APF 2 does)."""
    keys = list(parser.defaults()) if defaults_only else parser.options(section)
    values = {key: _get(parser, section, key) for key in keys}
    own = set(keys) if defaults_only else set(parser._sections.get(section, {}))  # type: ignore[attr-defined]
    mapped: dict[str, str] = {}
    for key, value in values.items():
        if key in QUEUE_KEYS:
            mapped[QUEUE_KEYS[key]] = _bool(value) if key == "enabled" else value
        elif key in own and not _handled_elsewhere(key):  # a [DEFAULT] key is noted once, under DEFAULT
            result.note(section, key, value, _queue_note(key))
    arguments = values.get("executable.arguments") or values.get("executable.defaultarguments")
    if arguments:
        mapped["arguments"] = arguments
    if "schedplugin" in values:
        mapped.update(_plugins(values["schedplugin"], section, result, "schedplugin" in own))
    if not defaults_only:
        mapped.update(_names(section, values))
        mapped.update(_ce(section, values, result))
    return mapped


#: What stands in for an APF 2 queue key we have no key for: by the key's prefix (ending in ".")
#: or the key itself; any other key has no equivalent.
_QUEUE_NOTES = (
    ("executable.", "no equivalent: runpilot3-wrapper.sh takes its options from `arguments`"),
    ("globusrsl.", "no equivalent (GRAM RSL)"),
    ("periodic_hold", "holdIdleAfter, removeHeldAfter, removeIdleAfter, removeRunningAfter"),
    ("periodic_remove", "holdIdleAfter, removeHeldAfter, removeIdleAfter, removeRunningAfter"),
    ("monitorsection", "monitorURL in [Factory]"),
)


def _handled_elsewhere(key: str) -> bool:
    """Keys not needed at all, and the CE's keys (read by :func:`_ce`)."""
    return key in NOT_NEEDED or key.startswith(("batchsubmit.", "nordugridrsl."))


def _queue_note(key: str) -> str:
    for name, instead in _QUEUE_NOTES:
        if key == name or (name.endswith(".") and key.startswith(name)):
            return instead
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


def _names(section: str, values: Mapping[str, str]) -> dict[str, str]:
    """APF 2 ``batchqueue`` is the PanDA queue (our wmsqueue); its ``wmsqueue`` the site (siteid)."""
    names: dict[str, str] = {}
    pq = values.get("batchqueue") or section
    if pq != section:
        names["wmsqueue"] = pq
    site = values.get("wmsqueue", "")
    if site and site != pq:
        names["siteid"] = site
    return names


def _ce(section: str, values: Mapping[str, str], result: Migration) -> dict[str, str]:
    plugin = values.get("batchsubmitplugin", "").strip()
    key = plugin.lower()
    flavour = FLAVOURS.get(key) if plugin else None
    if flavour is None:
        why = "no equivalent: queue disabled" if plugin else "no CE given: queue disabled"
        result.note(section, "batchsubmitplugin", plugin or "(unset)", why)
        return {"enabled": "false"}
    ce: dict[str, str] = {"autoconfigure": "false", "ceFlavour": flavour[0]}
    ce.update({"batch": "condor"} if flavour[0] == "LOCAL" else _endpoint(key, values, flavour[1]))
    ce.update(_plugin_options(section, key, values, result))
    environ = _environ(section, ce.get("environ"), values, result)
    if environ is not None:
        ce["environ"] = environ
    queue = values.get(f"batchsubmit.{key}.queue") or values.get("nordugridrsl.queue", "")
    if queue:
        ce["ceQueue"] = queue
    return ce


def _plugin_options(
    section: str, plugin: str, values: Mapping[str, str], result: Migration
) -> dict[str, str]:
    """Our keys for the ``batchsubmit.<plugin>.*`` options that have one; a note for the others."""
    prefix = f"batchsubmit.{plugin}."
    options: dict[str, str] = {}
    for name, value in values.items():
        option = name.removeprefix(prefix)
        if option == name or option in _CE_OPTIONS:
            continue
        if option in ("environ", "proxyfile"):
            options["environ" if option == "environ" else "x509userproxy"] = value
        elif option == "proxy":
            if value.lower() != "none":
                result.note(section, name, value, "set x509userproxy to the file proxy.conf's handler writes")
        elif option == "condor_attributes":
            result.note(section, name, value, "no equivalent (no free-form submit attributes)")
        else:
            result.note(section, name, value, "no equivalent")
    return options


def _environ(section: str, own: str | None, values: Mapping[str, str], result: Migration) -> str | None:
    """The plugin's environ with the ``nordugridrsl.addenv.*`` variables added (None: neither);
    a note for the other ARC RSL keys."""
    environ = [] if own is None else [own]
    for name, value in values.items():
        if name.startswith("nordugridrsl.addenv."):
            environ.append(f"{name.removeprefix('nordugridrsl.addenv.')}={value}")
        elif name.startswith("nordugridrsl.") and name != "nordugridrsl.queue":
            result.note(section, name, value, "no equivalent (the ARC RSL is built from the label)")
    return " ".join(environ) if environ else None


_CE_OPTIONS = frozenset({"gridresource", "webservice", "port", "queue", "batch"})


def _endpoint(plugin: str, values: Mapping[str, str], default_port: str) -> dict[str, str]:
    prefix = f"batchsubmit.{plugin}."
    resource = values.get(f"{prefix}gridresource") or values.get(f"{prefix}webservice", "")
    host = resource.split("/", 1)[0]  # gt2: host/jobmanager-pbs; CREAM: host:8443/cream-pbs
    if ":" not in host:
        port = values.get(f"{prefix}port", default_port)
        host = f"{host}:{port}" if port and host else host
    return {"ceEndpoint": host} if host else {}


# --- output ---------------------------------------------------------------------------------

HEADER = """\
# factory.conf written by `autopyfactory migrate-apf2` from
#   {factory}
#   {queues}
# Check it with `autopyfactory check -c <this file>`. Each APF 2 queue names its CE
# (autoconfigure = false); a section per PanDA queue with autoconfigure = true serves all of its
# CRIC CEs instead. pandaserver and schedconfig are not APF 2 settings: check them.
"""


def render(migration: Migration, factory_path: Path, queues_path: Path) -> str:
    lines = [HEADER.format(factory=factory_path, queues=queues_path)]
    if migration.unmapped:
        lines.append("# APF 2 settings with no equivalent here (what to do instead):")
        lines += [f"#   {entry}" for entry in migration.unmapped]
        lines.append("")
    lines += _section("Factory", migration.factory)
    lines += _section("QueueDefaults", migration.defaults)
    for name, values in migration.queues.items():
        lines += _section(name, values)
    return "\n".join(lines).rstrip() + "\n"


def _section(name: str, values: Mapping[str, str]) -> list[str]:
    return [f"[{name}]", *(f"{key} = {value}" for key, value in values.items()), ""]
