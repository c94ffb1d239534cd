"""The `tls` check: the handshake on the address's connection, with the node's trust.

OpenSSL's verify result says which part of the chain is wrong; `classify` turns it into one
reason, as Go's x509 errors name it (`certificate signed by unknown authority`, `certificate has
expired or is not yet valid`, `certificate is valid for X, not Y`). The served chain is read
whether or not verification passed, so expiry and issuer are reported on a failure too.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

from probe.checks import Outcome, Probe
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
    issuer = f", issued by {cert.issuer}" if cert else ""
    return Outcome(
        detail=f"{name}: {tls.version()} handshake verified{issuer}",
        phases=phases,
        cert=cert,
    )


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


def cert_facts(tls: ssl.SSLObject | None) -> CertFacts | None:
    """Expiry, issuer and version of the served chain, verified or not."""
    if tls is None:
        return None
    chain = _chain(tls)
    infos: list[dict[str, Any]] = [cert.get_info() for cert in chain]
    not_afters = [ssl.cert_time_to_seconds(i["notAfter"]) for i in infos if "notAfter" in i]
    if not infos or not not_afters:
        return None
    leaf = infos[0]
    return CertFacts(
        not_after=float(min(not_afters)),
        issuer=_name(leaf.get("issuer", ())),
        subject=_name(leaf.get("subject", ())),
        tls_version=tls.version() or "unknown",
    )


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
    parts = []
    for rdn in rdns:
        for key, value in rdn:
            short = {"commonName": "CN", "organizationName": "O", "countryName": "C"}.get(key, key)
            parts.append(f"{short}={value}")
    return ", ".join(parts)
