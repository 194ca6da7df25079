"""Submission against a real HTCondor 25.0 schedd (group ``htcondor``).

What bulk.py and submitter.py rely on, on the real thing: one run of the submission program per
schedd, one cluster per label with its ids mapped exactly; labels of one run share nothing (each
pilot's job ad is the ad its own label makes alone: environment, memory, cores, credentials,
site attributes, CE queue); a refusal (``MAX_JOBS_PER_OWNER``, ``SUBMIT_REQUIREMENT``) costs only
the labels refused; ``$`` and ``$$`` reach the pilot as written, vanilla and through HTCondor-C.
And why not one cluster for all labels: a ``queue ... from`` table leaks the first row's
environment and every attribute a later row leaves empty into the other rows' jobs.

The factory's Python runs here; ``autopyfactory-condor-submit`` on PATH runs this checkout's
program as the pool user (FS authentication), so everything it reads and writes is world-accessible.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from autopyfactory.batch.condor.bulk import SUBMITTER, SUBMITTER_MODULE, submit_batch
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.interface import SubmitContext, SubmitOutcome
from autopyfactory.domain.label import Label
from tests.support.factory_conf import labels_from, write_factory_conf
from tests.support.htcondor_pool import HTCondorPool
from tests.support.proxies import proxy
from tests.support.real_stand import RealStand, ours

pytestmark = [pytest.mark.htcondor, pytest.mark.timeout(400)]  # a loaded machine: generous

DUMP = Path(__file__).resolve().parents[1] / "data" / "cric_dump.json"
#: What differs between two submissions of the same description: ids and times.
VOLATILE = {"ClusterId", "ProcId", "GlobalJobId", "QDate", "EnteredCurrentStatus", "ServerTime",
            "LastHoldReason", "JobCurrentStartDate", "TotalSubmitProcs"}  # fmt: skip


@dataclasses.dataclass
class Bench:
    """The factory's side of a real submission: labels of CERN's first three CEs pointed at the
    pool's CE schedd (CE queues q0, none, q2), a context, a work directory."""

    pool: HTCondorPool
    work: Path
    labels: dict[str, Label]
    context: SubmitContext

    def submit(self, requests: Sequence[tuple[Label, int]]) -> dict[str, SubmitOutcome]:
        old = os.umask(0)  # the pool user writes the pilots' user logs into the label directories
        try:
            result = submit_batch(requests, self.context, Schedd(self.pool.submit_schedd), 120)
        finally:
            os.umask(old)
        assert result.calls == 1
        return result.outcomes

    def names(self) -> list[str]:
        host = self.pool.hostname
        return [f"CERN-{host}-q0", f"CERN-{host}", f"CERN-{host}-q2"]


@pytest.fixture
def bench(real_condor: HTCondorPool, monkeypatch: pytest.MonkeyPatch) -> Bench:
    pool = real_condor
    work = pool.workdir("bulk")
    wrapper = work / "wrapper.sh"
    wrapper.write_text("#!/bin/sh\nsleep 600\n")
    wrapper.chmod(0o755)
    shims = work / "bin"
    shims.mkdir()
    shim = shims / SUBMITTER
    shim.write_text(f'#!/bin/sh\nexec {shlex.join(pool.python_command(["-m", SUBMITTER_MODULE]))} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    record = json.loads(DUMP.read_text())["CERN"]
    record["queues"] = [
        {**q, "ce_endpoint": pool.ce_endpoint, "ce_queue_name": queue}
        for q, queue in zip(record["queues"][:3], ("q0", "", "q2"), strict=True)
    ]
    own = {"factoryId": "real-bulk", "pandaserver": "https://pandaserver.example:25443"}
    conf = write_factory_conf(work, factory=own, defaults={"executable": wrapper}, queues={"CERN": {}})
    labels = {label.name: label for label in labels_from(conf, {"CERN": record})}
    context = SubmitContext(
        "real-bulk", "https://pandaserver.example:25443", str(work / "logs"), "", "", "2026-03-01"
    )
    return Bench(pool, work, labels, context)


def labels_of(pool: HTCondorPool) -> dict[str, str]:
    return {f"{ad['ClusterId']}.{ad['ProcId']}": ad.get("MATCH_APF_QUEUE", "") for ad in pool.jobs()}


def reconfigure(pool: HTCondorPool, knob: Path, text: str, check: tuple[str, str]) -> None:
    """Write a schedd knob and wait until the submit schedd has it (``check``: name, value)."""
    knob.write_text(text)
    pool.run(["condor_reconfig", "-schedd", "-name", pool.submit_schedd])
    pool.wait_for(
        lambda: check[1] in pool.run(["condor_config_val", "-schedd", "-name", pool.submit_schedd, check[0]],
                                     check=False).stdout,
        what=f"{check[0]} in the schedd",
    )  # fmt: skip


def recounted(pool: HTCondorPool) -> None:
    """Wait until the submit schedd has counted its jobs twice more (it does so every
    SCHEDD_INTERVAL and publishes its ad each time): jobs removed by earlier tests still count
    towards MAX_JOBS_PER_OWNER until then."""

    def sequence() -> int:
        argv = ["condor_status", "-schedd", pool.submit_schedd, "-af", "UpdateSequenceNumber"]
        out = pool.run(argv, check=False).stdout.strip()
        return int(out) if out.isdigit() else -1

    start = sequence()
    pool.wait_for(lambda: sequence() >= start + 2, what="two job counts of the schedd")


@pytest.fixture
def knob(real_condor: HTCondorPool) -> Iterator[Path]:
    path = real_condor.home / "pool" / "config.d" / "50-bulk-test.conf"
    yield path
    path.unlink(missing_ok=True)
    real_condor.run(["condor_reconfig", "-schedd", "-name", real_condor.submit_schedd])


def test_one_run_one_cluster_per_label_ids_mapped_exactly(bench: Bench) -> None:
    first, second, third = bench.names()
    outcomes = bench.submit([(bench.labels[first], 3), (bench.labels[second], 1), (bench.labels[third], 2)])
    assert all(o.error == "" for o in outcomes.values()), outcomes
    ids = {name: o.job_ids for name, o in outcomes.items()}
    clusters = {name: {cid.split(".")[0] for cid in found} for name, found in ids.items()}
    assert [len(ids[n]) for n in (first, second, third)] == [3, 1, 2]
    assert all(len(c) == 1 for c in clusters.values())
    assert len(set().union(*clusters.values())) == 3
    queued = labels_of(bench.pool)
    for name, found in ids.items():
        assert all(queued[cid] == name for cid in found)


def _normal(ad: dict[str, Any]) -> dict[str, Any]:
    """An ad without ids and times; the job id inside strings (APFCID, GTAG, log paths) as C.P."""
    own = f"{ad['ClusterId']}.{ad['ProcId']}"
    return {
        key: value.replace(own, "C.P") if isinstance(value, str) else value
        for key, value in ad.items()
        if key not in VOLATILE
    }


def test_no_value_of_one_label_reaches_another_label_s_pilots(bench: Bench) -> None:
    """Labels with different environ, memory, cores, credentials, + attributes and CE queues in
    one run: each pilot's job ad is exactly the ad its own label makes when submitted alone."""
    first, second, third = bench.names()
    token = bench.work / "token"
    token.write_text("eyJhbGciOiJub25lIn0.eyJleHAiOjQxMDI0NDQ4MDB9.\n")
    token.chmod(0o644)
    credential = proxy(bench.work / "proxy", 48)
    credential.chmod(0o644)  # read by the pool user
    held = (("hold", "True"),)  # every pilot of this test stays held: the gridmanager leaves them alone

    def vary(name: str, environ: tuple[tuple[str, str], ...], maxrss: int, cores: int,
             site: tuple[tuple[str, str], ...], **submit: str) -> Label:  # fmt: skip
        label = bench.labels[name]
        resources = dataclasses.replace(label.resources, environ=environ, maxrss=maxrss, corecount=cores)
        settings = dataclasses.replace(label.submit, site_attributes=site + held, **submit)
        return dataclasses.replace(label, resources=resources, submit=settings)

    labels = [
        vary(first, (("SITE_SECRET", "aaa-secret"), ("HTTP_PROXY_X", "http://squid.aaa.example:3128")),
             32000, 8,
             (("+AccountingGroup", '"group_atlas.prod"'),),
             x509userproxy=str(credential)),
        vary(second, (), 2000, 1, (), x509userproxy=""),
        vary(third, (("OTHER", "ccc"),), 4000, 2, (("requirements", '(OpSysAndVer == "AlmaLinux9")'),),
             x509userproxy="", scitokens_file=str(token)),
    ]  # fmt: skip
    outcomes = bench.submit([(label, 2) for label in labels])
    together = {job["MATCH_APF_QUEUE"]: _normal(job) for job in bench.pool.jobs() if job["ProcId"] == 0}
    assert all(outcome.error == "" for outcome in outcomes.values()), outcomes
    bench.pool.remove_all()
    for label in labels:  # the reference: each label alone
        alone = bench.submit([(label, 1)])
        assert alone[label.name].error == ""
    reference = {job["MATCH_APF_QUEUE"]: _normal(job) for job in bench.pool.jobs()}
    for label in labels:
        mine, own = together[label.name], reference[label.name]
        assert {k: v for k, v in mine.items() if own.get(k) != v} == {}, label.name
        assert {k: v for k, v in own.items() if mine.get(k) != v} == {}, label.name
    a, b, c = (together[label.name] for label in labels)
    assert "SITE_SECRET=aaa-secret" in a["Environment"]
    assert "squid" not in b["Environment"] + c["Environment"]
    assert "OTHER=ccc" in c["Environment"]
    assert "OTHER" not in a["Environment"] + b["Environment"]
    assert (a["maxMemory"], b["maxMemory"], c["maxMemory"]) == (32000, 2000, 4000)
    assert (a["xcount"], b["xcount"], c["xcount"]) == (8, 1, 2)
    assert (a["remote_queue"], b.get("remote_queue"), c["remote_queue"]) == ("q0", None, "q2")
    assert "x509userproxy" in a
    assert "x509userproxy" not in b
    assert "x509userproxy" not in c
    assert "ScitokensFile" in c
    assert "ScitokensFile" not in a
    assert "ScitokensFile" not in b
    assert a["AccountingGroup"] == "group_atlas.prod"
    assert "AccountingGroup" not in b
    assert "AccountingGroup" not in c
    assert "AlmaLinux9" in str(c["Requirements"])
    assert "AlmaLinux9" not in str(a["Requirements"])


def test_max_jobs_per_owner_refuses_only_the_labels_that_do_not_fit(bench: Bench, knob: Path) -> None:
    reconfigure(bench.pool, knob, "MAX_JOBS_PER_OWNER = 3\n", ("MAX_JOBS_PER_OWNER", "3"))
    recounted(bench.pool)
    first, second, third = bench.names()
    outcomes = bench.submit([(bench.labels[first], 2), (bench.labels[second], 2), (bench.labels[third], 1)])
    assert len(outcomes[first].job_ids) == 2
    assert len(outcomes[third].job_ids) == 1
    assert outcomes[second].job_ids == ()
    assert outcomes[second].error == "not submitted: Number of submitted jobs would exceed MAX_JOBS_PER_OWNER"
    assert sorted(labels_of(bench.pool).values()) == sorted([first, first, third])


def test_a_refused_label_leaves_the_others_their_pilots_cycle_after_cycle(
    real_condor: HTCondorPool, httpserver, knob: Path
) -> None:
    """A schedd's SUBMIT_REQUIREMENT refuses one queue's memory: through the real CLI, the other
    queues get their pilots in the same cycle, the refused label says the schedd's reason, and each
    cycle is one run of the submission program for the schedd."""
    requirement = (
        "SUBMIT_REQUIREMENT_NAMES = MEMCAP\n"
        "SUBMIT_REQUIREMENT_MEMCAP = (maxMemory =?= undefined) || (maxMemory <= 16000)\n"
        "SUBMIT_REQUIREMENT_MEMCAP_REASON = "
        'strcat("maxMemory ", maxMemory, " MB is over this site\'s 16000 MB")\n'
    )
    reconfigure(real_condor, knob, requirement, ("SUBMIT_REQUIREMENT_NAMES", "MEMCAP"))
    stand = RealStand(real_condor, httpserver, "refusal")
    stand.dump = {pq: {**stand.ce_record(pq, endpoint="127.0.0.1:9"), "maxrss": rss}
                  for pq, rss in (("SMALLA", 2000), ("HUGE", 64000), ("SMALLB", 4000))}  # fmt: skip
    stand.stats = {pq: {"activated": 2, "assigned": 0, "running": 0} for pq in stand.dump}
    conf = stand.write_config("[SMALLA]\n[HUGE]\n[SMALLB]\n", defaults={"nqueue": 1})
    for cycle in (1, 2):
        result = stand.cycle(conf)
        by_label = {job["MATCH_APF_QUEUE"] for job in ours(real_condor.jobs())}
        assert by_label == {"SMALLA-127.0.0.1", "SMALLB-127.0.0.1"}, result.stderr
        assert "HUGE-127.0.0.1 pq=HUGE" in result.stderr
        assert "not submitted: maxMemory 64000 MB is over this site's 16000 MB" in result.stderr, (
            result.stderr
        )
        runs = sorted((stand.work / "logs").glob("*/_submit/*.json"))
        assert len(runs) == cycle, runs  # one run for the schedd per cycle


def test_dollars_reach_the_pilot_exactly_as_written(bench: Bench) -> None:
    """``$`` and ``$$`` in schedconfig's environ and in pilotExtraArgs, vanilla and HTCondor-C."""
    show = bench.work / "show.sh"
    show.write_text(
        '#!/bin/sh\nprintf "ENV=%s\\n" "$SITE_DOLLARS"\nfor a in "$@"; do printf "ARG=%s\\n" "$a"; done\n'
    )
    show.chmod(0o755)
    raw = "a$b c$$d $$(Name) e$$$f $(HOME) $ENV(HOME) $$"
    grid = bench.labels[bench.names()[1]]
    local = dataclasses.replace(grid, name="DOLLARS-local", ce=dataclasses.replace(grid.ce, flavour="LOCAL"))
    labels = []
    for label in (grid, local):
        resources = dataclasses.replace(
            label.resources, environ=(("SITE_DOLLARS", raw),), maxrss=100, corecount=1, maxwdir=0
        )
        pilot = dataclasses.replace(label.pilot, extra_args=f"--note '{raw}' --last $$")
        submit = dataclasses.replace(label.submit, executable=str(show), arguments="-q %(pq)s")
        labels.append(dataclasses.replace(label, resources=resources, pilot=pilot, submit=submit))
    outcomes = bench.submit([(label, 1) for label in labels])
    assert all(o.error == "" for o in outcomes.values()), outcomes

    def output(label: Label) -> str:
        [job_id] = outcomes[label.name].job_ids
        path = Path(bench.context.base_log_dir, bench.context.date, label.name, f"{job_id}.out")
        return path.read_text() if path.exists() else ""

    for label in labels:
        text = bench.pool.wait_for(
            lambda label=label: "ARG=$$" in output(label), timeout=300, what=label.name
        )
        assert output(label).splitlines() == [
            f"ENV={raw}", "ARG=-q", "ARG=CERN", "ARG=--note", f"ARG={raw}", "ARG=--last", "ARG=$$",
        ], (label.name, text)  # fmt: skip


def test_one_cluster_for_several_labels_would_leak_between_them(bench: Bench) -> None:
    """Why every label is its own cluster: in one ``queue ... from`` table, each job is made from
    the first job's ad (the cluster ad), so the first row's environment is merged into every later
    row's and any attribute a later row leaves empty is the first row's."""
    table = bench.work / "table.sub"
    row = "\x1f".join
    table.write_text(
        "universe = vanilla\nexecutable = /bin/true\nhold = True\n"
        "environment = $(env)\nrequest_memory = $(memory)\n+MATCH_APF_QUEUE = $(label)\n"
        "queue env,memory,label from (\n"
        + row(['"SITE_SECRET=aaa HTTP_PROXY_X=http://squid.aaa.example:3128"', "32000", '"A"'])
        + "\n"
        + row(['"OTHER=b"', "", '"B"'])
        + "\n)\n"
    )
    table.chmod(0o644)
    bench.pool.run(["condor_submit", "-terse", str(table)])
    jobs = {job["MATCH_APF_QUEUE"]: job for job in bench.pool.jobs()}
    assert jobs["A"]["ClusterId"] == jobs["B"]["ClusterId"]
    assert "SITE_SECRET=aaa" in jobs["B"]["Environment"]
    assert "squid" in jobs["B"]["Environment"]
    assert jobs["B"]["RequestMemory"] == 32000
    assert re.search(r"\bOTHER=b\b", jobs["B"]["Environment"])
