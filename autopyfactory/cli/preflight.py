"""What ``autopyfactory check`` looks at beyond parsing: would this configuration work?

``check`` is the go-live gate, so besides the configuration and schedconfig it judges what a
factory needs on its host and around it, and says so per finding:

* the credential files the pilots carry (``x509userproxy``, ``scitokensFile``) and the PanDA
  token file: missing, unreadable, expired or below ``proxyMinLifetime`` is an error, below twice
  that a warning; the same rule (credentials.check_credential) the run applies every cycle;
  an ARC-CE label with neither a proxy nor a token is an error (every pilot would be held);
* the pilot wrapper (``executable``): it must exist and be executable on this host (condor
  transfers it from here; the local backend runs it);
* what ``migrate-apf2`` could not carry over from APF 2 (``[Factory] unmigrated``): a warning a line;
* values left from etc/factory.conf.example: ``factoryId = example-factory`` and any host under
  ``example.org``;
* secrets every user of the host can read (world-readable): the proxies (they hold their private
  key) and token files the pilots carry, ``pandaTokenFile``, the client ``proxy``, and factory.conf
  itself when it holds ``monitorToken``; an error naming the ``chmod`` (group-readable, the RPM's
  ``0640 root:autopyfactory``, is how the service user reads them);
* a loopback ``monitorURL`` or ``pandaserver`` while pilots run on other hosts (``batch =
  condor``): their reports could never arrive, and they would ask their own node for jobs;
* with ``--online`` (:func:`online_findings`): PanDA answers the statistics the cycle will ask
  (the detailed ones when a label counts only some resource types or job labels; a server with no
  job at all is "ok, no jobs"), the schedconfig source and the monitor answer, and the monitor
  accepts ``monitorToken`` (an empty, side-effect-free ``PUT /labels``).

Every rule is a small function returning findings; add new rules to :func:`config_findings`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from autopyfactory.config import schema
from autopyfactory.config.loader import FactoryConfig
from autopyfactory.config.schema import Scope
from autopyfactory.domain.credentials import CredentialKind, CredentialState, missing_credential
from autopyfactory.domain.demand import PandaError
from autopyfactory.domain.label import Label, Setting, Source, needs_detailed_statistics
from autopyfactory.domain.policy import ClassicOptions
from autopyfactory.edges.credentials import VomsProbe, check_credential
from autopyfactory.edges.panda import EmptyStatistics, PandaClient

ERROR, WARNING, OK = "error", "warning", "ok"

#: The example's factory name and domain: left in a live config, they are placeholders.
EXAMPLE_FACTORY_ID = "example-factory"
_EXAMPLE_HOST = re.compile(r"(?<![\w.-])(?:[\w-]+\.)*example\.org\b", re.IGNORECASE)

LOCAL_BATCH = "local"


@dataclass(frozen=True)
class Finding:
    level: str  # ERROR, WARNING or OK
    message: str

    def to_json(self) -> dict[str, str]:
        return {"level": self.level, "message": self.message}


# --- showing values --------------------------------------------------------------------------


def show(value: object) -> str:
    """A setting's value as an operator writes it: never ``None``, ``frozenset()`` or ``True``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset | set):
        return ", ".join(str(v) for v in sorted(value, key=str)) or "-"
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value) or "-"


def json_value(value: object) -> object:
    if isinstance(value, frozenset | set):
        return sorted(value, key=str)
    if isinstance(value, tuple):
        return list(value)
    return value


def summary_line(label: Label) -> str:
    """One line per label: where its pilots go and the settings that size them."""
    r, p = label.resources, label.policy
    queue = f" queue={label.ce.queue}" if label.ce.queue else ""
    return (
        f"{label.name}  PQ={label.pq} {label.ce.flavour} {label.ce.endpoint}{queue}"
        f" status={label.status.value} batch={label.batch} cores={r.corecount} rss={r.maxrss}MB"
        f" time={r.maxtime}s schedplugin={show(p.schedplugin)} nqueue={p.of(ClassicOptions).nqueue}"
        + (f" rt={label.resource_type}" if label.resource_type else "")
        + f" jobs={','.join(label.job_labels) or 'none'}"
    )


def label_json(label: Label) -> dict[str, Any]:
    r = label.resources
    return {
        "name": label.name,
        "queue": label.queue,
        "pq": label.pq,
        "ce": {"flavour": label.ce.flavour, "endpoint": label.ce.endpoint, "queue": label.ce.queue},
        "status": label.status.value,
        "batch": label.batch,
        "resources": {
            "corecount": r.corecount,
            "maxrss": r.maxrss,
            "maxtime": r.maxtime,
            "maxwdir": r.maxwdir,
        },
        "resource_type": label.resource_type,
        "job_labels": list(label.job_labels),
        "cric_limits": {
            "resource_type_limits": dict(label.limits.resource_type_limits),
            "maxNewWorkersPerCycle": label.limits.max_new_per_cycle,
            "nQueueLimitWorker": label.limits.queue_limit,
        },
        "settings": {
            key: {"value": json_value(s.value), "source": s.source.value, "origin": s.origin}
            for key, s in sorted(label.settings.items(), key=lambda item: item[0].lower())
        },
    }


# --- the rules -------------------------------------------------------------------------------


def config_findings(
    cfg: FactoryConfig, labels: Sequence[Label], now: datetime, voms: VomsProbe | None
) -> list[Finding]:
    """Everything ``check`` judges offline, errors first within each rule."""
    return [
        *credential_findings(cfg, labels, now, voms),
        *arc_credential_findings(labels),
        *executable_findings(labels),
        *placeholder_findings(cfg, labels),
        *secret_mode_findings(cfg, labels),
        *loopback_findings(cfg, labels),
        *unmigrated_findings(cfg),
    ]


def unmigrated_findings(cfg: FactoryConfig) -> Iterator[Finding]:
    """A warning per line of ``[Factory] unmigrated``: an APF 2 setting with no equivalent here
    (written by ``migrate-apf2``; the operator deletes a line once it is handled)."""
    for line in cfg.factory.migration.unmigrated.splitlines():
        if line.strip():
            yield Finding(WARNING, f"not migrated from APF 2: {line.strip()}")


def _users(labels: Iterable[Label], path_of: Callable[[Label], str]) -> dict[str, list[str]]:
    """Each configured path and the labels using it, in first-seen order."""
    users: dict[str, list[str]] = {}
    for label in labels:
        path = path_of(label)
        if path:
            users.setdefault(path, []).append(label.name)
    return users


def _used_by(names: Sequence[str]) -> str:
    return f"label {names[0]}" if len(names) == 1 else f"{len(names)} labels, e.g. {names[0]}"


def credential_findings(
    cfg: FactoryConfig, labels: Sequence[Label], now: datetime, voms: VomsProbe | None
) -> Iterator[Finding]:
    minimum = cfg.factory.credentials.min_lifetime
    files: list[tuple[str, CredentialKind, str]] = [
        (path, CredentialKind.PROXY, _used_by(names))
        for path, names in _users(labels, lambda label: label.submit.x509userproxy).items()
    ]
    files += [
        (path, CredentialKind.TOKEN, _used_by(names))
        for path, names in _users(labels, lambda label: label.submit.scitokens_file).items()
    ]
    if cfg.factory.panda.token_file:
        files.append((cfg.factory.panda.token_file, CredentialKind.TOKEN, "pandaTokenFile"))
    for path, kind, who in files:
        verdict = check_credential(path, kind, minimum, now, voms)
        if verdict.state is CredentialState.OK:
            continue
        level = WARNING if verdict.state is CredentialState.WARN else ERROR
        yield Finding(level, f"{verdict.message} ({who})")


def arc_credential_findings(labels: Sequence[Label]) -> Iterator[Finding]:
    """An ARC-CE label needs a proxy or a token: without one HTCondor's gridmanager holds every
    pilot ("ARC job has no credentials") before it reaches the CE. The run applies the same rule
    (domain/credentials.py) and submits nothing for such a label."""
    missing: dict[str, list[str]] = {}
    for label in labels:
        if why := missing_credential(label):
            missing.setdefault(why, []).append(label.name)
    for why, names in missing.items():
        yield Finding(ERROR, f"{why} ({_used_by(names)})")


def executable_findings(labels: Sequence[Label]) -> Iterator[Finding]:
    for path, names in _users(labels, lambda label: label.submit.executable).items():
        problem = _not_runnable(Path(path))
        if problem:
            yield Finding(ERROR, f"executable {path}: {problem} ({_used_by(names)})")


def _not_runnable(path: Path) -> str:
    if not path.is_absolute():
        return "not an absolute path"
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    if not os.access(path, os.X_OK):
        return "not executable (chmod +x)"
    return ""


def placeholder_findings(cfg: FactoryConfig, labels: Sequence[Label]) -> Iterator[Finding]:
    """Values left from etc/factory.conf.example."""
    f = cfg.factory
    if f.identity.factory_id == EXAMPLE_FACTORY_ID:
        yield Finding(
            ERROR,
            f"[Factory] factoryId = {f.identity.factory_id}: the example's placeholder; name this factory",
        )
    values = f.by_key()
    for option in schema.options(Scope.FACTORY):
        value = values[option.key]
        if isinstance(value, str) and _EXAMPLE_HOST.search(value):
            yield Finding(ERROR, f"[Factory] {option.key} = {value}: a placeholder host from the example")
    seen: set[tuple[str, str]] = set()
    for label in labels:
        for key, setting in label.settings.items():
            if _is_placeholder(setting) and (key, setting.origin) not in seen:
                seen.add((key, setting.origin))
                yield Finding(
                    ERROR,
                    f"{key} = {show(setting.value)} ({setting.origin}): a placeholder host from the example",
                )


def _is_placeholder(setting: Setting) -> bool:
    return setting.source is not Source.DEFAULT and bool(_EXAMPLE_HOST.search(show(setting.value)))


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_findings(cfg: FactoryConfig, labels: Sequence[Label]) -> Iterator[Finding]:
    """URLs the pilots are given that name this host, while pilots run on other hosts."""
    remote = [label.name for label in labels if label.batch != LOCAL_BATCH]
    monitor, panda = cfg.factory.monitor.url, cfg.factory.panda.server
    if monitor and remote and is_loopback(monitor):
        yield Finding(
            ERROR,
            f"[Factory] monitorURL = {monitor} is a loopback address, but pilots of {_used_by(remote)} run"
            " on other hosts: their reports cannot reach it (give the monitor's public name)",
        )
    if remote and is_loopback(panda):
        base = panda.rsplit(":", 1)[0] if urlparse(panda).port else panda
        yield Finding(
            ERROR,
            f"[Factory] pandaserver = {panda} is a loopback address, but pilots of {_used_by(remote)} run"
            f" on other hosts: they would be sent to --url {base} (give the PanDA server's public name)",
        )


#: What a secret file holds, by the kind of credential, for the message.
_HOLDS = {CredentialKind.PROXY: "a proxy and its key", CredentialKind.TOKEN: "a token"}


def secret_mode_findings(cfg: FactoryConfig, labels: Sequence[Label]) -> Iterator[Finding]:
    """Secrets any user of the host can read: an error per file, naming the chmod that fixes it."""
    for path, kind, who in _secret_files(cfg, labels):
        try:
            mode = os.stat(path).st_mode
        except OSError:  # missing or unreadable: the credential rule says so
            continue
        if mode & stat.S_IROTH:
            yield Finding(
                ERROR,
                f"{path}: readable by every user of this host (mode {stat.S_IMODE(mode):04o}) and holds"
                f" {_HOLDS[kind]} ({who}): chmod o-rwx {path}",
            )


def _secret_files(cfg: FactoryConfig, labels: Sequence[Label]) -> list[tuple[str, CredentialKind, str]]:
    """Every file holding a secret: (path, what kind, who uses it)."""
    f = cfg.factory
    files = [
        (path, CredentialKind.PROXY, _used_by(names))
        for path, names in _users(labels, lambda label: label.submit.x509userproxy).items()
    ]
    files += [
        (path, CredentialKind.TOKEN, _used_by(names))
        for path, names in _users(labels, lambda label: label.submit.scitokens_file).items()
    ]
    if f.panda.token_file:
        files.append((f.panda.token_file, CredentialKind.TOKEN, "pandaTokenFile"))
    if f.http.proxy:
        files.append((f.http.proxy, CredentialKind.PROXY, "[Factory] proxy"))
    if f.monitor.token:
        files.append((cfg.path, CredentialKind.TOKEN, "[Factory] monitorToken"))
    return files


# --- --online --------------------------------------------------------------------------------


def online_findings(
    cfg: FactoryConfig,
    session: requests.Session,
    schedconfig_source: str,
    schedconfig_location: str,
    labels: Sequence[Label],
) -> list[Finding]:
    """Reachability of PanDA (asked what the cycle of ``labels`` will ask), the schedconfig source
    and the monitor; whether the token is accepted."""
    f = cfg.factory
    found = [
        _panda_finding(cfg, session, needs_detailed_statistics(labels)),
        _schedconfig_finding(schedconfig_source, schedconfig_location),
    ]
    if f.monitor.url:
        found += _monitor_findings(
            f.monitor.url, f.monitor.token, f.identity.factory_id, session, f.http.timeout
        )
    return found


def _panda_finding(cfg: FactoryConfig, session: requests.Session, detailed: bool) -> Finding:
    f = cfg.factory
    client = PandaClient(f.panda.server, session, f.http.timeout, f.panda.token_file, f.panda.vo)
    why = (
        " (the cycle asks the detailed statistics: some labels count only some resource types or job labels)"
        if detailed
        else ""
    )
    try:
        sites = client.fetch(detailed)
    except EmptyStatistics:
        return Finding(
            OK,
            f"PanDA {f.panda.server}: ok, no jobs (success: false without data, which a real server"
            " answers when it has no job at all, and also when its database fails)",
        )
    except PandaError as exc:
        return Finding(ERROR, f"PanDA: {exc}{why}")
    return Finding(OK, f"PanDA {f.panda.server}: answers, job statistics for {len(sites)} sites")


def _schedconfig_finding(source: str, location: str) -> Finding:
    if not source:
        return Finding(ERROR, f"schedconfig {location}: not available")
    if source != location:
        return Finding(ERROR, f"schedconfig {location}: not reachable; only the {source}")
    return Finding(OK, f"schedconfig {location}: answers")


def _monitor_findings(
    url: str, token: str, factory_id: str, session: requests.Session, timeout: float
) -> list[Finding]:
    root = url.rstrip("/")
    try:
        health = session.get(f"{root}/health", timeout=timeout)
    except requests.RequestException as exc:
        return [Finding(ERROR, f"monitor {root}: {exc}")]
    if health.status_code != 200:
        return [Finding(ERROR, f"monitor {root}/health: HTTP {health.status_code}")]
    found = [Finding(OK, f"monitor {root}: answers")]
    if not token:
        return [
            *found,
            Finding(ERROR, "monitor: monitorToken is not set; the monitor will refuse every update"),
        ]
    try:  # an empty label list: authenticated, writes nothing
        answer = session.put(
            f"{root}/labels", json=[], headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        known = session.get(f"{root}/factories/{factory_id}", timeout=timeout)
    except requests.RequestException as exc:
        return [*found, Finding(ERROR, f"monitor {root}: {exc}")]
    if answer.status_code in (401, 403):
        return [
            *found,
            Finding(ERROR, f"monitor: monitorToken rejected (HTTP {answer.status_code}): {_detail(answer)}"),
        ]
    if answer.status_code != 200:
        return [*found, Finding(ERROR, f"monitor {root}/labels: HTTP {answer.status_code}")]
    found.append(Finding(OK, "monitor: monitorToken accepted"))
    if known.status_code == 404:
        found.append(
            Finding(
                ERROR, f"monitor: no factory {factory_id!r} (autopyfactory-monitor add-factory {factory_id})"
            )
        )
    return found


def _detail(answer: requests.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    detail = body.get("detail", body) if isinstance(body, Mapping) else body
    return str(detail)[:200]
