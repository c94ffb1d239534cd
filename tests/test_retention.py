"""What the agent keeps per endpoint is bounded: a registry that names a new token realm host
on every probe cannot grow the `failures_total` series or the log's check states (issue 11,
item 5: 3,360 series in 11 minutes before).

Reports are built by hand as the engine builds them: the registry's own endpoint passes, and
the realm endpoint it announced fails `dns` (the lab's rotating realms do not resolve). The lab
test of the same registry is tests/test_soak_lab.py.
"""

from __future__ import annotations

import time

import pytest
from metricsamples import samples

from probe.agent.logs import CheckStates
from probe.config import HostPort
from probe.reasons import CheckKind, Reason
from probe.result import CheckResult, RegistryReport
from probe.views.metrics import ProbeCollector, build_registry, render
from probe.views.retention import FORGET_AFTER_REPORTS, MAX_ABSENT_ENDPOINTS, EndpointRetention

REGISTRY = "rotating.example.com"
OWN = HostPort(REGISTRY, 443)


def rotating_report(realm: str | None) -> RegistryReport:
    """The registry passing its http check, and `realm` (if any) failing dns_nxdomain."""
    checks = [CheckResult(OWN, CheckKind.HTTP, True, None, "401 with a Bearer challenge")]
    if realm is not None:
        checks.append(
            CheckResult(
                HostPort(realm, 443),
                CheckKind.DNS,
                False,
                Reason.DNS_NXDOMAIN,
                f"lookup {realm}: no such host",
            )
        )
    return RegistryReport(REGISTRY, tuple(checks), finished_at=time.time())


def scrape(collector: ProbeCollector) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = render(build_registry(collector)).body.decode()
    return {k: v for k, v in samples(text).items() if k[0].startswith("registry_probe_")}


def failure_endpoints(collector: ProbeCollector) -> set[str]:
    return {
        dict(labels)["endpoint"]
        for (name, labels), _ in scrape(collector).items()
        if name == "registry_probe_failures_total"
    }


def collector_for(registry: str = REGISTRY) -> ProbeCollector:
    collector = ProbeCollector()
    collector.configure([registry])
    return collector


def test_rotating_realms_do_not_grow_the_series() -> None:
    """1,000 probes, each naming a new realm host: the scrape has as many series after the
    last as after the fifth (before: one more failures_total series per probe)."""
    collector = collector_for()
    counts = []
    for n in range(1, 1001):
        collector.record(rotating_report(f"r{n}.realm.example"))
        if n in (MAX_ABSENT_ENDPOINTS + 1, 1000):
            counts.append(len(scrape(collector)))
    assert counts[0] == counts[1]
    assert failure_endpoints(collector) == {
        f"r{n}.realm.example:443" for n in range(1000 - MAX_ABSENT_ENDPOINTS, 1001)
    }


def test_a_realm_gone_while_its_registry_is_down_keeps_its_counter_for_a_while() -> None:
    """A realm missing from reports (its registry stopped answering /v2/) keeps its
    failures_total for FORGET_AFTER_REPORTS reports, then the series goes."""
    collector = collector_for()
    collector.record(rotating_report("auth.example.com"))
    realm = "auth.example.com:443"
    for _ in range(FORGET_AFTER_REPORTS - 1):
        collector.record(rotating_report(None))
    assert realm in failure_endpoints(collector)
    collector.record(rotating_report(None))
    assert realm not in failure_endpoints(collector)


def test_a_realm_that_comes_back_counts_on() -> None:
    """A realm absent for a few reports and named again keeps counting where it was."""
    collector = collector_for()
    for _ in range(3):
        collector.record(rotating_report("auth.example.com"))
        collector.record(rotating_report(None))
    found = scrape(collector)
    labels = frozenset(
        {
            "registry": REGISTRY,
            "endpoint": "auth.example.com:443",
            "check": "dns",
            "reason": "dns_nxdomain",
        }.items()
    )
    assert found[("registry_probe_failures_total", labels)] == 3


def test_rotating_realms_do_not_grow_the_check_states() -> None:
    """The log's check states keep the registry's own endpoint and at most MAX_ABSENT_ENDPOINTS
    stale realms, however many realms were named; each new realm is logged failing once."""
    states = CheckStates()
    logged = 0
    for n in range(1, 1001):
        logged += len(states.update(rotating_report(f"r{n}.realm.example")))
    assert len(states) == 1 + 1 + MAX_ABSENT_ENDPOINTS  # own http, the current realm, the stale
    assert logged == 1000


def test_a_forgotten_realm_failing_again_is_logged_again() -> None:
    """Once forgotten, a realm that comes back failing is a new failure in the log."""
    states = CheckStates()
    assert len(states.update(rotating_report("auth.example.com"))) == 1
    for _ in range(FORGET_AFTER_REPORTS):
        assert states.update(rotating_report(None)) == []
    [change] = states.update(rotating_report("auth.example.com"))
    assert (change.endpoint, change.reason) == ("auth.example.com:443", "dns_nxdomain")


def test_retention_keeps_the_most_recently_seen_absent_endpoints() -> None:
    """Of the absent endpoints, the most recently seen are kept, up to the cap."""
    retention = EndpointRetention(forget_after_reports=100, max_absent=2)
    forgotten: list[str] = []
    for realm in ("a", "b", "c", "d"):
        forgotten += retention.observe(rotating_report(realm))
    assert forgotten == ["a:443"]
    assert retention.remembered(REGISTRY) == {f"{REGISTRY}:443", "b:443", "c:443", "d:443"}
    assert retention.observe(rotating_report(None)) == {"b:443"}


def test_retention_forgets_registries_that_left() -> None:
    """retain() drops every endpoint of a registry no longer configured."""
    retention = EndpointRetention()
    retention.observe(rotating_report("a"))
    retention.retain(["other.example.com"])
    assert retention.remembered(REGISTRY) == frozenset()


@pytest.mark.parametrize(("after", "absent"), [(0, 1), (1, -1)])
def test_retention_refuses_nonsense_bounds(after: int, absent: int) -> None:
    """A retention that forgets at once or keeps a negative number is a programming error."""
    with pytest.raises(ValueError, match="forget_after_reports"):
        EndpointRetention(forget_after_reports=after, max_absent=absent)
