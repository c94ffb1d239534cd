"""The collector: what /metrics shows for hand-built reports, in both exposition formats."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from probe import __version__
from probe.checks import Endpoint
from probe.config import HostPort, parse_host_port
from probe.images.result import CONFIGURED, SANDBOX, ImageReport
from probe.reasons import PHASES, CheckKind, Reason
from probe.result import CertFacts, CheckResult, HostResult, RateLimit, RegistryReport, RuntimeRoute
from probe.views.metrics import (
    METRICS,
    ProbeCollector,
    build_registry,
    endpoint_phases,
    render,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
NOT_AFTER = 1_900_000_000.0
FINISHED = 1_800_000_000.0

# SPEC.md, "Metrics": the bounded label set, plus `source` (rate-limit info) and `version`.
ALLOWED_LABELS = {
    "registry",
    "endpoint",
    "check",
    "reason",
    "phase",
    "runtime",
    "route",
    "state",
    "auth",
    "source",
    "version",
    "image",  # the images of the config and the node's sandbox image, never what runs there
    "role",  # configured or sandbox
}
# SPEC.md's budget for one healthy registry with its endpoints.
# SPEC's budget: at most 16 series for a healthy one-endpoint registry on a one-runtime node,
# at most 40 for Docker Hub (three endpoints, anonymous rate limit). docs/metrics.md ("Series per
# registry") gives the exact counts these pin.
SERIES_BUDGET, ONE_ENDPOINT_SERIES = 16, 16
DOCKER_HUB_BUDGET, DOCKER_HUB_SERIES = 40, 40


def passed(
    endpoint: str,
    check: CheckKind,
    phases: dict[str, float] | None = None,
    addresses: int = 0,
    cert: CertFacts | None = None,
) -> CheckResult:
    return CheckResult(
        endpoint=parse_host_port(endpoint),
        check=check,
        ok=True,
        reason=None,
        detail="ok",
        phases=phases or {},
        addresses_ok=addresses,
        cert=cert,
    )


def failed(
    endpoint: str, check: CheckKind, reason: Reason, phases: dict[str, float] | None = None
) -> CheckResult:
    return CheckResult(
        endpoint=parse_host_port(endpoint),
        check=check,
        ok=False,
        reason=reason,
        detail=f"{reason} on {endpoint}",
        phases=phases or {},
        addresses_failed=2 if check == CheckKind.TCP else 0,
    )


def cert(not_after: float = NOT_AFTER) -> CertFacts:
    return CertFacts(not_after=not_after, issuer="CN=Lab CA", subject="CN=x", tls_version="TLSv1.3")


def endpoint_checks(endpoint: str, *, http: bool) -> list[CheckResult]:
    checks = [
        passed(endpoint, CheckKind.DNS, {"resolve": 0.002}),
        passed(endpoint, CheckKind.TCP, {"connect": 0.010}, addresses=2),
        passed(endpoint, CheckKind.TLS, {"tls": 0.030}, addresses=2, cert=cert()),
    ]
    if http:
        checks.append(
            passed(endpoint, CheckKind.HTTP, {"processing": 0.040, "transfer": 0.001}, addresses=2)
        )
    return checks


def phases_of(*endpoints: Endpoint) -> dict[HostPort, tuple[str, ...]]:
    """The phases the engine gives each endpoint, by the endpoint's role."""
    return {e.address: e.phases for e in endpoints}


def healthy_registry(host: str = "registry.example.com:5000") -> RegistryReport:
    """A registry with one endpoint (no token service, no blob host), on a containerd node."""
    return RegistryReport(
        registry=host,
        checks=(*endpoint_checks(host, http=True), passed(host, CheckKind.PROXY)),
        finished_at=FINISHED,
        routes=(RuntimeRoute("containerd", "direct", None),),
        endpoint_phases=phases_of(Endpoint.of(parse_host_port(host), "registry")),
        hosts=(served_by(host),),
        pullable=True,
        served_by=parse_host_port(host),
    )


def served_by(endpoint: str, role: str = "registry") -> HostResult:
    return HostResult(
        parse_host_port(endpoint), f"https://{endpoint}/v2", role, "default", True, True
    )


def docker_hub() -> RegistryReport:
    """Docker Hub: registry, token and CDN endpoints, the anonymous rate limit, one runtime."""
    registry = "registry-1.docker.io:443"
    return RegistryReport(
        registry="registry-1.docker.io",
        checks=(
            *endpoint_checks(registry, http=True),
            passed(registry, CheckKind.PROXY),
            passed(registry, CheckKind.RATELIMIT, {"processing": 0.5}),
            *endpoint_checks("auth.docker.io:443", http=False),
            *endpoint_checks("production.cloudfront.docker.com:443", http=False),
        ),
        finished_at=FINISHED,
        ratelimits=(RateLimit("anonymous", 100, 76, 21600, "203.0.113.7", True),),
        routes=(RuntimeRoute("containerd", "direct", None),),
        endpoint_phases=phases_of(
            Endpoint("registry-1.docker.io", 443, "registry"),
            Endpoint("auth.docker.io", 443, "auth"),
            Endpoint("production.cloudfront.docker.com", 443, "blob"),
        ),
        hosts=(served_by(registry),),
        pullable=True,
        served_by=parse_host_port(registry),
    )


def collector_with(*reports: RegistryReport) -> ProbeCollector:
    collector = ProbeCollector()
    collector.configure(r.registry for r in reports)
    for report in reports:
        collector.record(report)
    return collector


def scrape(collector: ProbeCollector) -> list[Sample]:
    text = render(build_registry(collector)).body.decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def probe_samples(samples: Iterable[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    found = probe_samples(samples, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0].value


def series_of(samples: Iterable[Sample], registry: str) -> list[Sample]:
    return [s for s in samples if s.labels.get("registry") == registry]


def test_healthy_registry_renders_success_phases_addresses_and_cert() -> None:
    """A healthy registry: success 1 per check, every phase, address counts, cert expiry."""
    host = "registry.example.com:5000"
    samples = scrape(collector_with(healthy_registry(host)))
    for check in ("dns", "tcp", "tls", "http", "proxy"):
        assert value(samples, "registry_probe_success", endpoint=host, check=check) == 1
    assert not probe_samples(samples, "registry_probe_failure")
    assert not probe_samples(samples, "registry_probe_failures_total")
    phases = {
        s.labels["phase"]: s.value
        for s in probe_samples(samples, "registry_probe_duration_seconds")
    }
    assert phases == {
        "resolve": 0.002,
        "connect": 0.010,
        "tls": 0.030,
        "processing": 0.040,
        "transfer": 0.001,
    }
    assert value(samples, "registry_probe_endpoint_addresses", endpoint=host, state="ok") == 2
    assert value(samples, "registry_probe_endpoint_addresses", endpoint=host, state="failed") == 0
    assert value(samples, "registry_probe_tls_cert_expiry_timestamp_seconds") == NOT_AFTER
    assert value(samples, "registry_probe_last_run_timestamp_seconds", registry=host) == FINISHED


def test_skipped_phases_are_zero_not_absent() -> None:
    """A registry whose name does not resolve still shows every phase it can run, the skipped
    ones as 0: a series never comes and goes with the failure."""
    host = "registry.example.com:5000"
    report = RegistryReport(
        registry=host,
        checks=(failed(host, CheckKind.DNS, Reason.DNS_NXDOMAIN, {"resolve": 0.02}),),
        finished_at=FINISHED,
        endpoint_phases=phases_of(Endpoint.of(parse_host_port(host), "registry")),
    )
    samples = scrape(collector_with(report))
    phases = {
        s.labels["phase"]: s.value
        for s in probe_samples(samples, "registry_probe_duration_seconds", endpoint=host)
    }
    assert set(phases) == set(PHASES)
    assert phases["resolve"] == 0.02
    assert phases["connect"] == phases["tls"] == phases["processing"] == phases["transfer"] == 0


def test_ratelimit_check_time_is_not_the_registrys_processing_phase() -> None:
    """The ratelimit check's token and manifest requests do not count as the pull path's time."""
    phases = endpoint_phases(
        [
            passed("r:443", CheckKind.RATELIMIT, {"processing": 9.0}),
            passed("r:443", CheckKind.HTTP, {"processing": 0.04}),
        ]
    )
    assert phases["processing"] == 0.04


def test_failing_check_shows_reason_and_counts_every_failed_run() -> None:
    """A failing check: success 0, failure{reason} 1, failures_total +1 per failed run."""
    host = "registry.example.com:5000"
    collector = collector_with()
    collector.configure([host])
    failing = RegistryReport(
        registry=host,
        checks=(
            passed(host, CheckKind.DNS, {"resolve": 0.001}),
            failed(host, CheckKind.TCP, Reason.TCP_TIMEOUT, {"connect": 10.0}),
        ),
        finished_at=FINISHED,
    )
    collector.record(failing)
    collector.record(failing)
    samples = scrape(collector)
    assert value(samples, "registry_probe_success", check="tcp") == 0
    assert value(samples, "registry_probe_failure", check="tcp", reason="tcp_timeout") == 1
    assert value(samples, "registry_probe_failures_total", check="tcp", reason="tcp_timeout") == 2
    assert value(samples, "registry_probe_endpoint_addresses", state="failed") == 2
    assert value(samples, "registry_probe_duration_seconds", phase="tls") == 0

    collector.record(healthy_registry(host))
    samples = scrape(collector)
    assert not probe_samples(samples, "registry_probe_failure"), "absent once the check passes"
    assert value(samples, "registry_probe_failures_total", check="tcp", reason="tcp_timeout") == 2


def test_removed_registry_leaves_no_series_and_no_counters() -> None:
    """A registry removed from the config disappears entirely, counters included."""
    gone, kept = "gone.example.com", "kept.example.com"
    collector = collector_with(healthy_registry(gone), healthy_registry(kept))
    collector.record(
        RegistryReport(
            gone, (failed(gone, CheckKind.DNS, Reason.DNS_NXDOMAIN),), finished_at=FINISHED
        )
    )
    assert series_of(scrape(collector), gone)
    collector.configure([kept])
    samples = scrape(collector)
    assert series_of(samples, gone) == []
    assert series_of(samples, kept)


def test_report_of_a_registry_no_longer_configured_is_dropped() -> None:
    """A probe that finishes after its registry left the config adds nothing."""
    collector = collector_with()
    collector.configure(["kept.example.com"])
    collector.record(healthy_registry("gone.example.com"))
    assert series_of(scrape(collector), "gone.example.com") == []


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (
            RateLimit("anonymous", 100, 76, 21600, "203.0.113.7", True),
            {"limit": 100, "remaining": 76, "window_seconds": 21600, "headers_present": 1},
        ),
        (RateLimit("authenticated", None, None, None, None, False), {"headers_present": 0}),
        (
            RateLimit("anonymous", None, 3, None, None, True),
            {"remaining": 3, "headers_present": 1},
        ),
    ],
    ids=["full", "no-headers", "malformed-limit"],
)
def test_ratelimit_series(limit: RateLimit, expected: dict[str, float]) -> None:
    """Rate-limit gauges follow what the headers gave; no headers is an explicit 0, not absence."""
    report = RegistryReport("registry-1.docker.io", (), finished_at=FINISHED, ratelimits=(limit,))
    samples = scrape(collector_with(report))
    shown = {
        s.name.removeprefix("registry_probe_dockerhub_ratelimit_"): s.value
        for s in samples
        if s.name.startswith("registry_probe_dockerhub_ratelimit_") and not s.name.endswith("_info")
    }
    assert shown == expected
    assert all(
        s.labels["auth"] == limit.auth
        for s in samples
        if s.name.startswith("registry_probe_dockerhub")
    )
    sources = probe_samples(samples, "registry_probe_dockerhub_ratelimit_source_info")
    assert [s.labels["source"] for s in sources] == ([limit.source] if limit.source else [])


def test_proxy_routes_and_consistency() -> None:
    """Each runtime's route is a 1 with its route label; consistency 0 when runtimes disagree."""
    report = RegistryReport(
        "registry.example.com",
        (),
        finished_at=FINISHED,
        routes=(
            RuntimeRoute("containerd", "direct", None),
            RuntimeRoute("dockerd", "proxy", "http://user:***@proxy:3128"),
        ),
        proxy_consistent=False,
    )
    samples = scrape(collector_with(report))
    routes = {
        s.labels["runtime"]: s.labels["route"]
        for s in probe_samples(samples, "registry_probe_runtime_proxy_route")
    }
    assert routes == {"containerd": "direct", "dockerd": "proxy"}
    assert value(samples, "registry_probe_proxy_consistent") == 0
    assert "proxy:3128" not in render(build_registry(collector_with(report))).body.decode()


def test_build_info_and_config_reload_success() -> None:
    """build_info carries the version; config_last_reload_success follows the collector's flag."""
    collector = collector_with()
    assert value(scrape(collector), "registry_probe_build_info", version=__version__) == 1
    assert value(scrape(collector), "registry_probe_config_last_reload_success") == 1
    collector.config_reload_success = False
    assert value(scrape(collector), "registry_probe_config_last_reload_success") == 0


def test_process_metrics_on_own_registry_not_the_global_one() -> None:
    """Process and platform metrics are exported; the global client_python registry is untouched."""
    samples = scrape(collector_with())
    assert probe_samples(samples, "python_info")
    if Path("/proc/self/stat").exists():
        assert probe_samples(samples, "process_cpu_seconds_total")
    assert b"registry_probe_" not in generate_latest(REGISTRY)


def test_labels_only_from_the_bounded_set() -> None:
    """No metric of ours carries a label outside SPEC's bounded set."""
    collector = collector_with(healthy_registry(), docker_hub())
    collector.record(
        RegistryReport(
            "registry.example.com:5000",
            (failed("registry.example.com:5000", CheckKind.TLS, Reason.TLS_EXPIRED),),
            finished_at=FINISHED,
        )
    )
    for sample in scrape(collector):
        if sample.name.startswith("registry_probe_"):
            assert set(sample.labels) <= ALLOWED_LABELS, sample


def test_every_metric_family_is_declared_with_help() -> None:
    """Every SPEC metric is rendered with its HELP and TYPE, even before any probe."""
    text = render(build_registry(collector_with())).body.decode()
    for spec in METRICS:
        assert f"# HELP {spec.name} {spec.help}\n# TYPE {spec.name} {spec.type}\n" in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) not installed")
def test_promtool_finds_no_problem() -> None:
    """`promtool check metrics` accepts the scrape of healthy, failing and Docker Hub registries."""
    host = "failing.example.com"
    collector = collector_with(healthy_registry(), docker_hub())
    collector.configure(["registry.example.com:5000", "registry-1.docker.io", host])
    collector.record(
        RegistryReport(
            host,
            (failed(f"{host}:443", CheckKind.DNS, Reason.DNS_SERVFAIL, {"resolve": 5.0}),),
            finished_at=FINISHED,
        )
    )
    body = render(build_registry(collector)).body
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


def test_openmetrics_when_asked() -> None:
    """An OpenMetrics Accept header gets OpenMetrics: its content type and a final # EOF."""
    collector = collector_with(docker_hub())
    collector.record(
        RegistryReport(
            "registry-1.docker.io",
            (failed("auth.docker.io:443", CheckKind.TCP, Reason.TCP_REFUSED),),
            finished_at=FINISHED,
        )
    )
    exposition = render(
        build_registry(collector), "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
    )
    assert exposition.content_type.startswith("application/openmetrics-text")
    text = exposition.body.decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(text)}
    assert families["registry_probe_failures"].type == "counter"
    assert families["registry_probe_failures"].samples[0].value == 1
    plain = render(build_registry(collector), "text/plain;version=0.0.4")
    assert plain.content_type.startswith("text/plain")
    assert "# EOF" not in plain.body.decode()


def test_gzip_when_accepted() -> None:
    """The body is gzip-compressed when the scraper accepts gzip, and says so."""
    registry = build_registry(collector_with(healthy_registry()))
    exposition = render(registry, "", "gzip, deflate")
    assert exposition.content_encoding == "gzip"
    assert b"registry_probe_success" in gzip.decompress(exposition.body)


def test_series_budget_one_healthy_registry() -> None:
    """One healthy registry with one endpoint stays within SPEC's budget of 16 series."""
    samples = scrape(collector_with(healthy_registry()))
    count = len(series_of(samples, "registry.example.com:5000"))
    assert count == ONE_ENDPOINT_SERIES <= SERIES_BUDGET


def test_series_count_docker_hub() -> None:
    """Docker Hub (registry, auth and blob endpoints, anonymous rate limit) stays within 40."""
    samples = scrape(collector_with(docker_hub()))
    count = len(series_of(samples, "registry-1.docker.io"))
    assert count == DOCKER_HUB_SERIES <= DOCKER_HUB_BUDGET


def test_an_endpoint_without_http_has_no_processing_or_transfer() -> None:
    """No series is 0 by construction: the token and blob hosts have 3 phases, not 5."""
    samples = scrape(collector_with(docker_hub()))
    phases = {
        s.labels["phase"]
        for s in probe_samples(
            samples, "registry_probe_duration_seconds", endpoint="auth.docker.io:443"
        )
    }
    assert phases == {"resolve", "connect", "tls"}


def test_docs_document_every_metric_and_the_counts() -> None:
    """docs/metrics.md names every metric and states both series counts the tests pin."""
    text = DOCS.read_text()
    for spec in METRICS:
        assert re.search(rf"`{spec.name}`", text), spec.name
    assert f"**{ONE_ENDPOINT_SERIES}**" in text
    assert f"**{DOCKER_HUB_SERIES}**" in text


def image_report(name: str, reason: Reason | None, role: str = CONFIGURED) -> ImageReport:
    return ImageReport(
        image=name,
        reference=name,
        role=role,
        registry="registry.example.com",
        reason=reason,
        detail="",
        checks=(),
        finished_at=FINISHED,
    )


def test_image_series_per_configured_image() -> None:
    """Each checked image: pullable 1 or 0 with its role, and its reason as a failure series
    only while it fails."""
    collector = ProbeCollector()
    names = ("nginx:1.27", "team/app:2", "registry.k8s.io/pause:3.10")
    collector.configure_images(names)
    collector.record_image(image_report("nginx:1.27", None))
    collector.record_image(image_report("team/app:2", Reason.IMAGE_AUTH_MISSING))
    collector.record_image(
        image_report("registry.k8s.io/pause:3.10", Reason.TCP_TIMEOUT, role=SANDBOX)
    )
    samples = scrape(collector)
    pullable = {
        (s.labels["image"], s.labels["role"]): s.value
        for s in probe_samples(samples, "registry_probe_image_pullable")
    }
    assert pullable == {
        ("nginx:1.27", "configured"): 1.0,
        ("team/app:2", "configured"): 0.0,
        ("registry.k8s.io/pause:3.10", "sandbox"): 0.0,
    }
    failures = {
        (s.labels["image"], s.labels["reason"])
        for s in probe_samples(samples, "registry_probe_image_failure")
    }
    assert failures == {
        ("team/app:2", "image_auth_missing"),
        ("registry.k8s.io/pause:3.10", "tcp_timeout"),
    }
    for sample in samples:
        if sample.name.startswith("registry_probe_"):
            assert set(sample.labels) <= ALLOWED_LABELS, sample


def test_images_leaving_the_config_leave_no_series() -> None:
    """An image no longer configured (or a report for one never configured) is not rendered."""
    collector = ProbeCollector()
    collector.configure_images(["nginx:1.27", "old:1"])
    collector.record_image(image_report("old:1", Reason.IMAGE_NOT_FOUND))
    collector.record_image(image_report("nginx:1.27", None))
    collector.configure_images(["nginx:1.27"])
    collector.record_image(image_report("stranger:1", None))
    samples = scrape(collector)
    assert [s.labels["image"] for s in probe_samples(samples, "registry_probe_image_pullable")] == [
        "nginx:1.27"
    ]
    assert probe_samples(samples, "registry_probe_image_failure") == []
