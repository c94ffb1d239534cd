"""`aggregate`'s dual-stack rule, as a table: when every address of one family connected, the
other family's connect failures are shown but do not fail `tcp` (Go's dialer races the families,
FallbackDelay 300 ms); otherwise, and after connecting, one bad address fails the check."""

from __future__ import annotations

import pytest

from probe.checks import Endpoint, Outcome
from probe.engine import aggregate
from probe.reasons import CheckKind, Reason

ENDPOINT = Endpoint("dual.lab.test", 443, "registry")
V4, V4B = "198.18.1.70", "198.18.1.75"
V6, V6B = "2001:2:0:1::70", "2001:2:0:1::75"


def ok(seconds: float = 0.01) -> Outcome:
    return Outcome(detail="connected", phases={"connect": seconds})


def fails(reason: Reason, seconds: float = 0.01) -> Outcome:
    return Outcome.failed(reason, f"dial tcp: {reason}", phases={"connect": seconds})


TIMEOUT, REFUSED, UNREACHABLE = Reason.TCP_TIMEOUT, Reason.TCP_REFUSED, Reason.TCP_UNREACHABLE


@pytest.mark.parametrize(
    ("outcomes", "verdict", "counts"),
    [
        # both families healthy: both counted
        ([(V4, ok()), (V6, ok())], None, (2, 0)),
        # one family wholly connects: the other's failures are shown, not counted against it
        ([(V4, ok()), (V6, fails(UNREACHABLE))], None, (1, 1)),
        ([(V4, ok()), (V6, fails(TIMEOUT))], None, (1, 1)),
        ([(V4, ok()), (V6, fails(REFUSED))], None, (1, 1)),
        ([(V4, fails(TIMEOUT)), (V6, ok())], None, (1, 1)),
        ([(V4, ok()), (V6, ok()), (V6B, fails(TIMEOUT))], None, (2, 1)),
        ([(V4, ok()), (V4B, fails(REFUSED)), (V6, ok())], None, (2, 1)),
        # one family only: every address must connect (SPEC: one bad node of a CDN shows)
        ([(V6, fails(UNREACHABLE))], UNREACHABLE, (0, 1)),
        ([(V4, ok()), (V4B, fails(REFUSED))], REFUSED, (1, 1)),
        ([(V6, ok()), (V6B, fails(TIMEOUT))], TIMEOUT, (1, 1)),
        # neither family connects on every address: nothing is forgiven
        ([(V4, ok()), (V4B, fails(REFUSED)), (V6, fails(TIMEOUT))], REFUSED, (1, 2)),
        ([(V4, fails(TIMEOUT)), (V6, fails(UNREACHABLE))], TIMEOUT, (0, 2)),
    ],
)
def test_tcp_verdict_over_families(
    outcomes: list[tuple[str, Outcome]], verdict: Reason | None, counts: tuple[int, int]
) -> None:
    """tcp passes when one family connected on every address; the failures stay counted."""
    result = aggregate(ENDPOINT, CheckKind.TCP, outcomes)
    assert (result.ok, result.reason) == (verdict is None, verdict), result.detail
    assert (result.addresses_ok, result.addresses_failed) == counts, result.detail


@pytest.mark.parametrize(
    ("outcomes", "family", "words"),
    [
        ([(V4, ok()), (V6, fails(UNREACHABLE))], "IPv6", "falls back to IPv4 at once"),
        ([(V4, ok()), (V6, fails(REFUSED))], "IPv6", "falls back to IPv4 at once"),
        ([(V4, ok()), (V6, fails(TIMEOUT))], "IPv6", "starts IPv4 within 300 ms"),
        ([(V4, fails(TIMEOUT)), (V6, ok())], "IPv4", "starts IPv6 within 300 ms"),
    ],
)
def test_forgiven_failure_is_named_with_what_go_does(
    outcomes: list[tuple[str, Outcome]], family: str, words: str
) -> None:
    """A passed tcp check names the other family's failed addresses and Go's fallback."""
    result = aggregate(ENDPOINT, CheckKind.TCP, outcomes)
    failed = next(a for a, o in outcomes if not o.ok)
    assert result.ok
    assert f"1 {family} address(es) failed, {failed}" in result.detail
    assert words in result.detail
    assert result.detail.startswith("1 of 2 addresses passed; connected")


def test_forgiven_failure_keeps_its_time_off_the_pull_path() -> None:
    """The phases of a passed check are those of the addresses that passed, not a timeout's."""
    outcomes = [(V4, ok(0.02)), (V6, fails(TIMEOUT, 2.0))]
    assert aggregate(ENDPOINT, CheckKind.TCP, outcomes).phases == {"connect": 0.02}


@pytest.mark.parametrize("kind", [CheckKind.TLS, CheckKind.HTTP])
def test_failure_after_connecting_fails_whatever_the_family(kind: CheckKind) -> None:
    """tls and http failures are never forgiven: Go does not redial after a connection."""
    failure = Outcome.failed(Reason.TLS_HANDSHAKE_FAILED, "remote error: tls: handshake failure")
    result = aggregate(ENDPOINT, kind, [(V4, Outcome(detail="fine")), (V6, failure)])
    assert (result.ok, result.reason) == (False, Reason.TLS_HANDSHAKE_FAILED)
    assert (result.addresses_ok, result.addresses_failed) == (1, 1)
    assert V6 in result.detail
