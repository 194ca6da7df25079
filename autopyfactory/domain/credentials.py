"""Credentials as the cycle judges them: a credential file's verdict, and the rule behind it.

A pilot submitted with a proxy or token that expires before the pilot starts (or soon after) is a
pilot that fails at the CE or pulls a job it cannot finish. Below ``proxyMinLifetime`` nothing is
submitted for the labels that carry the file; below twice that the factory warns. :func:`assess`
is that rule, on a lifetime in seconds; reading the files (certificates, JWTs, VOMS) is the edge's
work (``edges/credentials.py``). A label whose CE needs a credential it does not carry gets
nothing either (:func:`missing_credential`); ``check`` reports the same rule as an error.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from autopyfactory.domain.label import Label

#: Why an ARC-CE label without a credential gets nothing (HTCondor's gridmanager words in quotes).
ARC_WITHOUT_CREDENTIAL = (
    'ARC-CE without x509userproxy or scitokensFile: HTCondor would hold every pilot ("ARC job has no'
    ' credentials")'
)


class CredentialKind(enum.StrEnum):
    PROXY = "proxy"
    TOKEN = "token"  # noqa: S105 (a kind of credential, not a secret)


class CredentialState(enum.Enum):
    """The outcome of a check. Every state but OK and WARN blocks submission."""

    OK = "ok"
    WARN = "warn"  # usable, but below 2 x proxyMinLifetime: renew soon
    TOO_SHORT = "too short"  # valid, but below proxyMinLifetime
    EXPIRED = "expired"
    MISSING = "missing"
    UNREADABLE = "unreadable"  # permissions, I/O error, or content that is not a credential

    @property
    def blocks(self) -> bool:
        """True when nothing may be submitted with this credential."""
        return self not in (CredentialState.OK, CredentialState.WARN)


@dataclass(frozen=True)
class CredentialCheck:
    """One credential file's verdict; ``message`` is the one line for log, label and status."""

    path: str
    kind: CredentialKind
    state: CredentialState
    lifetime_seconds: float | None  # None: unknown (unreadable, or a token without expiry)
    message: str

    @property
    def blocks(self) -> bool:
        return self.state.blocks


# ---- the pure rule --------------------------------------------------------------------------


def assess(
    lifetime: float | None, min_lifetime: float, problem: str = "", note: str = ""
) -> tuple[CredentialState, str]:
    """The state and the explanation (without the ``kind path:`` prefix) of a lifetime.

    ``problem`` is a reason the file could not be read at all (UNREADABLE); ``note`` qualifies
    the lifetime (e.g. ``VOMS AC``). A None lifetime without a problem is unknown: OK, noted.
    """
    if problem:
        return CredentialState.UNREADABLE, f"{problem}: nothing submitted"
    suffix = f" ({note})" if note else ""
    if lifetime is None:
        return CredentialState.OK, f"lifetime unknown{suffix}"
    if lifetime <= 0:
        return CredentialState.EXPIRED, f"expired {format_duration(-lifetime)} ago{suffix}: nothing submitted"
    left = f"{format_duration(lifetime)} left{suffix}"
    minimum = format_duration(min_lifetime)
    if lifetime < min_lifetime:
        return CredentialState.TOO_SHORT, f"{left}, below proxyMinLifetime {minimum}: nothing submitted"
    if lifetime < 2 * min_lifetime:
        return (
            CredentialState.WARN,
            f"{left}, below 2 x proxyMinLifetime {format_duration(2 * min_lifetime)}: renew it soon",
        )
    return CredentialState.OK, left


def missing_credential(label: Label) -> str:
    """Why ``label``'s pilots cannot reach their CE for want of a credential, or "".

    HTCondor's gridmanager holds an ARC job that carries neither a proxy nor a token before it
    reaches the CE; an HTCondor-CE may map a pilot by other means (host certificate, site
    configuration), and a local pilot needs none.
    """
    if label.ce.flavour == "ARC-CE" and not (label.submit.x509userproxy or label.submit.scitokens_file):
        return ARC_WITHOUT_CREDENTIAL
    return ""


def format_duration(seconds: float) -> str:
    """``3h12m``, ``6h``, ``2d4h``, ``45m``, ``30s``: minutes are truncated, never rounded up."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


@dataclass(frozen=True)
class CredentialVerdicts:
    """One cycle's verdicts on the credentials its labels carry, and the labels they block (with
    the verdict's message)."""

    checks: tuple[CredentialCheck, ...] = ()
    blocked: Mapping[str, str] = field(default_factory=dict)
