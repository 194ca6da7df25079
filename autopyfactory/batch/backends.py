"""The backend registry: every batch backend by the name a queue's ``batch`` setting gives it,
built from the factory's settings.

One construction for the factory (runtime/service.py) and the cron helpers (cron/): both ask
the same schedds (the factory-wide one, the queue sections' own, the remembered ones) and the
same local registry. It reads the configuration through two small protocols, so the batch
package stays below the configuration: the loader's ``FactorySettings`` and ``QueueConfig`` fit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from autopyfactory.batch.condor.backend import CondorBackend
from autopyfactory.batch.condor.census import RECENT_SECONDS
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.condor.schedds import MEMORY_FILE, SubmissionMemory
from autopyfactory.batch.interface import Backend
from autopyfactory.batch.local.backend import LocalBackend

#: Pilots submitted in the last RECENT_CYCLES cycles (at least MIN_RECENT_WINDOW seconds) must be
#: in condor_q or condor_history, else that schedd's census is suspect (batch/condor/schedds.py); at most
#: RECENT_SECONDS, the span within which the census lists pilot ids.
RECENT_CYCLES = 3
MIN_RECENT_WINDOW = 300.0


class IdentityView(Protocol):
    @property
    def factory_id(self) -> str: ...
    @property
    def state_dir(self) -> str: ...
    @property
    def sleep(self) -> int: ...


class CondorView(Protocol):
    @property
    def schedd(self) -> str: ...
    @property
    def pool(self) -> str: ...
    @property
    def timeout(self) -> float: ...


class LocalView(Protocol):
    @property
    def max_running(self) -> int | None: ...
    @property
    def kill_grace(self) -> float: ...


class MonitorView(Protocol):
    @property
    def pilot_keys(self) -> bool: ...


class BatchSettings(Protocol):
    """The factory settings the backends are built from (the groups of ``[Factory]`` they read)."""

    @property
    def identity(self) -> IdentityView: ...
    @property
    def monitor(self) -> MonitorView: ...
    @property
    def condor(self) -> CondorView: ...
    @property
    def local(self) -> LocalView: ...


class QueueSection(Protocol):
    """A queue section of factory.conf: its value of a key before schedconfig is applied."""

    def get(self, key: str) -> object: ...


def configured_schedds(settings: BatchSettings, queues: Sequence[QueueSection]) -> list[Schedd]:
    """The schedds the condor queue sections name (``condorSchedd``/``condorPool`` overrides)."""
    return [
        Schedd(
            str(queue.get("condorSchedd") or settings.condor.schedd),
            str(queue.get("condorPool") or settings.condor.pool),
        )
        for queue in queues
        if queue.get("batch") == CondorBackend.name
    ]


def build_backends(
    settings: BatchSettings,
    queues: Sequence[QueueSection] = (),
    *,
    read_only: bool = False,
    stop_requested: Callable[[], bool] | None = None,
) -> dict[str, Backend]:
    """The batch backends by name; ``read_only`` (a dry run): the local census and the memory of
    submissions (schedds.json) change nothing."""
    identity, condor, local = settings.identity, settings.condor, settings.local
    memory = SubmissionMemory(
        Path(identity.state_dir) / MEMORY_FILE,
        time.time,
        min(max(RECENT_CYCLES * identity.sleep, MIN_RECENT_WINDOW), RECENT_SECONDS),
        read_only=read_only,  # a dry run never writes the live state dir
    )
    return {
        CondorBackend.name: CondorBackend(
            identity.factory_id,
            Schedd(condor.schedd, condor.pool),
            condor.timeout,
            memory=memory,
            stop_requested=stop_requested,
            configured=configured_schedds(settings, queues),
            pilot_keys=settings.monitor.pilot_keys,
        ),
        LocalBackend.name: LocalBackend(
            identity.factory_id,
            Path(identity.state_dir),
            time.time,
            local.max_running,
            kill_grace=local.kill_grace,
            read_only=read_only,
            pilot_keys=settings.monitor.pilot_keys,
        ),
    }
