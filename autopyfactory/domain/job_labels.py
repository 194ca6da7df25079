"""Which PanDA jobs a label's pilots can take: the job labels (prodSourceLabels) getJob gives them.

A label counts as its demand exactly the activated jobs its pilots can take; a job its pilots
cannot take would draw a pilot that finds nothing. Three pieces decide what a pilot takes, each
with its authority in public code (read there; nothing is copied here):

1. What the pilot asks for: pilot 3 turns its ``-j`` (job label) and ``-i`` (pilot type) into the
   getJob ``prodSourceLabel`` in ``get_job_label`` (PanDAWMS/pilot3, ``pilot/control/job.py``):
   ``-i RC -j rc_test2`` asks ``rc_test2``, ``-i RC -j ptest`` asks ``ptest``, ``-i RCM -j ptest``
   asks ``rcm_test2``, ``-i ALRB`` asks ``rc_alrb`` whatever ``-j`` says, a queue in CRIC status
   ``test`` makes every other ask but ``ptest`` a ``test`` ask, and otherwise ``-j`` is asked as is.
2. What the server makes of it: ``acquire_jobs`` (PanDAWMS/panda-server,
   ``pandaserver/api/v1/pilot_api.py``) turns a ``user``, ``managed`` or ``unified`` ask at a
   queue in status ``test`` into ``test``.
3. Which jobs match the ask: ``construct_where_clause`` (panda-server,
   ``pandaserver/taskbuffer/db_proxy_mods/job_complex_module.py``): ``managed`` (or none) takes
   managed, test, prod_test and install jobs; ``user`` takes user, panda and install; ``unified``
   takes both sets; ``test`` (pilot 3 always sends its queue as computingElement) takes prod_test,
   install and test jobs (and HammerCloud's ``gangarobot`` jobs, which the statistics cannot tell
   apart: they are not counted); any other ask takes exactly its own label.

The job label a queue's pilots ask for by default (:func:`default_job_label`) follows Harvester's
pilot types (HSF/harvester, ``pandaharvester/harvestersubmitter/submitter_common.py``,
``get_complicated_pilot_options``): RC pilots ask ``rc_test2``, ALRB ``rc_alrb``, PT ``ptest``;
production pilots (PR) ask what the queue runs: ``unified`` at a queue that runs production and
analysis (CRIC ``type: unified``, or ``grandly_unified`` in its ``catchall``, panda-server's
``SiteSpec.is_grandly_unified``), ``user`` at an analysis queue, ``managed`` at any other. The
reasons are in docs/policy.md ("Which jobs the pilots can take").
"""

from __future__ import annotations

from collections.abc import Mapping

from autopyfactory.domain.model import QueueStatus

#: What each ask takes (construct_where_clause); an ask not listed takes exactly its own label.
_PRODUCTION = ("managed", "test", "prod_test", "install")
_ANALYSIS = ("user", "panda", "install")
TAKES: Mapping[str, tuple[str, ...]] = {
    "managed": _PRODUCTION,
    "user": _ANALYSIS,
    "unified": (*_PRODUCTION, "user", "panda"),
    "test": ("prod_test", "install", "test"),
}

#: Harvester's pilot types and the job label each asks for; PR asks what the queue runs.
PILOT_TYPE_LABELS: Mapping[str, str] = {"RC": "rc_test2", "ALRB": "rc_alrb", "PT": "ptest"}


def default_job_label(pilot_type: str, queue_type: str, catchall: str = "") -> str:
    """The job label (pilot 3 ``-j``) of a queue whose configuration names none."""
    special = PILOT_TYPE_LABELS.get(pilot_type.upper())
    if special:
        return special
    if queue_type == "unified" or "grandly_unified" in catchall:
        return "unified"
    if queue_type == "analysis":
        return "user"
    return "managed"


def requested_label(job_label: str, pilot_type: str, status: QueueStatus) -> str:
    """The prodSourceLabel PanDA matches for a pilot 3 started with ``-j job_label -i pilot_type``
    at a queue in ``status``: pilot 3's choice (the server's own rewrite for test status, of
    ``user``, ``managed`` and ``unified``, then changes nothing more)."""
    tag = pilot_type.upper()
    if tag == "RC" and job_label in ("rc_test2", "ptest"):
        return job_label
    if tag == "RCM" and job_label == "ptest":
        return "rcm_test2"
    if tag == "ALRB":
        return "rc_alrb"
    if status is QueueStatus.TEST and job_label != "ptest":
        return "test"
    return job_label


def takeable(asked: str) -> tuple[str, ...]:
    """The job labels whose jobs getJob gives a pilot asking ``asked``."""
    return TAKES.get(asked or "managed", (asked,))


def pilots_take(job_label: str, pilot_type: str, status: QueueStatus) -> tuple[str, ...]:
    """The job labels the pilots of ``-j job_label -i pilot_type`` take at a queue in ``status``."""
    return takeable(requested_label(job_label, pilot_type, status))


def counted_job_labels(
    job_label: str, pilot_type: str, status: QueueStatus, narrowed: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The job labels whose activated jobs a label counts: what its pilots take, narrowed to
    ``narrowed`` (``demandJobLabels``) when given. Empty when none of ``narrowed`` is taken now
    (a queue in test status takes only test jobs): the label then counts no job."""
    taken = pilots_take(job_label, pilot_type, status)
    return tuple(label for label in taken if not narrowed or label in narrowed)


def untakeable(job_label: str, pilot_type: str, narrowed: tuple[str, ...]) -> tuple[str, ...]:
    """The labels of ``narrowed`` the pilots can never take (checked for an online queue, as a
    queue in test status takes test jobs only, whatever is configured)."""
    taken = pilots_take(job_label, pilot_type, QueueStatus.ONLINE)
    return tuple(label for label in narrowed if label not in taken)
