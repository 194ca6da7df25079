"""An HTCondor emulator for tests: condor_submit, condor_q, condor_history, condor_rm, condor_release.

HTCondor cannot be installed on the test machines (the PyPI ``htcondor`` wheel has only the Python
bindings), so the ``condor`` fixture puts small executables first on PATH that behave like the real
tools for what the factory uses. Submit files are parsed by the real ``htcondor2.Submit``,
constraints are evaluated and ``-json`` is printed by the real ``classad2``; each schedd's queue and
history live in a state directory of JSON files shared by all invocations. Tests drive it through
:class:`CondorEmulator`: move jobs between states, inject failures, read the call log.
"""

from .ads import JobStatus
from .commands import NOT_JSON, TRUNCATED_JSON, WRONG_SHAPE
from .driver import Call, CondorEmulator
from .state import LOCAL_SCHEDD, STATE_ENV

__all__ = ["LOCAL_SCHEDD", "NOT_JSON", "STATE_ENV", "TRUNCATED_JSON", "WRONG_SHAPE", "Call",
           "CondorEmulator", "JobStatus"]  # fmt: skip
