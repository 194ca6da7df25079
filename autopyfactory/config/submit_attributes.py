"""``submitAttributes``: a site's own HTCondor submit commands for a queue's pilots.

Written in factory.conf as a multi-line value, one ``key = value`` per line, in HTCondor's submit
language exactly as in a submit file (``$(...)`` macros expand as condor_submit expands them)::

    submitAttributes =
        accounting_group = group_atlas.prod
        +AccountingGroup = "group_atlas.prod"
        requirements = (OpSysAndVer == "AlmaLinux9")

They follow the factory's own lines in each of the queue's labels' submit descriptions (and only
there: every label is its own cluster). Each is checked when the configuration is loaded, with
HTCondor's own submit parser and, for ``+``/``MY.`` attributes and expression commands, its ClassAd
parser. A key the factory writes itself is refused with the setting to use instead: the factory's
tags (FactoryId, MATCH_APF_QUEUE, APF_*), the periodic policy, credentials, environment, arguments,
executable, logs, universe, grid resource, the pilot's size and the queue statement; overriding one
would break the census, the monitor, the credential checks or the demand the factory computed.
"""

from __future__ import annotations

import re

import classad2
import htcondor2

_KEY = re.compile(r"^(?:\+|MY\.)?[A-Za-z_][A-Za-z0-9_.]*$", re.IGNORECASE)
#: Submit commands whose value is a ClassAd expression (besides ``+``/``MY.`` attributes).
EXPRESSIONS = frozenset({"requirements", "rank", "on_exit_hold", "on_exit_remove", "next_job_start_delay"})

_TAGS = "the factory's own tag (the census, housekeeping and the monitor rely on it)"
_POLICY = (
    "the periodic policy is the factory's: holdIdleAfter, holdRerun, removeHeldAfter/IdleAfter/RunningAfter"
)
_CREDENTIALS = "credentials are set with x509userproxy or scitokensFile (checked every cycle)"
_CE = "the CE comes from CRIC (or ceFlavour, ceEndpoint)"
#: Keys the factory writes itself (lower case, ``+X`` as ``my.x``) -> what to set instead.
OWNED: dict[str, str] = {
    "my.factoryid": _TAGS,
    "my.match_apf_queue": _TAGS,
    "x509userproxy": _CREDENTIALS,
    "use_x509userproxy": _CREDENTIALS,
    "my.x509userproxy": _CREDENTIALS,
    "scitokens_file": _CREDENTIALS,
    "use_scitokens": _CREDENTIALS,
    "my.scitokensfile": _CREDENTIALS,
    "environment": "the environment is schedconfig's environ (the factory adds its own variables)",
    "env": "the environment is schedconfig's environ (the factory adds its own variables)",
    "environment2": "the environment is schedconfig's environ (the factory adds its own variables)",
    "getenv": "the environment is schedconfig's environ (the factory adds its own variables)",
    "my.environment": "the environment is schedconfig's environ (the factory adds its own variables)",
    "my.env": "the environment is schedconfig's environ (the factory adds its own variables)",
    "arguments": "set arguments (the wrapper's) or pilotExtraArgs (pilot 3's)",
    "args": "set arguments (the wrapper's) or pilotExtraArgs (pilot 3's)",
    "arguments2": "set arguments (the wrapper's) or pilotExtraArgs (pilot 3's)",
    "my.arguments": "set arguments (the wrapper's) or pilotExtraArgs (pilot 3's)",
    "my.args": "set arguments (the wrapper's) or pilotExtraArgs (pilot 3's)",
    "executable": "set executable",
    "my.cmd": "set executable",
    "output": "the pilots' logs go to baseLogDir",
    "error": "the pilots' logs go to baseLogDir",
    "log": "the pilots' logs go to baseLogDir",
    "my.out": "the pilots' logs go to baseLogDir",
    "my.err": "the pilots' logs go to baseLogDir",
    "my.userlog": "the pilots' logs go to baseLogDir",
    "universe": _CE,
    "my.jobuniverse": _CE,
    "grid_resource": _CE,
    "my.gridresource": _CE,
    "queue": "the factory decides how many pilots to queue",
    "request_cpus": "set corecount",
    "my.requestcpus": "set corecount",
    "my.xcount": "set corecount",
    "request_memory": "set maxrss",
    "my.requestmemory": "set maxrss",
    "my.maxmemory": "set maxrss",
    "request_disk": "set maxwdir",
    "my.requestdisk": "set maxwdir",
    "my.maxwalltime": "set maxtime",
    "my.remote_queue": "set ceQueue",
    "arc_resources": "the ARC resources come from corecount, maxrss, maxtime and ceQueue",
    "my.arcresources": "the ARC resources come from corecount, maxrss, maxtime and ceQueue",
    "arc_rte": "the factory asks for ENV/PROXY when the pilots carry a proxy",
    "my.arcrte": "the factory asks for ENV/PROXY when the pilots carry a proxy",
}
#: Key prefixes the factory owns (lower case): its APF_* tags and the periodic expressions.
OWNED_PREFIXES = {"my.apf_": _TAGS, "periodic_": _POLICY, "my.periodic": _POLICY}


def normal_key(key: str) -> str:
    """A submit key as HTCondor reads it: case-insensitive, ``+X`` the same as ``MY.X``."""
    lower = key.strip().lower()
    return "my." + lower[1:] if lower.startswith("+") else lower


def owned(key: str) -> str:
    """What to set instead when the factory writes ``key`` itself; "" when the site may set it."""
    normal = normal_key(key)
    if normal in OWNED:
        return OWNED[normal]
    return next((why for prefix, why in OWNED_PREFIXES.items() if normal.startswith(prefix)), "")


def parse_submit_attributes(text: str) -> tuple[tuple[str, str], ...]:
    """The (key, value) entries of a ``submitAttributes`` value, checked; ValueError naming the
    entry and what is wrong."""
    entries: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for line in (line.strip() for line in text.splitlines()):
        if not line:
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if re.split(r"[\s=]", line, maxsplit=1)[0].lower() == "queue":
            raise ValueError(f"{line!r}: the factory decides how many pilots to queue")
        if not sep or not key:
            raise ValueError(f"{line!r}: expected 'key = value' (one HTCondor submit command per line)")
        if not _KEY.match(key):
            raise ValueError(f"{line!r}: {key!r} is not a submit command or +Attribute name")
        if why := owned(key):
            raise ValueError(f"{line!r}: {key} is written by the factory itself ({why})")
        if not value:
            raise ValueError(f"{line!r}: a value is required")
        if normal_key(key) in seen:
            raise ValueError(f"{line!r}: {key} is already set ({seen[normal_key(key)]!r})")
        seen[normal_key(key)] = line
        _check(key, value, line)
        entries.append((key, value))
    return tuple(entries)


def _check(key: str, value: str, line: str) -> None:
    """HTCondor's submit parser on the entry; the ClassAd parser on an expression's value."""
    try:
        description = htcondor2.Submit(f"{key} = {value}\n")
    except (ValueError, RuntimeError, htcondor2.HTCondorException) as exc:
        raise ValueError(f"{line!r}: HTCondor's submit parser refuses it: {exc}") from None
    normal = normal_key(key)
    if normal.startswith("my.") or normal in EXPRESSIONS:
        stored = next(name for name in description if normal_key(name) == normal)
        try:
            classad2.ExprTree(str(description[stored]))
        except classad2.ClassAdException as exc:
            raise ValueError(f"{line!r}: not a ClassAd expression: {exc}") from None
