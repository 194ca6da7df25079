"""Credential checks: proxies built with ``cryptography`` (CA -> EEC -> proxy), JWT and opaque
tokens, unreadable files, and VOMS through a fake seam and a fake ``voms-proxy-info`` on PATH."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from autopyfactory.domain.credentials import CredentialKind, CredentialState, assess, format_duration
from autopyfactory.edges.credentials import (
    CredentialChecker,
    CredentialError,
    check_credential,
    log_level,
    proxy_lifetime,
    token_lifetime,
    voms_actimeleft,
)

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
HOUR = 3600.0
MIN = 6 * HOUR
PROXY = CredentialKind.PROXY
TOKEN = CredentialKind.TOKEN


# ---- building certificates ------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "APF test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # fmt: skip


def _cert(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey, hours_left: float,
) -> x509.Certificate:  # fmt: skip
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(hours=hours_left))
        .sign(signer, hashes.SHA256())
    )


def proxy_pem(proxy_hours: float, eec_hours: float = 24 * 365, ca_hours: float = 24 * 3650) -> bytes:
    """A proxy file as grid-proxy-init writes it: proxy cert, its key, then the EEC (and CA)."""
    ca_key, eec_key, proxy_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_name, eec_name = _name("Test CA"), _name("Jane Doe")
    proxy_name = x509.Name([*eec_name, x509.NameAttribute(NameOID.COMMON_NAME, "123456789")])
    ca = _cert(ca_name, ca_name, ca_key, ca_key, ca_hours)
    eec = _cert(eec_name, ca_name, eec_key, ca_key, eec_hours)
    proxy = _cert(proxy_name, eec_name, proxy_key, eec_key, proxy_hours)
    key = proxy_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = serialization.Encoding.PEM
    return proxy.public_bytes(pem) + key + eec.public_bytes(pem) + ca.public_bytes(pem)


def write(tmp_path: Path, data: bytes, name: str = "x509up_u1000") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


def jwt(claims: dict[str, object]) -> str:
    def seg(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg({'alg': 'ES256', 'typ': 'JWT', 'kid': 'key-rs256'})}.{seg(claims)}.c2lnbmF0dXJl"


# ---- the pure rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "state", "text"),
    [
        (24 * HOUR, CredentialState.OK, "1d left"),
        (12 * HOUR, CredentialState.OK, "12h left"),
        (12 * HOUR - 1, CredentialState.WARN, "11h59m left, below 2 x proxyMinLifetime 12h: renew it soon"),
        (8 * HOUR, CredentialState.WARN, "8h left, below 2 x proxyMinLifetime 12h: renew it soon"),
        (MIN, CredentialState.WARN, "6h left, below 2 x proxyMinLifetime 12h: renew it soon"),
        (3 * HOUR + 12 * 60, CredentialState.TOO_SHORT,
         "3h12m left, below proxyMinLifetime 6h: nothing submitted"),
        (30.0, CredentialState.TOO_SHORT, "30s left, below proxyMinLifetime 6h: nothing submitted"),
        (0.0, CredentialState.EXPIRED, "expired 0s ago: nothing submitted"),
        (-2 * HOUR, CredentialState.EXPIRED, "expired 2h ago: nothing submitted"),
        (None, CredentialState.OK, "lifetime unknown"),
    ],
)  # fmt: skip
def test_assess(lifetime: float | None, state: CredentialState, text: str) -> None:
    assert assess(lifetime, MIN) == (state, text)


def test_assess_problem_blocks_and_note_is_shown() -> None:
    assert assess(None, MIN, problem="cannot read: Permission denied") == (
        CredentialState.UNREADABLE,
        "cannot read: Permission denied: nothing submitted",
    )
    assert assess(HOUR, MIN, note="VOMS AC")[1] == (
        "1h left (VOMS AC), below proxyMinLifetime 6h: nothing submitted"
    )


def test_min_lifetime_zero_never_blocks_a_valid_credential() -> None:
    assert assess(1.0, 0.0)[0] is CredentialState.OK
    assert assess(-1.0, 0.0)[0] is CredentialState.EXPIRED


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (3660, "1h01m"),
     (86400, "1d"), (86400 + 3 * 3600 + 59, "1d3h"), (10 * 86400, "10d")],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    "state", [CredentialState.TOO_SHORT, CredentialState.EXPIRED, CredentialState.MISSING,
              CredentialState.UNREADABLE]
)  # fmt: skip
def test_blocking_states(state: CredentialState) -> None:
    assert state.blocks
    assert log_level(state) == logging.ERROR


def test_non_blocking_states() -> None:
    assert not CredentialState.OK.blocks
    assert not CredentialState.WARN.blocks
    assert log_level(CredentialState.WARN) == logging.WARNING


# ---- proxies --------------------------------------------------------------------------------


def test_proxy_lifetime_is_that_of_the_proxy_cert() -> None:
    assert proxy_lifetime(proxy_pem(24), NOW) == pytest.approx(24 * HOUR)


def test_the_shortest_certificate_of_the_chain_wins() -> None:
    assert proxy_lifetime(proxy_pem(proxy_hours=96, eec_hours=2), NOW) == pytest.approx(2 * HOUR)
    assert proxy_lifetime(proxy_pem(96, eec_hours=200, ca_hours=5), NOW) == pytest.approx(5 * HOUR)


def test_an_expired_proxy_has_negative_lifetime() -> None:
    assert proxy_lifetime(proxy_pem(-3), NOW) == pytest.approx(-3 * HOUR)


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage\n", b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
     b"\x00\x01\x02\xff" * 100],
)  # fmt: skip
def test_garbage_is_rejected_clearly(data: bytes) -> None:
    with pytest.raises(CredentialError, match="no readable PEM certificate"):
        proxy_lifetime(data, NOW)


def test_a_key_alone_is_not_a_proxy() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(CredentialError):
        proxy_lifetime(key, NOW)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        proxy_lifetime(proxy_pem(24), NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("hours", "state", "message"),
    [
        (1, CredentialState.TOO_SHORT, "1h left, below proxyMinLifetime 6h: nothing submitted"),
        (8, CredentialState.WARN, "8h left, below 2 x proxyMinLifetime 12h: renew it soon"),
        (24, CredentialState.OK, "1d left"),
        (-1, CredentialState.EXPIRED, "expired 1h ago: nothing submitted"),
    ],
)
def test_check_proxy_file(tmp_path: Path, hours: float, state: CredentialState, message: str) -> None:
    path = write(tmp_path, proxy_pem(hours))
    check = check_credential(path, PROXY, MIN, NOW, voms=None)
    assert (check.state, check.message) == (state, f"proxy {path}: {message}")
    assert check.lifetime_seconds == pytest.approx(hours * HOUR)
    assert check.blocks is state.blocks


def test_check_chain_with_a_short_eec(tmp_path: Path) -> None:
    path = write(tmp_path, proxy_pem(proxy_hours=96, eec_hours=3))
    assert check_credential(path, PROXY, MIN, NOW, None).state is CredentialState.TOO_SHORT


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope")
    check = check_credential(path, PROXY, MIN, NOW, None)
    assert check.state is CredentialState.MISSING
    assert check.blocks
    assert check.message == f"proxy {path}: no such file: nothing submitted"
    assert check.lifetime_seconds is None


def test_empty_path_is_missing() -> None:
    check = check_credential("", TOKEN, MIN, NOW, None)
    assert check.state is CredentialState.MISSING
    assert check.message == "token (not configured): no such file: nothing submitted"


def test_garbage_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"this is not a proxy\n")
    check = check_credential(path, PROXY, MIN, NOW, None)
    assert check.state is CredentialState.UNREADABLE
    assert check.message == (
        f"proxy {path}: not a proxy: no readable PEM certificate in the file: nothing submitted"
    )


def test_a_directory_is_unreadable(tmp_path: Path) -> None:
    check = check_credential(str(tmp_path), PROXY, MIN, NOW, None)
    assert check.state is CredentialState.UNREADABLE
    assert "cannot read: Is a directory" in check.message


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod 000 does not stop root reading")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, proxy_pem(24))
    os.chmod(path, 0)
    try:
        check = check_credential(path, PROXY, MIN, NOW, None)
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    assert check.state is CredentialState.UNREADABLE
    assert check.message == f"proxy {path}: cannot read: Permission denied: nothing submitted"


# ---- VOMS -----------------------------------------------------------------------------------


def test_a_shorter_voms_ac_wins(tmp_path: Path) -> None:
    path = write(tmp_path, proxy_pem(24))
    asked: list[str] = []

    def voms(p: str) -> float:
        asked.append(p)
        return 2 * HOUR

    check = check_credential(path, PROXY, MIN, NOW, voms)
    assert asked == [path]
    assert check.state is CredentialState.TOO_SHORT
    assert check.lifetime_seconds == 2 * HOUR
    assert check.message == f"proxy {path}: 2h left (VOMS AC), below proxyMinLifetime 6h: nothing submitted"


@pytest.mark.parametrize("ac", [None, 48 * HOUR])
def test_a_longer_or_unknown_voms_ac_leaves_the_certificate_lifetime(
    tmp_path: Path, ac: float | None
) -> None:
    path = write(tmp_path, proxy_pem(24))
    check = check_credential(path, PROXY, MIN, NOW, lambda _p: ac)
    assert check.lifetime_seconds == pytest.approx(24 * HOUR)
    assert check.message == f"proxy {path}: 1d left"


def test_voms_is_not_asked_about_tokens_or_garbage(tmp_path: Path) -> None:
    def voms(_p: str) -> float:
        raise AssertionError("not to be called")

    check_credential(write(tmp_path, b"opaque", "tok"), TOKEN, MIN, NOW, voms)
    check_credential(write(tmp_path, b"garbage"), PROXY, MIN, NOW, voms)


@pytest.fixture
def fake_voms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Install a ``voms-proxy-info`` shell script (body given) as the only one on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")

    def install(body: str) -> Path:
        script = bindir / "voms-proxy-info"
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
        return script

    return install


def test_fake_voms_proxy_info_on_path(tmp_path: Path, fake_voms: Callable[[str], Path]) -> None:
    args_file = tmp_path / "args"
    fake_voms(f'echo "$@" > {args_file}\necho 7200')
    path = write(tmp_path, proxy_pem(24))
    check = check_credential(path, PROXY, MIN, NOW, voms_actimeleft)
    assert args_file.read_text().split() == ["-file", path, "-actimeleft"]
    assert check.state is CredentialState.TOO_SHORT
    assert check.message == f"proxy {path}: 2h left (VOMS AC), below proxyMinLifetime 6h: nothing submitted"


@pytest.mark.parametrize(
    "body",
    ["echo 'VOMS extension not found!' >&2; exit 1", "echo 'what?'", "true", "echo nan"],
    ids=["fails", "no-number", "silent", "nan"],
)
def test_a_failing_voms_proxy_info_means_unknown(
    tmp_path: Path,
    fake_voms: Callable[[str], Path],
    body: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_voms(body)
    with caplog.at_level(logging.DEBUG, logger="autopyfactory.edges.credentials"):
        assert voms_actimeleft(str(tmp_path / "x509up")) is None
    assert "certificate lifetime alone counts" in caplog.text


def test_a_hanging_voms_proxy_info_is_killed(tmp_path: Path, fake_voms: Callable[[str], Path]) -> None:
    fake_voms("sleep 30; echo 1")  # the child sleep holds stdout: the whole group must die
    assert voms_actimeleft(str(tmp_path / "x509up"), timeout=0.2) is None


def test_no_voms_proxy_info_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with caplog.at_level(logging.DEBUG, logger="autopyfactory.edges.credentials"):
        assert voms_actimeleft("/tmp/x509up_u1000") is None
    assert "voms-proxy-info not on PATH" in caplog.text


# ---- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "state"),
    [(1, CredentialState.TOO_SHORT), (8, CredentialState.WARN), (24, CredentialState.OK),
     (-1, CredentialState.EXPIRED)],
)  # fmt: skip
def test_jwt_exp(tmp_path: Path, hours: float, state: CredentialState) -> None:
    token = jwt({"sub": "pilot", "iss": "https://wlcg.example", "exp": int(NOW.timestamp() + hours * HOUR)})
    path = write(tmp_path, (token + "\n").encode(), "bt_u1000")
    check = check_credential(path, TOKEN, MIN, NOW, None)
    assert check.state is state
    assert check.lifetime_seconds == pytest.approx(hours * HOUR)
    assert check.message.startswith(f"token {path}: ")


def test_jwt_lifetime_is_pure() -> None:
    assert token_lifetime(jwt({"exp": NOW.timestamp() + 90.5}), NOW) == pytest.approx(90.5)


def test_jwt_without_exp_and_opaque_tokens_are_accepted_with_a_note(tmp_path: Path) -> None:
    for name, text in [("nojwt", "0123456789abcdef-opaque-token"), ("noexp", jwt({"sub": "pilot"})),
                       ("dots", "a.b.c")]:  # fmt: skip
        path = write(tmp_path, text.encode(), name)
        check = check_credential(path, TOKEN, MIN, NOW, None)
        assert check.state is CredentialState.OK
        assert check.lifetime_seconds is None
        assert check.message == f"token {path}: lifetime unknown (not a JWT with exp; accepted)"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the token file is empty"),
        (b"  \n\n", "the token file is empty"),
        (b"\xff\xfe\x00token", "the token file is not text"),
        ((jwt({}).split(".")[0] + ".eA.c2ln").encode(), "a JWT whose payload is not a JSON object"),
        (jwt({"exp": "tomorrow"}).encode(), "a JWT whose exp is not a number: 'tomorrow'"),
        (jwt({"exp": True}).encode(), "a JWT whose exp is not a number: True"),
    ],
    ids=["empty", "blank", "binary", "bad-payload", "exp-text", "exp-bool"],
)  # fmt: skip
def test_unusable_tokens(tmp_path: Path, data: bytes, reason: str) -> None:
    path = write(tmp_path, data, "tok")
    check = check_credential(path, TOKEN, MIN, NOW, None)
    assert check.state is CredentialState.UNREADABLE
    assert check.message == f"token {path}: {reason}: nothing submitted"


def test_missing_token_file(tmp_path: Path) -> None:
    assert check_credential(str(tmp_path / "bt"), TOKEN, MIN, NOW, None).state is CredentialState.MISSING


# ---- the per-cycle cache --------------------------------------------------------------------


def test_each_file_is_checked_once_per_cycle(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    proxy = write(tmp_path, proxy_pem(1))
    token = write(tmp_path, jwt({"exp": NOW.timestamp() + 48 * HOUR}).encode(), "tok")
    asked: list[str] = []

    def voms(path: str) -> None:
        asked.append(path)

    checker = CredentialChecker(MIN, voms=voms)
    checker.new_cycle(NOW)
    with caplog.at_level(logging.DEBUG, logger="autopyfactory.edges.credentials"):
        first = [checker.check(proxy, PROXY) for _label in range(50)]
        tokens = [checker.check(token, TOKEN) for _label in range(50)]
    assert asked == [proxy]
    assert all(c is first[0] for c in first)
    assert all(c is tokens[0] for c in tokens)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [first[0].message]
    assert checker.checks() == (first[0], tokens[0])


def test_new_cycle_rereads_a_renewed_proxy(tmp_path: Path) -> None:
    path = write(tmp_path, proxy_pem(1))
    checker = CredentialChecker(MIN, voms=None)
    checker.new_cycle(NOW)
    assert checker.check(path, PROXY).blocks
    write(tmp_path, proxy_pem(96))
    assert checker.check(path, PROXY).blocks  # same cycle: the verdict stands
    checker.new_cycle(NOW + timedelta(minutes=2))
    assert checker.check(path, PROXY).state is CredentialState.OK
    assert len(checker.checks()) == 1


def test_the_cycle_clock_moves_the_verdict(tmp_path: Path) -> None:
    path = write(tmp_path, proxy_pem(13))
    checker = CredentialChecker(MIN, voms=None)
    checker.new_cycle(NOW)
    assert checker.check(path, PROXY).state is CredentialState.OK
    checker.new_cycle(NOW + timedelta(hours=2))
    assert checker.check(path, PROXY).state is CredentialState.WARN
    checker.new_cycle(NOW + timedelta(hours=8))
    assert checker.check(path, PROXY).state is CredentialState.TOO_SHORT


def test_checker_misuse() -> None:
    checker = CredentialChecker(MIN, voms=None)
    with pytest.raises(RuntimeError, match="new_cycle"):
        checker.check("/tmp/x509up_u0", PROXY)
    with pytest.raises(ValueError, match="timezone-aware"):
        checker.new_cycle(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="negative"):
        CredentialChecker(-1.0)


def test_permission_denied_is_unreadable_also_under_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same verdict as the chmod 000 case, with the denial injected (it runs as root too)."""
    path = write(tmp_path, proxy_pem(24))
    real_open = open

    def denying_open(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == path:
            raise PermissionError(13, "Permission denied", name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denying_open)
    check = check_credential(path, PROXY, MIN, NOW, None)
    monkeypatch.undo()
    assert check.state is CredentialState.UNREADABLE
    assert check.message == f"proxy {path}: cannot read: Permission denied: nothing submitted"
