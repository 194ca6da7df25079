"""The parts of an APF 2 queue that need translating, not renaming: the pilot's arguments, the
submit attributes (``condor_attributes``) and the ARC RSL.

APF 1 and 2 started pilot 1/2 through ``runpilot3.sh``/``wrapper.sh`` with pilot 1's grammar
(``-s SITE -h QUEUE -p 25443 -w https://pandaserver.cern.ch -u managed``). Pilot 3 reads those
words differently (``-h`` is its help, ``-w`` its workflow, ``-u`` a flag) and the wrapper refuses
them (exit 118), so they become this factory's keys: the site ``siteid``, the job label
``jobLabel``, the server ``pandaserver``, pilot 3 words ``pilotExtraArgs``. What APF 2 wrote as
submit attributes becomes the keys that size the pilot (``+xcount`` → ``corecount``,
``+maxMemory`` → ``maxrss``, ``+maxWallTime`` → ``maxtime``, ``+remote_queue`` → ``ceQueue``; ARC's
``count``, ``memory``, ``walltime``, ``queue``), and a site's own attributes are carried as
``submitAttributes``. Attributes the factory writes itself are never carried: they are listed.

Everything here is pure: text in, values and the reasons out.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: Placeholders read_apf puts where APF 2 had %(wmsqueue)s (the site) and %(batchqueue)s (the PQ).
SITE, PQ = "%(siteid)s", "%(pq)s"
#: pilot 3's workflows (its pilot.py -w choices)
WORKFLOWS = frozenset(
    {
        "generic",
        "generic_hpc",
        "production",
        "production_hpc",
        "analysis",
        "analysis_hpc",
        "eventservice_hpc",
        "stager",
        "payload_stageout",
    }
)
#: Options of APF 2's wrapper.sh and of the pilot 1 code it fetched: runpilot3-wrapper.sh fetches
#: and starts pilot 3 by itself.
WRAPPER_SH_OPTIONS = frozenset(
    {
        "--wrappergrid",
        "--wrappervo",
        "--wrapperwmsqueue",
        "--wrapperbatchqueue",
        "--wrappertarballurl",
        "--wrapperserverurl",
        "--wrapperloglevel",
        "--wrapperpurpose",
        "--wrapperspecialcmd",
        "--wrapperplugin",
        "--wrapperpilottype",
        "--wrappermode",
        "--script",
        "--libcode",
        "--pilotsrcurl",
    }
)
#: Pilot 3 flags (no value) and runpilot3-wrapper.sh options kept as they are.
PILOT3_FLAGS = frozenset(
    {"-d", "-t", "-z", "--no-pilot-log", "--use-realtime-logging", "--container", "--mute", "--localpy"}
)
#: Pilot 3 / wrapper options with a value that have a key of their own here.
KEYED_OPTIONS: Mapping[str, str] = {
    "-i": "pilotType",
    "--pilot-user": "pilotUser",
    "--piloturl": "pilotURL",
    "--pilotversion": "pilotVersion",
}
#: Pilot 3 / wrapper options with a value kept as they are (they go to pilotExtraArgs).
KEPT_WITH_VALUE = frozenset(
    {
        "-k",
        "-l",
        "--lifetime",
        "-L",
        "--leasetime",
        "--pythonversion",
        "--resource-type",
        "--queuedata-url",
        "--storagedata-url",
        "--cacert",
        "--capath",
        "--job-type",
        "--use-https",
    }
)
#: Pilot 1 words with no meaning for pilot 3.
BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "0", "1"})


@dataclass
class Translation:
    """This factory's keys for some APF 2 values, and what became of the rest.

    ``keys``: key -> value; ``notes``: how something was translated or why it was not needed
    (information); ``unmapped``: what has no equivalent, with what to do instead (``check`` warns).
    ``server``: the PanDA server the pilots were sent to (``https://host:port``), if one was named.
    """

    keys: dict[str, str] = field(default_factory=dict)
    attributes: list[tuple[str, str]] = field(default_factory=list)  # submitAttributes
    notes: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    server: str = ""


# --- pilot arguments ------------------------------------------------------------------------------


@dataclass
class _Words:
    """What the argument words said so far: the translation, the words kept for pilot 3, the server."""

    out: Translation
    extra: list[str] = field(default_factory=list)
    wrapper_sh: list[str] = field(default_factory=list)  # APF 2's wrapper.sh options (not needed)
    url: str = ""
    port: str = ""


def translate_arguments(text: str) -> Translation:
    """APF 1/2 pilot arguments (pilot 1 or wrapper.sh grammar, or already pilot 3's) as keys."""
    words = _Words(Translation())
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        words.out.unmapped.append(f"{text}: cannot be split into words ({exc}): write arguments by hand")
        return words.out
    i = 0
    while i < len(argv):
        value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else ""
        i += _word(argv[i], value, words)
    if words.extra:
        words.out.keys["pilotExtraArgs"] = shlex.join(words.extra)
    if words.wrapper_sh:
        words.out.notes.append(
            f"{' '.join(words.wrapper_sh)}: APF 2's wrapper.sh options, not needed (runpilot3-wrapper.sh"
            " fetches and starts pilot 3 itself)"
        )
    if words.url:
        words.out.server = _server(words.url, words.port)
    return words.out


def _word(word: str, value: str, words: _Words) -> int:
    """Translate the option ``word`` (with the next word, ``value``, when it is no option); how
    many words it took."""
    name, inline, given = word.partition("=")
    if name.startswith("--") and inline:
        _option(name, given, words)
        return 1
    if value and (word in _WITH_VALUE or word in KEYED_OPTIONS or word in KEPT_WITH_VALUE):
        _option(word, value, words)
        return 2
    if word in PILOT3_FLAGS or word == "-u":
        words.extra.append(word)
    else:
        words.out.unmapped.append(f"{word}: unknown to pilot 3 and runpilot3-wrapper.sh (left out)")
    return 1


def _option(name: str, value: str, words: _Words) -> None:
    out = words.out
    if name in _WITH_VALUE:
        _WITH_VALUE[name](value, words)
    elif name in KEYED_OPTIONS:
        out.keys[KEYED_OPTIONS[name]] = value
    elif name in KEPT_WITH_VALUE:
        words.extra += [name, value]  # two words: runpilot3-wrapper.sh reads its options so
    elif name in WRAPPER_SH_OPTIONS:
        words.wrapper_sh.append(f"{name}={value}")
    else:
        out.unmapped.append(f"{name}={value}: unknown to pilot 3 and runpilot3-wrapper.sh (left out)")


def _site(value: str, words: _Words) -> None:
    if value != SITE:
        words.out.keys["siteid"] = value


def _queue(value: str, words: _Words) -> None:
    if value != PQ:
        why = (
            "here pilots ask for the section's PanDA queue (wmsqueue): set wmsqueue if that is what was meant"
        )
        words.out.unmapped.append(f"-h/-q {value}: the pilots asked for this queue; {why}")


def _port(value: str, words: _Words) -> None:
    words.port = value


def _url(value: str, words: _Words) -> None:
    words.url = value


def _w(value: str, words: _Words) -> None:
    """Pilot 1's ``-w`` is the server's URL, pilot 3's the workflow."""
    if "://" in value:
        words.url = value
    elif value in WORKFLOWS:
        words.extra += [] if value == "generic" else ["-w", value]  # the factory passes -w generic
    else:
        words.out.unmapped.append(f"-w {value}: neither a server URL nor a pilot 3 workflow (left out)")


def _job_label(value: str, words: _Words) -> None:
    """Pilot 1's ``-u managed|user|ptest`` (or pilot 3's ``-j``); pilot 1's ``-j true|false``."""
    if value.lower() in BOOLEAN_WORDS:
        words.out.notes.append(f"-j {value}: pilot 1's job recovery switch, no pilot 3 option (left out)")
    else:
        words.out.keys["jobLabel"] = value


def _memory(value: str, words: _Words) -> None:
    """runpilot3.sh's ``-k MB`` (0: no limit) is runpilot3-wrapper.sh's ``-k MB`` too."""
    if value == "0":
        words.out.notes.append("-k 0: no memory limit, the default (left out)")
    else:
        words.extra += ["-k", value]


def _workdir(value: str, words: _Words) -> None:
    words.out.notes.append(f"-d {value}: pilot 1's work directory; runpilot3-wrapper.sh makes one (left out)")


def _resource(_value: str, _words: _Words) -> None:
    """Pilot 3's ``-r``: the factory passes ``-r <PQ>`` itself."""


_WITH_VALUE = {
    "-s": _site, "-h": _queue, "-q": _queue, "-r": _resource, "-p": _port, "-w": _w, "--url": _url,
    "-u": _job_label, "-j": _job_label, "--user": _job_label, "-k": _memory, "-d": _workdir,
}  # fmt: skip


def _server(url: str, port: str) -> str:
    """``https://host:port`` from pilot 1's ``-w URL`` and ``-p PORT`` (PanDA's https port by default)."""
    parts = urlsplit(url)
    scheme = parts.scheme or "https"
    default = "25443" if scheme == "https" else "25080"
    return f"{scheme}://{parts.hostname or ''}:{parts.port or port or default}"


# --- submit attributes ------------------------------------------------------------------------------

#: What the factory writes in every submit description itself: never carried as a site's attribute.
FACTORY_OWNED = frozenset(
    {
        "factoryid",
        "match_apf_queue",
        "x509userproxy",
        "use_x509userproxy",
        "scitokens_file",
        "environment",
        "env",
        "arguments",
        "executable",
        "output",
        "error",
        "log",
        "universe",
        "grid_resource",
        "queue",
    }
)
#: Attributes that size the pilot: the key here, and how to convert the value.
SIZING: Mapping[str, tuple[str, int]] = {
    "xcount": ("corecount", 1),
    "request_cpus": ("corecount", 1),
    "maxmemory": ("maxrss", 1),
    "request_memory": ("maxrss", 1),
    "maxwalltime": ("maxtime", 60),  # minutes
}
#: CE-specific resource requests the factory builds from the label itself.
CE_REQUESTS = frozenset({"cream_attributes", "globusrsl", "nordugrid_rsl", "arc_resources", "arc_rte"})


def split_condor_attributes(text: str) -> list[str]:
    r"""APF 2's ``condor_attributes``: comma-separated ``key = value`` items; ``\,`` is a literal comma."""
    return [item.replace("\0", ",").strip() for item in text.replace("\\,", "\0").split(",") if item.strip()]


def translate_attributes(items: Iterable[tuple[str, str]]) -> Translation:
    """Submit attributes (``name``, ``value``) as sizing keys, ``ceQueue``, site attributes, or listed."""
    out = Translation()
    for name, value in items:
        _attribute(name.strip(), value.strip(), out)
    return out


def _attribute(name: str, value: str, out: Translation) -> None:
    bare = name.lstrip("+").lower()
    if bare in SIZING:
        key, factor = SIZING[bare]
        number = value.strip('"')
        if number.isdigit():
            out.keys[key] = str(int(number) * factor)
            return
        out.unmapped.append(f"{name} = {value}: not a whole number; set {key} by hand")
    elif bare == "remote_queue":
        out.keys["ceQueue"] = value.strip('"')
    elif bare.startswith("periodic_"):
        out.unmapped.append(
            f"{name} = {value}: the factory writes periodic_hold and periodic_remove"
            " itself: set holdIdleAfter, holdRerun, removeHeldAfter, removeIdleAfter,"
            " removeRunningAfter"
        )
    elif bare in FACTORY_OWNED or bare.startswith("apf_"):
        out.unmapped.append(f"{name} = {value}: the factory writes {name} itself (left out)")
    elif bare in CE_REQUESTS:
        out.unmapped.append(
            f"{name} = {value}: the factory builds the CE's resource request from"
            " corecount, maxrss, maxtime and ceQueue (left out)"
        )
    else:
        out.attributes.append((name, value))


def attribute_items(option: str, value: str) -> list[tuple[str, str]]:
    """The attributes of one APF 2 option: ``condor_attributes`` (a list) or
    ``condor_attributes.<name>`` (one attribute)."""
    if option == "condor_attributes":
        items = [item.partition("=") for item in split_condor_attributes(value)]
        return [(key, val) if sep else (key, "") for key, sep, val in items]
    return [(option.removeprefix("condor_attributes."), value)]


# --- ARC RSL ------------------------------------------------------------------------------------------

_RELATION = re.compile(r"\(\s*([A-Za-z_]\w*)\s*=\s*([^()]*)\)")
#: xRSL times are minutes; APF 2's AGIS plugin wrote CRIC's maxtime (seconds) there. A "walltime"
#: above a week of minutes is read as seconds.
WEEK_IN_MINUTES = 7 * 24 * 60


def rsl_relations(text: str) -> list[tuple[str, str]]:
    """``(count = 8)(memory = 2000)`` -> [("count", "8"), ("memory", "2000")]."""
    return [(name.lower(), value.strip().strip('"').strip("'")) for name, value in _RELATION.findall(text)]


def translate_rsl(relations: Iterable[tuple[str, str]]) -> Translation:
    """ARC RSL relations as keys: count, memory (per core), walltime, queue; the rest listed."""
    out = Translation()
    listed = list(relations)
    count = dict(listed).get("count", "")
    cores = int(count) if count.isdigit() else 1
    for name, value in listed:
        _relation(name, value, cores, out)
    return out


def _relation(name: str, value: str, cores: int, out: Translation) -> None:
    number = int(value) if value.isdigit() else None
    if name == "count" and number:
        out.keys["corecount"] = str(number)
    elif name == "countpernode" and number == cores:
        pass
    elif name == "memory" and number:
        out.keys["maxrss"] = str(number * cores)  # ARC's memory is per core
    elif name == "walltime" and number:
        seconds = number if number > WEEK_IN_MINUTES else number * 60
        out.keys["maxtime"] = str(seconds)
        if number > WEEK_IN_MINUTES:
            out.notes.append(
                f"(walltime = {value}): more than a week of minutes, read as seconds (as APF 2's"
                f" AGIS plugin wrote CRIC's maxtime): maxtime = {seconds}"
            )
    elif name == "cputime" or name == "jobname":
        out.notes.append(f"({name} = {value}): not needed (the factory derives what ARC needs)")
    elif name == "queue":
        out.keys["ceQueue"] = value
    elif name == "runtimeenvironment" and value.upper() == "ENV/PROXY":
        out.notes.append(
            "(runtimeenvironment = ENV/PROXY): the factory asks for it when pilots carry a proxy"
        )
    else:
        out.unmapped.append(f"({name} = {value}): no equivalent in this factory's ARC request (left out)")
