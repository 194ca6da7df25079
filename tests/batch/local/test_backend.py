"""The local batch backend with real processes: a small Python test pilot (steered by its
environment, which comes from the label's ``environ``) and the real runpilot3 wrapper, real
files under tmp_path. Tests wait by polling with a bound, never by sleeping a fixed time, and
every process started is killed at teardown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autopyfactory.batch.interface import SubmitContext, SubmitOutcome, Tidy
from autopyfactory.batch.local.backend import LocalBackend, describe
from autopyfactory.batch.local.processes import process_identity
from autopyfactory.batch.local.registry import LocalPilot, Registry, RunState
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census, JobStatus, Supply
from tests.support.factory_conf import factory_conf, labels_from, write_factory_conf
from tests.support.paths import REPO
from tests.support.pilot_tarballs import write_tarball
from tests.support.waiting import wait_for
from tests.support.wrapper_harness import WRAPPER, clean_environ

FID = "test-factory"
DATE = "2026-03-01"
A, B = "LOCALQ-local", "OTHERQ-local"

FACTORY_CONF = factory_conf(
    queues={
        "LOCALQ": {"autoconfigure": False, "batch": "local"},
        "OTHERQ": {"autoconfigure": False, "batch": "local"},
    }
)

PILOT = """\
import json, os, signal, sys, time
env = os.environ
cid = env.get("APFCID", "?")
record = env.get("PILOT_RECORD")
if env.get("PILOT_ORDER"):
    with open(env["PILOT_ORDER"], "a") as out:
        out.write(cid + "\\n")
if record:
    with open(os.path.join(record, cid + ".json"), "w") as out:
        json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(env)}, out)
print("hello stdout", cid, flush=True)
print("hello stderr", cid, file=sys.stderr, flush=True)
if env.get("PILOT_TERM") == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif env.get("PILOT_TERM") == "exit":
    def on_term(signum, frame):
        open(os.path.join(record, cid + ".term"), "w").close()
        sys.exit(42)
    signal.signal(signal.SIGTERM, on_term)
if record:
    open(os.path.join(record, cid + ".ready"), "w").close()
gate, deadline = env.get("PILOT_GATE"), time.time() + 10
while gate and not os.path.exists(gate) and time.time() < deadline:
    time.sleep(0.02)
if env.get("PILOT_KILL_SELF"):
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(int(env.get("PILOT_RC", "0")))
"""

# ---- labels, context and the pilot (also used by the child "factory" process) ----------------


def load_labels(conf_dir: Path) -> dict[str, Label]:
    labels = labels_from(write_factory_conf(conf_dir, FACTORY_CONF), dump=None)
    return {label.name: label for label in labels}


def with_pilot(label: Label, executable: str, environ: dict[str, str], arguments: str | None = None) -> Label:
    submit = dataclasses.replace(label.submit, executable=executable)
    if arguments is not None:
        submit = dataclasses.replace(submit, arguments=arguments)
    resources = dataclasses.replace(label.resources, environ=tuple(environ.items()))
    return dataclasses.replace(label, submit=submit, resources=resources)


def make_context(
    base: Path, dry_run: bool = False, monitor_url: str = "http://apfmon.example.org/api"
) -> SubmitContext:
    return SubmitContext(
        factory_id=FID,
        pandaserver="https://pandaserver.example.org:25443",
        base_log_dir=str(base / "logs"),
        base_log_dir_url="http://factory.example.org/pilots",
        monitor_url=monitor_url,
        date=DATE,
        dry_run=dry_run,
    )


def submit(backend: LocalBackend, label: Label, n: int, context: SubmitContext) -> SubmitOutcome:
    """One label's submission through the backend's batch interface."""
    return backend.submit([(label, n)], context)[label.name]


def write_pilot(directory: Path) -> Path:
    path = directory / "test-pilot.py"
    path.write_text(f"#!{sys.executable}\n{PILOT}")
    path.chmod(0o755)
    return path


def submit_from_child(base: str, state: str, gate: str) -> None:
    """What the child 'factory' process of the restart test does: submit one gated pilot, exit."""
    root = Path(base)
    label = with_pilot(
        load_labels(root)[A], str(root / "test-pilot.py"), {"PILOT_GATE": gate, "PILOT_RC": "5"}
    )
    outcome = submit(LocalBackend(FID, Path(state)), label, 1, make_context(root))
    print(json.dumps(list(outcome.job_ids)))


# ---- fixtures ----------------------------------------------------------------------------------


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """The backend's state dir; at teardown every registered pilot's process group is killed."""
    path = tmp_path / "state"
    yield path
    for entry_path in (path / "local" / "pilots").glob("*.json"):
        try:
            entry = LocalPilot.from_json(entry_path.read_text())
        except ValueError:
            continue
        identity = process_identity(entry.pid) if entry.pid else None
        if entry.pid and identity and identity[1] == entry.start_ticks:
            _kill_group(entry.pid)
            wait_for(lambda pid=entry.pid: _gone(pid), 5, f"pilot {entry.job_id} to die")


def _gone(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    identity = process_identity(pid)
    return identity is None or identity[0] == "Z"


@pytest.fixture
def labels(tmp_path: Path) -> dict[str, Label]:
    return load_labels(tmp_path)


@pytest.fixture
def pilot(tmp_path: Path) -> Path:
    return write_pilot(tmp_path)


@pytest.fixture
def record(tmp_path: Path) -> Path:
    path = tmp_path / "record"
    path.mkdir()
    return path


def counts(census: Census, name: str = A) -> tuple[int, int] | None:
    supply = census.supply[name]
    return None if supply is None else (supply.idle, supply.running)


def finished(backend: LocalBackend, labels: list[Label], n: int) -> Callable[[], bool]:
    """A poll: the census shows no unfinished pilot and the history has ``n`` records."""
    return lambda: backend.census(labels).total == 0 and len(backend.history()) == n


# ---- submission: ids, command, environment, files ------------------------------------------------


def test_ids_are_cluster_proc_and_never_repeat(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path
):
    label = with_pilot(labels[A], str(pilot), {})
    backend = LocalBackend(FID, state)
    assert submit(backend, label, 2, make_context(tmp_path)).job_ids == ("1.0", "1.1")
    restarted = LocalBackend(FID, state)
    assert submit(restarted, label, 1, make_context(tmp_path)).job_ids == ("2.0",)
    assert (state / "local" / "cluster").read_text() == "2\n"
    wait_for(finished(restarted, [label], 3), what="three pilots to finish")
    (state / "local" / "cluster").unlink()  # lost counter: continue after the highest id on disk
    assert submit(restarted, label, 1, make_context(tmp_path)).job_ids == ("3.0",)
    wait_for(finished(restarted, [label], 4))


def test_queue_environ_may_set_pilot_nokill(tmp_path: Path, labels: dict[str, Label]) -> None:
    label = with_pilot(labels[A], "/bin/true", {"PILOT_NOKILL": "0"}, "-q %(pq)s")
    _, environment = describe(label, make_context(tmp_path), "1.0")
    assert [value for name, value in environment if name == "PILOT_NOKILL"] == ["0"]


def test_pilot_sees_rendered_arguments_and_condor_environment(
    tmp_path: Path,
    state: Path,
    labels: dict[str, Label],
    pilot: Path,
    record: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("APF_TEST_FROM_FACTORY", "inherited")
    environ = {"PILOT_RECORD": str(record), "SITE_VAR": "a$b c'd", "APFFID": "not-this-one"}
    template = (
        "-s %(siteid)s -h %(pq)s -p %(port)s -w %(pandaserver)s 'two words' '$HOME' \"it's\" id=$(Cluster)"
    )
    label = dataclasses.replace(with_pilot(labels[A], str(pilot), environ, template), siteid="SITE$X")
    backend = LocalBackend(FID, state)
    outcome = submit(backend, label, 1, make_context(tmp_path))
    assert (outcome.job_ids, outcome.error) == (("1.0",), "")
    wait_for(finished(backend, [label], 1))

    seen = json.loads((record / "1.0.json").read_text())
    assert seen["argv"] == [
        "-s",
        "SITE$X",
        "-h",
        "LOCALQ",
        "-p",
        "25443",
        "-w",
        "https://pandaserver.example.org",
        "two words",
        "$HOME",
        "it's",
        "id=$(Cluster)",
    ]  # the operator's $(Cluster) is text: only the factory's own macros expand
    env = seen["env"]
    assert env["APFFID"] == FID
    assert env["PANDA_JSID"] == FID  # environ cannot override the factory's
    assert env["APFCID"] == "1.0"
    assert env["APFMON"] == "http://apfmon.example.org/api"
    assert env["FACTORYQUEUE"] == A
    assert env["GTAG"] == f"http://factory.example.org/pilots/{DATE}/{A}/1.0.out"
    assert env["SITE_VAR"] == "a$b c'd"
    assert env["APF_TEST_FROM_FACTORY"] == "inherited"
    assert env["PILOT_NOKILL"] == "1"  # pilot 3 must not kill the factory's host processes
    assert seen["cwd"] == str(state / "local" / "work" / "1.0")
    assert not (state / "local" / "work" / "1.0").exists()  # removed when the pilot ended


def test_logs_exit_code_and_census_while_running_and_after(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path, record: Path
):
    gate = tmp_path / "gate"
    label = with_pilot(
        labels[A], str(pilot), {"PILOT_GATE": str(gate), "PILOT_RC": "3", "PILOT_RECORD": str(record)}
    )
    clock = FakeClock(1_000_000.0)
    backend = LocalBackend(FID, state, clock=clock)
    submit(backend, label, 1, make_context(tmp_path))
    wait_for(lambda: (record / "1.0.ready").exists())

    census = backend.census([labels[A], labels[B]])
    assert census.supply == {A: Supply(running=1), B: Supply()}
    assert census.total == 1
    assert census.problems == ()
    (running,) = census.pilots[A]
    assert (running.job_id, running.label, running.status) == ("1.0", A, JobStatus.RUNNING)
    assert (running.queued, running.entered_status) == (1_000_000, 1_000_000)

    gate.touch()
    wait_for(finished(backend, [label], 1))
    census = backend.census([label])
    assert census.supply == {A: Supply()}
    assert census.pilots == {}
    (done,) = backend.history()
    assert (done.job_id, done.rc, done.removed, done.reason) == ("1.0", 3, False, "exited")
    assert done.started == 1_000_000.0
    assert done.ended > 1_000_000.0  # the supervisor's real end time
    assert done.pilot.status is JobStatus.COMPLETED

    logs = tmp_path / "logs" / DATE / A
    assert (logs / "1.0.out").read_text() == "hello stdout 1.0\n"
    assert (logs / "1.0.err").read_text() == "hello stderr 1.0\n"
    lines = (logs / "1.0.log").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [["000", "(1.0)"], ["001", "(1.0)"], ["005", "(1.0)"]]
    assert "started: pid " in lines[1]
    assert str(pilot) in lines[1]
    assert lines[2].endswith("ended: exit code 3")
    assert not list((state / "local" / "pilots").iterdir())
    assert not list((state / "local" / "rc").iterdir())


def test_a_pilot_killed_by_a_signal_is_recorded_as_128_plus_n(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path
):
    label = with_pilot(labels[A], str(pilot), {"PILOT_KILL_SELF": "1"})
    backend = LocalBackend(FID, state)
    submit(backend, label, 1, make_context(tmp_path))
    wait_for(finished(backend, [label], 1))
    assert backend.history()[0].rc == 128 + signal.SIGKILL


def test_history_is_newest_first_and_filtered_by_end_time(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path
):
    label = with_pilot(labels[A], str(pilot), {})
    backend = LocalBackend(FID, state)
    submit(backend, label, 2, make_context(tmp_path))
    wait_for(finished(backend, [label], 2))
    history = backend.history()
    assert [r.job_id for r in history] == sorted(["1.0", "1.1"], key=lambda j: (_ended(history, j), j))[::-1]
    assert backend.history(since=history[0].ended + 1) == []
    assert LocalBackend("another-factory", state).history() == []


def _ended(history: list[Any], job_id: str) -> float:
    return float(next(r.ended for r in history if r.job_id == job_id))


def test_bad_executable_or_template_is_an_error_and_registers_nothing(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path
):
    backend = LocalBackend(FID, state)
    missing = with_pilot(labels[A], str(tmp_path / "no-such-wrapper"), {})
    outcome = submit(backend, missing, 1, make_context(tmp_path))
    assert outcome.job_ids == ()
    assert "not an executable file" in outcome.error
    bad = with_pilot(labels[A], str(pilot), {}, arguments="-s %(nosuchfield)s")
    assert "unknown field %(nosuchfield)s" in submit(backend, bad, 1, make_context(tmp_path)).error
    assert not (state / "local" / "pilots").exists()


def test_dry_run_starts_and_writes_nothing(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path
):
    label = with_pilot(labels[A], str(pilot), {"X": "a b"})
    outcome = submit(LocalBackend(FID, state), label, 3, make_context(tmp_path, dry_run=True))
    assert outcome.job_ids == ()
    assert outcome.error == ""
    assert (
        outcome.extra["command"]
        == f"{pilot} -q LOCALQ -r LOCALQ -s LOCALQ -j managed -i PR --pilot-user ATLAS"
        " --url https://pandaserver.example.org -p 25443 -w generic"
    )
    assert "'APFCID=$(Cluster).$(Process)'" in outcome.extra["environment"]
    assert "'X=a b'" in outcome.extra["environment"]
    assert not state.exists()
    assert not (tmp_path / "logs").exists()


# ---- restarts and the pid-reuse guard ------------------------------------------------------------


def test_pilot_outlives_the_factory_that_started_it(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path
):
    gate = tmp_path / "gate"
    code = "import sys; from tests.batch.local.test_backend import submit_from_child as f; f(*sys.argv[1:])"
    child = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), str(state), str(gate)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(child.stdout) == ["1.0"]

    restarted = LocalBackend(FID, state)  # the factory process that submitted it is gone
    assert counts(restarted.census([labels[A]])) == (0, 1)
    gate.touch()
    wait_for(finished(restarted, [labels[A]], 1))
    (done,) = restarted.history()
    assert (done.job_id, done.rc, done.reason) == ("1.0", 5, "exited")


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not a pilot, in its own session: its pid stands for a reused one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def fake_entry(tmp_path: Path, job_id: str, pid: int, ticks: int | None, label: str = A) -> LocalPilot:
    return LocalPilot(
        job_id=job_id, label=label, factory_id=FID, command=("/bin/true",), environment=(),
        stdout=str(tmp_path / f"{job_id}.out"), stderr=str(tmp_path / f"{job_id}.err"),
        log=str(tmp_path / f"{job_id}.log"), queued=1.0, state=RunState.RUNNING, pid=pid,
        start_ticks=ticks, started=2.0,
    )  # fmt: skip


def put(state: Path, entry: LocalPilot) -> None:
    directory = state / "local" / "pilots"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{entry.job_id}.json").write_text(entry.to_json())


def test_a_reused_pid_is_not_the_pilot_and_is_never_signalled(
    tmp_path: Path, state: Path, labels: dict[str, Label], bystander: subprocess.Popen[bytes]
):
    identity = process_identity(bystander.pid)
    assert identity is not None
    backend = LocalBackend(FID, state, kill_grace=0.2)
    put(state, fake_entry(tmp_path, "90.0", bystander.pid, identity[1]))  # really it: running
    put(state, fake_entry(tmp_path, "91.0", bystander.pid, identity[1] + 1))  # same pid, other start
    assert counts(backend.census([labels[A]])) == (0, 1)
    (gone,) = backend.history()
    assert (gone.job_id, gone.rc, gone.reason) == ("91.0", None, "vanished without an exit code")

    put(state, fake_entry(tmp_path, "92.0", bystander.pid, identity[1] + 1))
    backend.remove(labels[A], ["92.0"])
    assert bystander.poll() is None  # not signalled
    assert backend.history()[0].reason == "vanished without an exit code"
    (state / "local" / "pilots" / "90.0.json").unlink()  # the bystander is not ours to kill


def test_a_pilot_killed_behind_the_factorys_back_has_no_exit_code(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path, record: Path
):
    gate = tmp_path / "gate"
    label = with_pilot(labels[A], str(pilot), {"PILOT_GATE": str(gate), "PILOT_RECORD": str(record)})
    backend = LocalBackend(FID, state)
    submit(backend, label, 1, make_context(tmp_path))
    wait_for(lambda: (record / "1.0.ready").exists())
    entry = LocalPilot.from_json((state / "local" / "pilots" / "1.0.json").read_text())
    assert entry.pid is not None
    os.killpg(entry.pid, signal.SIGKILL)  # supervisor and pilot at once
    wait_for(finished(backend, [label], 1))
    assert (backend.history()[0].rc, backend.history()[0].reason) == (None, "vanished without an exit code")
    assert not (state / "local" / "work" / "1.0").exists()


# ---- max_running ---------------------------------------------------------------------------------


def test_max_running_queues_pilots_and_starts_them_first_in_first_out(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path, record: Path
):
    gate, order = tmp_path / "gate", tmp_path / "order"
    env = {"PILOT_GATE": str(gate), "PILOT_ORDER": str(order), "PILOT_RECORD": str(record)}
    label_a, label_b = with_pilot(labels[A], str(pilot), env), with_pilot(labels[B], str(pilot), env)
    backend = LocalBackend(FID, state, max_running=1)
    assert submit(backend, label_a, 1, make_context(tmp_path)).job_ids == ("1.0",)
    assert submit(backend, label_b, 2, make_context(tmp_path)).job_ids == ("2.0", "2.1")
    assert submit(backend, label_a, 1, make_context(tmp_path)).job_ids == ("3.0",)
    census = backend.census([label_a, label_b])
    assert (counts(census, A), counts(census, B), census.total) == ((1, 1), (2, 0), 4)
    assert {p.job_id: p.status for p in census.pilots[B]} == {"2.0": JobStatus.IDLE, "2.1": JobStatus.IDLE}
    supply_b = census.supply[B]
    assert supply_b is not None
    assert supply_b.pending == 2

    gate.touch()  # every started pilot now ends at once; a census starts the next one
    wait_for(finished(backend, [label_a, label_b], 4))
    assert order.read_text().split() == ["1.0", "2.0", "2.1", "3.0"]


# ---- remove --------------------------------------------------------------------------------------


def test_remove_terminates_kills_the_stubborn_and_drops_the_waiting(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path, record: Path
):
    gate = tmp_path / "gate"  # never opened: the pilots run until removed
    common = {"PILOT_GATE": str(gate), "PILOT_RECORD": str(record)}
    polite = with_pilot(labels[A], str(pilot), common | {"PILOT_TERM": "exit"})
    stubborn = with_pilot(labels[B], str(pilot), common | {"PILOT_TERM": "ignore"})
    backend = LocalBackend(FID, state, max_running=2, kill_grace=0.3)
    submit(backend, polite, 1, make_context(tmp_path))
    submit(backend, stubborn, 1, make_context(tmp_path))
    submit(backend, polite, 1, make_context(tmp_path))  # 3.0 waits for a slot
    wait_for(lambda: (record / "1.0.ready").exists() and (record / "2.0.ready").exists())
    pids = {e.job_id: e.pid for e in map(LocalPilot.from_json, _registry_texts(state))}

    backend.remove(stubborn, ["1.0"])  # not this label's pilot: left alone
    backend.remove(polite, ["1.0", "3.0"])
    assert (record / "1.0.term").exists()
    started = time.monotonic()
    backend.remove(stubborn, ["2.0"])
    assert time.monotonic() - started >= 0.3  # SIGKILL only after the grace
    assert not (record / "2.0.term").exists()
    for job_id in ("1.0", "2.0"):
        assert _gone(pids[job_id] or 0)

    history = {r.job_id: r for r in backend.history()}
    assert {j: (r.rc, r.removed, r.reason) for j, r in history.items()} == {
        "1.0": (None, True, "removed"),
        "2.0": (None, True, "removed"),
        "3.0": (None, True, "removed before it started"),
    }
    assert history["3.0"].started is None
    assert history["1.0"].pilot.status is JobStatus.REMOVED
    assert backend.census([polite, stubborn]).total == 0
    assert not (record / "3.0.json").exists()  # never ran
    log_lines = (tmp_path / "logs" / DATE / A / "1.0.log").read_text().splitlines()
    assert log_lines[-1].split()[0] == "009"
    assert log_lines[-1].endswith("removed")
    assert backend.tidy([Tidy(polite, release=("1.0",))]) == {}  # nothing is ever held: a no-op


def _registry_texts(state: Path) -> list[str]:
    return [p.read_text() for p in sorted((state / "local" / "pilots").glob("*.json"))]


# ---- a corrupt registry --------------------------------------------------------------------------


def test_a_corrupt_entry_makes_its_label_unknown_and_is_reported(
    tmp_path: Path, state: Path, labels: dict[str, Label]
):
    backend = LocalBackend(FID, state)
    directory = state / "local" / "pilots"
    directory.mkdir(parents=True)
    (directory / "5.0.json").write_text(json.dumps({"job_id": "5.0", "label": A, "pid": "twelve"}))
    census = backend.census([labels[A], labels[B]])
    assert census.supply == {A: None, B: Supply()}
    assert census.total == 1
    (problem,) = census.problems
    assert "5.0.json" in problem
    assert "missing" in problem

    (directory / "6.0.json").write_text("{not json")  # whose label nobody can tell: all unknown
    census = backend.census([labels[A], labels[B]])
    assert census.supply == {A: None, B: None}
    assert len(census.problems) == 2
    assert census.total == 2
    assert (directory / "6.0.json").exists()  # kept for the operator


# ---- the real pilot wrapper ----------------------------------------------------------------------


@pytest.mark.slow
def test_runs_the_real_wrapper_with_a_file_pilot_source(
    tmp_path: Path, state: Path, labels: dict[str, Label], monkeypatch: pytest.MonkeyPatch
):
    for name in set(os.environ) - set(clean_environ()):  # what would steer the wrapper
        monkeypatch.delenv(name)
    tarball = write_tarball(tmp_path / "src" / "pilot3.tar.gz")
    marker = tmp_path / "marker.json"
    environ = {
        "PILOT_HTTP_SOURCES": f"file://{tarball}",
        "PILOT_HTTP_RETRIES": "0",
        "ATLAS_SW_BASE": str(tmp_path / "cvmfs"),
        "TEST_PILOT_MARKER": str(marker),
        "TEST_PILOT_RC": "7",
        "TEST_PILOT_SHOW_ENV": "APFCID,FACTORYQUEUE",
    }
    label = with_pilot(labels[A], str(WRAPPER), environ)  # the default arguments template
    backend = LocalBackend(FID, state)
    outcome = submit(backend, label, 1, make_context(tmp_path, monitor_url=""))
    assert outcome.job_ids == ("1.0",)
    wait_for(finished(backend, [label], 1), 60, "the wrapper to finish")

    (done,) = backend.history()
    out = (tmp_path / "logs" / DATE / A / "1.0.out").read_text()
    assert done.rc == 7, out + (tmp_path / "logs" / DATE / A / "1.0.err").read_text()
    assert "TEST PILOT running with" in out
    seen = json.loads(marker.read_text())
    assert seen["argv"] == [
        "-q",
        "LOCALQ",
        "-j",
        "managed",
        "-i",
        "PR",
        "--pilot-user",
        "ATLAS",
        "--url",
        "https://pandaserver.example.org",
        "-p",
        "25443",
        "-w",
        "generic",
    ]  # pilot 3's grammar; the wrapper keeps -r and -s
    assert seen["env"] == {"APFCID": "1.0", "FACTORYQUEUE": A}
    assert seen["cwd"].startswith(str(state / "local" / "work" / "1.0"))


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- faults: zombies, a registry that cannot be written ------------------------------------------


def _started_pids(logs: Path) -> dict[str, int]:
    """job id -> supervisor pid, from the "001 ... started: pid N" lines of the pilots' .log files."""
    pids = {}
    for path in logs.glob("*.log"):
        for line in path.read_text().splitlines():
            if line.startswith("001 ") and "started: pid " in line:
                pids[path.stem] = int(line.split("started: pid ")[1].split(",")[0])
    return pids


def _zombie_children(pids: Iterator[int] | list[int]) -> list[int]:
    """Those of ``pids`` that are zombie children of this (the factory's) process."""
    zombies = []
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            zombies.append(pid)
    return zombies


def test_no_zombie_children_after_many_pilots(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path
):
    label = with_pilot(labels[A], str(pilot), {})
    backend = LocalBackend(FID, state)
    for _ in range(4):
        assert len(submit(backend, label, 10, make_context(tmp_path)).job_ids) == 10
    wait_for(finished(backend, [label], 40), 30)
    pids = _started_pids(tmp_path / "logs" / DATE / A)
    assert len(pids) == 40
    assert _zombie_children(list(pids.values())) == []


def _alive(pid: int) -> bool:
    identity = process_identity(pid)
    return identity is not None and identity[0] != "Z"


def test_a_started_pilot_whose_registry_write_fails_is_killed_not_forgotten(
    tmp_path: Path, state: Path, labels: dict[str, Label], pilot: Path, record: Path, monkeypatch: Any
):
    """ENOSPC after the process started: it must be tracked or killed, never run uncounted."""
    gate = tmp_path / "gate"  # never opened: the pilot would run for 10 s
    label = with_pilot(labels[A], str(pilot), {"PILOT_GATE": str(gate), "PILOT_RECORD": str(record)})
    backend = LocalBackend(FID, state)
    real_write = Registry.write

    def full_disk(self: Registry, entry: LocalPilot) -> None:
        if entry.state is RunState.RUNNING:
            raise OSError(28, "No space left on device")
        real_write(self, entry)

    monkeypatch.setattr(Registry, "write", full_disk)
    outcome = submit(backend, label, 1, make_context(tmp_path))
    assert "No space left on device" in outcome.error
    monkeypatch.setattr(Registry, "write", real_write)  # the disk has room again

    (pid,) = _started_pids(tmp_path / "logs" / DATE / A).values()
    census = backend.census([label])
    supply = census.supply[A]
    counted = 0 if supply is None else supply.all
    assert counted == int(_alive(pid)), "a live pilot process that the census does not count"
    wait_for(lambda: not _alive(pid), 5, "the untracked pilot to be killed")
    assert _zombie_children([pid]) == []


def test_a_pilot_whose_start_failed_is_not_submitted(labels, pilot, tmp_path, state):
    """Its start failed at once: the outcome carries no id for it (the cycle announces the ids it
    gets), only the error; the registry has it as finished, never started."""
    backend = LocalBackend(FID, state)
    (state / "local").mkdir(parents=True)
    (state / "local" / "work").write_text("a file where the pilots' work directories go")
    outcome = submit(backend, with_pilot(labels[A], str(pilot), {}), 2, make_context(tmp_path))
    assert outcome.job_ids == ()
    assert outcome.error.count("not started") == 2
    assert counts(backend.census([labels[A]])) == (0, 0)
    ended = backend.finished(lambda _source: 0.0).pilots
    assert sorted(p.job_id for p in ended) == ["1.0", "1.1"]
    assert all("not started" in p.reason for p in ended)


# --- pilots that started within pandaLag (Supply.started) ----------------------------------------


def test_running_pilots_started_within_the_lag(tmp_path: Path):
    """Real pilot processes held running by a gate file (they stop when it appears, or after 10 s)."""
    gate = tmp_path / "gate"
    label = with_pilot(load_labels(tmp_path)[A], str(write_pilot(tmp_path)), {"PILOT_GATE": str(gate)})
    now = [1000.0]
    backend = LocalBackend(FID, tmp_path / "state", lambda: now[0], max_running=2)
    try:
        assert len(submit(backend, label, 3, make_context(tmp_path)).job_ids) == 3  # two start at 1000
        now[0] = 1100.0
        census = backend.census([label], started_since=1100.0 - 120)
        assert census.supply[A] == Supply(idle=1, running=2, started=2)
        now[0] = 1200.0
        assert backend.census([label], started_since=1200.0 - 120).supply[A].started == 0
        assert backend.census([label]).supply[A].started == 0  # no threshold: none counted
    finally:
        gate.touch()
    wait_for(lambda: backend.census([label]).total == 0, 20, "the pilots to end")
