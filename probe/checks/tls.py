"""The `tls` check: the handshake on the address's connection, with the node's trust.

OpenSSL's verify result says which part of the chain is wrong; `classify` turns it into one
reason, as Go's x509 errors name it (`certificate signed by unknown authority`, `certificate has
expired or is not yet valid`, `certificate is valid for X, not Y`). The served chain is read
whether or not verification passed, so expiry and issuer are reported on a failure too.

The served chain is outside input: every fact is read defensively. A time OpenSSL prints in an
unusual form (fractional seconds, the year 0000, a GeneralizedTime without `Z`, which it shows
as "Bad time value") is read when it says a definite instant and is unknown (None) otherwise;
a certificate whose fields cannot be decoded leaves its facts unknown. Names are clipped.

With `skip_verify` (the engine's context has `CERT_NONE`) the handshake proves nothing about the
server, and the detail says so: "not verified (skip_verify)".
"""

from __future__ import annotations

import re
import ssl
import time
from datetime import UTC, datetime
from typing import Any

from probe.checks import Outcome, Probe
from probe.display import SHOWN_MAX, clip
from probe.reasons import Reason
from probe.result import CertFacts

# OpenSSL's X509_V_ERR_* codes (include/openssl/x509_vfy.h).
_UNKNOWN_AUTHORITY = frozenset({2, 18, 19, 20, 21, 27, 28, 32})
_EXPIRED = frozenset({10, 12})  # CERT_HAS_EXPIRED, CRL_HAS_EXPIRED
_NOT_YET_VALID = frozenset({9, 11})  # CERT_NOT_YET_VALID, CRL_NOT_YET_VALID
_HOSTNAME_MISMATCH = frozenset({62, 63, 64})  # HOSTNAME, EMAIL, IP_ADDRESS mismatch


async def run(probe: Probe) -> Outcome:
    connection, context = probe.connection, probe.ssl_context
    assert connection is not None and context is not None, "tls runs after tcp"  # noqa: S101 - engine invariant
    name = probe.endpoint.host
    started = time.perf_counter()
    try:
        tls = await connection.start_tls(context, server_hostname=name)
    except ssl.SSLError as error:
        phases = {"tls": time.perf_counter() - started}
        cert = cert_facts(connection.tls)
        reason, why = classify(error)
        return Outcome.failed(reason, f"{name}: {why}", phases=phases, cert=cert)
    except (OSError, EOFError) as error:
        phases = {"tls": time.perf_counter() - started}
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return Outcome.failed(
            Reason.TLS_HANDSHAKE_FAILED,
            f"{name}: connection lost during the handshake ({why or 'EOF'})",
            phases=phases,
            cert=cert_facts(connection.tls),
        )
    phases = {"tls": time.perf_counter() - started}
    cert = cert_facts(tls)
    issuer = f", issued by {cert.issuer}" if cert and cert.issuer else ""
    verified = "handshake verified" if verifies(context) else "handshake not verified (skip_verify)"
    return Outcome(detail=f"{name}: {tls.version()} {verified}{issuer}", phases=phases, cert=cert)


def verifies(context: ssl.SSLContext) -> bool:
    """Whether a handshake with this context proves the server's identity: the chain checked
    against the trust store and the name against the certificate. The engine's context for a
    `skip_verify` host has CERT_NONE (as Go's InsecureSkipVerify checks neither)."""
    return context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def classify(error: ssl.SSLError) -> tuple[Reason, str]:
    """The reason for a failed handshake, from OpenSSL's verify code first."""
    if isinstance(error, ssl.SSLCertVerificationError):
        code = error.verify_code
        message = error.verify_message or "certificate verify failed"
        if code in _HOSTNAME_MISMATCH:
            return (
                Reason.TLS_HOSTNAME_MISMATCH,
                f"certificate is not valid for this name ({message})",
            )
        if code in _EXPIRED:
            return Reason.TLS_EXPIRED, f"certificate has expired ({message})"
        if code in _NOT_YET_VALID:
            return Reason.TLS_NOT_YET_VALID, f"certificate is not yet valid ({message})"
        if code in _UNKNOWN_AUTHORITY:
            return (
                Reason.TLS_UNKNOWN_AUTHORITY,
                f"certificate signed by unknown authority ({message})",
            )
        return Reason.TLS_HANDSHAKE_FAILED, f"certificate rejected ({message})"
    why = getattr(error, "reason", None) or error.strerror or str(error)
    return Reason.TLS_HANDSHAKE_FAILED, f"handshake failed ({why})"


# OpenSSL's ASN1_TIME_print: "Dec 31 23:59:59 2099 GMT", "Dec 31 23:59:59.5 2099 GMT" (a
# GeneralizedTime with fractional seconds), "Dec 31 23:59:59 0 GMT" (the year 0000).
_CERT_TIME = re.compile(
    r"(?P<month>[A-Z][a-z]{2}) {1,2}(?P<day>[0-9]{1,2}) "
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?P<fraction>\.[0-9]{1,9})? "
    r"(?P<year>[0-9]{1,4}) GMT"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def read_cert_time(text: str) -> float | None:
    """A certificate time as OpenSSL prints it, in Unix seconds; None when it names no instant
    (no such date, the year 0, no `GMT`: an ASN.1 time without `Z` is a local time of no known
    zone) or is not in that form at all ("Bad time value")."""
    match = _CERT_TIME.fullmatch(text)
    if match is None or match["month"] not in _MONTHS:
        return None
    try:
        instant = datetime(
            int(match["year"]),
            _MONTHS.index(match["month"]) + 1,
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            tzinfo=UTC,
        )
    except ValueError:  # year 0, February 30th, hour 24...
        return None
    return instant.timestamp() + float(match["fraction"] or 0)


def cert_facts(tls: ssl.SSLObject | None) -> CertFacts | None:
    """Expiry, issuer and version of the served chain, verified or not; None without a chain.

    The expiry is the earliest notAfter of the chain, unknown (None) when one of them cannot be
    read: the earliest is then not known.
    """
    if tls is None:
        return None
    infos = [_info(cert) for cert in _chain(tls)]
    if not infos:
        return None
    times = [read_cert_time(str(i.get("notAfter", ""))) for i in infos]
    known = [t for t in times if t is not None]
    leaf = infos[0]
    return CertFacts(
        not_after=min(known) if known and len(known) == len(times) else None,
        issuer=_name(leaf.get("issuer", ())),
        subject=_name(leaf.get("subject", ())),
        tls_version=tls.version() or "unknown",
    )


def _info(cert: Any) -> dict[str, Any]:
    """A certificate's decoded fields; empty (every fact unknown) when Python cannot decode it."""
    try:
        info = cert.get_info()
    except (ValueError, TypeError, ssl.SSLError):
        return {}
    return info if isinstance(info, dict) else {}


def _chain(tls: ssl.SSLObject) -> list[Any]:
    # SSLObject.get_unverified_chain() is public from Python 3.13; on 3.11 and 3.12 the same
    # method exists on the private _sslobj. Without either, only the facts are lost.
    for owner in (tls, getattr(tls, "_sslobj", None)):
        method = getattr(owner, "get_unverified_chain", None)
        if method is not None:
            chain = method()
            if chain:
                return list(chain)
    return []


def _name(rdns: Any) -> str:
    """A distinguished name as "CN=..., O=...", clipped: it is the server's text."""
    parts = []
    try:
        for rdn in rdns:
            for key, value in rdn:
                short = {"commonName": "CN", "organizationName": "O", "countryName": "C"}
                parts.append(f"{short.get(key, key)}={value}")
    except (TypeError, ValueError):  # not the shape get_info() documents: leave it out
        pass
    return clip(", ".join(parts), SHOWN_MAX)
