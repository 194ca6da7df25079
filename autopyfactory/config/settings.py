"""The ``[Factory]`` section as typed settings, grouped by concern.

:class:`FactorySettings` is built once by the loader and handed to whoever needs a group of it
(the HTTP session its ``http``, the condor backend its ``condor``, ...), never read from deep
inside a module. Each field names the factory.conf key that fills it (:func:`key`); the key's
type, default and help are in the schema (``schema.py``), so a new key is one schema entry and one
field here. The keys themselves are unchanged by the grouping.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from autopyfactory.config.selection import QueueSelection

_KEY = "autopyfactory.key"


def key(name: str) -> Any:
    """A settings field filled from the ``[Factory]`` key ``name``."""
    return field(metadata={_KEY: name})


@dataclass(frozen=True)
class IdentitySettings:
    """Who the factory is, where it keeps its state and its queues, how often it cycles."""

    factory_id: str = key("factoryId")
    owner: str = key("factoryOwner")
    state_dir: str = key("stateDir")
    queues_dir: str = key("queuesDir")
    # PanDA queues chosen from CRIC (key() declares the field, no shared default: hence the noqa)
    queue_selection: QueueSelection | None = key("queues")  # noqa: RUF009
    sleep: int = key("sleep")


@dataclass(frozen=True)
class PandaSettings:
    server: str = key("pandaserver")  # base URL, no path
    token_file: str = key("pandaTokenFile")
    vo: str = key("pandaVO")
    max_age: int = key("pandaMaxAge")  # obsolete, accepted and ignored
    lag: int = key("pandaLag")  # seconds a started pilot still stands for a job in activated


@dataclass(frozen=True)
class SchedconfigSettings:
    location: str = key("schedconfig")  # http(s) URL, file:// URL or path
    refresh: int = key("schedconfigRefresh")
    cache: str = key("schedconfigCache")  # "": <stateDir>/schedconfig.json


@dataclass(frozen=True)
class HttpSettings:
    """PanDA and CRIC requests: per-request timeout, retries, client proxy and CAs."""

    timeout: float = key("httpTimeout")
    retries: int = key("httpRetries")
    proxy: str = key("proxy")
    ca_path: str = key("caPath")


@dataclass(frozen=True)
class CondorSettings:
    schedd: str = key("condorSchedd")
    pool: str = key("condorPool")
    timeout: float = key("condorTimeout")


@dataclass(frozen=True)
class LocalSettings:
    """``batch = local`` pilots."""

    max_running: int | None = key("localMaxRunning")
    kill_grace: float = key("localKillGrace")


@dataclass(frozen=True)
class CapSettings:
    """How many pilots: this factory's share of the demand, and the factory-wide caps."""

    num_factories: int = key("numFactories")
    max_per_cycle: int | None = key("maxPerCycle")
    max_pilots: int | None = key("maxPilots")


@dataclass(frozen=True)
class LogSettings:
    """The pilot log tree: where it is, how it is served, how it is cleaned up."""

    base_dir: str = key("baseLogDir")
    base_url: str = key("baseLogDirUrl")
    min_free_gb: float = key("logMinFreeGB")
    compress_days: int = key("logCompressDays")
    cleanup_interval: int = key("logCleanupInterval")


@dataclass(frozen=True)
class MonitorAccess:
    """Where the monitoring webservice is, and this factory's token there."""

    url: str = key("monitorURL")  # "": no monitor
    token: str = key("monitorToken")
    pilot_keys: bool = key("monitorPilotKeys")
    outbox_mb: float = key("monitorOutboxMB")


@dataclass(frozen=True)
class MetricsSettings:
    port: int = key("metricsPort")  # 0: off
    address: str = key("metricsAddress")


@dataclass(frozen=True)
class CredentialSettings:
    min_lifetime: int = key("proxyMinLifetime")


@dataclass(frozen=True)
class CronSettings:
    """The cron helpers ``mon-stale`` and ``mon-exiting``."""

    stale_idle: int = key("staleIdle")
    stale_running: int = key("staleRunning")
    stale_remove: bool = key("staleRemove")
    stale_remove_max: int = key("staleRemoveMax")
    exiting_lookback: int = key("monExitingLookback")
    awol_grace: int = key("awolGrace")


@dataclass(frozen=True)
class MigrationSettings:
    """What is left to do after ``migrate-apf2``."""

    unmigrated: str = key("unmigrated")  # one APF 2 setting a line; "": nothing


@dataclass(frozen=True)
class FactorySettings:
    """The ``[Factory]`` section, typed and grouped."""

    identity: IdentitySettings
    panda: PandaSettings
    schedconfig: SchedconfigSettings
    http: HttpSettings
    condor: CondorSettings
    local: LocalSettings
    caps: CapSettings
    logs: LogSettings
    monitor: MonitorAccess
    metrics: MetricsSettings
    credentials: CredentialSettings
    cron: CronSettings
    migration: MigrationSettings

    @classmethod
    def from_values(cls, values: typing.Mapping[str, object]) -> FactorySettings:
        """The settings from a value for every ``[Factory]`` key (as the schema resolves them)."""
        return cls(
            **{
                name: group(**{f.name: values[f.metadata[_KEY]] for f in fields(group)})
                for name, group in _groups()
            }
        )

    def by_key(self) -> dict[str, object]:
        """Every ``[Factory]`` key with its value."""
        return {
            f.metadata[_KEY]: getattr(getattr(self, name), f.name)
            for name, group in _groups()
            for f in fields(group)
        }

    @property
    def schedconfig_cache_path(self) -> Path:
        return Path(self.schedconfig.cache or Path(self.identity.state_dir) / "schedconfig.json")


def _groups() -> Iterator[tuple[str, type[Any]]]:
    hints = typing.get_type_hints(FactorySettings)
    return ((f.name, hints[f.name]) for f in fields(FactorySettings))
