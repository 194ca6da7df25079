"""Submit descriptions per CE flavour, quoting, `$`, periodic expressions, validation, the submission program.

Labels come from the real CRIC records in tests/data/cric_dump.json through the config loader.
The periodic expressions are not string-compared only: they are parsed by classad2 and evaluated
against job ads with controlled ages. Quoting is checked by letting HTCondor's own submit parser
expand the rendered text and decoding the result with the rules of the condor_submit manual.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import classad2
import htcondor2
import pytest

from autopyfactory.batch.condor.bulk import submit_batch
from autopyfactory.batch.condor.command import Schedd
from autopyfactory.batch.condor.submit import (
    condor_arguments,
    condor_environment,
    periodic_hold,
    periodic_remove,
    render_submit,
    validate,
)
from autopyfactory.batch.interface import SubmitContext
from autopyfactory.batch.pilot import SubmitRenderError
from autopyfactory.domain.label import Label
from tests.support.condor_submit import CONTEXT, decode_new_syntax, expanded, submit_labels


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Label]:
    return {label.name: label for label in submit_labels(tmp_path_factory.mktemp("conf"))}


def lines(text: str) -> list[str]:
    return text.splitlines()


def value(text: str, key: str) -> str:
    """The value of ``key`` as HTCondor's own submit parser reads it (no macro expansion)."""
    return str(htcondor2.Submit(text)[key])


def test_the_decoder_follows_the_manual_examples():
    # the examples of the condor_submit manual, environment and arguments
    assert decode_new_syntax("\"one=1 two=\"\"2\"\" three='spacey ''quoted'' value'\"") == [
        "one=1",
        'two="2"',
        "three=spacey 'quoted' value",
    ]
    assert decode_new_syntax("\"one \"\"two\"\" 'spacey ''quoted'' argument'\"") == [
        "one",
        '"two"',
        "spacey 'quoted' argument",
    ]


# ---- golden descriptions per flavour -----------------------------------------------------------

CERN_GOLDEN = """\
# autopyfactory label CERN-ce503.cern.ch-share: 5 pilots for PanDA queue CERN
universe = grid
grid_resource = condor ce503.cern.ch ce503.cern.ch:9619
+remote_queue = "share"
+xcount = 8
+maxMemory = 32000
+maxWallTime = 4800
executable = /usr/libexec/autopyfactory/runpilot3-wrapper.sh
arguments = "-q CERN -r CERN -s CERN -j unified -i PR --pilot-user ATLAS --url https://pandaserver.cern.ch \
-p 25443 -w generic"
environment = "APFFID=test-factory APFCID=$(Cluster).$(Process) APFMON=http://apfmon.example.org/api \
FACTORYQUEUE=CERN-ce503.cern.ch-share \
GTAG=http://factory.example.org/pilots/2026-03-01/CERN-ce503.cern.ch-share/$(Cluster).$(Process).out \
PANDA_JSID=test-factory"
+FactoryId = "test-factory"
+MATCH_APF_QUEUE = "CERN-ce503.cern.ch-share"
+APF_PANDA_QUEUE = "CERN"
x509userproxy = /tmp/x509up_u1000
periodic_hold = (JobStatus == 1 && time() - EnteredCurrentStatus > 3600 && GridJobStatus =?= undefined) \
|| ((NumJobStarts ?: 0) > 1 || (JobStatus == 1 && (NumJobStarts ?: 0) > 0 && GridJobStatus =!= "COMPLETED"))
periodic_remove = (JobStatus == 5 && time() - EnteredCurrentStatus > 3600) \
|| (JobStatus == 1 && time() - EnteredCurrentStatus > 86400) \
|| (JobStatus == 2 && time() - EnteredCurrentStatus > 604800)
notification = Never
transfer_executable = True
should_transfer_files = YES
when_to_transfer_output = ON_EXIT_OR_EVICT
output = /var/log/apf/pilots/2026-03-01/CERN-ce503.cern.ch-share/$(Cluster).$(Process).out
error = /var/log/apf/pilots/2026-03-01/CERN-ce503.cern.ch-share/$(Cluster).$(Process).err
log = /var/log/apf/pilots/2026-03-01/CERN-ce503.cern.ch-share/$(Cluster).$(Process).log
queue 5
"""


def test_cern_htcondor_ce_golden(labels):
    text = render_submit(labels["CERN-ce503.cern.ch-share"], 5, CONTEXT)
    assert text == CERN_GOLDEN
    validate(text)
    assert htcondor2.Submit(text).getQArgs() == "5"


def test_cern_every_ce_gets_its_own_grid_resource(labels):
    cern = [label for label in labels.values() if label.queue == "CERN"]
    assert len(cern) == 13
    for label in cern:
        text = render_submit(label, 1, CONTEXT)
        validate(text)
        host = label.ce.host
        assert f"grid_resource = condor {host} {host}:9619" in lines(text)


def test_htcondor_ce_default_port_and_no_queue(labels):
    label = labels["CERN-ce503.cern.ch-share"]
    ce = dataclasses.replace(label.ce, port=None, queue="")
    text = render_submit(dataclasses.replace(label, ce=ce), 1, CONTEXT)
    assert "grid_resource = condor ce503.cern.ch ce503.cern.ch:9619" in lines(text)
    assert not any(line.startswith("+remote_queue") for line in lines(text))


def test_ndgf_arc_gridftp_port_becomes_rest_443(labels):
    text = render_submit(labels["NDGF-T1-arc01.ndgf.org-atlas"], 2, CONTEXT)
    validate(text)
    assert "grid_resource = arc https://arc01.ndgf.org:443/arex" in lines(text)
    # CRIC corecount null -> 1: no SlotRequirement; memory per slot in bytes; wall time in seconds
    assert (
        "arc_resources = <IndividualPhysicalMemory>16777216000</IndividualPhysicalMemory>"
        "<QueueName>atlas</QueueName><WallTime>172800</WallTime>"
    ) in lines(text)
    assert "arc_rte = ENV/PROXY" in lines(text)
    assert '+remote_queue = "atlas"' in lines(text)
    # schedconfig environ reaches the pilot, before the factory's own variables
    env = decode_new_syntax(value(text, "environment"))
    assert env[:2] == ["XRD_RUNFORKHANDLER=1", "PILOT_NOKILL=1"]
    # no condor resource requests that HTCondor would turn into a second copy in the ADL
    assert not any(line.startswith(("request_", "batch_queue")) for line in lines(text))


def test_ndgf_arc_443_kept_and_ce_wallclock_limit(labels):
    text = render_submit(labels["NDGF-T1-arc02.ndgf.org-atlas"], 1, CONTEXT)
    assert "grid_resource = arc https://arc02.ndgf.org:443/arex" in lines(text)
    assert "+maxWallTime = 2880" in lines(text)  # ce_queue_maxwctime 2880 minutes
    assert "<WallTime>172800</WallTime>" in value(text, "arc_resources")


def test_arc_multicore_memory_is_per_slot(labels):
    text = render_submit(labels["NDGF-MCORE-arc01.ndgf.org-atlas"], 1, CONTEXT)
    validate(text)
    resources = value(text, "arc_resources")
    assert f"<IndividualPhysicalMemory>{2000 * 1024 * 1024}</IndividualPhysicalMemory>" in resources
    assert (
        "<SlotRequirement><NumberOfSlots>8</NumberOfSlots><SlotsPerHost>8</SlotsPerHost></SlotRequirement>"
        in resources
    )
    assert "+xcount = 8" in lines(text)


def test_arc_without_proxy_requests_no_rte(labels):
    label = labels["NDGF-T1-arc01.ndgf.org-atlas"]
    tokens = dataclasses.replace(label.submit, x509userproxy="", scitokens_file="/etc/apf/pilot.token")
    text = render_submit(dataclasses.replace(label, submit=tokens), 1, CONTEXT)
    assert not any(line.startswith(("arc_rte", "x509userproxy")) for line in lines(text))
    assert "scitokens_file = /etc/apf/pilot.token" in lines(text)


@pytest.mark.parametrize("flavour", ["CREAM-CE", "OSG-CE", "LCG-CE"])
def test_retired_flavours_are_not_rendered(labels, flavour):
    """HTCondor 25's condor_submit: "Invalid value 'cream' for grid type Must be one of: condor,
    batch, arc, ec2, gce, or azure" (same for gt2); the factory says so before submitting."""
    label = labels["CERN-ce503.cern.ch-share"]
    ce = dataclasses.replace(label.ce, flavour=flavour, jobmanager="pbs")
    with pytest.raises(SubmitRenderError, match="unsupported CE flavour"):
        render_submit(dataclasses.replace(label, ce=ce), 1, CONTEXT)


def test_grid_types_are_checked_when_rendering(labels, monkeypatch):
    from autopyfactory.batch.condor import submit

    def gt2(ce, resources, settings):
        return ["universe = grid", "grid_resource = gt2 gk01.legacy.example/jobmanager-pbs"]

    monkeypatch.setitem(submit.FLAVOURS, "HTCONDOR-CE", gt2)  # type: ignore[index]
    with pytest.raises(SubmitRenderError, match=r"grid_resource 'gt2 .*grid types are arc, azure, batch"):
        render_submit(labels["CERN-ce503.cern.ch-share"], 1, CONTEXT)


def test_local_vanilla(labels):
    text = render_submit(labels["MYLOCAL-local"], 3, CONTEXT)
    validate(text)
    rendered = lines(text)
    assert "universe = vanilla" in rendered
    assert {"request_cpus = 4", "request_memory = 8000", f"request_disk = {20000 * 1024}"} <= set(rendered)
    assert not any(line.startswith(("grid_resource", "+xcount", "+maxWallTime")) for line in rendered)
    assert "GridJobStatus" not in value(text, "periodic_hold")
    assert rendered[-1] == "queue 3"


def test_local_without_scratch_requests_no_disk(labels):
    label = labels["MYLOCAL-local"]
    small = dataclasses.replace(label.resources, maxwdir=0, maxrss=0)
    text = render_submit(dataclasses.replace(label, resources=small), 1, CONTEXT)
    assert not any(line.startswith(("request_disk", "request_memory")) for line in lines(text))


def test_unsupported_flavour(labels):
    label = labels["CERN-ce503.cern.ch-share"]
    boinc = dataclasses.replace(label, ce=dataclasses.replace(label.ce, flavour="BOINC"))
    with pytest.raises(SubmitRenderError, match="unsupported CE flavour 'BOINC'"):
        render_submit(boinc, 1, CONTEXT)


def test_no_monitor_no_log_url(labels):
    context = dataclasses.replace(CONTEXT, monitor_url="", base_log_dir_url="")
    env = decode_new_syntax(
        value(render_submit(labels["CERN-ce503.cern.ch-share"], 1, context), "environment")
    )
    names = [entry.partition("=")[0] for entry in env]
    assert names == ["APFFID", "APFCID", "FACTORYQUEUE", "PANDA_JSID"]


def test_rendering_is_deterministic(labels):
    label = labels["NDGF-T1-arc01.ndgf.org-atlas"]
    assert render_submit(label, 4, CONTEXT) == render_submit(label, 4, CONTEXT)


def test_zero_pilots_is_an_error(labels):
    with pytest.raises(SubmitRenderError, match="cannot submit 0 pilots"):
        render_submit(labels["CERN-ce503.cern.ch-share"], 0, CONTEXT)


# ---- hostile values ----------------------------------------------------------------------------

HOSTILE = "we\"ird 'label' $(Cluster) \\ x"


def hostile_label(labels: dict[str, Label]) -> Label:
    label = labels["CERN-ce503.cern.ch-share"]
    environ = (("SPACEY", "a b\tc"), ("QUOTES", 'it\'s "quoted"'), ("DOLLAR", "$(Process)$ENV(HOME)"))
    submit = dataclasses.replace(label.submit, arguments="-h %(label)s -s %(siteid)s --note 'two words'")
    return dataclasses.replace(
        label,
        name=HOSTILE,
        pq='P"Q',
        siteid="site with spaces",
        resources=dataclasses.replace(label.resources, environ=environ),
        submit=submit,
    )


def test_hostile_classad_strings_survive(labels):
    text = render_submit(hostile_label(labels), 1, CONTEXT)
    validate(text)
    for attr, expected in (("MY.MATCH_APF_QUEUE", HOSTILE), ("MY.APF_PANDA_QUEUE", 'P"Q')):
        assert classad2.ExprTree(expanded(text, attr)).eval() == expected


def test_hostile_environment_survives(labels):
    text = render_submit(hostile_label(labels), 1, CONTEXT)
    env = dict(entry.partition("=")[::2] for entry in decode_new_syntax(expanded(text, "environment")))
    assert env["SPACEY"] == "a b\tc"
    assert env["QUOTES"] == 'it\'s "quoted"'
    assert env["DOLLAR"] == "$(Process)$ENV(HOME)"  # not expanded by condor_submit
    assert env["FACTORYQUEUE"] == HOSTILE
    assert env["APFCID"] == "1.0"  # the factory's own macro is expanded (this parser's cluster 1)


def test_hostile_arguments_stay_one_word_each(labels):
    text = render_submit(hostile_label(labels), 1, CONTEXT)
    words = decode_new_syntax(expanded(text, "arguments"))
    assert words == ["-h", HOSTILE, "-s", "site with spaces", "--note", "two words"]


def test_gtag_url_quotes_the_label(labels):
    text = render_submit(hostile_label(labels), 1, CONTEXT)
    env = dict(entry.partition("=")[::2] for entry in decode_new_syntax(value(text, "environment")))
    assert env["GTAG"].startswith("http://factory.example.org/pilots/2026-03-01/we%22ird%20%27label%27%20")
    assert env["GTAG"].endswith("/$(Cluster).$(Process).out")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "a/b"}, "cannot name a directory"),
        ({"name": ".."}, "cannot name a directory"),
        ({"name": "line\nbreak"}, "line break"),
    ],
)
def test_labels_that_cannot_be_rendered(labels, change, message):
    label = dataclasses.replace(labels["CERN-ce503.cern.ch-share"], **change)
    with pytest.raises(SubmitRenderError, match=message):
        render_submit(label, 1, CONTEXT)


def test_hostile_ce_host_is_refused(labels):
    label = labels["CERN-ce503.cern.ch-share"]
    bad = dataclasses.replace(label, ce=dataclasses.replace(label.ce, host="ce503 evil"))
    with pytest.raises(SubmitRenderError, match="is not a host name"):
        render_submit(bad, 1, CONTEXT)


def test_quoting_helpers():
    assert condor_arguments(["a", "", "b c", "d'e", 'f"g']) == "\"a '' 'b c' 'd''e' 'f\"\"g'\""
    assert condor_environment([("A", "1"), ("B", "x y")]) == "\"A=1 'B=x y'\""


# ---- periodic expressions, evaluated -----------------------------------------------------------

IDLE, RUNNING, HELD, COMPLETED = 1, 2, 5, 4


AGE = "ApfTestAge"  # seconds in the current status, turned into EnteredCurrentStatus by evaluate()


def ad(status: int, age: int, **attrs: Any) -> classad2.ClassAd:
    """A job ad that entered ``status`` ``age`` seconds before it is evaluated (the tables below
    are built at collection time, minutes before a test runs in a long suite)."""
    return classad2.ClassAd({"JobStatus": status, AGE: age, **attrs})


def evaluate(expression: str, job: classad2.ClassAd) -> bool:
    job["EnteredCurrentStatus"] = int(time.time()) - job[AGE]
    result = classad2.ExprTree(expression).eval(job)
    assert isinstance(result, bool), f"{expression} -> {result!r}"  # never undefined
    return result


GRID_HOLD = [
    ("idle, never accepted, older than 1 h", ad(IDLE, 3700), True),
    ("idle, never accepted, younger", ad(IDLE, 3500), False),
    (
        "idle at the CE's queue for 2 h",
        ad(IDLE, 7200, GridJobStatus="IDLE", GridJobId="condor x y 1.0"),
        False,
    ),
    ("idle with a job id but no status yet", ad(IDLE, 3700, GridJobId="gt2 x/jobmanager-pbs 1"), True),
    ("running its first time", ad(RUNNING, 10, GridJobStatus="RUNNING", NumJobStarts=1), False),
    ("idle again after a run (requeued)", ad(IDLE, 10, GridJobStatus="IDLE", NumJobStarts=1), True),
    ("running a second time", ad(RUNNING, 10, GridJobStatus="RUNNING", NumJobStarts=2), True),
    ("JobRunCount is not the grid counter", ad(RUNNING, 10, GridJobStatus="RUNNING", JobRunCount=3), False),
    # the gridmanager copies NumJobStarts from a CE job that completed between two polls while
    # the local job is still idle (seen on a real pool: tests/htcondor/test_periodic_policy.py)
    ("finished at the CE between two polls", ad(IDLE, 10, GridJobStatus="COMPLETED", NumJobStarts=1), False),
    ("finished at the CE, second start", ad(IDLE, 10, GridJobStatus="COMPLETED", NumJobStarts=2), True),
]


@pytest.mark.parametrize(("case", "job", "hold"), GRID_HOLD, ids=[c[0] for c in GRID_HOLD])
def test_grid_periodic_hold(labels, case, job, hold):
    text = render_submit(labels["CERN-ce503.cern.ch-share"], 1, CONTEXT)
    assert evaluate(value(text, "periodic_hold"), job) is hold


VANILLA_HOLD = [
    ("new job, old, never started", ad(IDLE, 90000), False),
    ("running its first time", ad(RUNNING, 10, JobRunCount=1, NumJobStarts=1), False),
    ("idle again after a run", ad(IDLE, 10, JobRunCount=1, NumJobStarts=1), True),
    ("started a second time", ad(RUNNING, 10, JobRunCount=2, NumJobStarts=2), True),
    # a schedd restart reconnects the running pilot with a new shadow: not a second start
    ("reconnected after a schedd restart", ad(RUNNING, 10, JobRunCount=2, NumJobStarts=1), False),
    ("vanilla ignores GridJobStatus", ad(IDLE, 10, NumJobStarts=1, GridJobStatus="COMPLETED"), True),
]


@pytest.mark.parametrize(("case", "job", "hold"), VANILLA_HOLD, ids=[c[0] for c in VANILLA_HOLD])
def test_vanilla_periodic_hold(labels, case, job, hold):
    text = render_submit(labels["MYLOCAL-local"], 1, CONTEXT)
    assert evaluate(value(text, "periodic_hold"), job) is hold


REMOVE = [
    ("held 1 h 2 min", ad(HELD, 3720), True),
    ("held 58 min", ad(HELD, 3480), False),
    ("idle a day and more", ad(IDLE, 86500), True),
    ("idle almost a day", ad(IDLE, 86000), False),
    ("running a week and more", ad(RUNNING, 604900), True),
    ("running six days", ad(RUNNING, 518400), False),
    ("completed long ago", ad(COMPLETED, 10**7), False),
]


@pytest.mark.parametrize(("case", "job", "remove"), REMOVE, ids=[c[0] for c in REMOVE])
def test_periodic_remove(labels, case, job, remove):
    for name in ("CERN-ce503.cern.ch-share", "MYLOCAL-local"):
        text = render_submit(labels[name], 1, CONTEXT)
        assert evaluate(value(text, "periodic_remove"), job) is remove


def test_ages_come_from_the_settings(labels):
    label = labels["CERN-ce503.cern.ch-share"]
    settings = dataclasses.replace(label.submit, hold_idle_after=600, remove_held_after=60)
    assert evaluate(periodic_hold(settings, grid=True), ad(IDLE, 700)) is True
    assert evaluate(periodic_remove(settings), ad(HELD, 120)) is True


def test_zero_disables_a_clause(labels):
    label = labels["CERN-ce503.cern.ch-share"]
    settings = dataclasses.replace(label.submit, hold_idle_after=0, remove_idle_after=0)
    assert evaluate(periodic_hold(settings, grid=True), ad(IDLE, 10**6)) is False
    assert evaluate(periodic_remove(settings), ad(IDLE, 10**6)) is False
    assert evaluate(periodic_remove(settings), ad(HELD, 10**6)) is True


def test_everything_disabled_omits_the_commands(labels):
    label = labels["CERN-ce503.cern.ch-share"]
    off = dataclasses.replace(
        label.submit,
        hold_idle_after=0,
        hold_rerun=False,
        remove_held_after=0,
        remove_idle_after=0,
        remove_running_after=0,
    )
    assert periodic_hold(off, grid=True) == periodic_remove(off) == ""
    text = render_submit(dataclasses.replace(label, submit=off), 1, CONTEXT)
    assert not any(line.startswith("periodic_") for line in lines(text))
    validate(text)


def test_hold_rerun_off(labels):
    label = labels["MYLOCAL-local"]
    settings = dataclasses.replace(label.submit, hold_rerun=False)
    assert periodic_hold(settings, grid=False) == ""
    assert (
        evaluate(periodic_hold(dataclasses.replace(settings, hold_rerun=False), grid=True), ad(IDLE, 10))
        is False
    )


# ---- arguments template ------------------------------------------------------------------------


def render_args(label: Label, template: str, context: SubmitContext = CONTEXT) -> list[str]:
    label = dataclasses.replace(label, submit=dataclasses.replace(label.submit, arguments=template))
    return decode_new_syntax(value(render_submit(label, 1, context), "arguments"))


def test_every_template_field(labels):
    label = labels["CERN-ce503.cern.ch-share"]
    template = " ".join(
        f"%({f})s"
        for f in (
            "siteid",
            "pq",
            "label",
            "port",
            "pandaserver",
            "pandaserver_host",
            "corecount",
            "maxrss",
            "factoryId",
        )
    )
    assert render_args(label, template) == [
        "CERN",
        "CERN",
        "CERN-ce503.cern.ch-share",
        "25443",
        "https://pandaserver.cern.ch",
        "pandaserver.cern.ch",
        "8",
        "32000",
        "test-factory",
    ]


@pytest.mark.parametrize(
    ("server", "port", "url"),
    [
        ("https://pandaserver.cern.ch", "25443", "https://pandaserver.cern.ch"),
        ("http://pandaserver.cern.ch", "25080", "http://pandaserver.cern.ch"),
        ("https://panda.example.org:8443/", "8443", "https://panda.example.org"),
    ],
)
def test_port_defaults(labels, server, port, url):
    context = dataclasses.replace(CONTEXT, pandaserver=server)
    assert render_args(labels["CERN-ce503.cern.ch-share"], "-p %(port)s -w %(pandaserver)s", context) == [
        "-p",
        port,
        "-w",
        url,
    ]


def test_literal_percent(labels):
    assert render_args(labels["CERN-ce503.cern.ch-share"], "--share 100%% -k %(maxrss)d") == [
        "--share",
        "100%",
        "-k",
        "32000",
    ]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("-s %(site)s", r"unknown field %\(site\)s \(known: siteid, pq, label"),
        ("-s %(siteid)d", "arguments template"),
        ("-s %(siteid)", "arguments template"),
        ("-s 'unclosed", "No closing quotation"),
    ],
)
def test_template_errors(labels, template, message):
    label = labels["CERN-ce503.cern.ch-share"]
    label = dataclasses.replace(label, submit=dataclasses.replace(label.submit, arguments=template))
    with pytest.raises(SubmitRenderError, match=message):
        render_submit(label, 1, CONTEXT)


def test_bad_pandaserver(labels):
    with pytest.raises(SubmitRenderError, match="is not an http"):
        render_submit(
            labels["CERN-ce503.cern.ch-share"], 1, dataclasses.replace(CONTEXT, pandaserver="pandaserver")
        )


# ---- validate ----------------------------------------------------------------------------------

GOOD = 'universe = vanilla\nexecutable = /bin/true\n+FactoryId = "f"\nqueue 2\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("universe = vanilla\nexecutable = /bin/true\nthis is not a statement\nqueue 1\n", "cannot parse"),
        ("universe = vanilla\nexecutable = /bin/true\n", "must end with 'queue N'"),
        ("universe = vanilla\nexecutable = /bin/true\nqueue 0\n", "must end with 'queue N'"),
        ("universe = vanilla\nexecutable = /bin/true\nqueue abc\n", "must end with 'queue N'"),
        ("universe = vanilla\nexecutable = /bin/true\nqueue 1\nfoo = bar\n", "lines after its queue"),
        (
            "universe = vanilla\nexecutable = /bin/true\n+x = (((\nqueue 1\n",
            "x = '\\(\\(\\(' is not a ClassAd",
        ),
        ("universe = vanilla\nexecutable = /bin/true\nperiodic_hold = a b\nqueue 1\n", "periodic_hold"),
        ("universe = vanilla\nqueue 1\n", "no executable"),
    ],
)
def test_validate_rejects(text, message):
    with pytest.raises(SubmitRenderError, match=message):
        validate(text)


def test_validate_accepts():
    validate(GOOD)


# ---- the submission program, a fake one on PATH ------------------------------------------------


def fake_program(bin_dir: Path, body: str) -> Path:
    """An ``autopyfactory-condor-submit`` first on PATH: records each call's arguments, runs ``body``."""
    bin_dir.mkdir(exist_ok=True)
    calls = bin_dir / "calls"
    script = bin_dir / "autopyfactory-condor-submit"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return calls


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return bin_dir


def context_in(tmp_path: Path, **changes: Any) -> SubmitContext:
    return dataclasses.replace(CONTEXT, base_log_dir=str(tmp_path / "logs"), **changes)


SCHEDD = Schedd("schedd.example.org", "collector.example.org:9618")
LABEL = "CERN-ce503.cern.ch-share"


def test_the_program_is_given_the_schedd_and_the_request_file(labels, tmp_path, on_path):
    line = json.dumps({"label": LABEL, "outcome": "submitted", "cluster": 7, "first": 0, "count": 3})
    calls = fake_program(on_path, f"echo '{line}'")
    outcome = submit_batch([(labels[LABEL], 3)], context_in(tmp_path), SCHEDD, timeout=5).outcomes[LABEL]
    assert outcome.error == ""
    assert outcome.job_ids == ("7.0", "7.1", "7.2")
    assert calls.read_text().split() == [
        "-name", "schedd.example.org", "-pool", "collector.example.org:9618", outcome.submit_file,
    ]  # fmt: skip


def test_a_failing_program_is_reported_once_and_never_retried(labels, tmp_path, on_path, caplog):
    calls = fake_program(on_path, "echo 'Failed to connect to schedd.' >&2\nexit 1")
    outcome = submit_batch([(labels[LABEL], 3)], context_in(tmp_path), Schedd(), timeout=5).outcomes[LABEL]
    assert outcome.job_ids == ()
    failed = "autopyfactory-condor-submit (local schedd) exited 1: Failed to connect to schedd."
    assert outcome.error == f"outcome unknown: {failed}"
    assert Path(outcome.submit_file).exists()
    assert len(calls.read_text().splitlines()) == 1
    assert "Failed to connect to schedd" in caplog.text


def test_a_hanging_program_times_out(labels, tmp_path, on_path):
    fake_program(on_path, "exec sleep 30")
    started = time.monotonic()
    outcome = submit_batch([(labels[LABEL], 1)], context_in(tmp_path), Schedd(), timeout=0.5).outcomes[LABEL]
    assert time.monotonic() - started < 10
    assert "no answer within 0.5 s" in outcome.error
    assert outcome.job_ids == ()


def test_a_render_error_writes_nothing_and_runs_nothing(labels, tmp_path, on_path):
    calls = fake_program(on_path, "exit 0")
    label = labels[LABEL]
    label = dataclasses.replace(label, submit=dataclasses.replace(label.submit, arguments="-x %(nope)s"))
    outcome = submit_batch([(label, 1)], context_in(tmp_path), Schedd(), timeout=5).outcomes[LABEL]
    assert "unknown field %(nope)s" in outcome.error
    assert outcome.submit_file == ""
    assert not (tmp_path / "logs").exists()
    assert not calls.exists()


def test_an_unwritable_log_dir_is_an_outcome_not_an_exception(labels, tmp_path, on_path):
    (tmp_path / "logs").write_text("a file where the directory should be")
    outcome = submit_batch([(labels[LABEL], 1)], context_in(tmp_path), Schedd(), timeout=5).outcomes[LABEL]
    assert outcome.error
    assert outcome.job_ids == ()


# ---- `$` and `$$` ------------------------------------------------------------------------------


def match_time(text: str) -> str:
    """What the schedd makes of a job ad's ``$$(DOLLARDOLLAR)`` when the job is matched."""
    return text.replace("$$(DOLLARDOLLAR)", "$$")


@pytest.mark.parametrize(
    "raw",
    ["$", "$$", "$$$", "a$$b", "$$(Name)", "$(HOME)", "x$y$$z$$$w", "$$$$", "$ENV(HOME)", "p$$(DOLLAR)"],
)
def test_every_dollar_reaches_the_pilot_as_written(labels, raw):
    label = labels[LABEL]
    environ = (("SITE_VALUE", raw),)
    label = dataclasses.replace(
        label,
        resources=dataclasses.replace(label.resources, environ=environ),
        pilot=dataclasses.replace(label.pilot, extra_args=f"--note '{raw}'"),
    )
    text = render_submit(label, 1, CONTEXT)
    validate(text)
    assert "$$(DOLLAR)" not in text.replace("$$(DOLLARDOLLAR)", "")  # no match-time reference to "DOLLAR"
    env = dict(
        entry.partition("=")[::2] for entry in decode_new_syntax(match_time(expanded(text, "environment")))
    )
    assert env["SITE_VALUE"] == raw
    assert decode_new_syntax(match_time(expanded(text, "arguments")))[-1] == raw


def test_a_path_with_two_dollars_cannot_be_written(labels):
    label = labels[LABEL]
    label = dataclasses.replace(label, submit=dataclasses.replace(label.submit, x509userproxy="/tmp/a$$b"))
    with pytest.raises(SubmitRenderError, match="a path with '\\$\\$' cannot be written"):
        render_submit(label, 1, CONTEXT)


def test_environ_cannot_override_the_factory_variables(labels):
    label = labels["CERN-ce503.cern.ch-share"]
    environ = (("APFMON", "http://elsewhere.example/api"), ("GTAG", "x"), ("SITE_VAR", "1"))
    label = dataclasses.replace(label, resources=dataclasses.replace(label.resources, environ=environ))
    context = dataclasses.replace(CONTEXT, monitor_url="")  # not even when the factory has no monitor
    env = decode_new_syntax(value(render_submit(label, 1, context), "environment"))
    names = [entry.partition("=")[0] for entry in env]
    assert names == ["SITE_VAR", "APFFID", "APFCID", "FACTORYQUEUE", "GTAG", "PANDA_JSID"]
    assert not any(entry.startswith("GTAG=x") for entry in env)


# ---- pilot 3 arguments and the operator's `$` --------------------------------------------------


def test_operator_dollar_in_the_template_is_not_expanded(labels):
    """`$ENV(...)` and `$(Cluster)` the operator wrote reach the pilot as written, not expanded."""
    label = labels["CERN-ce503.cern.ch-share"]
    template = "--env $ENV(HOME) --m $(Cluster) -s %(siteid)s 'a $(Process) b'"
    label = dataclasses.replace(label, submit=dataclasses.replace(label.submit, arguments=template))
    text = render_submit(label, 1, CONTEXT)
    validate(text)
    words = decode_new_syntax(expanded(text, "arguments"))
    assert words == ["--env", "$ENV(HOME)", "--m", "$(Cluster)", "-s", "CERN", "a $(Process) b"]
    # the factory's own macros still expand
    env = dict(entry.partition("=")[::2] for entry in decode_new_syntax(expanded(text, "environment")))
    assert env["APFCID"] == "1.0"


def test_pilot_settings_resource_type_and_extra_args_are_appended(labels):
    from autopyfactory.domain.label import PilotSettings

    label = dataclasses.replace(
        labels["CERN-ce503.cern.ch-share"],
        resource_type="MCORE",
        pilot=PilotSettings(
            user="ATLAS",
            job_label="rc_test2",
            pilot_type="RC",
            version="3.7.0.36",
            url="file:///cvmfs/x/pilot3.tar.gz",
            extra_args="-d --lifetime 3600 --note '$HOME x'",
        ),
    )
    words = decode_new_syntax(expanded(render_submit(label, 1, CONTEXT), "arguments"))
    assert words == [
        "-q", "CERN", "-r", "CERN", "-s", "CERN", "-j", "rc_test2", "-i", "RC", "--pilot-user", "ATLAS",
        "--url", "https://pandaserver.cern.ch", "-p", "25443", "-w", "generic",
        "--resource-type", "MCORE", "--piloturl", "file:///cvmfs/x/pilot3.tar.gz",
        "--pilotversion", "3.7.0.36", "-d", "--lifetime", "3600", "--note", "$HOME x",
    ]  # fmt: skip


def test_resource_type_in_the_template_is_not_repeated(labels):
    label = labels["CERN-ce503.cern.ch-share"]
    submit = dataclasses.replace(label.submit, arguments="-q %(pq)s --resource-type=%(resourceType)s")
    label = dataclasses.replace(label, submit=submit, resource_type="SCORE")
    words = decode_new_syntax(expanded(render_submit(label, 1, CONTEXT), "arguments"))
    assert words == ["-q", "CERN", "--resource-type=SCORE"]


def test_bad_pilot_extra_args_is_a_render_error(labels):
    from autopyfactory.domain.label import PilotSettings

    label = dataclasses.replace(
        labels["CERN-ce503.cern.ch-share"], pilot=PilotSettings(extra_args="-d 'open")
    )
    with pytest.raises(SubmitRenderError, match="pilotExtraArgs"):
        render_submit(label, 1, CONTEXT)
