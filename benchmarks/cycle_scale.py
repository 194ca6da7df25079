"""How the cycle's pure parts scale: labels from a large CRIC dump, and one cycle's plan.

Run by hand: ``python benchmarks/cycle_scale.py [QUEUES] [CES_PER_QUEUE]``. No network, no
HTCondor: it times config + schedconfig -> labels, the policy for every label with PanDA shares
and factory-wide caps, and the peak memory of both. Results are reported in the README.
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from autopyfactory import config
from autopyfactory.batch import Census
from autopyfactory.factory import plan
from autopyfactory.labels import build_labels
from autopyfactory.model import Supply
from autopyfactory.panda import SiteJobs
from autopyfactory.policy import FactoryCaps


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


def main(queues: int, ces: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "factory.conf"
        sections = "\n".join(f"[PQ{q:05d}]" for q in range(queues))
        path.write_text(f"[Factory]\nfactoryId = bench\nfactoryOwner = b@example.org\n"
                        f"pandaserver = http://127.0.0.1:1\nschedconfig = /dev/null\nmaxPerCycle = 5000\n"
                        f"[QueueDefaults]\nschedplugin = Ready, MaxPerCycle, MaxPending\n"
                        f"sched.maxpercycle.maximum = 50\nsched.maxpending.maximum = 100\n{sections}\n")
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
    print(f"{queues} queues x {ces} CEs = {len(labels)} labels: config {loaded - started:.2f} s, "
          f"labels {built - loaded:.2f} s, plan {planned - built:.2f} s, "
          f"{sum(p.decision.n for p in plans)} pilots decided, peak memory {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
