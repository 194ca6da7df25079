"""`autopyfactory check` as the go-live gate: credentials, the wrapper, placeholders,
a loopback monitor, `--json`, and `--online` against real servers on 127.0.0.1 (a PanDA/CRIC
stand-in and the real monitor service)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from autopyfactory.edges.panda import STATS_PATH
from tests.support.check import DUMP, EXAMPLE, WRAPPER, example_with, findings, run
from tests.support.monitor import Monitor, new_factory, running_monitor, sqlite_url
from tests.support.proxies import proxy


def test_the_shipped_example_does_not_pass_with_its_placeholders() -> None:
    result = run("check", "-c", EXAMPLE, "--schedconfig", DUMP)
    assert result.returncode == 1
    assert findings(result.stdout, "error") == [
        "executable /usr/libexec/autopyfactory/runpilot3-wrapper.sh: no such file"
        " (13 labels, e.g. CERN-ce503.cern.ch-share)",
        "[Factory] factoryId = example-factory: the example's placeholder; name this factory",
        "[Factory] factoryOwner = admin@example.org: a placeholder host from the example",
        "[Factory] baseLogDirUrl = http://factory.example.org/pilots: a placeholder host from the example",
    ]
    assert result.stdout.endswith("\n13 labels, 4 errors, 0 warnings\n")


def test_a_placeholder_ce_in_a_queue_section(tmp_path: Path) -> None:
    path, line = example_with(tmp_path, "[CERN]", "ceEndpoint = ce01.example.org:9619\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 1
    assert findings(result.stdout, "error") == [
        f"ceEndpoint = ce01.example.org:9619 ({path}:{line}): a placeholder host from the example"
    ]


def test_credentials_missing_unreadable_expiring(tmp_path: Path) -> None:
    short, soon = proxy(tmp_path / "short.pem", 1), proxy(tmp_path / "soon.pem", 8)
    (tmp_path / "token-dir").mkdir()
    queues = (
        f"[NDGF-T1]\nx509userproxy = {short}\n"
        f"[TEST-SITE]\nx509userproxy = {soon}\n"
        f"[DOWN-SITE]\nx509userproxy = {tmp_path}/gone.pem\nscitokensFile = {tmp_path}/token-dir\n"
    )
    path, _ = example_with(tmp_path, "[CERN]", queues)
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 1
    errors = findings(result.stdout, "error")
    assert any(
        e.startswith(f"proxy {short}: ")
        and e.endswith(
            "left, below proxyMinLifetime 6h: nothing submitted (2 labels, e.g. NDGF-T1-arc01.ndgf.org-atlas)"
        )
        for e in errors
    ), errors
    gone = f"proxy {tmp_path}/gone.pem: no such file: nothing submitted"
    assert f"{gone} (label DOWN-SITE-ce01.down.example-default)" in errors
    assert any(e.startswith(f"token {tmp_path}/token-dir: cannot read: Is a directory") for e in errors), (
        errors
    )
    [warning] = findings(result.stdout, "warning")
    assert warning.startswith(f"proxy {soon}: 7h5")
    assert warning.endswith(
        "left, below 2 x proxyMinLifetime 12h: renew it soon (label TEST-SITE-ce01.test.example-default)"
    )


def test_the_wrapper_must_be_executable(tmp_path: Path) -> None:
    wrapper = tmp_path / "wrapper.sh"
    shutil.copy(WRAPPER, wrapper)
    wrapper.chmod(0o644)
    path, _ = example_with(tmp_path, "[CERN]", f"executable = {wrapper}\n")
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 1
    assert findings(result.stdout, "error") == [
        f"executable {wrapper}: not executable (chmod +x) (13 labels, e.g. CERN-ce503.cern.ch-share)"
    ]
    wrapper.chmod(0o755)
    assert run("check", "-c", path, "--schedconfig", DUMP).returncode == 0


def test_a_loopback_monitor_with_pilots_elsewhere(tmp_path: Path) -> None:
    monitor = "monitorURL = http://localhost:8000/api\nmonitorToken = x\n"
    path, _ = example_with(tmp_path, "[Factory]", monitor)
    result = run("check", "-c", path, "--schedconfig", DUMP)
    assert result.returncode == 1
    [error] = findings(result.stdout, "error")
    assert error.startswith(
        "[Factory] monitorURL = http://localhost:8000/api is a loopback address, but pilots"
    )
    local, _ = example_with(tmp_path, "[QueueDefaults]", "batch = local\n")
    local.write_text(local.read_text().replace("[Factory]\n", f"[Factory]\n{monitor}"))
    assert run("check", "-c", local, "--schedconfig", DUMP).returncode == 0  # pilots on this host


def test_json_output(tmp_path: Path) -> None:
    path, _ = example_with(tmp_path, "[CERN]", "[NO-SUCH-PQ]\n")
    result = run("check", "-c", path, "--schedconfig", DUMP, "--json")
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["schedconfig"] == {"ok": True, "message": f"6 queues from {DUMP}"}
    assert len(answer["labels"]) == 13
    first = answer["labels"][0]
    assert first["name"] == "CERN-ce503.cern.ch-share"
    assert first["resources"]["maxrss"] == 32000
    assert first["settings"]["maxrss"] == {
        "value": 32000,
        "source": "schedconfig",
        "origin": "schedconfig CERN.maxrss",
    }
    assert first["settings"]["holdRecoverableCodes"]["value"] == []
    assert answer["findings"] == [
        {"level": "error", "message": "[NO-SUCH-PQ] skipped: PanDA queue 'NO-SUCH-PQ' is not in schedconfig"}
    ]
    assert (answer["errors"], answer["warnings"]) == (1, 0)


# --- --online ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    with running_monitor(sqlite_url(tmp_path_factory.mktemp("monitor"))) as service:
        yield service


def online_config(tmp_path: Path, httpserver, monitor_url: str, factory_id: str, token: str) -> Path:
    httpserver.expect_request(STATS_PATH).respond_with_json(
        {"success": True, "data": {"CERN": {"activated": 3}}}
    )
    httpserver.expect_request("/cric.json").respond_with_data(
        DUMP.read_text(), content_type="application/json"
    )
    values = {
        "pandaserver": httpserver.url_for("/").rstrip("/"),
        "schedconfig": httpserver.url_for("/cric.json"),
        "stateDir": f"{tmp_path}/state",
        "factoryId": factory_id,
    }
    path, _ = example_with(tmp_path, "[QueueDefaults]", "batch = local\n")
    text = path.read_text()
    for key, value in values.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.MULTILINE)
    path.write_text(
        text.replace("[Factory]\n", f"[Factory]\nmonitorURL = {monitor_url}\nmonitorToken = {token}\n", 1)
    )
    return path


def test_online_everything_answers_and_the_token_is_accepted(
    tmp_path: Path, httpserver, monitor: Monitor
) -> None:
    with requests.Session() as session:
        factory = new_factory(monitor, session)
    path = online_config(tmp_path, httpserver, monitor.api, factory.name, factory.token)
    result = run("check", "-c", path, "--online")
    assert result.returncode == 0, result.stdout + result.stderr
    assert findings(result.stdout, "ok") == [
        f"PanDA {httpserver.url_for('/').rstrip('/')}: answers, job statistics for 1 sites",
        f"schedconfig {httpserver.url_for('/cric.json')}: answers",
        f"monitor {monitor.api}: answers",
        "monitor: monitorToken accepted",
    ]
    labels = requests.get(f"{monitor.api}/factories/{factory.name}/labels", timeout=10).json()
    assert labels == []  # check wrote nothing at the monitor


def test_online_a_wrong_token_and_unreachable_panda(tmp_path: Path, httpserver, monitor: Monitor) -> None:
    with requests.Session() as session:
        factory = new_factory(monitor, session)
    path = online_config(tmp_path, httpserver, monitor.api, factory.name, "not-the-token")
    path.write_text(
        path.read_text().replace(
            f"pandaserver = {httpserver.url_for('/').rstrip('/')}", "pandaserver = http://127.0.0.1:9"
        )
    )
    result = run("check", "-c", path, "--online")
    assert result.returncode == 1
    errors = findings(result.stdout, "error")
    assert errors[0].startswith(f"PanDA: http://127.0.0.1:9{STATS_PATH}: ")
    assert errors[1].startswith("monitor: monitorToken rejected (HTTP 401): ")
    assert "schedconfig" not in " ".join(errors)


def test_without_online_nothing_but_schedconfig_is_asked(
    tmp_path: Path, httpserver, monitor: Monitor
) -> None:
    path = online_config(tmp_path, httpserver, "http://127.0.0.1:9/api", "cern-factory-1", "t")
    result = run("check", "-c", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [request.path for request, _ in httpserver.log] == ["/cric.json"]
