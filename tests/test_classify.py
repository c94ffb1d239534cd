"""The one place per check that maps library errors to reasons, most specific first."""

from __future__ import annotations

import errno
import ssl

import dns.exception
import dns.message
import dns.resolver
import pytest

from probe.checks import Endpoint, Outcome
from probe.checks import dns as dns_check
from probe.checks import tcp as tcp_check
from probe.checks import tls as tls_check
from probe.config import HostPort
from probe.engine import aggregate
from probe.reasons import CheckKind, Reason


def _no_nameservers(*problems: object) -> dns.resolver.NoNameservers:
    request = dns.message.make_query("registry.lab.test.", "A")
    errors = [("198.18.0.53", False, 53, problem, None) for problem in problems]
    return dns.resolver.NoNameservers(request=request, errors=errors)


@pytest.mark.parametrize(
    ("errors", "reason"),
    [
        ([dns.resolver.NXDOMAIN()], Reason.DNS_NXDOMAIN),
        ([], Reason.DNS_NO_ANSWER),
        ([_no_nameservers("SERVFAIL")], Reason.DNS_SERVFAIL),
        ([_no_nameservers("REFUSED")], Reason.DNS_REFUSED),
        ([_no_nameservers("REFUSED", "SERVFAIL")], Reason.DNS_SERVFAIL),
        ([_no_nameservers(ConnectionRefusedError(111, "refused"))], Reason.DNS_TIMEOUT),
        ([dns.exception.Timeout()], Reason.DNS_TIMEOUT),
        ([dns.resolver.NXDOMAIN(), _no_nameservers("SERVFAIL")], Reason.DNS_NXDOMAIN),
        ([_no_nameservers(dns.message.ChainTooLong())], Reason.DNS_SERVFAIL),
        ([_no_nameservers(dns.exception.FormError("bad label"))], Reason.DNS_SERVFAIL),
        ([_no_nameservers(dns.exception.Timeout(), "REFUSED")], Reason.DNS_REFUSED),
    ],
)
def test_dns_classify(errors: list[Exception], reason: Reason) -> None:
    """dnspython's exceptions (A and AAAA together) give one reason; NXDOMAIN wins."""
    assert dns_check.classify(errors)[0] == reason


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), Reason.TCP_REFUSED),
        (OSError(errno.EHOSTUNREACH, "No route to host"), Reason.TCP_UNREACHABLE),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), Reason.TCP_UNREACHABLE),
        (OSError(errno.ETIMEDOUT, "Connection timed out"), Reason.TCP_TIMEOUT),
    ],
)
def test_tcp_classify(error: OSError, reason: Reason) -> None:
    """The kernel's connect errors tell a reject from no route from a timeout."""
    assert tcp_check.classify(error)[0] == reason


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"certificate verify failed: {message}")
    error.verify_code = code
    error.verify_message = message
    return error


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (_verify_error(20, "unable to get local issuer certificate"), Reason.TLS_UNKNOWN_AUTHORITY),
        (_verify_error(18, "self-signed certificate"), Reason.TLS_UNKNOWN_AUTHORITY),
        (_verify_error(19, "self-signed certificate in chain"), Reason.TLS_UNKNOWN_AUTHORITY),
        (_verify_error(10, "certificate has expired"), Reason.TLS_EXPIRED),
        (_verify_error(9, "certificate is not yet valid"), Reason.TLS_NOT_YET_VALID),
        (_verify_error(62, "Hostname mismatch"), Reason.TLS_HOSTNAME_MISMATCH),
        (_verify_error(64, "IP address mismatch"), Reason.TLS_HOSTNAME_MISMATCH),
        (_verify_error(23, "certificate revoked"), Reason.TLS_HANDSHAKE_FAILED),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
            Reason.TLS_HANDSHAKE_FAILED,
        ),
    ],
)
def test_tls_classify(error: ssl.SSLError, reason: Reason) -> None:
    """OpenSSL's verify code names the part of the chain that is wrong."""
    assert tls_check.classify(error)[0] == reason


ENDPOINT = Endpoint("registry.lab.test", 443, "registry")


def test_aggregate_one_bad_address_fails_the_check() -> None:
    """Every address is tried: one refusing address fails tcp and counts as failed."""
    outcomes = [
        ("198.18.1.1", Outcome(detail="connected", phases={"connect": 0.1})),
        ("198.18.1.2", Outcome.failed(Reason.TCP_REFUSED, "refused", phases={"connect": 0.3})),
    ]
    result = aggregate(ENDPOINT, CheckKind.TCP, outcomes)
    assert (result.ok, result.reason) == (False, Reason.TCP_REFUSED)
    assert (result.addresses_ok, result.addresses_failed) == (1, 1)
    assert "198.18.1.2" in result.detail
    assert result.phases == {"connect": 0.3}


def test_aggregate_unroutable_ipv6_with_working_ipv4_passes() -> None:
    """An IPv6 address with no route does not fail a check IPv4 passes: Go falls back."""
    outcomes = [
        ("198.18.1.1", Outcome(detail="connected")),
        ("2001:db8::1", Outcome.failed(Reason.TCP_UNREACHABLE, "network is unreachable")),
    ]
    result = aggregate(ENDPOINT, CheckKind.TCP, outcomes)
    assert result.ok
    assert "IPv6" in result.detail


def test_outcome_of_result_has_exactly_one_reason() -> None:
    """A passed result with a reason (or a failed one without) is refused."""
    from probe.result import CheckResult

    with pytest.raises(ValueError, match="exactly one"):
        CheckResult(
            HostPort("a", 443), CheckKind.DNS, ok=True, reason=Reason.DNS_TIMEOUT, detail=""
        )
