"""`probe check` against real faults in the network lab: each reason provoked for real.

Every test runs `python -m probe check --output json` in the lab's node namespace and asserts
what a user sees: the reason on the right check of the right endpoint, the exit status, and that
the run ends within its deadline. `test_lab_*` check the lab itself with stock clients, so a
failure there means the lab is broken, not the probe.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from lab import DEAD_DNS_ADDRESS, DNS_ADDRESS, SERVICES, CompletedRun, Lab
from lab.netns import PREFIX, ip, remove_leftovers

from probe.reasons import PHASES

pytestmark = pytest.mark.lab

TIMEOUT = 2.0
# The probe must end within its deadline; the rest is a Python process starting in a namespace.
DEADLINE = TIMEOUT * 1.5 + 3


def assert_within_deadline(run: CompletedRun) -> None:
    assert run.elapsed < DEADLINE, (
        f"took {run.elapsed:.2f}s, deadline {DEADLINE}s\n{run.describe()}"
    )


def assert_fails(
    run: CompletedRun, registry: str, check: str, reason: str, endpoint: str | None = None
) -> dict[str, Any]:
    """The run failed `registry` with exactly one failed check, `check` on `endpoint`: `reason`."""
    endpoint = endpoint or f"{registry}:443"
    assert run.exit_code == 1, run.describe()
    report = run.registry(registry)
    assert report["ok"] is False, run.describe()
    assert report["root_cause"] == 5, run.describe()
    assert report["advice"], run.describe()
    failed = run.failed(registry)
    assert [(c["endpoint"], c["check"], c["reason"]) for c in failed] == [
        (endpoint, check, reason)
    ], run.describe()
    assert failed[0]["detail"], run.describe()
    assert_within_deadline(run)
    return failed[0]


def selfcheck(lab: Lab, *args: str) -> dict[str, dict[str, str]]:
    """Run tests/lab/selfcheck.py in the node: what dnspython and Python's ssl see."""
    script = Path(__file__).parent / "lab" / "selfcheck.py"
    done = lab.run_in_node([sys.executable, str(script), *args], timeout=60)
    report: dict[str, dict[str, str]] = json.loads(done.stdout)
    return report


def kinds(run: CompletedRun, registry: str, endpoint: str) -> list[str]:
    return [c["check"] for c in run.checks(registry) if c["endpoint"] == endpoint]


# ----- the lab itself, seen by stock clients ----------------------------------------------------

LAB_DNS = {
    "registry.lab.test": "NOERROR:198.18.1.10",
    "multi.lab.test": "NOERROR:198.18.1.40,198.18.1.41",
    "nxdomain.lab.test": "NXDOMAIN:",
    "not-in-the-zone.lab.test": "NXDOMAIN:",
    "noanswer.lab.test": "NOERROR:",
    "servfail.lab.test": "SERVFAIL:",
    "refused.lab.test": "REFUSED:",
    "dns-drop.lab.test": "timeout",
}
LAB_CONN = {
    "registry.lab.test": "http:200:registry",
    "authreg.lab.test": "http:401:registry",
    "realm-rotating.lab.test": "http:401:registry",
    "token.lab.test": "http:401:registry",
    "auth.lab.test": "http:200:registry",
    "private.lab.test": "cert:self-signed certificate in certificate chain",
    "untrusted.lab.test": "cert:self-signed certificate in certificate chain",
    "expired.lab.test": "cert:certificate has expired",
    "notyet.lab.test": "cert:certificate is not yet valid",
    "wrongname.lab.test": (
        "cert:Hostname mismatch, certificate is not valid for 'wrongname.lab.test'."
    ),
    "firewall-drop.lab.test": "tcp:timeout",
    "firewall-reset.lab.test": "tcp:refused",
    "closed.lab.test": "tcp:refused",
    "host-unreachable.lab.test": "tcp:unreachable",
    "net-unreachable.lab.test": "tcp:unreachable",
    "no-route.lab.test": "tcp:unreachable",
    "tls-silent.lab.test": "tls:timeout",
    "tls-garbage.lab.test": "tls:failed",
    "tls-alert.lab.test": "tls:failed",
    "http-silent.lab.test": "http:timeout",
    "captive.lab.test": "http:200",
    "status-503.lab.test": "http:503",
    "status-503-registry.lab.test": "http:503:registry",
    "port5000.lab.test": "cert:self-signed certificate in certificate chain",
    "plain.lab.test": "http:200:registry",
    "multi.lab.test=198.18.1.40": "http:200:registry",
    "multi.lab.test=198.18.1.41": "tcp:refused",
    # The broken "proxies" answer any request as they answer CONNECT.
    "garbage-proxy.lab.test": "http:?",  # not an HTTP status line
    "endless-proxy.lab.test": "http:200",  # a status line, then headers without end
    "dual.lab.test=198.18.1.70": "http:200:registry",
    "dual.lab.test=2001:2:0:1::70": "http:200:registry",
    "dual-drop6.lab.test=198.18.1.71": "http:200:registry",
    "dual-drop6.lab.test=2001:2:0:1::71": "tcp:timeout",
    "dual-drop4.lab.test=198.18.1.72": "tcp:timeout",
    "dual-drop4.lab.test=2001:2:0:1::72": "http:200:registry",
    "dual-tls6.lab.test=198.18.1.73": "http:200:registry",
    "dual-tls6.lab.test=2001:2:0:1::73": "tls:failed",
    "v6only.lab.test": "http:200:registry",
}


def test_lab_serves_each_fault_to_stock_clients(lab: Lab) -> None:
    """The lab's DNS answers, firewall, certificates and servers do what the probe tests assume."""
    root = lab.host_root()
    # selfcheck's connection argument -> LAB_CONN's key (name=address for several addresses)
    targets = {
        f"{s.name}={'http://' if s.cert == 'none' else ''}{_bracketed(a)}:{s.port}": (
            s.name if len(s.addresses) == 1 else f"{s.name}={a}"
        )
        for s in SERVICES
        for a in s.addresses
    }
    bundle = root / "etc" / "ssl" / "certs" / "ca-certificates.crt"
    seen = selfcheck(lab, str(bundle), DNS_ADDRESS, *LAB_DNS, *targets)
    assert seen["dns"] == LAB_DNS
    assert {targets[k]: v for k, v in seen["conn"].items()} == LAB_CONN


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def test_lab_dead_resolver_never_answers(lab: Lab) -> None:
    """The resolver address used for dns_timeout exists but nothing it sends reaches the node."""
    assert selfcheck(lab, "-", DEAD_DNS_ADDRESS, "registry.lab.test")["dns"] == {
        "registry.lab.test": "timeout"
    }


def test_lab_removes_leftovers_of_dead_runs(lab: Lab) -> None:
    """A namespace named for a pid that no longer runs is removed when a lab starts."""
    dead_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it
    name = f"{PREFIX}{dead_pid}-node"
    ip("netns", "add", name)
    try:
        assert name in remove_leftovers()
        assert name not in ip("netns", "list")
    finally:
        if name in ip("netns", "list"):
            ip("netns", "del", name)


def test_lab_names_can_change_at_runtime(lab: Lab) -> None:
    """A name added while the lab runs is answered at once, and is gone again after the block."""
    with lab.name_changed("late.lab.test", {"A": ["198.18.1.10"]}):
        during = selfcheck(lab, "-", DNS_ADDRESS, "late.lab.test")["dns"]
    after = selfcheck(lab, "-", DNS_ADDRESS, "late.lab.test")["dns"]
    assert (during, after) == (
        {"late.lab.test": "NOERROR:198.18.1.10"},
        {"late.lab.test": "NXDOMAIN:"},
    )


# ----- healthy registries -----------------------------------------------------------------------


def test_healthy_registry_passes_every_check(lab: Lab) -> None:
    """A real docker-registry with a trusted certificate passes dns, tcp, tls and http: exit 0."""
    run = lab.check(["registry.lab.test"], timeout=TIMEOUT)
    assert run.exit_code == 0, run.describe()
    report = run.registry("registry.lab.test")
    assert report["ok"] is True, run.describe()
    assert report["root_cause"] is None, run.describe()
    assert {"dns", "tcp", "tls", "http"} <= set(
        kinds(run, "registry.lab.test", "registry.lab.test:443")
    ), run.describe()
    assert all(c["ok"] and c["reason"] is None for c in report["checks"]), run.describe()
    for c in report["checks"]:
        assert set(c["phases"]) <= set(PHASES), run.describe()
        assert all(0 <= seconds < DEADLINE for seconds in c["phases"].values()), run.describe()
    assert_within_deadline(run)


@pytest.mark.parametrize(
    "registry",
    [
        "authreg.lab.test",  # docker-registry's own "silly" token auth
        "token.lab.test",  # an imitation whose challenge has a scope with a comma
    ],
)
def test_bearer_challenge_is_healthy_and_adds_realm_endpoint(lab: Lab, registry: str) -> None:
    """A 401 Bearer registry is healthy, and its token realm host is checked as an endpoint."""
    run = lab.check([registry], timeout=TIMEOUT)
    assert run.exit_code == 0, run.describe()
    report = run.registry(registry)
    assert report["ok"] is True, run.describe()
    assert all(c["ok"] for c in report["checks"]), run.describe()
    assert {"dns", "tcp", "tls"} <= set(kinds(run, registry, "auth.lab.test:443")), run.describe()
    assert_within_deadline(run)


def test_registry_trusted_through_containerd_certs_d(lab: Lab) -> None:
    """A registry whose CA is only in etc/containerd/certs.d/<host>/ca.crt passes tls."""
    root = lab.host_root(certs_d={"private.lab.test": lab.other_ca.pem})
    run = lab.check(["private.lab.test"], root, timeout=TIMEOUT)
    assert run.exit_code == 0, run.describe()
    assert run.registry("private.lab.test")["ok"] is True, run.describe()
    assert_within_deadline(run)


def test_registry_on_a_port_trusted_through_certs_d_host_port(lab: Lab) -> None:
    """`host:port` registries find their CA in certs.d/<host:port>/ca.crt, as containerd does."""
    root = lab.host_root(certs_d={"port5000.lab.test:5000": lab.other_ca.pem})
    run = lab.check(["port5000.lab.test:5000"], root, timeout=TIMEOUT)
    assert run.exit_code == 0, run.describe()
    assert run.registry("port5000.lab.test:5000")["ok"] is True, run.describe()
    assert {"dns", "tcp", "tls", "http"} <= set(
        kinds(run, "port5000.lab.test:5000", "port5000.lab.test:5000")
    ), run.describe()
    assert_within_deadline(run)


def test_plain_http_registry_has_no_tls_check(lab: Lab) -> None:
    """`http://host:port` is a plain-HTTP registry: dns, tcp and http pass, no tls check is run."""
    run = lab.check(["http://plain.lab.test:5000"], timeout=TIMEOUT)
    assert run.exit_code == 0, run.describe()
    assert run.json is not None, run.describe()
    [report] = run.json["registries"]
    assert report["ok"] is True, run.describe()
    checks = {(c["endpoint"], c["check"]) for c in report["checks"]}
    assert {("plain.lab.test:5000", k) for k in ("dns", "tcp", "http")} <= checks, run.describe()
    assert not any(kind == "tls" for _, kind in checks), run.describe()
    assert_within_deadline(run)


def test_failing_token_realm_host_fails_the_registry(lab: Lab) -> None:
    """A registry whose token realm host does not resolve fails, on the realm's endpoint."""
    with lab.name_changed("auth.lab.test", "nxdomain"):
        run = lab.check(["authreg.lab.test"], timeout=TIMEOUT)
    assert_fails(run, "authreg.lab.test", "dns", "dns_nxdomain", endpoint="auth.lab.test:443")
    assert all(
        c["ok"] for c in run.checks("authreg.lab.test") if c["endpoint"] == "authreg.lab.test:443"
    ), run.describe()


def test_registries_are_checked_concurrently(lab: Lab) -> None:
    """Registries run concurrently: three 2 s timeouts fit one deadline, each with its reason."""
    faults = {
        "firewall-drop.lab.test": ("tcp", "tcp_timeout"),
        "tls-silent.lab.test": ("tls", "tls_handshake_timeout"),
        "http-silent.lab.test": ("http", "http_timeout"),
    }
    run = lab.check(["registry.lab.test", *faults], timeout=TIMEOUT)
    assert run.exit_code == 1, run.describe()
    assert run.registry("registry.lab.test")["ok"] is True, run.describe()
    for name, (check, reason) in faults.items():
        failed = [(c["endpoint"], c["check"], c["reason"]) for c in run.failed(name)]
        assert failed == [(f"{name}:443", check, reason)], run.describe()
    assert_within_deadline(run)


# ----- dns ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("nxdomain.lab.test", "dns_nxdomain"),
        ("not-in-the-zone.lab.test", "dns_nxdomain"),
        ("noanswer.lab.test", "dns_no_answer"),
        ("servfail.lab.test", "dns_servfail"),
        ("refused.lab.test", "dns_refused"),
        ("dns-drop.lab.test", "dns_timeout"),
    ],
)
def test_dns_answer_names_the_reason(lab: Lab, name: str, reason: str) -> None:
    """The resolver's answer (or silence) for a name fails dns with its reason, and only dns."""
    run = lab.check([name], timeout=TIMEOUT)
    assert_fails(run, name, "dns", reason)
    assert kinds(run, name, f"{name}:443") == ["dns"], run.describe()


def test_dns_timeout_when_no_resolver_answers(lab: Lab) -> None:
    """resolv.conf naming a resolver that never answers gives dns_timeout within the deadline."""
    root = lab.host_root(nameservers=(DEAD_DNS_ADDRESS,))
    run = lab.check(["registry.lab.test"], root, timeout=TIMEOUT)
    assert_fails(run, "registry.lab.test", "dns", "dns_timeout")


def test_dns_no_resolvers_when_resolv_conf_has_no_nameserver(lab: Lab) -> None:
    """resolv.conf without a nameserver line gives dns_no_resolvers (no fallback to 127.0.0.1)."""
    root = lab.host_root(nameservers=())
    run = lab.check(["registry.lab.test"], root, timeout=TIMEOUT)
    assert_fails(run, "registry.lab.test", "dns", "dns_no_resolvers")


# ----- tcp ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("firewall-drop.lab.test", "tcp_timeout"),  # nft drop: the SYN is never answered
        ("firewall-reset.lab.test", "tcp_refused"),  # nft reject with tcp reset
        ("closed.lab.test", "tcp_refused"),  # nothing listens on :443
        ("host-unreachable.lab.test", "tcp_unreachable"),  # nft icmp host-unreachable
        ("net-unreachable.lab.test", "tcp_unreachable"),  # nft icmp net-unreachable
        ("no-route.lab.test", "tcp_unreachable"),  # an unreachable route on the node
    ],
)
def test_tcp_fault_names_the_reason(lab: Lab, name: str, reason: str) -> None:
    """A firewall or a closed port between node and registry fails tcp with its reason."""
    run = lab.check([name], timeout=TIMEOUT)
    assert_fails(run, name, "tcp", reason)
    assert kinds(run, name, f"{name}:443") == ["dns", "tcp"], run.describe()


def test_one_dead_address_of_two_fails_and_is_named(lab: Lab) -> None:
    """Every resolved address is tried: one dead of two fails tcp and the detail names it."""
    run = lab.check(["multi.lab.test"], timeout=TIMEOUT)
    assert run.exit_code == 1, run.describe()
    assert run.registry("multi.lab.test")["ok"] is False, run.describe()
    failed = run.failed("multi.lab.test")
    assert failed, run.describe()
    assert {(c["endpoint"], c["check"], c["reason"]) for c in failed} == {
        ("multi.lab.test:443", "tcp", "tcp_refused")
    }, run.describe()
    assert any("198.18.1.41" in c["detail"] for c in failed), run.describe()
    assert_within_deadline(run)


# ----- tls ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("untrusted.lab.test", "tls_unknown_authority"),
        ("private.lab.test", "tls_unknown_authority"),  # its CA is not in certs.d this time
        ("expired.lab.test", "tls_expired"),
        ("notyet.lab.test", "tls_not_yet_valid"),
        ("wrongname.lab.test", "tls_hostname_mismatch"),
        ("tls-silent.lab.test", "tls_handshake_timeout"),
        ("tls-garbage.lab.test", "tls_handshake_failed"),
        ("tls-alert.lab.test", "tls_handshake_failed"),
    ],
)
def test_tls_fault_names_the_reason(lab: Lab, name: str, reason: str) -> None:
    """A certificate or handshake the node would reject fails tls with its reason."""
    run = lab.check([name], timeout=TIMEOUT)
    assert_fails(run, name, "tls", reason)
    assert kinds(run, name, f"{name}:443") == ["dns", "tcp", "tls"], run.describe()


# ----- http ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("http-silent.lab.test", "http_timeout"),
        ("status-503.lab.test", "http_unexpected_status"),
        ("status-503-registry.lab.test", "http_unexpected_status"),
        ("captive.lab.test", "not_a_registry"),
    ],
)
def test_http_answer_names_the_reason(lab: Lab, name: str, reason: str) -> None:
    """A TLS server that answers /v2/ late, with 5xx, or not as a registry fails http."""
    run = lab.check([name], timeout=TIMEOUT)
    assert_fails(run, name, "http", reason)
