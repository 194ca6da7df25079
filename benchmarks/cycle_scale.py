"""How the cycle scales: the pure parts, and whole steady cycles side by side (docs/performance.md).

Run by hand:

* ``python benchmarks/cycle_scale.py QUEUES [CES_PER_QUEUE]`` times the cycle's pure parts without
  HTCondor: config + schedconfig -> labels, the policy for every label with PanDA shares and
  factory-wide caps, and the peak memory of both.
* ``python benchmarks/cycle_scale.py cycle [--labels 200,2000,10000] [--pilots-per-label 50]
  [--variants a,b,c] [--max-per-label-variants 2000]`` runs one warm-up cycle and one measured
  steady cycle of the real :class:`~autopyfactory.cycle.factory.Factory` (labels already built, metrics
  observer, INFO log to a file) in a fresh process per variant and size, with counting
  ``condor_q``/``condor_submit``/``condor_rm``/``condor_release`` shims first on PATH that cost next
  to nothing (``cat`` of a prepared answer, ``awk`` printing ``-terse`` lines), so what is measured
  is the factory's own work. Variants:

  (a) the per-label path the factory had before it grouped submissions per schedd: the census
      builds a Pilot per job ad, one ``condor_submit`` per label that gets pilots, submit files
      written atomically (two fsyncs);
  (b) the new path: census streamed and counted in one pass, one ``condor_submit`` per schedd,
      no fsync;
  (c) an APF-1-style loop: one constrained ``condor_q`` and one ``condor_submit`` per label.

  Reported per steady cycle: wall, factory CPU (this process, the shims excluded), peak RSS
  (the child's VmHWM over its whole life: setup, warm-up and measured cycle),
  calls per tool, and the ratio of the wall time to a bare ``json.loads`` of the same condor_q
  answer measured in the same process. The per-label variants are run up to
  ``--max-per-label-variants`` labels (at 10,000 labels they would need 10,000 process starts).
* ``python benchmarks/cycle_scale.py forms --old-tree DIR [--labels 400] [--pilots-per-label 2]``
  compares the ways to submit one cycle's pilots to one schedd, on a real HTCondor personal pool
  (``APF_TEST_HTCONDOR``, as the ``htcondor`` tests; tests/support/htcondor_pool.py), side by side
  in one run: (1) the previous factory's one condor_submit with one ``queue`` statement per label
  (run from ``DIR``, a checkout of the previous commit), (2) one condor_submit of one ``queue ...
  from`` table, one row per pilot, every per-label value a row variable, (3) the same table through
  the Python bindings (``Schedd.submit(..., itemdata=...)``), (4) one condor_submit per label, (5)
  this factory: one ``autopyfactory-condor-submit`` run, one ``Schedd.submit`` (one cluster) per
  label. Labels: queues x 2 CEs at an unreachable HTCondor-CE (the pilots stay idle), half of the
  queues with a site variable in ``environ`` and each its own ``maxrss``. Reported per form: the
  submission's wall time (in a process of the pool user), the calls, the clusters, and the labels
  whose pilots carry another label's environment variable or memory (cross-talk).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Collection, Sequence
from pathlib import Path

from autopyfactory.batch.condor import submit as condor_submit_module
from autopyfactory.batch.condor.backend import CondorBackend
from autopyfactory.batch.condor.census import (
    ATTRIBUTES,
    count_by_label,
    factory_constraint,
    parse_ads,
    query_pilots,
)
from autopyfactory.batch.condor.command import Schedd, run_condor
from autopyfactory.batch.interface import BatchError, SubmitContext, SubmitOutcome, SubmitRequests
from autopyfactory.config import loader as config
from autopyfactory.config.autoconfigure import build_labels
from autopyfactory.config.schedconfig_labels import SchedconfigLabels
from autopyfactory.cycle.factory import Factory
from autopyfactory.domain.demand import PandaReading, SiteJobs
from autopyfactory.domain.label import Label
from autopyfactory.domain.model import Census, Pilot, Supply
from autopyfactory.domain.planning import plan
from autopyfactory.domain.sharing import FactoryCaps
from autopyfactory.edges.files import atomic_write_text
from autopyfactory.edges.schedconfig import Snapshot
from autopyfactory.observers.metrics import FactoryMetrics
from autopyfactory.runtime.service import cycle_settings

FACTORY_ID = "bench"
REPO = Path(__file__).resolve().parents[1]
NOW = 1_780_000_000
TOOLS = ("condor_q", "condor_submit", "autopyfactory-condor-submit", "condor_rm", "condor_release")


def dump(queues: int, ces: int) -> dict[str, dict[str, object]]:
    return {
        f"PQ{q:05d}": {
            "nickname": f"PQ{q:05d}", "siteid": f"PQ{q:05d}", "status": "online", "cloud": "XX",
            "corecount": 8, "maxrss": 16000, "maxtime": 172800, "maxwdir": 10000, "environ": "",
            "queues": [{"ce_endpoint": f"ce{c}.site{q}.example.org:9619", "ce_flavour": "HTCONDOR-CE",
                        "ce_queue_name": "atlas", "ce_state": "ACTIVE", "ce_status": "production"}
                       for c in range(ces)],
        }
        for q in range(queues)
    }  # fmt: skip


def factory_conf(queues: int, extra: str = "") -> str:
    sections = "\n".join(f"[PQ{q:05d}]" for q in range(queues))
    return (
        f"[Factory]\nfactoryId = {FACTORY_ID}\nfactoryOwner = b@example.org\n"
        f"pandaserver = http://127.0.0.1:1\nschedconfig = /dev/null\nmaxPerCycle = 100000\n{extra}"
        # RC pilots count every job label: the plain per-site statistics below are what they need
        f"[QueueDefaults]\nschedplugin = Ready, MaxPerCycle, MaxPending\npilotType = RC\n"
        f"sched.maxpercycle.maximum = 50\nsched.maxpending.maximum = 100\n{sections}\n"
    )


# ---- the pure parts (the original benchmark) ---------------------------------------------------


def pure_parts(queues: int, ces: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "factory.conf"
        path.write_text(factory_conf(queues))
        records = dump(queues, ces)
        tracemalloc.start()
        started = time.perf_counter()
        cfg = config.load(path)
        loaded = time.perf_counter()
        labels = build_labels(cfg, records).labels
        built = time.perf_counter()
        stats = {f"PQ{q:05d}": SiteJobs({"activated": (q * 37) % 500}) for q in range(queues)}
        supply = {label.name: Supply(idle=3, running=20, held=1) for label in labels}
        census = Census(supply, 24 * len(labels))
        plans = plan(labels, stats, census, 1, FactoryCaps(max_per_cycle=5000), cycle=7)
        planned = time.perf_counter()
        peak = tracemalloc.get_traced_memory()[1]
    print(
        f"{queues} queues x {ces} CEs = {len(labels)} labels: config {loaded - started:.2f} s, "
        f"labels {built - loaded:.2f} s, plan {planned - built:.2f} s, "
        f"{sum(p.decision.n for p in plans)} pilots decided, peak memory {peak / 2**20:.0f} MiB"
    )


# ---- whole cycles: the stage ------------------------------------------------------------------

SHIM_Q = """#!/bin/sh
echo >> "$BENCH_COUNTS/condor_q"
case "$*" in
  *"MATCH_APF_QUEUE =="*) label=$(printf '%s' "$*" | sed -n 's/.*MATCH_APF_QUEUE == "\\([^"]*\\)".*/\\1/p')
                     cat "$BENCH_DATA/by_label/$label.json" ;;
  *) cat "$BENCH_DATA/condor_q.json" ;;
esac
"""
SHIM_SUBMIT = """#!/bin/sh
echo >> "$BENCH_COUNTS/condor_submit"
for file; do :; done
c=$(cat "$BENCH_COUNTS/cluster" 2>/dev/null || echo 1000)
awk -v c="$c" -v out="$BENCH_COUNTS/cluster" \\
  '/^queue [0-9]+$/ {print c ".0 - " c "." ($2 - 1); c++} END {print c > out}' "$file"
"""
SHIM_OTHER = """#!/bin/sh
echo >> "$BENCH_COUNTS/{tool}"
"""
#: The submission program's stand-in: counts its call and answers every label "submitted".
SHIM_PROGRAM = """#!{python}
import json, os, sys
with open(os.path.join(os.environ["BENCH_COUNTS"], "autopyfactory-condor-submit"), "a") as out:
    out.write("\\n")
path = os.path.join(os.environ["BENCH_COUNTS"], "cluster")
cluster = int(open(path).read()) if os.path.exists(path) else 1000
for entry in json.load(open(sys.argv[-1]))["labels"]:
    print(json.dumps({{"label": entry["label"], "outcome": "submitted", "cluster": cluster, "first": 0,
                      "count": entry["count"]}}))
    cluster += 1
open(path, "w").write(str(cluster))
"""


def job_ads(labels: Sequence[str], per_label: int) -> list[dict[str, object]]:
    """Per label: 2 idle, 1 held (recently: no housekeeping action), the rest running; queued
    over the last day (one every 1,700 s), so that 2 of 50 were queued in the last hour."""
    ads = []
    cluster = 1
    for label in labels:
        for proc in range(per_label):
            status = 1 if proc < 2 else 5 if proc == 2 else 2
            ad: dict[str, object] = {
                "ClusterId": cluster, "ProcId": proc, "JobStatus": status, "MATCH_APF_QUEUE": label,
                "EnteredCurrentStatus": NOW - 60, "QDate": NOW - 600 - 1700 * proc,
                "JobRunCount": int(status == 2), "NumHolds": int(status == 5),
                "GridJobStatus": "RUNNING" if status == 2 else "IDLE",
            }  # fmt: skip
            if status == 5:
                ad.update(HoldReason="Error from ce: temporary failure", HoldReasonCode=12)
            ads.append(ad)
        cluster += 1
    return ads


def condor_json(ads: Sequence[dict[str, object]]) -> str:
    """The shape condor_q -json prints: a list, one attribute per line, ``,`` on a line of its own."""
    return "[\n" + ",\n".join(json.dumps(ad, indent=2) + "\n" for ad in ads) + "]\n"


def prepare(work: Path, n_labels: int, per_label: int) -> None:
    queues = n_labels // 2
    (work / "factory.conf").write_text(
        factory_conf(queues, f"baseLogDir = {work}/logs\ncondorTimeout = 600\n")
    )
    records = dump(queues, 2)
    (work / "cric.json").write_text(json.dumps(records))
    labels = [label.name for label in build_labels(config.load(work / "factory.conf"), records).labels]
    ads = job_ads(labels, per_label)
    (work / "condor_q.json").write_text(condor_json(ads))
    by_label = work / "by_label"
    by_label.mkdir()
    for index, label in enumerate(labels):
        (by_label / f"{label}.json").write_text(condor_json(ads[index * per_label : (index + 1) * per_label]))
    bin_dir = work / "bin"
    bin_dir.mkdir()
    for tool, text in (("condor_q", SHIM_Q), ("condor_submit", SHIM_SUBMIT)):
        (bin_dir / tool).write_text(text)
    for tool in ("condor_rm", "condor_release"):
        (bin_dir / tool).write_text(SHIM_OTHER.format(tool=tool))
    (bin_dir / "autopyfactory-condor-submit").write_text(SHIM_PROGRAM.format(python=sys.executable))
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    wrapper = work / "wrapper.sh"
    wrapper.write_text("#!/bin/sh\n")
    wrapper.chmod(0o755)


# ---- whole cycles: the variants ---------------------------------------------------------------


def _fsynced_submit_file(directory: Path, text: str) -> Path:
    """The submit file as the per-label path wrote it: a reserved name, then an atomic write (fsyncs)."""
    path = _plain_submit_file(directory, "")
    atomic_write_text(path, text)
    return path


_plain_submit_file = condor_submit_module.write_submit_file


class PerLabelBackend(CondorBackend):
    """(a): the census builds a Pilot per job ad; one condor_submit per label."""

    def census(self, labels: Sequence[Label], keep: Collection[str] = ()) -> Census:
        supply: dict[str, Supply | None] = {}
        pilots: dict[str, list[Pilot]] = {}
        total: int | None = 0
        for schedd, members in self._by_schedd(labels).items():
            found = query_pilots(schedd, self._factory_id, self._timeout)
            counts = count_by_label(found)
            supply.update({label.name: counts.get(label.name, Supply()) for label in members})
            for pilot in found:
                pilots.setdefault(pilot.label, []).append(pilot)
            total = None if total is None else total + sum(s.all for s in counts.values())
        return Census(supply, total, (), {label: tuple(found) for label, found in pilots.items()})

    def submit(self, requests: SubmitRequests, context: SubmitContext) -> dict[str, SubmitOutcome]:
        return {
            label.name: submit_one(label, n, context, self.schedd_of(label), self._timeout)
            for label, n in requests
        }


def submit_one(label: Label, n: int, context: SubmitContext, schedd: Schedd, timeout: float) -> SubmitOutcome:
    """The per-label path as it was: the label's own submit file next to its logs, one
    ``condor_submit -terse`` for it."""
    text = condor_submit_module.render_submit(label, n, context)
    condor_submit_module.validate(text)
    directory = Path(context.base_log_dir, context.date, label.name)
    path = condor_submit_module.write_submit_file(directory, text)
    output = run_condor("condor_submit", schedd, ["-terse", str(path)], timeout)
    first, last = (part.strip() for part in output.strip().split("-"))
    cluster = first.split(".")[0]
    procs = range(int(first.split(".")[1]), int(last.split(".")[1]) + 1)
    return SubmitOutcome(tuple(f"{cluster}.{proc}" for proc in procs), str(path))


class Apf1Backend(PerLabelBackend):
    """(c): one constrained condor_q per label, one condor_submit per label."""

    def census(self, labels: Sequence[Label], keep: Collection[str] = ()) -> Census:
        supply: dict[str, Supply | None] = {}
        pilots: dict[str, tuple[Pilot, ...]] = {}
        total = 0
        for label in labels:
            constraint = f'{factory_constraint(self._factory_id)} && MATCH_APF_QUEUE == "{label.name}"'
            args = ["-constraint", constraint, "-json", "-attributes", ",".join(ATTRIBUTES)]
            try:
                found = parse_ads(
                    run_condor("condor_q", self.schedd_of(label), args, self._timeout), "condor_q"
                )
            except BatchError:
                supply[label.name] = None
                continue
            supply[label.name] = count_by_label(found).get(label.name, Supply())
            pilots[label.name] = tuple(found)
            total += supply[label.name].all  # type: ignore[union-attr]
        return Census(supply, total, (), pilots)


class FixedPanda:
    def __init__(self, queues: int) -> None:
        self.stats = {f"PQ{q:05d}": SiteJobs({"activated": (q * 37) % 500}) for q in range(queues)}

    def update(self, detailed: bool = False) -> PandaReading:
        return PandaReading(self.stats, NOW, "", NOW)


class FixedSchedconfig:
    def __init__(self, data: dict[str, object]) -> None:
        self.snapshot = Snapshot(data, "bench")

    def get(self) -> Snapshot[dict[str, object]]:
        return self.snapshot


def counts(directory: Path) -> dict[str, int]:
    return {tool: len((directory / tool).read_text().splitlines()) if (directory / tool).exists() else 0
            for tool in TOOLS}  # fmt: skip


def child(variant: str, work: Path) -> dict[str, object]:
    """One warm-up and one measured steady cycle in this (fresh) process."""
    count_dir = work / f"counts-{variant}"
    count_dir.mkdir()
    os.environ.update(BENCH_COUNTS=str(count_dir), BENCH_DATA=str(work))
    os.environ["PATH"] = f"{work / 'bin'}{os.pathsep}{os.environ['PATH']}"
    logging.basicConfig(filename=work / f"factory-{variant}.log", level=logging.INFO)
    if variant == "a":
        condor_submit_module.write_submit_file = _fsynced_submit_file
    cfg = config.load(work / "factory.conf")
    records = json.loads((work / "cric.json").read_text())
    kind = {"a": PerLabelBackend, "b": CondorBackend, "c": Apf1Backend}[variant]
    backend = kind(FACTORY_ID, Schedd(), timeout=600)
    labels = SchedconfigLabels(cfg, FixedSchedconfig(records))  # type: ignore[arg-type]
    settings = cycle_settings(cfg, dry_run=False)
    factory = Factory(settings, labels, FixedPanda(len(records)), {"condor": backend},
                      clock=lambda: float(NOW), observers=[FactoryMetrics()])  # fmt: skip
    factory.run_cycle(0)
    before, cpu0, wall0 = counts(count_dir), _cpu(), time.perf_counter()
    report = factory.run_cycle(1)
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    after = counts(count_dir)
    peak_mib = _peak_rss_kib() / 1024
    text = (work / "condor_q.json").read_text()
    parse0 = time.perf_counter()
    json.loads(text)
    parse = time.perf_counter() - parse0
    return {
        "variant": variant, "labels": len(report.results), "submitted": report.submitted,
        "wall": wall, "cpu": cpu, "peak_mib": peak_mib, "parse": parse, "answer_mb": len(text) / 1e6,
        "calls": {tool: after[tool] - before[tool] for tool in TOOLS},
        "pilots": sum(1 for _ in text.split('"ClusterId"')) - 1,
    }  # fmt: skip


def _peak_rss_kib() -> int:
    """This process's peak RSS: VmHWM, not ``ru_maxrss``, which a child inherits from its parent
    (Linux keeps the larger of the two across fork and exec: this benchmark's parent, holding the
    prepared answer, would be measured)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise SystemExit("no VmHWM in /proc/self/status (Linux only)")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cycles(sizes: Sequence[int], per_label: int, variants: Sequence[str], per_label_max: int) -> None:
    print("| variant | labels | pilots | condor_q answer | wall | factory CPU | peak RSS | condor_q | "
          "submissions | condor_rm+release | wall / json.loads | pilots submitted |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="apf-cycle-scale-") as tmp:
            work = Path(tmp)
            prepare(work, size, per_label)
            for variant in variants:
                if variant != "b" and size > per_label_max:
                    continue
                out = subprocess.run([sys.executable, __file__, "--child", variant, str(work)],
                                     capture_output=True, text=True, timeout=3600)  # fmt: skip
                if out.returncode != 0:
                    raise SystemExit(f"variant {variant}, {size} labels failed:\n{out.stderr}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                c = r["calls"]
                print(f"| ({r['variant']}) | {r['labels']} | {r['pilots']} | {r['answer_mb']:.1f} MB | "
                      f"{r['wall']:.2f} s | {r['cpu']:.2f} s | {r['peak_mib']:.0f} MiB | {c['condor_q']} | "
                      f"{c['condor_submit'] + c['autopyfactory-condor-submit']} | "
                      f"{c['condor_rm'] + c['condor_release']} | "
                      f"{r['wall'] / r['parse']:.1f} × ({r['parse']:.2f} s) | {r['submitted']} |",
                      flush=True)  # fmt: skip


# ---- the submit forms, on a real pool ---------------------------------------------------------

FORMS = {
    "several-queues": "(1) one condor_submit, one queue statement per label (previous factory)",
    "table": "(2) one condor_submit, one queue ... from table (one cluster)",
    "bindings-table": "(3) bindings: one Schedd.submit with itemdata (one cluster)",
    "per-label": "(4) one condor_submit per label",
    "program": "(5) autopyfactory-condor-submit: one Schedd.submit per label (this factory)",
}
DATE = "2026-03-01"


def form_dump(queues: int) -> dict[str, dict[str, object]]:
    """Queues x 2 CEs at an unreachable HTCondor-CE; even queues carry a site variable."""
    records = dump(queues, 2)
    for q, record in enumerate(records.values()):
        record["environ"] = (
            f"SITE_SECRET_{q}=s{q} HTTP_PROXY_X=http://squid{q}.example:3128" if q % 2 == 0 else ""
        )
        record["maxrss"] = 2000 + q
        record["queues"] = [
            dict(ce, ce_endpoint=f"127.0.0.{c + 1}:9") for c, ce in enumerate(record["queues"])
        ]  # type: ignore[attr-defined]
    return records


def form_child(form: str, work: Path, per_label: int) -> dict[str, object]:
    """One form's submission, as the pool user in a fresh process; what it cost."""
    from autopyfactory.batch.condor.bulk import submit_batch  # the previous tree's or this one's

    records = json.loads((work / "cric.json").read_text())
    labels = build_labels(config.load(work / "factory.conf"), records).labels
    context = SubmitContext(FACTORY_ID, "https://pandaserver.example:25443", str(work / "logs"), "", "", DATE)
    schedd = Schedd(os.environ["BENCH_SCHEDD"])
    requests = [(label, per_label) for label in labels]
    for label in labels:
        Path(context.base_log_dir, DATE, label.name).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if form in ("several-queues", "program"):
        result = submit_batch(requests, context, schedd, 600)
        calls, errors = result.calls, sum(1 for o in result.outcomes.values() if o.error)
    elif form == "per-label":
        outcomes = [submit_one(label, n, context, schedd, 600) for label, n in requests]
        calls, errors = len(outcomes), sum(1 for o in outcomes if o.error)
    else:
        calls, errors = submit_table(form, requests, context, schedd, work), 0
    return {"form": form, "wall": time.perf_counter() - started, "calls": calls, "errors": errors}


def _table(requests: SubmitRequests, context: SubmitContext) -> tuple[str, list[dict[str, str]]]:
    """Every label's description as rows of one table: the description's keys as row variables,
    one row per pilot, empty where a label has no such key."""
    described = []
    for label, _ in requests:
        lines = condor_submit_module.render_submit(label, 1, context).splitlines()[1:-1]
        described.append(dict(line.split(" = ", 1) for line in lines))
    keys = list(dict.fromkeys(key for pairs in described for key in pairs))
    names = [
        f"apf{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(len(keys))
    ]  # no digits: "a_0" is a count
    head = "".join(f"{key} = $({name})\n" for key, name in zip(keys, names, strict=True))
    rows = [
        {name: pairs.get(key, "") for key, name in zip(keys, names, strict=True)}
        for pairs, (_, n) in zip(described, requests, strict=True)
        for _ in range(n)
    ]
    return head, rows


def submit_table(
    form: str, requests: SubmitRequests, context: SubmitContext, schedd: Schedd, work: Path
) -> int:
    head, rows = _table(requests, context)
    if form == "table":
        names = ",".join(rows[0])
        items = "".join("\x1f".join(row.values()) + "\n" for row in rows)
        path = work / "table.sub"
        path.write_text(f"{head}queue {names} from (\n{items})\n")
        run_condor("condor_submit", schedd, ["-terse", str(path)], 600)
        return 1
    import htcondor2

    ad = htcondor2.Collector().locate(htcondor2.DaemonType.Schedd, schedd.name)
    htcondor2.Schedd(ad).submit(htcondor2.Submit(head), itemdata=iter(rows))
    return 1


def cross_talk(jobs: Sequence[dict[str, object]], records: dict[str, dict[str, object]]) -> int:
    """Labels whose pilots carry another label's site variable or memory."""
    own = {f"PQ{q:05d}": q for q in range(len(records))}
    leaked = set()
    for job in jobs:
        label = str(job.get("MATCH_APF_QUEUE", ""))
        q = own[label.split("-")[0]]
        variables = {word.split("=")[0] for word in str(job.get("Environment", "")).split()}
        foreign = {v for v in variables if v.startswith("SITE_SECRET_") and v != f"SITE_SECRET_{q}"}
        if foreign or (q % 2 and "HTTP_PROXY_X" in variables) or job.get("maxMemory") != 2000 + q:
            leaked.add(label)
    return len(leaked)


def forms(n_labels: int, per_label: int, old_tree: Path) -> None:
    sys.path.insert(0, str(REPO))  # the test suite's pool (tests/support/htcondor_pool.py)
    from tests.support.htcondor_pool import running_pool

    with running_pool(os.environ) as pool:
        work = pool.workdir("forms")
        records = form_dump(n_labels // 2)
        (work / "cric.json").write_text(json.dumps(records))
        wrapper = work / "wrapper.sh"
        wrapper.write_text("#!/bin/sh\n")
        wrapper.chmod(0o755)
        (work / "factory.conf").write_text(
            factory_conf(n_labels // 2, f"baseLogDir = {work}/logs\n").replace(
                "[QueueDefaults]\n", f"[QueueDefaults]\nexecutable = {wrapper}\nx509userproxy =\n"
            )
        )
        os.chmod(work, 0o777)
        print("| form | labels | pilots | wall | calls | clusters | labels with another label's values |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for form, title in FORMS.items():
            pool.remove_all()
            pool.wait_for(lambda: pool.jobs() == [], what="an empty queue")
            env = {**pool.python_env, "BENCH_SCHEDD": pool.submit_schedd}
            if form == "several-queues":  # the previous tree first, this one not at all
                rest = [path for path in env.get("PYTHONPATH", "").split(":") if path and Path(path) != REPO]
                env["PYTHONPATH"] = ":".join([str(old_tree), *rest])
            argv = pool.python_command([str(Path(__file__).resolve()), "--form-child", form, str(work),
                                        str(per_label)], env)  # fmt: skip
            out = subprocess.run(argv, capture_output=True, text=True, timeout=3600, cwd=work)
            if out.returncode != 0:
                raise SystemExit(f"form {form} failed:\n{out.stderr}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            jobs = pool.jobs()
            clusters = len({job["ClusterId"] for job in jobs})
            print(f"| {title} | {n_labels} | {len(jobs)} | {r['wall']:.2f} s | {r['calls']} | {clusters} | "
                  f"{cross_talk(jobs, records)} |", flush=True)  # fmt: skip
        pool.remove_all()


def main(argv: Sequence[str]) -> None:
    if len(argv) >= 2 and argv[0] == "--child":
        print(json.dumps(child(argv[1], Path(argv[2]))))
        return
    if len(argv) >= 4 and argv[0] == "--form-child":
        print(json.dumps(form_child(argv[1], Path(argv[2]), int(argv[3]))))
        return
    if argv and argv[0] == "forms":
        parser = argparse.ArgumentParser(description="the submit forms on a real pool")
        parser.add_argument("--old-tree", type=Path, required=True, help="a checkout of the previous commit")
        parser.add_argument("--labels", type=int, default=400)
        parser.add_argument("--pilots-per-label", type=int, default=2)
        args = parser.parse_args(argv[1:])
        forms(args.labels, args.pilots_per_label, args.old_tree.resolve())
        return
    if argv and argv[0].isdigit():
        pure_parts(int(argv[0]), int(argv[1]) if len(argv) > 1 else 3)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["cycle"])
    parser.add_argument("--labels", default="200,2000,10000")
    parser.add_argument("--pilots-per-label", type=int, default=50)
    parser.add_argument("--variants", default="a,b,c")
    parser.add_argument("--max-per-label-variants", type=int, default=2000)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.labels.split(",")]
    cycles(sizes, args.pilots_per_label, args.variants.split(","), args.max_per_label_variants)


if __name__ == "__main__":
    main(sys.argv[1:])
