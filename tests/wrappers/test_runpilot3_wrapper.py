"""wrappers/runpilot3-wrapper.sh, run with real bash and real curl against servers on 127.0.0.1.

Each test runs the wrapper as the batch system would; the served test pilot (tests/support/pilot_tarballs.py)
records what it saw, and the server records every monitor call.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.pilot_tarballs import make_tarball, write_tarball
from tests.support.waiting import free_port as closed_port
from tests.support.wrapper_harness import ARGS, CID, FID, JOB_ID, JOB_PATH, PILOT_ARGV, WRAPPER, Wrapper
from tests.support.wrapper_servers import RecordingServer, SilentServer

pytestmark = pytest.mark.slow


def v2(state: str, **fields: str) -> tuple[str, str, dict[str, list[str]]]:
    """The v2 monitor call the wrapper should make."""
    return ("POST", JOB_PATH, {"state": [state], **{name: [value] for name, value in fields.items()}})


def ended_with_fault(server: RecordingServer, rc: str) -> None:
    """The monitor heard ``fault`` with ``rc`` last, after at most the running report: that one is
    sent in the background and may not have gone out when the wrapper failed or was signalled
    early (the fault report supersedes it)."""
    calls = server.monitor_calls()
    assert calls[-1] == v2("fault", rc=rc), calls
    assert calls[:-1] in ([], [v2("running")]), calls


def only_error(result_errors: list[str], prefix: str) -> None:
    assert len(result_errors) == 1, result_errors
    assert result_errors[0].startswith(prefix), result_errors


# ---- the happy path and exit codes ----------------------------------------------------------


def test_happy_path_reports_running_then_exiting_and_cleans_up(wrapper: Wrapper, server: RecordingServer):
    result = wrapper.run()

    assert result.rc == 0, result.stdout + result.stderr
    assert result.errors == []
    assert server.monitor_calls() == [v2("running"), v2("exiting", rc="0", ids=JOB_ID)]
    assert server.fetches() == ["/pilot/pilot3.tar.gz"]
    seen = result.marker()
    assert seen["argv"] == PILOT_ARGV
    workdir = Path(seen["cwd"])
    assert workdir.parent == wrapper.tmpdir
    assert workdir.name.startswith("apf_pilot.")
    assert not workdir.exists(), "work dir must be removed"
    assert list(wrapper.tmpdir.iterdir()) == []
    assert "TEST PILOT running with" in result.stdout
    assert result.log_lines("wrapper exiting with code 0")


@pytest.mark.parametrize("pilot_rc", [3, 65, 143])
def test_pilot_exit_code_is_passed_through_and_reported(
    wrapper: Wrapper, server: RecordingServer, pilot_rc: int
):
    wrapper.env["TEST_PILOT_RC"] = str(pilot_rc)

    result = wrapper.run()

    assert result.rc == pilot_rc
    assert result.errors == []
    assert server.monitor_calls() == [v2("running"), v2("exiting", rc=str(pilot_rc), ids=JOB_ID)]
    assert result.log_lines(f"==== pilot END: exit code {pilot_rc} ====")


def test_statuscode_file_wins_and_panda_ids_are_reported(wrapper: Wrapper, server: RecordingServer):
    wrapper.env.update(
        {"TEST_PILOT_RC": "0", "TEST_PILOT_STATUSCODE": " 70\n", "TEST_PILOT_PANDAIDS": "4711\n4712\n"}
    )

    result = wrapper.run()

    assert result.rc == 70
    assert server.monitor_calls() == [v2("running"), v2("exiting", rc="70", ids="4711,4712")]
    assert result.log_lines("STATUSCODE file says 70 (pilot exit code was 0)")
    assert result.log_lines("PanDA job ids: 4711,4712")


def test_at_most_100_panda_ids_are_reported(wrapper: Wrapper, server: RecordingServer):
    ids = [str(1000 + n) for n in range(150)]
    wrapper.env["TEST_PILOT_PANDAIDS"] = "\n".join(ids) + "\n"

    result = wrapper.run()

    assert result.rc == 0
    assert server.monitor_calls()[-1] == v2("exiting", rc="0", ids=",".join(ids[:100]))
    assert result.log_lines("reporting the first 100 of 150 PanDA job ids to the monitor")


def test_statuscode_file_without_a_number_is_ignored(wrapper: Wrapper, server: RecordingServer):
    wrapper.env.update({"TEST_PILOT_RC": "5", "TEST_PILOT_STATUSCODE": "finished"})

    result = wrapper.run()

    assert result.rc == 5
    assert server.monitor_calls()[-1] == v2("exiting", rc="5", ids=JOB_ID)
    assert result.log_lines("WARNING: ignoring STATUSCODE file with 'finished'")


def test_flat_tarball_layout_runs_top_level_pilot(wrapper: Wrapper, server: RecordingServer):
    wrapper.env["PILOT_HTTP_SOURCES"] = server.serve("/pilotcode.tar.gz", make_tarball("flat"))

    result = wrapper.run()

    assert result.rc == 0, result.stdout
    workdir = Path(result.marker()["cwd"])
    assert result.log_lines(f"pilot fetched from {server.base}/pilotcode.tar.gz: {workdir}/pilot.py")


def test_keep_workdir(wrapper: Wrapper):
    wrapper.env["APF_KEEP_WORKDIR"] = "1"

    result = wrapper.run()

    assert result.rc == 0
    workdir = Path(result.marker()["cwd"])
    assert (workdir / "pilot3" / "pilot.py").is_file()
    assert result.log_lines(f"APF_KEEP_WORKDIR is set: keeping {workdir}")


# ---- monitor -----------------------------------------------------------------------------


def test_monitor_v1_uses_get_urls(wrapper: Wrapper, server: RecordingServer):
    wrapper.env.update({"APFMON": server.base + "/mon/", "APFMON_API": "v1", "TEST_PILOT_RC": "7"})

    result = wrapper.run()

    assert result.rc == 7
    assert server.monitor_calls() == [
        ("GET", f"/mon/rn/{FID}/{CID}/", {}),
        ("GET", f"/mon/ex/{FID}/{CID}/7/", {}),
    ]


def test_monitor_v1_wrapper_failure_reports_exit_code(wrapper: Wrapper, server: RecordingServer):
    wrapper.env.update({"APFMON": server.base + "/mon", "APFMON_API": "v1"})
    wrapper.env["PILOT_HTTP_SOURCES"] = server.base + "/missing.tar.gz"

    result = wrapper.run()

    assert result.rc == 116
    calls = server.monitor_calls()
    assert calls[-1] == ("GET", f"/mon/ex/{FID}/{CID}/116/", {})
    assert calls[:-1] in ([], [("GET", f"/mon/rn/{FID}/{CID}/", {})])  # running: in the background


def test_no_monitor_when_apfmon_unset(wrapper: Wrapper, server: RecordingServer):
    del wrapper.env["APFMON"]

    result = wrapper.run()

    assert result.rc == 0
    assert server.monitor_calls() == []
    assert result.log_lines("monitor: APFMON is not set, no reports")


def test_monitor_down_never_stops_the_pilot(wrapper: Wrapper, server: RecordingServer):
    wrapper.env.update(
        {"APFMON": f"http://127.0.0.1:{closed_port()}/api", "APFMON_RETRIES": "2", "TEST_PILOT_RC": "4"}
    )

    result = wrapper.run()

    assert result.rc == 4
    assert result.ran_pilot
    assert result.errors == []
    # running, in the background, gives way when the pilot ends; exiting has all its attempts
    assert 1 <= len(result.log_lines("WARNING: monitor: running attempt")) <= 3
    assert len(result.log_lines("WARNING: monitor: exiting attempt")) == 3
    assert result.log_lines(
        "WARNING: monitor: giving up on exiting after 3 attempts; the pilot is not affected"
    )


def test_monitor_hanging_costs_only_the_configured_timeouts(wrapper: Wrapper):
    silent = SilentServer()
    try:
        wrapper.env.update(
            {
                "APFMON": silent.base + "/api",
                "APFMON_CONNECT_TIMEOUT": "1",
                "APFMON_MAX_TIME": "0.5",
                "APFMON_RETRIES": "1",
            }
        )

        result = wrapper.run(timeout=30)

        assert result.rc == 0
        assert result.ran_pilot
        # running (in the background, one or two attempts before the pilot ends, the one under way
        # finished), then exiting: two attempts, every one cut at 0.5 s
        assert silent.wait_accepted(3, within=5) >= 3
        assert len(result.log_lines("WARNING: monitor: exiting attempt")) == 2
        assert 1.0 <= result.elapsed < 2.0 + 8, result.elapsed
        assert result.log_lines("WARNING: monitor: exiting attempt 2 failed (curl exit 28")
    finally:
        silent.stop()


@pytest.mark.parametrize(
    ("status", "calls_per_state"), [(500, 2), (503, 2), (429, 2), (404, 2), (403, 1), (409, 1), (422, 1)]
)
def test_monitor_retries_server_errors_but_not_refusals(
    wrapper: Wrapper, server: RecordingServer, status: int, calls_per_state: int
):
    server.monitor_status = status
    wrapper.env.update({"APFMON_RETRIES": "1", "TEST_PILOT_SLEEP": "1"})  # time for running's retries

    result = wrapper.run()

    assert result.rc == 0
    assert server.monitor_states() == ["running"] * calls_per_state + ["exiting"] * calls_per_state


# ---- riding out a monitor outage, never holding up the pilot ------------------------------------

# The harness makes every monitor call a single attempt; these tests use the production retry
# settings, with short pauses (the first one 0.1 s, doubling).
_PRODUCTION_RETRIES = {"APFMON_RETRY_DELAY": "0.1"}


def _production_retries(wrapper: Wrapper) -> None:
    del wrapper.env["APFMON_RETRIES"]
    wrapper.env.update(_PRODUCTION_RETRIES)


def test_the_running_report_does_not_hold_up_the_pilot(
    wrapper: Wrapper, server: RecordingServer, tmp_path: Path
):
    """A monitor that takes its time with the running report: the pilot starts meanwhile (a
    synchronous report held the pilot for the whole APFMON_MAX_TIME, here longer than the wait)."""
    wrapper.env["APFMON_MAX_TIME"] = "60"
    server.hold.set()
    proc, out = _start(wrapper, tmp_path)
    try:
        started = _wait_for(wrapper.marker_path, proc, within=20)
        held = [call.form["state"] for call in server.calls if call.path == JOB_PATH]
        server.released.set()
        rc = proc.wait(timeout=40)
    finally:
        server.released.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = out.read_text()
    assert started, output  # the pilot ran while the monitor still held the running report
    assert held == [["running"]], output
    assert rc == 0, output
    assert server.monitor_states() == ["running", "exiting"], output


def test_reports_ride_out_a_monitor_outage(wrapper: Wrapper, server: RecordingServer):
    """The monitor is away for the first 5 calls (running) and again for 4 (exiting): both reports
    get through, as the soak's 2-minute outage needed (the wrappers once gave up after 3 tries)."""
    _production_retries(wrapper)
    wrapper.env["TEST_PILOT_SLEEP"] = "5"  # the running report is retried while the pilot runs
    server.monitor_script = [503] * 5 + [200] + [503] * 4 + [200]

    result = wrapper.run()

    assert result.rc == 0, result.stdout
    assert server.monitor_states() == ["running"] * 6 + ["exiting"] * 5
    assert result.log_lines("monitor: running reported (HTTP 200)")
    assert result.log_lines("monitor: exiting reported (HTTP 200)")
    assert len(result.log_lines("WARNING: monitor: exiting attempt")) == 4


def test_the_first_report_waits_for_the_announcement(wrapper: Wrapper, server: RecordingServer):
    """The pilot reports before its factory has announced it (404): retried until it is there."""
    _production_retries(wrapper)
    wrapper.env["TEST_PILOT_SLEEP"] = "3"
    server.monitor_script = [404] * 4

    result = wrapper.run()

    assert result.rc == 0, result.stdout
    assert server.monitor_states() == ["running"] * 5 + ["exiting"]
    assert result.log_lines("WARNING: monitor: running attempt 4 failed (curl exit 0, HTTP 404)")


def test_a_pilot_done_before_its_running_report_exits_reporting_exiting(
    wrapper: Wrapper, server: RecordingServer
):
    """The monitor is away while the (short) pilot runs: the running report gives way, the
    exiting report gets through when the monitor is back (the monitor accepts CREATED -> EXITING)."""
    _production_retries(wrapper)
    server.monitor_status = 503
    server.monitor_script = []

    def back_after(calls: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(server.monitor_states()) < calls:
            time.sleep(0.02)
        server.monitor_status = 200

    helper = threading.Thread(target=back_after, args=(6,), daemon=True)
    helper.start()
    result = wrapper.run()
    helper.join(5)

    assert result.rc == 0, result.stdout
    states = server.monitor_states()
    assert states[-1] == "exiting", states
    assert "exiting" in states[:-1], states
    assert result.log_lines("monitor: exiting reported (HTTP 200)")


def test_the_retry_windows_bound_the_reports(wrapper: Wrapper, server: RecordingServer):
    """A monitor that never answers well: no attempt starts after the window (here 2 s after the
    pilot ended for exiting), whatever APFMON_RETRIES allows."""
    _production_retries(wrapper)
    wrapper.env.update({"APFMON_RETRY_DELAY": "0.5", "APFMON_EXIT_WINDOW": "2", "APFMON_RUNNING_WINDOW": "1"})
    server.monitor_status = 503

    result = wrapper.run(timeout=60)

    assert result.rc == 0
    exits = result.log_lines("WARNING: monitor: exiting attempt")
    assert 2 <= len(exits) <= 3, exits  # at 0, 0.5, 1.5 s; the next pause would end after 2 s
    assert result.log_lines("WARNING: monitor: giving up on exiting after")
    assert result.elapsed < 2 + 2 * 5 + 5, result.elapsed


def test_the_wrapper_exit_is_bounded_by_the_exit_window(wrapper: Wrapper):
    """A monitor that accepts and never answers: the exit is still bounded (window + max time)."""
    silent = SilentServer()
    try:
        _production_retries(wrapper)
        wrapper.env.update(
            {"APFMON": silent.base + "/api", "APFMON_MAX_TIME": "1", "APFMON_EXIT_WINDOW": "2"}
        )
        result = wrapper.run(timeout=60)
    finally:
        silent.stop()
    assert result.rc == 0
    assert result.elapsed < 1 + 2 + 1 + 1 + 5, result.elapsed  # running's attempt, window, one attempt


# ---- the pilot's key for its own record at the monitor ----------------------------------------

PILOT_KEY = "apfp_" + "k" * 40 + "-_9"


def test_the_pilot_key_is_sent_and_kept_from_the_pilot(wrapper: Wrapper, server: RecordingServer):
    wrapper.env.update({"APFMON_KEY": PILOT_KEY, "TEST_PILOT_SHOW_ENV": "APFMON_KEY,APF_FORCE_APFMON_KEY"})

    result = wrapper.run()

    assert result.rc == 0, result.stdout
    reports = [call for call in server.calls if call.path == JOB_PATH]
    assert [call.authorization for call in reports] == [f"Bearer {PILOT_KEY}"] * 2
    assert result.marker()["env"] == {"APFMON_KEY": None, "APF_FORCE_APFMON_KEY": None}
    assert PILOT_KEY not in result.stdout + result.stderr
    assert result.log_lines("monitor: reports carry this pilot's key (APFMON_KEY)")
    assert list(wrapper.tmpdir.iterdir()) == []  # the scratch dir with the curl config is gone


@pytest.mark.parametrize(
    ("key", "api", "warning"),
    [
        ("apfp_short", "v2", "APFMON_KEY is not a pilot key"),
        ('apfp_"' + "x" * 42, "v2", "APFMON_KEY is not a pilot key"),  # would break the curl config
        (PILOT_KEY, "v1", "API v1 reports cannot carry APFMON_KEY"),
    ],
)
def test_a_key_that_cannot_be_sent_is_not(
    wrapper: Wrapper, server: RecordingServer, key: str, api: str, warning: str
):
    wrapper.env.update({"APFMON_KEY": key, "APFMON_API": api, "TEST_PILOT_SHOW_ENV": "APFMON_KEY"})
    if api == "v1":
        wrapper.env["APFMON"] = server.base + "/mon"

    result = wrapper.run()

    assert result.rc == 0
    assert {call.authorization for call in server.calls} == {None}
    assert len(server.monitor_calls()) == 2
    assert result.log_lines(f"WARNING: {warning}")
    assert result.marker()["env"] == {"APFMON_KEY": None}


# ---- honest outcomes: getJob refused ------------------------------------------------------------

FATAL = "2026-03-01 12:00:00,000 | CRITICAL | fatal error in job download loop - cannot continue\n"
FORBIDDEN = (
    "2026-03-01 11:59:59,000 | WARNING  | json.loads() failed to parse output=ERROR : method getJob is"
    " forbidden: Expecting value: line 1 column 1 (char 0)\n"
)


def test_getjob_refused_is_told_from_no_job(wrapper: Wrapper, server: RecordingServer):
    """Pilot 3 exits 0 without a job both when PanDA had none and when PanDA refused its getJob;
    its log tells the second: the wrapper exits 119 and reports it."""
    del wrapper.env["TEST_PILOT_PANDAIDS"]
    wrapper.env["TEST_PILOT_LOG"] = FORBIDDEN + FATAL

    result = wrapper.run()

    assert result.rc == 119, result.stdout
    assert server.monitor_calls()[-1] == v2("exiting", rc="119")
    assert result.log_lines("pilot outcome: 119, getJob refused: PanDA's dispatcher refused the job request")
    assert result.log_lines(
        "pilot log: 2026-03-01 11:59:59,000 | WARNING  | json.loads() failed to parse output=ERROR"
    )


@pytest.mark.parametrize("log", [None, "2026-03-01 | WARNING | did not get a job -- sleep 60 s and repeat\n"])
def test_no_job_stays_20_without_the_refusal_in_the_log(
    wrapper: Wrapper, server: RecordingServer, log: str | None
):
    del wrapper.env["TEST_PILOT_PANDAIDS"]
    if log is not None:
        wrapper.env["TEST_PILOT_LOG"] = log

    result = wrapper.run()

    assert result.rc == 20
    assert server.monitor_calls()[-1] == v2("exiting", rc="20")


def test_a_job_that_ran_is_0_whatever_the_log_says(wrapper: Wrapper):
    wrapper.env["TEST_PILOT_LOG"] = FATAL  # a later getJob of a multi-job pilot failed

    result = wrapper.run()

    assert result.rc == 0


# ---- pilot sources -------------------------------------------------------------------------


def test_html_error_page_then_good_source(wrapper: Wrapper, server: RecordingServer):
    html = server.serve(
        "/proxy/pilot3.tar.gz",
        b"<html><body>Access denied by site proxy</body></html>",
        content_type="text/html",
    )
    wrapper.env["PILOT_HTTP_SOURCES"] = f"{html} {wrapper.good_url}"

    result = wrapper.run()

    assert result.rc == 0, result.stdout
    assert server.fetches() == ["/proxy/pilot3.tar.gz", "/pilot/pilot3.tar.gz"]
    assert result.log_lines(f"WARNING: source failed: {html}: not a gzip file, it starts with: <html>")
    assert result.log_lines(f"pilot fetched from {wrapper.good_url}")
    assert result.log_lines("PILOTVERSION: 3.99.0.test")
    assert server.monitor_calls() == [v2("running"), v2("exiting", rc="0", ids=JOB_ID)]


def test_all_sources_failing(wrapper: Wrapper, server: RecordingServer):
    missing = server.base + "/missing.tar.gz"
    html = server.serve("/html.tar.gz", b"<html>proxy error</html>", content_type="text/html")
    nopilot = server.serve("/nopilot.tar.gz", make_tarball("nopilot"))
    corrupt = server.serve("/corrupt.tar.gz", b"\x1f\x8b" + b"not really gzip" * 20)
    refused = f"http://127.0.0.1:{closed_port()}/pilot3.tar.gz"
    wrapper.env["PILOT_HTTP_SOURCES"] = f"  {missing} {html}\t{nopilot} {corrupt} {refused} "

    result = wrapper.run()

    assert result.rc == 116
    only_error(result.errors, "WRAPPER ERROR: pilot code not fetched: no source gave a gzip tarball")
    assert server.fetches() == ["/missing.tar.gz", "/html.tar.gz", "/nopilot.tar.gz", "/corrupt.tar.gz"]
    assert result.log_lines(f"source failed: {missing}: download failed (curl exit 22)")
    assert result.log_lines(f"source failed: {html}: not a gzip file, it starts with: <html>proxy error")
    assert result.log_lines(f"source failed: {nopilot}: the tarball holds no pilot.py")
    assert result.log_lines(f"source failed: {corrupt}: not a readable gzip tarball")
    assert result.log_lines(f"source failed: {refused}: download failed (curl exit 7)")
    ended_with_fault(server, "116")
    assert not result.ran_pilot
    assert list(wrapper.tmpdir.iterdir()) == []


def test_transient_source_error_is_retried(wrapper: Wrapper, server: RecordingServer):
    wrapper.env["PILOT_HTTP_SOURCES"] = server.serve(
        "/flaky/pilot3.tar.gz", make_tarball("pilot3"), fail_first=1
    )
    wrapper.env["PILOT_HTTP_RETRIES"] = "1"

    result = wrapper.run()

    assert result.rc == 0, result.stdout
    assert server.fetches() == ["/flaky/pilot3.tar.gz", "/flaky/pilot3.tar.gz"]


def test_default_sources_built_from_url_with_cvmfs_fallback(wrapper: Wrapper, tmp_path: Path):
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 25085)) == 0:
            pytest.skip("something listens on 127.0.0.1:25085")
    del wrapper.env["PILOT_HTTP_SOURCES"]
    cvmfs = tmp_path / "cvmfs"
    write_tarball(cvmfs / "atlas.cern.ch/repo/sw/PandaPilot/tar/pilot3.tar.gz")

    result = wrapper.run(
        ["-q", "TEST_QUEUE", "--pilot-user", "ATLAS", "--url=https://127.0.0.1:25443/server"]
    )

    assert result.rc == 0, result.stdout
    cache = "http://127.0.0.1:25085/cache/pilot/pilot3.tar.gz"
    fallback = f"file://{cvmfs}/atlas.cern.ch/repo/sw/PandaPilot/tar/pilot3.tar.gz"
    assert result.log_lines(f"pilot sources: {cache} {fallback}")
    assert result.log_lines(f"source failed: {cache}: download failed (curl exit 7)")
    assert result.log_lines(f"pilot fetched from {fallback}")


# ---- work dir -----------------------------------------------------------------------------


def test_osg_wn_tmp_is_preferred(wrapper: Wrapper, tmp_path: Path):
    osg = tmp_path / "osg"
    osg.mkdir()
    wrapper.env["OSG_WN_TMP"] = str(osg)

    result = wrapper.run()

    assert result.rc == 0
    assert Path(result.marker()["cwd"]).parent == osg


def test_readonly_tmpdir_falls_back_to_current_dir(wrapper: Wrapper, readonly_dir: Path):
    wrapper.env["TMPDIR"] = str(readonly_dir)

    result = wrapper.run()

    assert result.rc == 0, result.stdout
    assert Path(result.marker()["cwd"]).parent == wrapper.cwd
    assert result.log_lines(f"WARNING: cannot make a work dir in TMPDIR={readonly_dir}")
    assert list(wrapper.cwd.iterdir()) == []


def test_no_usable_work_dir(wrapper: Wrapper, server: RecordingServer, readonly_dir: Path):
    wrapper.env["TMPDIR"] = str(readonly_dir)
    wrapper.env["OSG_WN_TMP"] = str(readonly_dir)

    result = wrapper.run(cwd=readonly_dir)

    assert result.rc == 115
    assert result.errors == [
        "WRAPPER ERROR: no usable work directory (tried OSG_WN_TMP, TMPDIR, current dir)"
    ]
    assert len(result.log_lines("WARNING: cannot make a work dir in")) == 3
    ended_with_fault(server, "115")
    assert server.fetches() == []


# ---- signals ------------------------------------------------------------------------------


def _start(wrapper: Wrapper, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "wrapper.out"
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            wrapper.command(), env=wrapper.env, cwd=wrapper.cwd, stdout=stdout, stderr=subprocess.STDOUT
        )
    return proc, out


def _wait_for(path: Path, proc: subprocess.Popen[bytes], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


@pytest.mark.parametrize(
    ("sig", "mode", "expected_rc"),
    [
        (signal.SIGTERM, "handlers", 200 + signal.SIGTERM),
        (signal.SIGINT, "handlers", 200 + signal.SIGINT),
        (signal.SIGUSR1, "handlers", 200 + signal.SIGUSR1),
        (signal.SIGQUIT, "handlers", 200 + signal.SIGQUIT),
        # no handler in the pilot: the signal must arrive with its default action (not ignored)
        (signal.SIGTERM, "default", 128 + signal.SIGTERM),
        (signal.SIGINT, "default", 128 + signal.SIGINT),
    ],
)
def test_signal_to_wrapper_reaches_the_pilot(
    wrapper: Wrapper,
    server: RecordingServer,
    tmp_path: Path,
    sig: signal.Signals,
    mode: str,
    expected_rc: int,
):
    wrapper.env["TEST_PILOT_WAIT_SIGNAL"] = mode
    proc, out = _start(wrapper, tmp_path)
    try:
        assert _wait_for(Path(f"{wrapper.marker_path}.ready"), proc, within=20), out.read_text()
        proc.send_signal(sig)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    output = out.read_text()
    assert rc == expected_rc, output
    assert f"got {sig.name}: forwarding it to the pilot" in output
    assert server.monitor_calls() == [v2("running"), v2("exiting", rc=str(expected_rc), ids=JOB_ID)], output
    if mode == "handlers":
        assert Path(f"{wrapper.marker_path}.signals").read_text() == f"{int(sig)}\n"
    assert list(wrapper.tmpdir.iterdir()) == []


def test_signal_before_the_pilot_starts(wrapper: Wrapper, server: RecordingServer, tmp_path: Path):
    silent = SilentServer()
    try:
        # two hanging sources: the signal lands while curl waits on one of them
        url = silent.base + "/pilot3.tar.gz"
        wrapper.env.update({"PILOT_HTTP_SOURCES": f"{url} {url}", "PILOT_HTTP_MAX_TIME": "2"})
        proc, out = _start(wrapper, tmp_path)
        try:
            assert silent.wait_accepted(1, within=20) >= 1
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        silent.stop()

    output = out.read_text()
    assert rc == 128 + signal.SIGTERM, output
    errors = [line for line in output.splitlines() if line.startswith("WRAPPER ERROR:")]
    assert errors == ["WRAPPER ERROR: got SIGTERM before the pilot was started"]
    ended_with_fault(server, "143")
    assert not wrapper.marker_path.exists()
    assert list(wrapper.tmpdir.iterdir()) == []


def _processes_mentioning(text: str) -> list[int]:
    """Pids of processes whose command line contains ``text`` (to find a curl left behind)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def _signal_and_time(proc: subprocess.Popen[bytes], sig: signal.Signals) -> tuple[int, float]:
    start = time.monotonic()
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, time.monotonic() - start


# The documented bounds (header of the wrapper): APFMON_SIGNAL_MAX_TIME (3) + 1 s
# before the pilot started, APF_PILOT_GRACE (5) + 3 + 1 s while it runs. Slack for a loaded machine.
EARLY_BOUND = 3 + 1 + 2
PILOT_BOUND = 5 + 3 + 1 + 2


def test_sigterm_stops_a_slow_download_at_once(wrapper: Wrapper, server: RecordingServer, tmp_path: Path):
    silent = SilentServer()
    url = f"{silent.base}/slow-{tmp_path.name}/pilot3.tar.gz"
    try:
        wrapper.env.update(
            {"PILOT_HTTP_SOURCES": url, "PILOT_HTTP_MAX_TIME": "120", "PILOT_HTTP_CONNECT_TIMEOUT": "60"}
        )
        proc, out = _start(wrapper, tmp_path)
        assert silent.wait_accepted(1, within=20) >= 1, out.read_text()
        rc, elapsed = _signal_and_time(proc, signal.SIGTERM)
    finally:
        silent.stop()

    output = out.read_text()
    assert rc == 128 + signal.SIGTERM, output
    assert elapsed < EARLY_BOUND, (elapsed, output)
    ended_with_fault(server, "143")
    assert list(wrapper.tmpdir.iterdir()) == []  # work dir removed
    assert _processes_mentioning(url) == []  # no curl left behind


_HUNG_MONITOR = {
    "APFMON_CONNECT_TIMEOUT": "60",
    "APFMON_MAX_TIME": "60",
    "APFMON_RETRIES": "2",
    "APFMON_RETRY_DELAY": "10",
}


def test_sigterm_while_a_hung_monitor_is_told_running(wrapper: Wrapper, tmp_path: Path):
    """Before the pilot started (its download hangs too): the running report in the background
    is stopped at once with the rest, fault gets one short attempt."""
    silent = SilentServer()
    try:
        monitor = f"{silent.base}/api-{tmp_path.name}"
        wrapper.env.update(
            {**_HUNG_MONITOR, "APFMON": monitor, "PILOT_HTTP_SOURCES": silent.base + "/pilot3.tar.gz"}
        )
        proc, out = _start(wrapper, tmp_path)
        assert silent.wait_accepted(2, within=20) >= 2, out.read_text()  # running and the download
        rc, elapsed = _signal_and_time(proc, signal.SIGTERM)
    finally:
        silent.stop()

    output = out.read_text()
    assert rc == 128 + signal.SIGTERM, output
    assert elapsed < EARLY_BOUND, (elapsed, output)
    assert "WRAPPER ERROR: got SIGTERM before the pilot was started" in output
    assert "monitor: fault attempt 1 failed (curl exit 28" in output  # one short attempt
    assert not wrapper.marker_path.exists()
    assert _processes_mentioning(monitor) == []  # the background report's curl is gone too


def test_sigterm_while_the_wrapper_waits_for_a_hung_running_report(wrapper: Wrapper, tmp_path: Path):
    """The pilot has ended; the wrapper lets the running report's attempt under way finish (up to
    APFMON_MAX_TIME): a signal then stops it at once, and exiting gets one short attempt."""
    silent = SilentServer()
    try:
        monitor = f"{silent.base}/api-{tmp_path.name}"
        wrapper.env.update({**_HUNG_MONITOR, "APFMON": monitor})
        proc, out = _start(wrapper, tmp_path)
        deadline = time.monotonic() + 20
        while "==== pilot END" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "==== pilot END" in out.read_text()
        rc, elapsed = _signal_and_time(proc, signal.SIGTERM)
    finally:
        silent.stop()

    output = out.read_text()
    assert rc == 0, output
    assert elapsed < EARLY_BOUND, (elapsed, output)
    assert "got SIGTERM after the pilot ended" in output
    assert "monitor: exiting attempt 1 failed (curl exit 28" in output  # one short attempt
    assert _processes_mentioning(monitor) == []


def test_pilot_ignoring_sigterm_is_killed_after_the_grace(
    wrapper: Wrapper, server: RecordingServer, tmp_path: Path
):
    wrapper.env["TEST_PILOT_WAIT_SIGNAL"] = "ignore"
    proc, out = _start(wrapper, tmp_path)
    try:
        assert _wait_for(Path(f"{wrapper.marker_path}.ready"), proc, within=20), out.read_text()
    except AssertionError:
        proc.kill()
        raise
    rc, elapsed = _signal_and_time(proc, signal.SIGTERM)

    output = out.read_text()
    assert rc == 128 + signal.SIGKILL, output
    assert 5 <= elapsed < PILOT_BOUND, (elapsed, output)
    assert "the pilot still runs 5 s after the signal: SIGKILL" in output
    assert "pilot outcome: 137, killed by signal 9" in output
    assert server.monitor_calls() == [v2("running"), v2("exiting", rc="137", ids=JOB_ID)]
    assert list(wrapper.tmpdir.iterdir()) == []


# Starts a child and signals it at once, before the forked copy of the wrapper has exec'd: bash
# runs its inherited EXIT trap there when a fatal signal lands in that window (this is how the
# wrapper's own SIGUSR2 to the watchdog once removed the work dir before pandaIDs.out was read).
# 20 rounds per signal: that some land before the exec is certain in practice. (A signal can also
# be lost there, so the child only sleeps 1 s.)
_SIGNAL_FRESH_CHILDREN = """\
for sig in USR2 TERM HUP; do
    for round in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        sleep 1 &
        kill -s "$sig" "$!"
        wait "$!"
    done
done
echo "SITE SETUP signalled its children"
"""


def test_a_signalled_child_before_its_exec_does_not_clean_up(
    wrapper: Wrapper, server: RecordingServer, tmp_path: Path
):
    area = tmp_path / "area"
    area.mkdir()
    (area / "setup.sh").write_text(_SIGNAL_FRESH_CHILDREN)
    wrapper.env["ATLAS_LOCAL_AREA"] = str(area)

    result = wrapper.run()

    output = result.stdout + result.stderr
    assert result.rc == 0, output
    assert "SITE SETUP signalled its children" in result.stdout
    assert result.errors == []
    assert server.monitor_calls() == [v2("running"), v2("exiting", rc="0", ids=JOB_ID)], output
    removed = result.log_lines("removed work dir")
    assert len(removed) == 1, output
    assert result.stdout.index("==== pilot END") < result.stdout.index(removed[0]), output
    assert list(wrapper.tmpdir.iterdir()) == []


# ---- environment, limits, site set-up -----------------------------------------------------


def test_apf_force_variables_are_exported_first(wrapper: Wrapper, tmp_path: Path):
    forced_tmp = tmp_path / "forced-tmp"
    forced_tmp.mkdir()
    wrapper.env.update(
        {
            "SITE_VAR": "condor value",
            "APF_FORCE_SITE_VAR": "forced value",
            "APF_FORCE_NEW_VAR": "new",
            "APF_FORCE_TMPDIR": str(forced_tmp),
            "APF_FORCE_UID": "0",
            "TEST_PILOT_SHOW_ENV": "SITE_VAR,NEW_VAR,TMPDIR",
        }
    )

    result = wrapper.run()

    assert result.rc == 0, result.stdout
    seen = result.marker()
    assert seen["env"] == {"SITE_VAR": "forced value", "NEW_VAR": "new", "TMPDIR": str(forced_tmp)}
    assert Path(seen["cwd"]).parent == forced_tmp  # forced before the work dir was chosen
    assert result.log_lines("APF_FORCE_SITE_VAR: exported as SITE_VAR")
    assert result.log_lines("WARNING: APF_FORCE_UID: cannot set UID (read-only in bash), ignored")


def test_memory_limit_from_k(wrapper: Wrapper):
    result = wrapper.run([*ARGS, "-k", "3000"])

    assert result.rc == 0, result.stdout
    assert result.marker()["rlimit_as"] == 3000 * 1024 * 1024
    assert result.marker()["argv"] == PILOT_ARGV  # -k is the wrapper's own


def test_no_memory_limit_without_k(wrapper: Wrapper):
    result = wrapper.run()

    assert result.marker()["rlimit_as"] == resource.getrlimit(resource.RLIMIT_AS)[0]


def test_site_setups_are_sourced_in_the_work_dir(wrapper: Wrapper, tmp_path: Path):
    sw = tmp_path / "sw"
    (sw / "ddm/latest").mkdir(parents=True)
    (sw / "local").mkdir()
    # site scripts are not nounset-clean and may change directory
    (sw / "ddm/latest/setup.sh").write_text('export DDM_SETUP="done${UNSET_IN_SITE_SCRIPT}"\ncd /\n')
    (sw / "local/setup.sh").write_text('export LOCAL_SETUP_ARGS="$*"\n')
    wrapper.env.update({"VO_ATLAS_SW_DIR": str(sw), "TEST_PILOT_SHOW_ENV": "DDM_SETUP,LOCAL_SETUP_ARGS"})

    result = wrapper.run()

    assert result.rc == 0, result.stdout + result.stderr
    seen = result.marker()
    assert seen["env"] == {"DDM_SETUP": "done", "LOCAL_SETUP_ARGS": "-s TEST_SITE"}
    assert Path(seen["cwd"]).parent == wrapper.tmpdir
    assert result.log_lines(f"sourcing DDM set-up: {sw}/ddm/latest/setup.sh")


def test_atlas_local_area_overrides_the_local_setup(wrapper: Wrapper, tmp_path: Path):
    sw, area = tmp_path / "sw", tmp_path / "area"
    (sw / "local").mkdir(parents=True)
    area.mkdir()
    (sw / "local/setup.sh").write_text("export WRONG_SETUP=1\n")
    (area / "setup.sh").write_text("export AREA_SETUP=1\n")
    wrapper.env.update(
        {
            "VO_ATLAS_SW_DIR": str(sw),
            "ATLAS_LOCAL_AREA": str(area),
            "TEST_PILOT_SHOW_ENV": "AREA_SETUP,WRONG_SETUP",
        }
    )

    result = wrapper.run()

    assert result.marker()["env"] == {"AREA_SETUP": "1", "WRONG_SETUP": None}


def test_missing_site_setups_are_only_noted(wrapper: Wrapper, tmp_path: Path):
    result = wrapper.run()

    assert result.rc == 0
    sw = tmp_path / "cvmfs/atlas.cern.ch/repo/sw"
    assert result.log_lines(f"note: no DDM set-up ({sw}/ddm/latest/setup.sh), continuing without it")
    assert result.log_lines(f"note: no ATLAS local site set-up ({sw}/local/setup.sh), continuing without it")


def test_debug_information_with_secrets_masked(wrapper: Wrapper):
    secrets = {
        "PANDA_AUTH_TOKEN": "tok-0123456789",
        "DB_PASSWORD": "pw-0123456789",
        "MY_SECRET_THING": "sec-0123456789",
        "INLINE_PROXY": "-----BEGIN CERTIFICATE-----\nMIIBproxy0123456789\n-----END CERTIFICATE-----",
        "APF_FORCE_OIDC_TOKEN": "forced-tok-0123456789",
    }
    wrapper.env.update({**secrets, "PLAIN_SETTING": "visible-value"})

    result = wrapper.run([*ARGS, "-k", "2500"])

    assert result.rc == 0
    output = result.stdout + result.stderr
    for value in secrets.values():
        assert "0123456789" not in output, value
    lines = result.stdout.splitlines()
    for name in ("PANDA_AUTH_TOKEN", "DB_PASSWORD", "MY_SECRET_THING", "INLINE_PROXY", "OIDC_TOKEN"):
        assert f"{name}=<masked>" in lines
    assert "PLAIN_SETTING=visible-value" in lines
    env_block = lines[lines.index("---- environment (secrets masked) ----") + 1 :]
    env_names = [line.split("=", 1)[0] for line in env_block[: env_block.index("")]]
    assert env_names == sorted(env_names)
    assert result.log_lines("runpilot3-wrapper version ")
    assert result.log_lines("uname -a: Linux")
    assert result.log_lines("host: ")
    assert result.log_lines(f"work dir: {result.marker()['cwd']}")
    assert any(line.startswith("Filesystem") for line in lines)  # df of the work dir
    assert any("virtual memory" in line and line.endswith(str(2500 * 1024)) for line in lines)
    assert "---- proxy ----" in lines


# ---- python -------------------------------------------------------------------------------

# The tools the wrapper uses besides python; bash, curl, tar and gzip are required for these tests.
_TOOLS = ("bash", "curl", "tar", "gzip", "mktemp", "rm", "chmod", "date", "hostname", "uname", "id")
_TOOLS += ("df", "od", "head", "tr", "sort", "sleep", "timeout", "cat", "grep", "tail")


def _bin_without_python(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in _TOOLS:
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
        elif tool in ("bash", "curl", "tar", "gzip"):
            pytest.skip(f"{tool} not installed")
    return bindir


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def test_no_working_python(wrapper: Wrapper, server: RecordingServer, tmp_path: Path):
    bindir = _bin_without_python(tmp_path)
    _script(bindir / "python3", "#!/bin/sh\necho 'python3: cannot load libpython' >&2\nexit 1\n")
    wrapper.env["PATH"] = str(bindir)

    result = wrapper.run()

    assert result.rc == 117, result.stdout + result.stderr
    assert result.errors == [f"WRAPPER ERROR: no working python (tried python3 python; PATH={bindir})"]
    assert result.log_lines("WARNING: python: python3 does not run")
    assert result.log_lines("python: python not found")
    ended_with_fault(server, "117")
    assert not result.ran_pilot
    assert list(wrapper.tmpdir.iterdir()) == []


def test_apf_python_is_used(wrapper: Wrapper, tmp_path: Path):
    wrapper.env["PATH"] = str(_bin_without_python(tmp_path))
    wrapper.env["APF_PYTHON"] = sys.executable

    result = wrapper.run()

    assert result.rc == 0, result.stdout + result.stderr
    assert os.path.realpath(result.marker()["executable"]) == os.path.realpath(sys.executable)


def test_broken_apf_python_falls_back(wrapper: Wrapper, tmp_path: Path):
    wrapper.env["APF_PYTHON"] = str(tmp_path / "no-such-python")

    result = wrapper.run()

    assert result.rc == 0
    assert result.log_lines(f"python: {tmp_path}/no-such-python not found")


def test_python_36_or_newer_is_preferred(wrapper: Wrapper, tmp_path: Path):
    bindir = _bin_without_python(tmp_path)
    _script(bindir / "python3", "#!/bin/sh\necho 2.7.18\n")  # runs, but reports an old version
    (bindir / "python").symlink_to(sys.executable)
    wrapper.env["PATH"] = str(bindir)

    result = wrapper.run()

    assert result.rc == 0, result.stdout + result.stderr
    assert result.log_lines("python: python3 is 2.7.18, older than 3.6")
    assert result.log_lines(f"using python {bindir}/python (")
    assert os.path.realpath(result.marker()["executable"]) == os.path.realpath(sys.executable)


# ---- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing -q <queue>"),
        (["-s", "TEST_SITE", "--pilot-user", "ATLAS"], "missing -q <queue>"),
        (["-q"], "option -q needs a value"),
        (["-s", "-q", "TEST_QUEUE"], "option -s needs a value"),
        ([*ARGS, "--piloturl"], "option --piloturl needs a value"),
        ([*ARGS, "-k", "lots"], "-k lots is not a memory size in MB"),
        ([*ARGS, "-k", "0"], "-k 0 is not a memory size in MB"),
        ([*ARGS, "--pythonversion", "2"], "--pythonversion 2: pilot 3 needs python 3 (3 or 3.N)"),
        ([*ARGS, "--pilotversion", "2"], "--pilotversion 2: pilot 2 is not supported, only pilot 3"),
        (
            [*ARGS, "--piloturl", "ftp://x/p.tgz"],
            "--piloturl ftp://x/p.tgz: expected an http(s):// or file:/// URL",
        ),
    ],
)
def test_bad_arguments(wrapper: Wrapper, server: RecordingServer, args: list[str], message: str):
    result = wrapper.run(args)

    assert result.rc == 114
    assert result.errors == [f"WRAPPER ERROR: {message}"]
    assert "usage: runpilot3-wrapper.sh" in result.stderr
    assert server.monitor_calls() == [v2("fault", rc="114")]
    assert server.fetches() == []


def test_without_url_the_pilot_comes_from_cvmfs(wrapper: Wrapper, tmp_path: Path):
    del wrapper.env["PILOT_HTTP_SOURCES"]
    write_tarball(tmp_path / "cvmfs/atlas.cern.ch/repo/sw/PandaPilot/tar/pilot3.tar.gz")

    result = wrapper.run(["-q", "TEST_QUEUE", "--pilot-user", "ATLAS"])

    assert result.rc == 0, result.stdout
    cvmfs = f"file://{tmp_path}/cvmfs/atlas.cern.ch/repo/sw/PandaPilot/tar/pilot3.tar.gz"
    assert result.log_lines(f"pilot sources: {cvmfs}")
    assert result.marker()["argv"] == [
        "-q",
        "TEST_QUEUE",
        "-j",
        "managed",
        "-i",
        "PR",
        "--pilot-user",
        "ATLAS",
    ]


def test_pilotversion_picks_the_cvmfs_tarball(wrapper: Wrapper, tmp_path: Path):
    del wrapper.env["PILOT_HTTP_SOURCES"]
    write_tarball(tmp_path / "cvmfs/atlas.cern.ch/repo/sw/PandaPilot/tar/pilot3-3.7.0.36.tar.gz")

    result = wrapper.run([*ARGS, "--pilotversion", "3.7.0.36"])

    assert result.rc == 0, result.stdout
    cvmfs = f"file://{tmp_path}/cvmfs/atlas.cern.ch/repo/sw/PandaPilot/tar/pilot3-3.7.0.36.tar.gz"
    assert result.log_lines(f"pilot sources: {cvmfs}")  # no PanDA cache: it serves only the current one


def test_piloturl_wins_over_pilot_http_sources(wrapper: Wrapper, server: RecordingServer, tmp_path: Path):
    local = write_tarball(tmp_path / "local" / "pilot3.tar.gz")

    result = wrapper.run([*ARGS, "--piloturl", f"file://{local}"])

    assert result.rc == 0, result.stdout
    assert server.fetches() == []
    assert result.log_lines(f"pilot fetched from file://{local}")


def test_wrapper_options_are_taken_and_everything_else_goes_to_pilot_unchanged(
    wrapper: Wrapper, tmp_path: Path
):
    odd = ["--note", "two words", "--x", "$HOME", "--y", 'it\'s "quoted"', "--z", "*", "--empty", ""]
    sw = tmp_path / "sw"
    (sw / "local").mkdir(parents=True)
    (sw / "local/setup.sh").write_text("echo SITE SETUP SOURCED\n")
    wrapper.env["VO_ATLAS_SW_DIR"] = str(sw)

    result = wrapper.run(
        ["-q", "Q1", "-s", "S1", "-r", "R1", "-j", "ptest", "-i", "RC", "--container", "--localpy",
         "--pythonversion", "3", "--pilot-user", "ATLAS", "-d", "-u", "-t", *odd]
    )  # fmt: skip

    assert result.rc == 0, result.stdout + result.stderr
    argv = result.marker()["argv"]
    assert argv == ["-q", "Q1", "-j", "ptest", "-i", "RC", "--pilot-user", "ATLAS", "-d", "-u", "-t", *odd]
    assert result.log_lines("queue Q1, site S1, resource R1, job label ptest, pilot type RC")
    assert result.log_lines("--container: no DDM nor ATLAS local site set-up")
    assert "SITE SETUP SOURCED" not in result.stdout
    assert result.log_lines("--localpy: using the node's python")


def test_mute_sends_no_reports(wrapper: Wrapper, server: RecordingServer):
    result = wrapper.run([*ARGS, "--mute"])

    assert result.rc == 0
    assert server.monitor_calls() == []
    assert result.log_lines("monitor: --mute, no reports")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "SITE", "-h", "QUEUE", "-p", "25443"], "-h QUEUE: the queue is -q <queue> (-h is help)"),
        (
            [*ARGS[:-2], "-w", "https://pandaserver.cern.ch"],
            "-w https://pandaserver.cern.ch: -w is pilot 3's workflow",
        ),
        ([*ARGS, "-u", "managed"], "-u managed: pilot 3's -u takes no value; the job label is -j <label>"),
    ],
)
def test_apf1_style_options_are_refused(
    wrapper: Wrapper, server: RecordingServer, args: list[str], message: str
):
    result = wrapper.run(args)

    assert result.rc == 118
    only_error(result.errors, f"WRAPPER ERROR: {message}")
    assert result.errors[0].endswith("(an APF 1 style option that pilot 3 would misread; nothing was run)")
    assert server.monitor_calls() == [v2("fault", rc="118")]
    assert server.fetches() == []
    assert not result.ran_pilot


def test_no_job_is_reported_as_20(wrapper: Wrapper, server: RecordingServer):
    """Pilot 3 exits 0 when PanDA had no job for it; only pandaIDs.out tells a job ran."""
    del wrapper.env["TEST_PILOT_PANDAIDS"]

    result = wrapper.run()

    assert result.rc == 20
    assert server.monitor_calls() == [v2("running"), v2("exiting", rc="20")]
    assert result.log_lines("pilot outcome: 20, no job: PanDA had none for this queue and label")


@pytest.mark.parametrize(
    ("pilot_rc", "outcome"),
    [
        (79, "getJob failed: PanDA server communication failure"),
        (1, "pilot failure (e.g. the payload failed)"),
        (2, "pilot 3 rejected its arguments"),
        (143, "killed by signal 15"),
        (70, "pilot error 70"),
    ],
)
def test_pilot_outcomes_are_named(wrapper: Wrapper, server: RecordingServer, pilot_rc: int, outcome: str):
    wrapper.env["TEST_PILOT_RC"] = str(pilot_rc)

    result = wrapper.run()

    assert result.rc == pilot_rc
    assert result.log_lines(f"pilot outcome: {pilot_rc}, {outcome}")
    assert server.monitor_calls()[-1] == v2("exiting", rc=str(pilot_rc), ids=JOB_ID)


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(wrapper: Wrapper, server: RecordingServer, flag: str):
    result = wrapper.run([flag])

    assert result.rc == 0
    assert result.stdout.count("usage: runpilot3-wrapper.sh") == 1
    assert result.errors == []
    assert server.monitor_calls() == []


def test_bad_numeric_settings_fall_back_to_defaults(wrapper: Wrapper):
    wrapper.env.update({"APFMON_MAX_TIME": "0", "PILOT_HTTP_RETRIES": "two"})

    result = wrapper.run()

    assert result.rc == 0
    assert result.log_lines("WARNING: APFMON_MAX_TIME=0 is not a valid timeout, using 20")
    assert result.log_lines("WARNING: PILOT_HTTP_RETRIES=two is not a valid count, using 2")


# ---- static checks ------------------------------------------------------------------------


def test_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    proc = subprocess.run(["shellcheck", str(WRAPPER)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bash_syntax_and_nounset():
    assert subprocess.run(["bash", "-n", str(WRAPPER)], timeout=30).returncode == 0
    assert "\nset -u\n" in WRAPPER.read_text()
