"""Certificate facts are read defensively: an odd `notAfter` is a fact reported as unknown,
never a crash of `check`.

Each case is a real certificate (tests/oddcerts.py: made with `cryptography`, its notAfter
rewritten in DER and signed again) served by a TLS registry on loopback, and `check` run as a
person runs it, with the node's trust (the lab CA) and the registry's name in the node's hosts
file. OpenSSL prints such times as `Dec 31 23:59:59.5 2099 GMT`, `Dec 31 23:59:59 0 GMT` or
`Bad time value`; `ssl.cert_time_to_seconds` raises on each.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lab.pki import CertificateAuthority
from oddcerts import TLSRegistry, generalized_time, utc_time, with_not_after

from probe.checks.tls import read_cert_time

ROOT = Path(__file__).resolve().parents[1]
NAME = "registry.test"

# Before the lab CA's own notAfter (a month from now), so the leaf's is the chain's earliest.
SOON = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=10)

# (DER notAfter, the Unix time it says or None when it cannot be read, the reason of a verified
# handshake: OpenSSL's "format error in certificate's notAfter field", or "expired" for year 0)
CASES = {
    "fractional-seconds": (
        generalized_time(SOON.strftime("%Y%m%d%H%M%S.5Z")),
        SOON.timestamp() + 0.5,
        "tls_handshake_failed",
    ),
    "year-0000": (generalized_time("00001231235959Z"), None, "tls_expired"),
    "no-z": (generalized_time("20991231235959"), None, "tls_handshake_failed"),
    "utc-no-z": (utc_time("991231235959"), None, "tls_handshake_failed"),
}


def host_root(tmp_path: Path, ca: CertificateAuthority) -> Path:
    root = tmp_path / "host"
    (root / "etc" / "ssl" / "certs").mkdir(parents=True)
    (root / "etc" / "ssl" / "certs" / "ca-certificates.crt").write_bytes(ca.pem)
    (root / "etc" / "hosts").write_text(f"127.0.0.1 {NAME}\n")
    (root / "etc" / "resolv.conf").write_text("nameserver 198.18.0.53\n")
    return root


def check(root: Path, port: int, *, skip_verify: bool) -> tuple[int, dict[str, Any], str]:
    """`check --output json` of the registry, with `insecure_skip_verify` when asked."""
    config = root.parent / "config.yaml"
    config.write_text(
        f"registries:\n  - host: {NAME}:{port}\n"
        f"    insecure_skip_verify: {'true' if skip_verify else 'false'}\n"
    )
    argv = [
        sys.executable, "-m", "probe", "check", "--no-discover", "--config", str(config),
        "--host-root", str(root), "--timeout", "3", "--output", "json",
    ]  # fmt: skip
    done = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    return done.returncode, report, done.stderr


def tls_check(report: dict[str, Any]) -> dict[str, Any]:
    [registry] = report["registries"]
    [tls] = [c for c in registry["checks"] if c["check"] == "tls"]
    return tls


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("skip_verify", [False, True], ids=["verified", "skip-verify"])
def test_odd_not_after_is_unknown_not_a_crash(tmp_path: Path, case: str, skip_verify: bool) -> None:
    """An odd notAfter: `check` exits 0 or 1 with the tls check's reason, and the expiry (the
    chain's earliest) is read when the leaf's can be, null (unknown) when it cannot; the issuer
    is still shown."""
    not_after, seconds, verified_reason = CASES[case]
    ca = CertificateAuthority("odd-cert CA")
    chain, key = with_not_after(ca, tmp_path, NAME, not_after)
    with TLSRegistry(chain, key).running() as server:
        code, report, stderr = check(host_root(tmp_path, ca), server.port, skip_verify=skip_verify)
    assert code == (0 if skip_verify else 1), stderr
    assert "Traceback" not in stderr, stderr
    tls = tls_check(report)
    if skip_verify:
        assert tls["ok"] is True, tls
        assert "not verified (skip_verify)" in tls["detail"], tls
    else:
        assert tls["reason"] == verified_reason, tls
    assert tls["certificate"]["not_after_timestamp"] == seconds, tls
    assert tls["certificate"]["issuer"] == "CN=odd-cert CA", tls


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Dec 31 23:59:59 2099 GMT", calendar.timegm((2099, 12, 31, 23, 59, 59))),
        ("Jan  1 00:00:00 1970 GMT", 0),
        ("Dec 31 23:59:59.5 2099 GMT", calendar.timegm((2099, 12, 31, 23, 59, 59)) + 0.5),
        ("Feb 29 12:00:00 2024 GMT", calendar.timegm((2024, 2, 29, 12, 0, 0))),
        ("Dec 31 23:59:59 0 GMT", None),  # year 0000: no such year in the calendar
        ("Bad time value", None),  # what OpenSSL prints for a time without Z, or garbage
        ("Dec 31 23:59:59 2099", None),  # no GMT: a local time, of no known zone
        ("Feb 30 12:00:00 2023 GMT", None),
        ("Foo 01 12:00:00 2023 GMT", None),
        ("Dec 31 24:00:00 2099 GMT", None),
        ("Dec 31 23:59:59." + "9" * 5000 + " 2099 GMT", None),
        ("", None),
    ],
)
def test_read_cert_time(text: str, seconds: float | None) -> None:
    """OpenSSL's printed times as Unix seconds; anything unreadable is None, never an error."""
    assert read_cert_time(text) == seconds


@given(
    st.text(max_size=60)
    | st.from_regex(r"[A-Z][a-z]{2} [0-9 ]{1,3} [0-9:.]{8,14} [0-9]{1,5}( GMT)?")
)
def test_read_cert_time_never_raises(text: str) -> None:
    """Whatever OpenSSL prints (or anything else), the time is a number or None."""
    seconds = read_cert_time(text)
    assert seconds is None or isinstance(seconds, float)
