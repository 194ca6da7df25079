"""The schedd as HTCondor's Python bindings see it, for the factory's submission program.

``autopyfactory-condor-submit`` (autopyfactory/batch/condor/submitter.py) submits each label with
``htcondor2.Schedd.submit``. The emulator runs that program's own code (``submitter.run``) with
:class:`EmulatedSchedd` in place of the bindings' schedd: the same one-transaction-per-call
semantics and the exceptions the real bindings raise, with the messages they carry (checked on
a real 25.0 schedd in tests/htcondor/test_emulator_agreement.py):

* a schedd refusing the commit (``SUBMIT_REQUIREMENT``): ``Unable to commit transaction,
  SCHEDD:2:<reason>``;
* ``MAX_JOBS_PER_OWNER``: ``expected next ProcId to be 0, but Schedd says -3`` (the schedd's
  refusal code of the new job);
* a description the submit library rejects: ``Failed to create job ad, errmsg=...``;
* a schedd the collector does not know: the program's own "cannot find the address" error.

The count given to ``submit`` replaces the description's queue count, as in the bindings; item
data (the per-job pilot keys) becomes a ``queue ... from (...)`` statement, one job per item. The
bindings come with their own submit library (the ``htcondor`` wheel, 25.14 here), whose defaults
for a job that asks for no memory or disk differ from condor_submit 25.0's: :data:`DEFAULTS`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence

import htcondor2

from .state import State, UnknownScheddError
from .submit import SubmitError

_QUEUE = re.compile(r"^\s*queue\b.*$", re.IGNORECASE | re.MULTILINE)
#: What the bindings' submit library writes when the description does not ask (seen on a real schedd).
DEFAULTS = {
    "request_memory": "128",
    "request_disk": "MAX({ 1024,(TransferInputSizeMB + 1) * 1.25 }) * 1024",
}


class EmulatedSchedd:
    """One emulated schedd behind the submission program's ScheddClient protocol."""

    def __init__(
        self,
        state: State,
        name: str,
        pool: str,
        hang_at: int | None = None,
        on_hang: Callable[[], None] = lambda: None,
    ) -> None:
        try:
            state.load(name or None)
        except UnknownScheddError:
            raise LookupError(
                f"cannot find the address of schedd {name} in pool {pool or '(local)'}"
            ) from None
        self._state, self._name = state, name or None
        self._hang_at, self._on_hang = hang_at, on_hang  # a "hang-in" fault: the n-th submission hangs
        self._calls = 0

    def submit(
        self, description: str, count: int, items: Sequence[Mapping[str, str]] = ()
    ) -> tuple[int, int, int]:
        from .commands import queue_clusters  # commands imports this module

        self._calls += 1
        if self._hang_at is not None and self._calls > self._hang_at:
            self._on_hang()
        if items:
            text = _QUEUE.sub(lambda _: item_queue(items), description)
        else:
            text = _QUEUE.sub(f"queue {count}", description) if count > 0 else description
        asked = htcondor2.Submit(description)
        defaults = "".join(f"{key} = {value}\n" for key, value in DEFAULTS.items() if key not in asked)
        text = defaults + text
        try:
            clusters = queue_clusters(self._state, self._name, text, os.getcwd())
        except SubmitError as exc:
            raise htcondor2.HTCondorException(bindings_message(exc)) from None
        jobs = [ad for cluster in clusters for ad in cluster]
        return int(jobs[0]["ClusterId"]), int(jobs[0]["ProcId"]), len(jobs)


def item_queue(items: Sequence[Mapping[str, str]]) -> str:
    """The queue statement the bindings' ``itemdata`` stands for: one job per item, the first
    item's keys as the variables (as the bindings do)."""
    names = list(items[0])
    rows = "\n".join(",".join(item[name] for name in names) for item in items)
    return f"queue 1 {','.join(names)} from (\n{rows}\n)"


def bindings_message(error: SubmitError) -> str:
    """What the bindings say for what condor_submit reports as ``error``."""
    text = str(error)
    if "MAX_JOBS_PER_OWNER" in text:
        return "expected next ProcId to be 0, but Schedd says -3"
    if text.startswith("Failed to commit job submission into the queue."):
        return "Unable to commit transaction, SCHEDD:2:" + text.split("\n", 1)[-1].removeprefix("ERROR: ")
    return f"Failed to create job ad, errmsg=Submit:-1:{text}\n"


def hang(state: State, seconds: float) -> Callable[[], None]:
    def sleep() -> None:
        with state.hanging():
            time.sleep(seconds)

    return sleep
