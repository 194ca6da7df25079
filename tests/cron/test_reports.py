"""The cron helpers mon-exiting and mon-stale against the HTCondor emulator and the real monitor
service (uvicorn on 127.0.0.1, SQLite), run as an operator runs them: ``autopyfactory mon-... -c``."""

from __future__ import annotations

import fcntl
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.condor.schedds import MEMORY_FILE, SubmissionMemory
from autopyfactory.batch.interface import SubmitContext
from autopyfactory.batch.local.backend import LocalBackend
from autopyfactory.batch.local.registry import FinishedPilot
from autopyfactory.cli import main as cli
from autopyfactory.config import loader as config
from autopyfactory.config.autoconfigure import build_labels, possible_label_names
from autopyfactory.cron.exiting import CHECKPOINT_FILE
from autopyfactory.domain.label import Label
from tests.support.condor_emulator.ads import JobStatus
from tests.support.condor_emulator.driver import CondorEmulator
from tests.support.factory_conf import write_factory_conf
from tests.support.monitor import (
    FactoryClient,
    Monitor,
    local_session,
    new_factory,
    running_monitor,
    sqlite_url,
)
from tests.support.paths import REPO
from tests.support.waiting import free_port

ROOT = REPO
LABEL = "CERN-PROD"
LOCAL_LABEL = "LOCAL-local"  # what the factory names the label of a [LOCAL] batch = local queue
DAY = 86400


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    with running_monitor(sqlite_url(tmp_path_factory.mktemp("monitor"))) as service:
        yield service


@pytest.fixture
def factory(monitor: Monitor) -> Iterator[FactoryClient]:
    with local_session() as session:
        client = new_factory(monitor, session)
        # The monitor's clock a day behind real time: every job it creates is past awolGrace.
        set_monitor_time(monitor, time.time() - DAY)
        yield client


def set_monitor_time(monitor: Monitor, epoch: float) -> None:
    monitor.clock.advance(datetime.fromtimestamp(epoch, UTC) - monitor.clock())


def write_config(
    tmp_path: Path,
    factory: FactoryClient,
    extra: str = "",
    queues: str | None = "",
    monitor_url: str | None = None,
) -> Path:
    """The factory.conf of ``factory`` with its monitor (or ``monitor_url``), the queue [CERN-PROD]
    (``queues`` is the rest of its section and may add sections; None: no queue section at all)
    and ``extra`` in [Factory]."""
    own = {
        "factoryId": factory.name,
        "pandaserver": "http://127.0.0.1:9",
        "schedconfig": f"{tmp_path}/cric.json",
        "stateDir": f"{tmp_path}/state",
        "condorTimeout": 5,
        "httpTimeout": 5,
        "monitorURL": factory.monitor.api if monitor_url is None else monitor_url,
        "monitorToken": factory.token,
    }
    sections = {} if queues is None else {LABEL: queues}
    return write_factory_conf(tmp_path, factory=[own, extra], queues=sections)


def submit(condor: CondorEmulator, fid: str, n: int, schedd: str | None = None) -> list[str]:
    text = f'universe = vanilla\nexecutable = /bin/true\n+FactoryId = "{fid}"\n+MATCH_APF_QUEUE = "{LABEL}"\n'
    return condor.submit(text + f"queue {n}\n", schedd)


def run(command: str, conf: Path) -> int:
    return cli.main([command, "-c", str(conf)])


def state(factory: FactoryClient, cid: str) -> tuple[object, object]:
    job = factory.job(cid)
    return job["state"], job["rc"]


def events(factory: FactoryClient, cid: str) -> list[str]:
    found = factory.job(cid)["events"]
    assert isinstance(found, list)
    return [f"{e['old_state']}->{e['new_state']}: {e['text']}" for e in found]


# --- mon-exiting ---------------------------------------------------------------------------------


def test_completed_and_removed_pilots_are_reported(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cids = submit(condor, factory.name, 4)
    other = submit(condor, "someone-else", 1)
    factory.create(LABEL, *cids)
    factory.pilot(cids[0], state="running")
    condor.complete(cids[0], 0)
    condor.complete(cids[1], 1)  # never said it was running
    condor.remove(cids[2], "PeriodicRemove: idle too long")
    condor.complete(other[0])
    conf = write_config(tmp_path, factory)

    assert run("mon-exiting", conf) == 0
    assert state(factory, cids[0]) == ("DONE", 0)
    assert state(factory, cids[1]) == ("FAULT", 1)
    assert state(factory, cids[2]) == ("FAULT", None)
    assert state(factory, cids[3]) == ("CREATED", None)  # still in the queue
    assert any("PeriodicRemove: idle too long" in e for e in events(factory, cids[2]))
    assert "3 reports (0 AWOL)" in capsys.readouterr().out  # not the other factory's pilot
    (history,) = condor.calls("condor_history")
    assert f'FactoryId == "{factory.name}"' in history.argv
    assert "-since" in history.argv
    assert json.loads((tmp_path / "state" / CHECKPOINT_FILE).read_text())


def test_a_factory_whose_queues_all_come_from_cric_reports_its_condor_pilots(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    """No queue section at all, every queue chosen by ``queues = cric: ...``: the selected
    queues take [QueueDefaults]' backend (HTCondor by default), whose pilots are still reported."""
    (cid,) = submit(condor, factory.name, 1)
    factory.create(LABEL, cid)
    condor.complete(cid, 0)
    conf = write_config(tmp_path, factory, "queues = cric: vo=atlas", queues=None)
    assert run("mon-exiting", conf) == 0
    assert state(factory, cid) == ("DONE", 0)


def test_pilots_left_in_htcondor_by_a_queue_moved_to_local_are_still_reported(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The queue's pilots stay in the schedd after it moved to ``batch = local``: mon-exiting,
    which read that schedd before, still reads it and reports their end (none is left active,
    and no "no such backend" is logged)."""
    cids = submit(condor, factory.name, 2)
    factory.create(LABEL, *cids)
    assert run("mon-exiting", write_config(tmp_path, factory)) == 0  # the schedd is read
    condor.complete(cids[0], 0)
    condor.remove(cids[1], "PeriodicRemove: idle too long")
    capsys.readouterr()
    assert (
        run("mon-exiting", write_config(tmp_path, factory, queues="autoconfigure = false\nbatch = local"))
        == 0
    )
    assert [state(factory, cid) for cid in cids] == [("DONE", 0), ("FAULT", None)]
    assert "no such backend" not in capsys.readouterr().err


def test_without_the_wrappers_reports_the_exit_code_decides_done_or_fault(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    """A monitor outage lost every report of these wrappers: the monitor still has them CREATED.
    Those whose exit code says the pilot ran (0 a job, 20 no job, 119 getJob refused) are DONE
    with it; a wrapper failure (116), a pilot error (1) or a signal (143) is a FAULT."""
    codes = (0, 20, 119, 1, 116, 143)
    cids = submit(condor, factory.name, len(codes))
    factory.create(LABEL, *cids)
    for cid, rc in zip(cids, codes, strict=True):
        condor.complete(cid, rc)
    assert run("mon-exiting", write_config(tmp_path, factory)) == 0
    assert [state(factory, cid) for cid in cids] == [
        ("DONE", 0), ("DONE", 20), ("DONE", 119), ("FAULT", 1), ("FAULT", 116), ("FAULT", 143),
    ]  # fmt: skip
    assert events(factory, cids[1])[-2].startswith(
        "CREATED->EXITING: CREATED -> EXITING, batch system: done rc=20"
    )


def test_local_pilots_without_the_wrappers_reports_end_by_their_exit_code(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    """The same with the local backend: its history's exit code decides."""
    factory.create(LOCAL_LABEL, "1.0", "2.0", "3.0")
    history = tmp_path / "state" / "local" / "history"
    history.mkdir(parents=True)
    for cid, rc in (("1.0", 0), ("2.0", 20), ("3.0", 116)):
        pilot = FinishedPilot(
            cid, LOCAL_LABEL, factory.name, ("/bin/true",), "o", "e", "l",
            time.time() - 60, time.time() - 50, time.time() - 10, rc, False, "exited",
        )  # fmt: skip
        (history / f"{cid}.json").write_text(pilot.to_json())
    local_queue = f"\n[LOCAL]\nautoconfigure = false\nbatch = local\nwmsqueue = {LABEL}"
    assert run("mon-exiting", write_config(tmp_path, factory, queues=local_queue)) == 0
    assert [state(factory, cid) for cid in ("1.0", "2.0", "3.0")] == [
        ("DONE", 0),
        ("DONE", 20),
        ("FAULT", 116),
    ]


def test_local_pilots_removed_by_the_operator_are_removed_not_faults(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    """A local pilot ended by ``pilots remove`` (its request as the reason) is REMOVED; one ended
    by anything else is a FAULT."""
    factory.create(LOCAL_LABEL, "1.0", "2.0")
    factory.pilot("1.0", state="running")
    history = tmp_path / "state" / "local" / "history"
    history.mkdir(parents=True)
    reasons = {"1.0": "autopyfactory pilots remove ab12cd34 by alice: CE retired", "2.0": "killed"}
    for cid, reason in reasons.items():
        pilot = FinishedPilot(
            cid, LOCAL_LABEL, factory.name, ("/bin/true",), "o", "e", "l",
            time.time() - 60, time.time() - 50, time.time() - 10, None, True, reason,
        )  # fmt: skip
        (history / f"{cid}.json").write_text(pilot.to_json())
    local_queue = f"\n[LOCAL]\nautoconfigure = false\nbatch = local\nwmsqueue = {LABEL}"
    assert run("mon-exiting", write_config(tmp_path, factory, queues=local_queue)) == 0
    assert [state(factory, cid) for cid in ("1.0", "2.0")] == [("REMOVED", None), ("FAULT", None)]


def test_pilots_removed_by_the_operator_are_shown_apart_from_faults(
    condor: CondorEmulator, factory: FactoryClient, monitor: Monitor, tmp_path: Path
) -> None:
    """Draining a label with ``autopyfactory pilots remove`` (its RemoveReason starts with the
    request): those pilots become REMOVED, not FAULT, whatever state the monitor had them in; a
    removal by anyone else stays a fault. The label's counts show them apart and the fault report
    does not list a drained label."""
    label = "DRAINED"
    ad = f'+FactoryId = "{factory.name}"\n+MATCH_APF_QUEUE = "{label}"\n'
    cids = condor.submit(f"universe = vanilla\nexecutable = /bin/true\n{ad}queue 4\n")
    factory.create(label, *cids)
    factory.pilot(cids[1], state="running")
    factory.pilot(cids[2], state="exiting", rc="143")
    request = "autopyfactory pilots remove ab12cd34 by alice: CE retired"
    for cid in cids[:3]:
        condor.remove(cid, request)
    condor.remove(cids[3], "PeriodicRemove: idle too long")
    assert run("mon-exiting", write_config(tmp_path, factory)) == 0
    assert [factory.job(cid)["state"] for cid in cids] == ["REMOVED", "REMOVED", "REMOVED", "FAULT"]
    assert (
        events(factory, cids[1])[-1]
        == f"RUNNING->REMOVED: RUNNING -> REMOVED, batch system: removed: Removed: {request}"
    )
    assert factory.job(cids[2])["rc"] == 143  # the wrapper's own report is kept
    detail = factory.session.get(f"{monitor.api}/labels/{factory.name}:{label}", timeout=10).json()
    assert (detail["counts"]["REMOVED"], detail["counts"]["FAULT"]) == (3, 1)
    report = factory.session.get(
        f"{monitor.api}/report/faults", params={"min_created": 1, "min_percent": 50}, timeout=10
    ).json()
    assert label not in [row["label"] for row in report["labels"]]  # 1 of 4: not at 100 % faults
    page = factory.session.get(f"{monitor.url}/factory/{factory.name}", timeout=10)
    assert ">REMOVED<" in page.text
    assert run("mon-exiting", write_config(tmp_path, factory)) == 0  # final: nothing changes again
    assert len(events(factory, cids[0])) == 2


def test_a_second_run_changes_nothing_and_reads_from_the_checkpoint(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    cids = submit(condor, factory.name, 1)
    factory.create(LABEL, *cids)
    factory.pilot(cids[0], state="running")
    condor.complete(cids[0], 0)
    conf = write_config(tmp_path, factory)
    assert run("mon-exiting", conf) == 0
    before = events(factory, cids[0])
    checkpoint = json.loads((tmp_path / "state" / CHECKPOINT_FILE).read_text())

    assert run("mon-exiting", conf) == 0
    assert events(factory, cids[0]) == before
    since = condor.calls("condor_history")[-1].argv
    (saved,) = checkpoint.values()
    assert since[since.index("-since") + 1] == f"EnteredCurrentStatus < {int(saved) - 60}"


@pytest.mark.parametrize("saved", ["NaN", "Infinity", "-Infinity", "1e400", "true", "4102444800.0"])
def test_a_corrupt_checkpoint_is_rebuilt_from_the_lookback_with_a_warning(
    condor: CondorEmulator,
    factory: FactoryClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    saved: str,
) -> None:
    """A corrupt checkpoint value (NaN, infinities, a number that overflows, a far-future time: 2100)."""
    cids = submit(condor, factory.name, 1)
    factory.create(LABEL, *cids)
    factory.pilot(cids[0], state="running")
    condor.complete(cids[0], 0, at=time.time() - 600)  # within monExitingLookback
    path = tmp_path / "state" / CHECKPOINT_FILE
    path.parent.mkdir(parents=True)
    path.write_text(f'{{"(local schedd)@(local pool)": {saved}}}\n')
    conf = write_config(tmp_path, factory)
    with caplog.at_level(logging.WARNING):
        assert run("mon-exiting", conf) == 0
    assert state(factory, cids[0]) == ("DONE", 0), "the window was skipped"
    assert "rejected" in caplog.text
    assert "look-back" in caplog.text
    (value,) = json.loads(path.read_text()).values()
    assert time.time() - 60 < value <= time.time()
    assert run("mon-exiting", conf) == 0  # and the next run is fine too


def test_awol_pilots_are_faults_and_old_history_is_found_first(
    condor: CondorEmulator, factory: FactoryClient, monitor: Monitor, tmp_path: Path
) -> None:
    cids = submit(condor, factory.name, 1)
    condor.complete(cids[0], 0, at=time.time() - 3 * DAY)  # before monExitingLookback
    factory.create(LABEL, cids[0], "900.0")  # 900.0: in neither the queue nor the history
    factory.pilot(cids[0], state="running")
    set_monitor_time(monitor, time.time())
    factory.create(LABEL, "901.0")  # young: within awolGrace
    assert run("mon-exiting", write_config(tmp_path, factory)) == 0
    assert state(factory, cids[0]) == ("DONE", 0)
    assert state(factory, "900.0") == ("FAULT", None)
    assert any("AWOL" in e for e in events(factory, "900.0"))
    assert state(factory, "901.0") == ("CREATED", None)


def test_a_monitor_that_is_down_fails_the_run_and_keeps_the_checkpoint(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    submit(condor, factory.name, 1)
    condor.complete("1.0")
    port = free_port()
    conf = write_config(tmp_path, factory, monitor_url=f"http://127.0.0.1:{port}/api")
    assert run("mon-exiting", conf) == 1
    assert "unreachable" in capsys.readouterr().err
    assert not (tmp_path / "state" / CHECKPOINT_FILE).exists()


def test_pilots_left_in_a_schedd_the_factory_used_before_are_neither_lost_nor_awol(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    """The queue moved to another schedd, its pilots stayed in the old one: still reported."""
    condor.add_schedd("old.example.org")
    running, finished = submit(condor, factory.name, 2, "old.example.org")
    factory.create(LABEL, running, finished)
    factory.pilot(finished, state="running")
    condor.complete(finished, 0, schedd="old.example.org")
    memory = SubmissionMemory(tmp_path / "state" / MEMORY_FILE, time.time, 600)
    memory.note_intent(Schedd("old.example.org"), LABEL)  # what the factory wrote when it submitted
    assert run("mon-exiting", write_config(tmp_path, factory)) == 0  # configured: the local schedd
    assert state(factory, finished) == ("DONE", 0)
    assert state(factory, running) == ("CREATED", None)  # still queued there: not AWOL


def test_a_failing_schedd_is_not_advanced_and_skips_the_awol_check(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    condor.add_schedd("schedd2.example.org")
    cids = submit(condor, factory.name, 1)
    condor.complete(cids[0])
    factory.create(LABEL, cids[0], "900.0")
    conf = write_config(tmp_path, factory, queues="condorSchedd = schedd2.example.org")
    condor.fail_next("condor_history", "exit", message="Failed to connect to schedd2.example.org")
    assert run("mon-exiting", conf) == 1
    assert "Failed to connect" in capsys.readouterr().err
    assert state(factory, "900.0") == ("CREATED", None)  # no AWOL verdict on a partial view
    checkpoint_path = tmp_path / "state" / CHECKPOINT_FILE
    assert list(json.loads(checkpoint_path.read_text())) == ["schedd2.example.org@(local pool)"]
    assert run("mon-exiting", conf) == 0  # the next run reads the failed schedd again
    assert state(factory, cids[0]) == ("DONE", 0)  # completed with rc 0: it ran
    assert len(json.loads(checkpoint_path.read_text())) == 2


def test_local_pilots_come_from_the_local_history(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    """Running local pilots are never AWOL: matched by the label names the factory really makes
    (``<section>-local``)."""
    factory.create(LOCAL_LABEL, "1.0", "2.0", "3.0")  # the name the factory makes
    factory.pilot("1.0", state="running")
    history = tmp_path / "state" / "local" / "history"
    history.mkdir(parents=True)
    for cid, rc, removed in (("1.0", 0, False), ("2.0", None, True)):
        pilot = FinishedPilot(
            cid, LOCAL_LABEL, factory.name, ("/bin/true",), "o", "e", "l",
            time.time() - 60, time.time() - 50, time.time() - 10, rc, removed, "ended",
        )  # fmt: skip
        (history / f"{cid}.json").write_text(pilot.to_json())
    local_queue = f"\n[LOCAL]\nautoconfigure = false\nbatch = local\nwmsqueue = {LABEL}"
    conf = write_config(tmp_path, factory, queues=local_queue)
    made = build_labels(config.load(conf), None).labels
    assert [label.name for label in made if label.batch == "local"] == [LOCAL_LABEL]
    assert run("mon-exiting", conf) == 0
    assert state(factory, "1.0") == ("DONE", 0)
    assert state(factory, "2.0") == ("FAULT", None)
    assert state(factory, "3.0") == ("CREATED", None)  # local label: no AWOL verdict from condor


def _local_queue(
    tmp_path: Path, factory: FactoryClient, extra: str = "", factory_settings: str = ""
) -> tuple[Path, Path]:
    """A factory.conf whose [LQ] is a ``batch = local`` queue with resource types (and ``extra``),
    and the gate file its pilots wait for (they run until it exists, 60 s at most, then exit 0)."""
    gate = tmp_path / "gate"
    pilot = tmp_path / "pilot.sh"
    wait = 'n=0\nwhile [ ! -e "$APF_TEST_GATE" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done\n'
    pilot.write_text("#!/bin/sh\n" + wait)
    pilot.chmod(0o755)
    queue = (
        f"\n[LQ]\nautoconfigure = false\nbatch = local\nresourceTypes = SCORE, MCORE\ncorecount = 8"
        f"\nmaxrss = 16000\nexecutable = {pilot}\nenviron = APF_TEST_GATE={gate}\n{extra}"
    )
    return write_config(tmp_path, factory, factory_settings, queues=queue), gate


def _local_pilots(
    conf: Path, n: int, clock: Callable[[], float] = time.time
) -> tuple[LocalBackend, dict[str, Label]]:
    """``n`` pilots of each of [LQ]'s labels, started by a local backend in the factory's state
    dir whose ``clock`` says when they were queued and started."""
    loaded = config.load(conf)
    labels = {label.name: label for label in build_labels(loaded, None).labels if label.batch == "local"}
    f = loaded.factory
    backend = LocalBackend(f.identity.factory_id, Path(f.identity.state_dir), clock)
    context = SubmitContext(
        f.identity.factory_id, f.panda.server, str(conf.parent / "logs"), "", "", "2026-03-01"
    )
    outcomes = backend.submit([(label, n) for label in labels.values()], context)
    assert all(outcome.job_ids and not outcome.error for outcome in outcomes.values()), outcomes
    return backend, labels


def _stop_local_pilots(backend: LocalBackend, labels: dict[str, Label], gate: Path) -> None:
    gate.touch()
    deadline = time.monotonic() + 30
    while backend.census(list(labels.values())).total:
        assert time.monotonic() < deadline, "the local pilots did not end"
        time.sleep(0.05)


def test_running_local_pilots_of_a_queue_with_resource_types_are_not_awol(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A local queue with resourceTypes makes ``LQ-local-SCORE`` and ``LQ-local-MCORE``: past
    awolGrace (the monitor's clock is a day behind) its running pilots stay as they are."""
    conf, gate = _local_queue(tmp_path, factory)
    backend, labels = _local_pilots(conf, 1)
    try:
        assert sorted(labels) == ["LQ-local-MCORE", "LQ-local-SCORE"]
        (queue,) = [queue for queue in config.load(conf).queues if queue.name == "LQ"]
        assert set(labels) <= possible_label_names(queue)  # what the cron helpers expect of [LQ]
        ids = {name: backend.census([label]).pilots[name][0].job_id for name, label in labels.items()}
        for name, cid in ids.items():
            factory.create(name, cid)
        factory.pilot(ids["LQ-local-SCORE"], state="running")
        factory.create("LQ-local-SCORE", "900.0")  # in neither the registry nor the history
        assert run("mon-exiting", conf) == 0
        assert "(0 AWOL)" in capsys.readouterr().out
        assert state(factory, ids["LQ-local-SCORE"]) == ("RUNNING", None)
        assert state(factory, ids["LQ-local-MCORE"]) == ("CREATED", None)
        assert state(factory, "900.0") == ("CREATED", None)  # a local label: condor gives no verdict
        assert not any("ClusterId == 900" in " ".join(call.argv) for call in condor.calls("condor_history"))
        factory.pilot(ids["LQ-local-MCORE"], state="running")
    finally:
        _stop_local_pilots(backend, labels, gate)
    assert run("mon-exiting", conf) == 0  # they ended with exit code 0
    assert {state(factory, cid) for cid in ids.values()} == {("DONE", 0)}


def test_local_pilots_finished_before_the_lookback_are_found_not_left_active(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    """An active pilot past awolGrace is looked for in its backend's whole history."""
    factory.create(LOCAL_LABEL, "5.0")
    factory.pilot("5.0", state="running")
    history = tmp_path / "state" / "local" / "history"
    history.mkdir(parents=True)
    ended = time.time() - 3 * DAY  # before monExitingLookback
    pilot = FinishedPilot(
        "5.0", LOCAL_LABEL, factory.name, ("/bin/true",), "o", "e", "l",
        ended - 60, ended - 50, ended, 0, False, "exited",
    )  # fmt: skip
    (history / "5.0.json").write_text(pilot.to_json())
    local_queue = f"\n[LOCAL]\nautoconfigure = false\nbatch = local\nwmsqueue = {LABEL}"
    assert run("mon-exiting", write_config(tmp_path, factory, queues=local_queue)) == 0
    assert state(factory, "5.0") == ("DONE", 0)


@pytest.mark.parametrize("command", ["mon-exiting", "mon-stale"])
def test_a_factory_of_local_queues_alone_needs_no_htcondor(
    factory: FactoryClient, tmp_path: Path, command: str
) -> None:
    """No HTCondor installed (no condor tool on PATH) and every queue ``batch = local``: the
    helpers ask the local backend only, report, and exit 0 with nothing on stderr (cron mails
    nothing)."""
    label = f"{LABEL}-local"
    factory.create(label, "1.0")
    history = tmp_path / "state" / "local" / "history"
    history.mkdir(parents=True)
    pilot = FinishedPilot(
        "1.0", label, factory.name, ("/bin/true",), "o", "e", "l",
        time.time() - 60, time.time() - 50, time.time() - 10, 0, False, "exited",
    )  # fmt: skip
    (history / "1.0.json").write_text(pilot.to_json())
    conf = write_config(tmp_path, factory, queues="autoconfigure = false\nbatch = local")
    done = subprocess.run(
        [sys.executable, "-m", "autopyfactory", command, "-c", str(conf)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, cwd=ROOT,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"{command}: ")
    if command == "mon-exiting":
        assert state(factory, "1.0") == ("DONE", 0)


# --- mon-stale -----------------------------------------------------------------------------------


def _stale_setup(condor: CondorEmulator, factory: FactoryClient) -> list[str]:
    cids = submit(condor, factory.name, 3)
    factory.create(LABEL, *cids)
    condor.set_status(cids[1], JobStatus.RUNNING)
    condor.age(cids[0], 25 * 3600)  # idle 25 h: stale
    condor.age(cids[1], 49 * 3600)  # running 49 h: stale
    return cids  # cids[2]: idle, fresh


def test_stale_pilots_are_flagged_and_not_removed_by_default(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    cids = _stale_setup(condor, factory)
    assert run("mon-stale", write_config(tmp_path, factory)) == 0
    assert [factory.job(cid)["flagged"] for cid in cids] == [True, True, False]
    assert "idle for 25.0 h" in events(factory, cids[0])[-1]
    assert not condor.calls("condor_rm")
    assert len(condor.jobs()) == 3
    assert run("mon-stale", write_config(tmp_path, factory)) == 0  # idempotent
    assert len(events(factory, cids[0])) == 2


def test_stale_pilots_removed_while_the_monitor_is_down_are_said_so(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The message says what was done: not "nothing was advanced" after pilots were removed."""
    cids = _stale_setup(condor, factory)
    port = free_port()
    extra = "staleRemove = true\nstaleRemoveMax = 1"
    conf = write_config(tmp_path, factory, extra, monitor_url=f"http://127.0.0.1:{port}/api")
    assert run("mon-stale", conf) == 1
    assert cids[1] not in [f"{a['ClusterId']}.{a['ProcId']}" for a in condor.jobs()]  # the oldest
    captured = capsys.readouterr()
    assert "nothing was advanced" not in captured.err
    assert f"removed 1 stale pilot ({cids[1]}) but could not tell the monitor" in captured.err
    assert "mon-stale: 2 stale pilots, 1 removed" in captured.out


def test_stale_removal_is_rate_limited_oldest_first(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    cids = _stale_setup(condor, factory)
    conf = write_config(tmp_path, factory, "staleRemove = true\nstaleRemoveMax = 1")
    assert run("mon-stale", conf) == 0
    assert [f"{a['ClusterId']}.{a['ProcId']}" for a in condor.jobs()] == [cids[0], cids[2]]
    assert "removed" in events(factory, cids[1])[-1]
    assert run("mon-stale", conf) == 0
    assert [f"{a['ClusterId']}.{a['ProcId']}" for a in condor.jobs()] == [cids[2]]


def test_stale_local_pilots_are_flagged_and_removed_by_their_backend(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    conf, gate = _local_queue(tmp_path, factory, factory_settings="staleRemove = true")
    backend, labels = _local_pilots(conf, 1, clock=lambda: time.time() - 3 * DAY)  # started 3 days ago
    try:
        ids = {name: backend.census([label]).pilots[name][0].job_id for name, label in labels.items()}
        for name, cid in ids.items():
            factory.create(name, cid)
        assert run("mon-stale", conf) == 0
        for cid in ids.values():
            assert factory.job(cid)["flagged"] is True
            assert "removed" in events(factory, cid)[-1]
        removed = {record.job_id: record for record in backend.history()}
        assert set(removed) == set(ids.values())
        assert all(r.removed for r in removed.values())
        assert backend.census(list(labels.values())).total == 0
    finally:
        _stop_local_pilots(backend, labels, gate)


@pytest.mark.parametrize("command", ["mon-exiting", "mon-stale"])
def test_no_monitor_configured_exits_0_with_one_quiet_line(
    factory: FactoryClient, tmp_path: Path, command: str
) -> None:
    """The shipped cron entries run every 5 minutes on hosts without a monitor: quiet, exit 0."""
    conf = write_config(tmp_path, factory, monitor_url="")
    done = subprocess.run(
        [sys.executable, "-m", "autopyfactory", command, "-c", str(conf)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, cwd=ROOT,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"autopyfactory {command}: no monitorURL in [Factory], nothing to report\n"


# --- the cron wrappers ---------------------------------------------------------------------------


def test_cron_wrapper_runs_once_at_a_time(
    condor: CondorEmulator, factory: FactoryClient, tmp_path: Path
) -> None:
    cids = _stale_setup(condor, factory)
    shim = tmp_path / "autopyfactory"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m autopyfactory "$@"\n')
    shim.chmod(0o755)
    env = condor.env | {
        "FACTORY_CONFIG": str(write_config(tmp_path, factory)),
        "APF_LOCK_DIR": str(tmp_path),
        "AUTOPYFACTORY": str(shim),
        "PYTHONPATH": str(ROOT),
    }
    script = str(ROOT / "cron" / "mon-stale.sh")
    with open(tmp_path / "mon-stale.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a run in progress (flock(1) uses the same flock(2) lock)
        skipped = subprocess.run([script], env=env, capture_output=True, text=True, timeout=30)
    assert (skipped.returncode, skipped.stdout) == (0, "")
    assert factory.job(cids[0])["flagged"] is False
    done = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2 stale pilots" in done.stdout
    assert factory.job(cids[0])["flagged"] is True
