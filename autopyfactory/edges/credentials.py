"""Reading the credentials the pilots carry, to judge them by the rule in ``domain/credentials.py``.

Before submitting, the factory checks each configured credential file once per cycle:

* an X.509 proxy: the shortest ``notAfter`` of the certificates in the file (proxy, EEC, chain),
  and the VOMS attribute certificate's lifetime when ``voms-proxy-info`` is installed;
* a bearer token file (SciTokens / WLCG JWT): readable and non-empty; a JWT's ``exp`` when
  there is one, otherwise the lifetime is unknown and the token is accepted with a note.

:func:`check_credential` is the edge that reads a file, and :class:`CredentialChecker` (the
cycle's credential gate) memoises the checks within a cycle, so a proxy shared by 200 labels is
read (and logged about) once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cryptography import x509

from autopyfactory.domain.credentials import (
    CredentialCheck,
    CredentialKind,
    CredentialState,
    CredentialVerdicts,
    assess,
    missing_credential,
)
from autopyfactory.domain.label import Label

log = logging.getLogger(__name__)

#: How long ``voms-proxy-info`` may take before the factory gives up on it (seconds).
VOMS_TIMEOUT = 5.0

#: Seconds left on the VOMS attribute certificate of a proxy file, or None when unknown.
VomsProbe = Callable[[str], float | None]


class CredentialError(ValueError):
    """A credential file's content is unusable; the message says why in operator terms."""


# ---- reading credentials (pure: bytes in, seconds out) --------------------------------------


def proxy_lifetime(pem_bytes: bytes, now: datetime) -> float:
    """Seconds until the first certificate in a proxy file expires (negative: expired).

    A proxy file holds the proxy certificate, its private key and the chain up to the EEC; the
    chain is only as good as its shortest-lived member, so the minimum ``notAfter`` counts.
    Non-certificate PEM blocks (the key) are ignored. Raises CredentialError for anything that
    holds no PEM certificate.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        certificates = x509.load_pem_x509_certificates(pem_bytes)
    except ValueError:
        raise CredentialError("not a proxy: no readable PEM certificate in the file") from None
    not_after = min(cert.not_valid_after_utc for cert in certificates)
    return (not_after - now).total_seconds()


def token_lifetime(text: str, now: datetime) -> float | None:
    """Seconds until a bearer token's ``exp`` (negative: expired), or None when unknown.

    The JWT signature is *not* verified: the factory neither trusts nor grants anything based
    on the token's claims; it only needs the expiry to avoid submitting pilots that carry a
    dead token, and the CE and PanDA verify the token properly. Verifying would need the
    issuer's keys (network access) for no gain here. A token that is not a JWT (opaque) has an
    unknown lifetime. Raises CredentialError when the text is empty or a JWT is malformed.
    """
    token = text.strip()
    if not token:
        raise CredentialError("the token file is empty")
    parts = token.split(".")
    if len(parts) != 3 or not isinstance(_b64json(parts[0]), dict):
        return None  # not a JWT: an opaque token
    claims = _b64json(parts[1])
    if not isinstance(claims, dict):
        raise CredentialError("a JWT whose payload is not a JSON object")
    exp = claims.get("exp")
    if exp is None:
        return None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise CredentialError(f"a JWT whose exp is not a number: {exp!r}")
    return float(exp) - now.timestamp()


def _b64json(segment: str) -> object:
    """A base64url JWT segment decoded as JSON, or None if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError):
        return None


# ---- VOMS -----------------------------------------------------------------------------------


def voms_actimeleft(path: str, timeout: float = VOMS_TIMEOUT) -> float | None:
    """Seconds left on the VOMS AC, by ``voms-proxy-info -file PATH -actimeleft``.

    None (with a debug line) when the tool is missing, fails, times out or prints no number:
    the certificate lifetime alone then counts.
    """
    if shutil.which("voms-proxy-info") is None:
        log.debug("voms-proxy-info not on PATH: %s checked by its certificates only", path)
        return None
    argv = ["voms-proxy-info", "-file", path, "-actimeleft"]
    try:
        output = _run(argv, timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("voms-proxy-info %s: %s; certificate lifetime alone counts", path, exc)
        return None
    try:
        seconds = float(output.split()[0])
    except (IndexError, ValueError):
        seconds = math.nan
    if math.isfinite(seconds):
        return seconds
    log.debug("voms-proxy-info %s printed %r, not seconds; certificate lifetime alone counts",
              path, output[:80])  # fmt: skip
    return None


def _run(argv: list[str], timeout: float) -> str:
    """stdout of ``argv``; on a timeout the whole process group is killed so nothing lingers."""
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise subprocess.SubprocessError(f"no answer within {timeout:g} s") from None
    if process.returncode != 0:
        message = " ".join((stderr or stdout).split())[:200] or "no message"
        raise subprocess.SubprocessError(f"exited {process.returncode}: {message}")
    return stdout


# ---- the edge -------------------------------------------------------------------------------


def check_credential(
    path: str, kind: CredentialKind, min_lifetime: float, now: datetime, voms: VomsProbe | None
) -> CredentialCheck:
    """Read and judge one credential file. Never raises for a bad file: the verdict says it."""
    prefix = f"{kind.value} {path or '(not configured)'}"
    try:
        data = _read(path)
    except FileNotFoundError:
        return CredentialCheck(path, kind, CredentialState.MISSING, None,
                               f"{prefix}: no such file: nothing submitted")  # fmt: skip
    except OSError as exc:
        state, text = assess(None, min_lifetime, problem=f"cannot read: {exc.strerror or exc}")
        return CredentialCheck(path, kind, state, None, f"{prefix}: {text}")
    try:
        lifetime, note = _lifetime(path, kind, data, now, voms)
    except CredentialError as exc:
        state, text = assess(None, min_lifetime, problem=str(exc))
        return CredentialCheck(path, kind, state, None, f"{prefix}: {text}")
    state, text = assess(lifetime, min_lifetime, note=note)
    return CredentialCheck(path, kind, state, lifetime, f"{prefix}: {text}")


def _read(path: str) -> bytes:
    if not path:
        raise FileNotFoundError(path)
    with open(path, "rb") as handle:
        return handle.read()


def _lifetime(
    path: str, kind: CredentialKind, data: bytes, now: datetime, voms: VomsProbe | None
) -> tuple[float | None, str]:
    """The usable lifetime and a note saying where it came from when that is not obvious."""
    if kind is CredentialKind.TOKEN:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CredentialError("the token file is not text") from None
        lifetime = token_lifetime(text, now)
        return lifetime, "" if lifetime is not None else "not a JWT with exp; accepted"
    cert_lifetime = proxy_lifetime(data, now)
    ac_lifetime = voms(path) if voms is not None else None
    if ac_lifetime is not None and ac_lifetime < cert_lifetime:
        return ac_lifetime, "VOMS AC"
    return cert_lifetime, ""


class CredentialChecker:
    """Checks each credential file at most once per cycle, however many labels use it.

    Call :meth:`new_cycle` at the start of every cycle (it forgets the previous verdicts, so a
    renewed proxy is picked up), then :meth:`check` per label. Each file's verdict is logged
    once per cycle: errors for blocking states, a warning for WARN, debug for OK.
    """

    def __init__(self, min_lifetime: float, voms: VomsProbe | None = voms_actimeleft) -> None:
        if min_lifetime < 0:
            raise ValueError(f"min_lifetime must not be negative, got {min_lifetime}")
        self._min_lifetime = min_lifetime
        self._voms = voms
        self._now: datetime | None = None
        self._checks: dict[tuple[str, CredentialKind], CredentialCheck] = {}

    def new_cycle(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self._now = now
        self._checks = {}

    def check(self, path: str, kind: CredentialKind) -> CredentialCheck:
        if self._now is None:
            raise RuntimeError("CredentialChecker.check before new_cycle(now)")
        key = (path, kind)
        if key not in self._checks:
            result = check_credential(path, kind, self._min_lifetime, self._now, self._voms)
            log.log(log_level(result.state), "%s", result.message)
            self._checks[key] = result
        return self._checks[key]

    def checks(self) -> tuple[CredentialCheck, ...]:
        """This cycle's verdicts so far, in the order first asked (for ``status``)."""
        return tuple(self._checks.values())

    def check_labels(self, labels: Sequence[Label], now: float) -> CredentialVerdicts:
        """The cycle's credential gate: a new cycle at ``now``, each credential the labels' pilots
        carry checked once, and the labels whose credential blocks submission or who lack one
        their CE needs (domain/credentials.py, the rule ``check`` applies too)."""
        self.new_cycle(datetime.fromtimestamp(now, UTC))
        blocked: dict[str, str] = {}
        for label in labels:
            if missing := missing_credential(label):
                blocked[label.name] = missing
            for path, kind in (
                (label.submit.x509userproxy, CredentialKind.PROXY),
                (label.submit.scitokens_file, CredentialKind.TOKEN),
            ):
                check = self.check(path, kind) if path else None
                if check is not None and check.blocks:
                    blocked[label.name] = check.message
        return CredentialVerdicts(self.checks(), blocked)


def log_level(state: CredentialState) -> int:
    """How loudly a verdict is logged: errors for blocking states, a warning for WARN, debug for OK."""
    if state is CredentialState.OK:
        return logging.DEBUG
    return logging.WARNING if state is CredentialState.WARN else logging.ERROR
