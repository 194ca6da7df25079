"""Honest outcomes: per label, the share of the pilots that exited having run no job (rc 20) and of
those whose getJob PanDA refused (rc 119, the wrapper's code for pilot 3's "fatal error in job
download loop", after which pilot 3 exits 0), on the label page, the factory page and in the JSON."""

from __future__ import annotations

import re

import requests

from autopyfactory.monitor_service.queries import rc_outcome
from tests.support.monitor import FactoryClient

LABEL = "OUTCOME-L"
OTHER = "OUTCOME-QUIET"


def _finish(factory: FactoryClient, rcs: list[str]) -> None:
    cids = [f"1.{n}" for n in range(len(rcs))]
    factory.create(LABEL, *cids)
    for cid, rc in zip(cids, rcs, strict=True):
        assert factory.pilot(cid, state="running").status_code == 200
        assert factory.pilot(cid, state="exiting", rc=rc).status_code == 200


def test_rc_119_counts_as_refused() -> None:
    assert (rc_outcome(119), rc_outcome(20), rc_outcome(79), rc_outcome(118)) == (
        "refused",
        "miss",
        "getjob_failure",
        "wrapper",
    )


def test_shares_of_no_job_and_refused_per_label(factory: FactoryClient, http: requests.Session) -> None:
    factory.labels(LABEL, OTHER)
    _finish(factory, ["0", "20", "20", "20", "119", "119", "1", "0"])  # 8 exited: 3 no job, 2 refused
    api = factory.monitor.api
    outcomes = http.get(f"{api}/labels/{factory.name}:{LABEL}/outcomes", timeout=10).json()
    assert (outcomes["exited"], outcomes["miss"], outcomes["refused"]) == (8, 3, 2)
    assert (outcomes["no_job_percent"], outcomes["refused_percent"]) == (37.5, 25.0)
    labels = {
        lab["name"]: lab for lab in http.get(f"{api}/factories/{factory.name}/labels", timeout=10).json()
    }
    assert labels[LABEL]["outcomes"] == outcomes
    assert labels[OTHER]["outcomes"]["exited"] == 0
    detail = http.get(f"{api}/labels/{factory.name}:{LABEL}", timeout=10).json()
    assert detail["outcomes"]["refused_percent"] == 25.0

    page = http.get(f"{factory.monitor.url}/factory/{factory.name}/{LABEL}", timeout=10).text
    assert '<td class="num" id="refused">2</td>' in page
    assert '<strong id="no-job-share">37.5 %</strong>' in page
    assert '<strong id="refused-share">25 %</strong>' in page

    listing = http.get(
        f"{factory.monitor.url}/factory/{factory.name}", params={"sort": "refused"}, timeout=10
    ).text
    rows = re.findall(r'<tr class="label" data-label="([^"]+)">(.*?)</tr>', listing, flags=re.S)
    assert [name for name, _ in rows] == [LABEL, OTHER]  # most refused first
    cells = re.findall(r'<td class="num" title="([^"]*)">([^<]*)', rows[0][1])
    assert cells == [
        ("3 of 8 pilots that exited: no job (rc 20)", "37.5 %"),
        ("2 of 8 pilots that exited: getJob refused (rc 119)", "25 %"),
    ]
