"""Pilot keys: a capability for one pilot's record, and nothing else.

Pilot reports (``POST /api/jobs/{fid}:{cid}``) come from worker nodes and carry no factory token;
without more, anyone who can reach the monitor could move any factory's pilots, even to FAULT.
A factory that wants more gives each pilot a random key of its own in the pilot's environment
(``APFMON_KEY``) and announces the key's SHA-256 digest with the pilot in its authenticated
``PUT /api/jobs`` (``key_sha256``). The wrapper sends the key with every report
(``Authorization: Bearer <key>``); the monitor compares digests. The key's format and digest are
defined once, in ``autopyfactory.domain.pilot_keys``, for the factory that makes keys and the
monitor that checks them.

Why a random key per pilot and not an HMAC under a factory secret: HTCondor assigns the cluster id
only at ``condor_submit``, so the factory cannot derive anything from the pilot's ``cluster.proc``
before it starts the pilot; and with a random key the monitor keeps only digests, so there is no
shared secret to leak from its database or to rotate. A key is worth one pilot's record.

What a report needs (:func:`verdict`), for a factory set to require keys
(``autopyfactory-monitor pilot-keys FACTORY --require``) and for one that is not (the default, so
that the production ATLAS wrapper, which sends no key, keeps working):

=========================  =========================  ==========================
report                     factory requires keys      factory does not (default)
=========================  =========================  ==========================
no key                     refused (unsigned)         accepted
the pilot's key            accepted                   accepted
another key                refused (wrong key)        refused (wrong key)
a key, job announced       refused (wrong key)        accepted (nothing to check)
without a digest
API v1 ``GET /mon/...``    refused (unsigned)         accepted
=========================  =========================  ==========================

A refused report is answered 403, changes nothing, leaves no job event and is counted on its
factory (unsigned / wrong key, with the time of the last one). An ``Authorization`` value that is
not a ``Bearer apfp_...`` credential (e.g. a factory token) is no pilot key: the report counts as
unsigned.
"""

from __future__ import annotations

import enum
import hmac

from autopyfactory.domain.pilot_keys import PILOT_KEY_PREFIX, is_pilot_key, key_digest

_BEARER = "bearer "


def presented_key(authorization: str | None) -> str | None:
    """The pilot key of an ``Authorization`` header value: the credential of ``Bearer apfp_...``;
    None for no header or any other value (which is no pilot key)."""
    if not authorization or authorization[: len(_BEARER)].lower() != _BEARER:
        return None
    credential = authorization[len(_BEARER) :].strip()
    return credential if credential.startswith(PILOT_KEY_PREFIX) else None


class KeyVerdict(enum.Enum):
    OK = "ok"
    UNSIGNED = "unsigned"  # no key where one is required (or an API v1 GET)
    WRONG = "wrong key"


def verdict(presented: str | None, digest: str, required: bool, *, legacy: bool = False) -> KeyVerdict:
    """Whether a report may touch a job (see the table in the module docstring).

    ``digest``: the job's announced key digest ("" when none); ``required``: its factory's
    setting; ``legacy``: an API v1 ``GET``, which can carry no key and is off when keys are required.
    """
    if required and legacy:
        return KeyVerdict.UNSIGNED
    if presented is None:
        return KeyVerdict.UNSIGNED if required else KeyVerdict.OK
    if not is_pilot_key(presented):
        return KeyVerdict.WRONG
    if not digest:
        return KeyVerdict.WRONG if required else KeyVerdict.OK
    return KeyVerdict.OK if hmac.compare_digest(key_digest(presented), digest) else KeyVerdict.WRONG
