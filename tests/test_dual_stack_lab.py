"""Dual stack in the lab: names with A and AAAA records (IPv6 from 2001:2::/48, RFC 5180), one
family healthy, dropped, unroutable or failing after the connection; `probe check`'s verdict,
and the same name reached by Go's own resolver, dialer and transport as containerd sets them up
(tests/lab/gopull), so the verdict is held against what a pull really does.

The node has an IPv6 default route unless a test takes it away (`lab.ipv6_unrouted()`), as on a
node without IPv6 egress. `test_lab_*` check the lab itself with stock clients.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lab import DNS_ADDRESS, CompletedRun, Lab
from lab.golang import GoPull, build_gopull, go_pull, go_toolchain

pytestmark = pytest.mark.lab

TIMEOUT = 2.0
# The probe must end within its deadline; the rest is a Python process starting in a namespace.
DEADLINE = TIMEOUT * 1.5 + 3
FALLBACK_DELAY = 0.3  # containerd's net.Dialer FallbackDelay
Check = Callable[[str, bool], CompletedRun]


@contextlib.contextmanager
def routed(lab: Lab, unrouted: bool) -> Iterator[None]:
    """The node as it is, or without its IPv6 route."""
    with lab.ipv6_unrouted() if unrouted else contextlib.nullcontext():
        yield


@pytest.fixture(scope="module", name="check")
def check_fixture(lab: Lab) -> Check:
    """`probe check NAME` on the node (with or without its IPv6 route), run once per module."""
    runs: dict[tuple[str, bool], CompletedRun] = {}

    def check(name: str, unrouted: bool = False) -> CompletedRun:
        if (name, unrouted) not in runs:
            with routed(lab, unrouted):
                runs[(name, unrouted)] = lab.check([name], timeout=TIMEOUT)
        run = runs[(name, unrouted)]
        assert run.elapsed < DEADLINE, f"took {run.elapsed:.2f}s\n{run.describe()}"
        return run

    return check


def only(run: CompletedRun, name: str, kind: str) -> dict[str, Any]:
    [found] = run.checks(name, kind)
    return found


def selfcheck(lab: Lab, *args: str) -> dict[str, dict[str, str]]:
    script = Path(__file__).parent / "lab" / "selfcheck.py"
    done = lab.run_in_node([sys.executable, str(script), *args], timeout=60)
    report: dict[str, dict[str, str]] = json.loads(done.stdout)
    return report


# ----- the lab itself ----------------------------------------------------------------------------


def test_lab_answers_aaaa_records(lab: Lab) -> None:
    """The lab's DNS gives dual-stack names A and AAAA records, and the IPv6-only name no A."""
    names = ["dual.lab.test", "dual.lab.test/AAAA", "v6only.lab.test", "v6only.lab.test/AAAA"]
    assert selfcheck(lab, "-", DNS_ADDRESS, *names)["dns"] == {
        "dual.lab.test": "NOERROR:198.18.1.70",
        "dual.lab.test/AAAA": "NOERROR:2001:2:0:1::70",
        "v6only.lab.test": "NOERROR:",
        "v6only.lab.test/AAAA": "NOERROR:2001:2:0:1::74",
    }


def test_lab_ipv6_unrouted_makes_ipv6_unreachable_for_the_block(lab: Lab) -> None:
    """Without the node's IPv6 route a stock client cannot connect over IPv6; after, it can."""
    root = lab.host_root()
    bundle = str(root / "etc" / "ssl" / "certs" / "ca-certificates.crt")
    target = "v6only.lab.test=[2001:2:0:1::74]:443"
    with lab.ipv6_unrouted():
        during = selfcheck(lab, bundle, DNS_ADDRESS, target)["conn"]
    after = selfcheck(lab, bundle, DNS_ADDRESS, target)["conn"]
    assert (during, after) == ({target: "tcp:unreachable"}, {target: "http:200:registry"})


# ----- the probe's verdict -----------------------------------------------------------------------


def test_both_families_healthy_pass_and_both_count(check: Check) -> None:
    """A and AAAA both healthy: every check passes over both addresses."""
    run = check("dual.lab.test", False)
    assert run.exit_code == 0, run.describe()
    for kind in ("tcp", "tls", "http"):
        assert only(run, "dual.lab.test", kind)["addresses"] == {"ok": 2, "failed": 0}, kind
    assert "2001:2:0:1::70" in only(run, "dual.lab.test", "dns")["detail"], run.describe()


def test_unroutable_ipv6_falls_back_to_ipv4_at_once(check: Check) -> None:
    """AAAA without an IPv6 route and a healthy A: passes, the IPv6 address shown as failed."""
    run = check("dual.lab.test", True)
    assert run.exit_code == 0, run.describe()
    tcp = only(run, "dual.lab.test", "tcp")
    assert tcp["ok"] is True, run.describe()
    assert tcp["addresses"] == {"ok": 1, "failed": 1}, run.describe()
    assert "1 IPv6 address(es) failed, 2001:2:0:1::70" in tcp["detail"], run.describe()
    assert "network is unreachable" in tcp["detail"], run.describe()
    assert "falls back to IPv4 at once" in tcp["detail"], run.describe()


@pytest.mark.parametrize(
    ("name", "dropped", "family", "other"),
    [
        ("dual-drop6.lab.test", "2001:2:0:1::71", "IPv6", "IPv4"),
        ("dual-drop4.lab.test", "198.18.1.72", "IPv4", "IPv6"),
    ],
)
def test_dropped_family_passes_with_its_address_shown(
    check: Check, name: str, dropped: str, family: str, other: str
) -> None:
    """One family's SYN dropped, the other healthy: passes; the dropped address stays visible."""
    run = check(name, False)
    assert run.exit_code == 0, run.describe()
    assert run.registry(name)["ok"] is True, run.describe()
    tcp = only(run, name, "tcp")
    assert tcp["addresses"] == {"ok": 1, "failed": 1}, run.describe()
    assert f"1 {family} address(es) failed, {dropped}" in tcp["detail"], run.describe()
    assert "i/o timeout" in tcp["detail"], run.describe()
    assert f"starts {other} within 300 ms" in tcp["detail"], run.describe()
    # The connect phase is the pull's (the healthy family's), not the dropped SYN's timeout.
    assert tcp["phases"]["connect"] < TIMEOUT / 2, run.describe()
    for kind in ("tls", "http"):
        assert only(run, name, kind)["addresses"] == {"ok": 1, "failed": 0}, run.describe()


def test_ipv6_only_name_passes_with_an_ipv6_route(check: Check) -> None:
    """AAAA only, served by a real docker-registry on IPv6: every check passes."""
    run = check("v6only.lab.test", False)
    assert run.exit_code == 0, run.describe()
    assert all(c["ok"] for c in run.checks("v6only.lab.test")), run.describe()
    assert "[2001:2:0:1::74]:443" in only(run, "v6only.lab.test", "tcp")["detail"]


def test_ipv6_only_name_without_an_ipv6_route_is_tcp_unreachable(check: Check) -> None:
    """AAAA only on a node without an IPv6 route: tcp_unreachable, the pull's own error."""
    run = check("v6only.lab.test", True)
    assert run.exit_code == 1, run.describe()
    report = run.registry("v6only.lab.test")
    assert (report["ok"], report["root_cause"]) == (False, 5), run.describe()
    failed = [(c["endpoint"], c["check"], c["reason"]) for c in run.failed("v6only.lab.test")]
    assert failed == [("v6only.lab.test:443", "tcp", "tcp_unreachable")], run.describe()
    assert "network is unreachable" in run.failed("v6only.lab.test")[0]["detail"]


def test_tls_failure_on_ipv6_fails_though_ipv4_is_healthy(check: Check) -> None:
    """A failure after connecting is never forgiven: IPv6 is dialled first and its TLS fails."""
    run = check("dual-tls6.lab.test", False)
    assert run.exit_code == 1, run.describe()
    failed = run.failed("dual-tls6.lab.test")
    assert [(c["check"], c["reason"]) for c in failed] == [("tls", "tls_handshake_failed")], (
        run.describe()
    )
    assert "2001:2:0:1::73" in failed[0]["detail"], run.describe()
    assert only(run, "dual-tls6.lab.test", "tcp")["addresses"] == {"ok": 2, "failed": 0}


# ----- held against Go's dialer ------------------------------------------------------------------


@pytest.fixture(scope="module", name="gopull")
def gopull_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go client, built once for the module (skipped with the reason when Go is missing)."""
    if go_toolchain() is None:
        pytest.skip("no Go toolchain (Debian: golang-go, which tests/run-all.sh installs)")
    return build_gopull(tmp_path_factory.mktemp("gopull"))


@dataclass(frozen=True)
class GoPath:
    """What Go's dialer does for a case: the families it tries, in order, and where it ends."""

    tried: tuple[int, ...]  # families of the addresses dialled, in the order started
    connected: int | None  # family of the connection the request went over, or None
    fallback_after: float | None = None  # when the second family started, if it had to wait


CASES = {
    # RFC 6724 sorts IPv6 first (precedence 40 over 35): it connects, IPv4 is never dialled.
    ("dual.lab.test", False): GoPath(tried=(6,), connected=6),
    # No IPv6 route: IPv6 sorts last (rule 1), IPv4 connects before the fallback would start.
    ("dual.lab.test", True): GoPath(tried=(4,), connected=4),
    # IPv6 dialled first and unanswered: IPv4 starts after FallbackDelay and wins.
    ("dual-drop6.lab.test", False): GoPath(tried=(6, 4), connected=4, fallback_after=0.3),
    # IPv6 first and healthy: the dropped IPv4 is never dialled.
    ("dual-drop4.lab.test", False): GoPath(tried=(6,), connected=6),
    ("v6only.lab.test", False): GoPath(tried=(6,), connected=6),
    # Nothing to fall back to: the dial fails at once with the kernel's ENETUNREACH.
    ("v6only.lab.test", True): GoPath(tried=(6,), connected=None),
    # IPv6 connects, its TLS fails: the transport never tries IPv4.
    ("dual-tls6.lab.test", False): GoPath(tried=(6,), connected=6),
}


@pytest.mark.parametrize(("name", "unrouted"), list(CASES), ids=lambda v: str(v))
def test_verdict_matches_go_dialer(
    lab: Lab, check: Check, gopull: Path, name: str, unrouted: bool
) -> None:
    """The probe passes a name exactly when Go's transport gets /v2/ from it, by the path
    (RFC 6724 order, FallbackDelay) this module's cases describe."""
    run = check(name, unrouted)
    with routed(lab, unrouted):
        go = go_pull(lab, gopull, name)
    expected = CASES[(name, unrouted)]
    said = f"{go.raw}\n{run.describe()}"
    assert run.registry(name)["ok"] is go.ok, said
    assert tuple(a.family for a in go.attempts) == expected.tried, said
    assert _connected_family(go) == expected.connected, said
    if expected.fallback_after is not None:
        second = go.attempts[1]
        assert FALLBACK_DELAY - 0.01 <= second.start < FALLBACK_DELAY + 0.5, said
    if not go.ok:
        [failed] = run.failed(name)
        words = {"tcp_unreachable": "network is unreachable", "tls_handshake_failed": "tls"}
        assert words[failed["reason"]] in go.error, said


def _connected_family(go: GoPull) -> int | None:
    """The family of the address a connection was made to (a failed TLS has no GotConn)."""
    if go.connected_family is not None:
        return go.connected_family
    made = [a for a in go.attempts if a.done and not a.error]
    return made[0].family if made else None
