"""An HTCondor emulator for tests: condor_submit, condor_q, condor_history, condor_rm, condor_release,
and the factory's own submission program ``autopyfactory-condor-submit`` run with an emulated
schedd in place of HTCondor's Python bindings (bindings.py).

HTCondor cannot be installed on the test machines (the PyPI ``htcondor`` wheel has only the Python
bindings), so the ``condor`` fixture puts small executables first on PATH that behave like the real
tools for what the factory uses. Submit files are parsed by the real ``htcondor2.Submit``,
constraints are evaluated and ``-json`` is printed by the real ``classad2``; each schedd's queue and
history live in a state directory of JSON files shared by all invocations. Tests drive it through
:class:`CondorEmulator`: move jobs between states, inject failures, read the call log.

Checked against a real HTCondor 25.0 pool (tests/htcondor/test_emulator_agreement.py runs the same
steps on both): the submission program's lines for a submitted label, one a ``SUBMIT_REQUIREMENT``
refuses (with its reason) and one whose executable is missing, and the job ads it makes (the
bindings' own defaults for memory and disk); ``condor_submit -terse`` with several clusters and
its multi-queue warning,
``condor_q -json`` with the census projection and with no match (no output, exit 0), hold,
release and ``condor_rm -reason`` texts (``<reason> (by user <user>)``), and the removed jobs'
``condor_history -json``. Differences found and fixed here:

* a hold did not count: real schedds increment ``NumHolds`` on every hold (the factory's
  ``holdMaxReleases`` reads it); the emulator left it unset.
* a factory cycle's pilots (HTCondor-C and vanilla), compared attribute by attribute with the
  ads condor_submit 25.0 made of the same descriptions: condor_submit sorts ``Environment`` by
  variable name, writes ``TransferExecutable`` only when false, and adds ``RequestCpus = 1``,
  ``RequestMemory`` (MemoryUsage or ImageSize) and ``RequestDisk = DiskUsage`` when the
  description does not ask; htcondor2.Submit alone does none of these (submit.py now does).

* a running HTCondor-C job (checked on the real pool): the gridmanager copies the CE side's
  ``JobCurrentStartDate``, and ``EnteredCurrentStatus`` is when it saw the job running, a probe
  interval later; the emulator set both to the same time (``set_status(..., started=...)`` now
  gives the CE's start apart; ``age`` moves the start dates too).

Known and kept: the emulator never starts, completes or evicts a job by itself (tests drive it),
has no gridmanager (``GridJobStatus`` is whatever a test sets) and no ``condor_hold`` command.
"""

from .ads import JobStatus
from .commands import NOT_JSON, TRUNCATED_JSON, WRONG_SHAPE
from .driver import Call, CondorEmulator
from .state import LOCAL_SCHEDD, STATE_ENV

__all__ = ["LOCAL_SCHEDD", "NOT_JSON", "STATE_ENV", "TRUNCATED_JSON", "WRONG_SHAPE", "Call",
           "CondorEmulator", "JobStatus"]  # fmt: skip
