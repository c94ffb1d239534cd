"""Every metric the agent exports: names, HELP texts, and the collector that renders them.

Contract: SPEC.md, "Metrics". The collector follows client_python's custom-collector pattern:
`collect()` builds the metric families from the latest `RegistryReport` of each configured
registry at scrape time, so a registry removed from the config leaves no stale series, and a
scrape never waits on a probe (it only reads what the last probes left behind).

Labels come only from SPEC's bounded set (registry, endpoint, check, reason, phase, runtime,
route, state, auth, plus `source` on the rate-limit info metric and `version` on build_info):
no IP per request, no error text, no username. The one thing kept across reports, the
`failures_total` counters, is kept per endpoint only while probe.views.retention remembers the
endpoint: a registry that names a new token realm host on every probe cannot grow the series.
"""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from probe import __version__
from probe.images.result import ImageReport
from probe.node.problems import NodeProblem
from probe.reasons import PHASES, CheckKind
from probe.result import CheckResult, RegistryReport
from probe.views.retention import EndpointRetention

PREFIX = "registry_probe_"


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric family: its full name (counters with `_total`), type, labels and HELP."""

    name: str
    type: str  # "gauge" or "counter"
    labels: tuple[str, ...]
    help: str


def _spec(name: str, type_: str, labels: tuple[str, ...], help_: str) -> MetricSpec:
    # Full names are written out below so a metric from a dashboard greps to its definition.
    if not name.startswith(PREFIX):
        raise ValueError(f"{name} lacks the {PREFIX} prefix")
    return MetricSpec(name, type_, labels, help_)


SUCCESS = _spec(
    "registry_probe_success",
    "gauge",
    ("registry", "endpoint", "check"),
    "1 when the check passed on its last run, 0 when it failed.",
)
FAILURE = _spec(
    "registry_probe_failure",
    "gauge",
    ("registry", "endpoint", "check", "reason"),
    "1 while the check fails for this reason; absent otherwise.",
)
FAILURES_TOTAL = _spec(
    "registry_probe_failures_total",
    "counter",
    ("registry", "endpoint", "check", "reason"),
    "Failed runs of the check, by reason, since the agent started.",
)
DURATION = _spec(
    "registry_probe_duration_seconds",
    "gauge",
    ("registry", "endpoint", "phase"),
    "Duration of each phase of the last run (resolve, connect, tls, processing, transfer); "
    "0 when the phase was skipped.",
)
ENDPOINT_ADDRESSES = _spec(
    "registry_probe_endpoint_addresses",
    "gauge",
    ("registry", "endpoint", "state"),
    "Resolved addresses of the endpoint that answered (state=ok) or failed (state=failed) "
    "on the last run.",
)
LAST_RUN = _spec(
    "registry_probe_last_run_timestamp_seconds",
    "gauge",
    ("registry",),
    "When the registry's checks last completed, Unix seconds.",
)
CERT_EXPIRY = _spec(
    "registry_probe_tls_cert_expiry_timestamp_seconds",
    "gauge",
    ("registry", "endpoint"),
    "Earliest notAfter in the served certificate chain, Unix seconds; "
    "reported even when verification fails.",
)
RATELIMIT_LIMIT = _spec(
    "registry_probe_dockerhub_ratelimit_limit",
    "gauge",
    ("registry", "auth"),
    "Pulls Docker Hub allows per window (ratelimit-limit header).",
)
RATELIMIT_REMAINING = _spec(
    "registry_probe_dockerhub_ratelimit_remaining",
    "gauge",
    ("registry", "auth"),
    "Pulls left in the current Docker Hub window (ratelimit-remaining header).",
)
RATELIMIT_WINDOW = _spec(
    "registry_probe_dockerhub_ratelimit_window_seconds",
    "gauge",
    ("registry", "auth"),
    "Length of the Docker Hub rate-limit window (the w= of the ratelimit headers).",
)
RATELIMIT_HEADERS_PRESENT = _spec(
    "registry_probe_dockerhub_ratelimit_headers_present",
    "gauge",
    ("registry", "auth"),
    "1 when Docker Hub sent rate-limit headers, 0 when it sent none (unlimited plan).",
)
RATELIMIT_SOURCE = _spec(
    "registry_probe_dockerhub_ratelimit_source_info",
    "gauge",
    ("registry", "auth", "source"),
    "1; source is what Docker Hub counts pulls against (egress IPv4, IPv6 /64 or account).",
)
RUNTIME_PROXY_ROUTE = _spec(
    "registry_probe_runtime_proxy_route",
    "gauge",
    ("runtime", "registry", "route"),
    "1 for the route (direct or proxy) that the container runtime takes to the registry.",
)
PROXY_CONSISTENT = _spec(
    "registry_probe_proxy_consistent",
    "gauge",
    ("registry",),
    "1 when every runtime found takes the same route through the same proxy, 0 otherwise.",
)
PULLABLE = _spec(
    "registry_probe_pullable",
    "gauge",
    ("registry",),
    "1 when a pull would succeed by the order the node's runtime tries the registry's hosts "
    "(mirrors, then the registry): some host that resolves tags passes every check.",
)
MIRROR_UP = _spec(
    "registry_probe_mirror_up",
    "gauge",
    ("registry", "endpoint"),
    "1 when the mirror (a host the runtime tries before the registry itself) passes every "
    "check, 0 when pulls wait for it to fail; only for registries with mirrors.",
)
NODE_CONFIG_PROBLEMS = _spec(
    "registry_probe_node_config_problems",
    "gauge",
    ("runtime",),
    "Problems in the node's configuration files that a runtime cannot use as written "
    "(runtime=system for files every runtime reads); absent while there are none. "
    "`registry-probe check` names each file, line and effect.",
)
IMAGE_PULLABLE = _spec(
    "registry_probe_image_pullable",
    "gauge",
    ("image", "role"),
    "1 when the node's runtime would pull the image (its manifest resolves on a host of the "
    "registry's pull plan, with the credentials the kubelet would offer), 0 when not; for the "
    "config's images (role=configured) and the node's sandbox image (role=sandbox).",
)
IMAGE_FAILURE = _spec(
    "registry_probe_image_failure",
    "gauge",
    ("image", "role", "reason"),
    "1 while the image would not pull for this reason (image_not_found, image_auth_missing, "
    "auth_failed, image_access_denied, image_platform_missing, rate_limited or a network "
    "reason); absent otherwise.",
)
CONFIG_RELOAD = _spec(
    "registry_probe_config_last_reload_success",
    "gauge",
    (),
    "1 when the last configuration (re)load succeeded, 0 when the last SIGHUP brought "
    "a bad configuration and the previous one was kept.",
)
BUILD_INFO = _spec(
    "registry_probe_build_info",
    "gauge",
    ("version",),
    "1; the version of registry-probe that is running.",
)

# In SPEC.md's order; docs/metrics.md documents each of these.
METRICS: tuple[MetricSpec, ...] = (
    SUCCESS,
    FAILURE,
    FAILURES_TOTAL,
    DURATION,
    ENDPOINT_ADDRESSES,
    LAST_RUN,
    CERT_EXPIRY,
    RATELIMIT_LIMIT,
    RATELIMIT_REMAINING,
    RATELIMIT_WINDOW,
    RATELIMIT_HEADERS_PRESENT,
    RATELIMIT_SOURCE,
    RUNTIME_PROXY_ROUTE,
    PROXY_CONSISTENT,
    PULLABLE,
    MIRROR_UP,
    NODE_CONFIG_PROBLEMS,
    IMAGE_PULLABLE,
    IMAGE_FAILURE,
    CONFIG_RELOAD,
    BUILD_INFO,
)

# The checks whose phase timings make up an endpoint's duration_seconds: the path a pull takes.
# The ratelimit check's token and manifest requests would otherwise be added to the registry's
# processing time.
_PULL_PATH = (CheckKind.DNS, CheckKind.TCP, CheckKind.TLS, CheckKind.HTTP, CheckKind.PROXY)

FailureKey = tuple[str, str, str, str]  # registry, endpoint, check, reason


def _family(spec: MetricSpec) -> GaugeMetricFamily | CounterMetricFamily:
    if spec.type == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def endpoint_phases(
    checks: Iterable[CheckResult], names: Iterable[str] = PHASES
) -> dict[str, float]:
    """Every phase the endpoint's checks can run (`names`), 0 when none measured it this run.

    Each phase is measured by one check (resolve by dns, connect by tcp, ...); when two report
    the same phase, the first in check order wins.
    """
    phases = dict.fromkeys(names, 0.0)
    seen: set[str] = set()
    for result in checks:
        if result.check not in _PULL_PATH:
            continue
        for phase, seconds in result.phases.items():
            if phase in phases and phase not in seen:
                phases[phase] = seconds
                seen.add(phase)
    return phases


def address_states(checks: list[CheckResult]) -> tuple[int, int]:
    """(answered, failed) addresses of one endpoint over its whole pipeline.

    Every resolved address gets one connection carrying tcp (or the proxy tunnel), tls and http,
    and stops at its first failure: so the failed addresses are the sum over the stages, and
    the ones that answered are those the first stage passed, less those a later stage failed.
    """
    stages = [c for c in checks if c.check not in (CheckKind.DNS, CheckKind.RATELIMIT)]
    if not stages:
        return 0, 0
    failed = sum(c.addresses_failed for c in stages)
    later_failed = sum(c.addresses_failed for c in stages[1:])
    return max(stages[0].addresses_ok - later_failed, 0), failed


class ProbeCollector(Collector):
    """Renders the latest report of every configured registry, at scrape time.

    All methods run on the agent's event loop thread; `collect()` also runs on it (the HTTP
    server renders there), so no lock is needed. `collect()` reads the current dicts and never
    awaits, so a scrape sees one consistent state.

    The failure counters of an endpoint go when `retention` forgets it (gone from the
    registry's recent reports, or one absent endpoint too many).
    """

    def __init__(
        self, version: str = __version__, retention: EndpointRetention | None = None
    ) -> None:
        self._version = version
        self._reports: dict[str, RegistryReport] = {}
        self._failures: dict[FailureKey, int] = {}
        self._configured: frozenset[str] = frozenset()
        self._retention = retention if retention is not None else EndpointRetention()
        self.config_reload_success = True
        self.node_problems: tuple[NodeProblem, ...] = ()  # set by the agent when they change
        self._images: dict[str, ImageReport] = {}
        self._configured_images: frozenset[str] = frozenset()

    def configure(self, registries: Iterable[str]) -> None:
        """Set the registries of the current config; every series of any other one disappears."""
        self._configured = frozenset(registries)
        self._reports = {r: rep for r, rep in self._reports.items() if r in self._configured}
        self._failures = {k: n for k, n in self._failures.items() if k[0] in self._configured}
        self._retention.retain(self._configured)

    def record(self, report: RegistryReport) -> None:
        """Keep the report as the registry's latest, count its failed checks, and drop the
        counters of the endpoints the registry no longer names."""
        if report.registry not in self._configured:
            return  # a probe that finished after its registry left the config
        self._reports[report.registry] = report
        for result in report.checks:
            if result.reason is not None:
                key = (
                    report.registry,
                    result.endpoint.label,
                    str(result.check),
                    str(result.reason),
                )
                self._failures[key] = self._failures.get(key, 0) + 1
        forgotten = self._retention.observe(report)
        if forgotten:
            self._failures = {
                key: count
                for key, count in self._failures.items()
                if key[0] != report.registry or key[1] not in forgotten
            }

    def reports(self) -> Mapping[str, RegistryReport]:
        return dict(self._reports)

    def configure_images(self, images: Iterable[str]) -> None:
        """Set the images checked now (config and sandbox); any other one's series disappear.
        Images come from the config and the runtime's config only, never from what runs on
        the node, so their series are bounded by configuration."""
        self._configured_images = frozenset(images)
        self._images = {i: r for i, r in self._images.items() if i in self._configured_images}

    def record_image(self, report: ImageReport) -> None:
        """Keep the image's latest report."""
        if report.image in self._configured_images:
            self._images[report.image] = report

    def images(self) -> Mapping[str, ImageReport]:
        return dict(self._images)

    def collect(self) -> Iterator[Metric]:
        families = {spec: _family(spec) for spec in METRICS}
        for report in self._reports.values():
            self._render_report(report, families)
        for (registry, endpoint, check, reason), count in sorted(self._failures.items()):
            families[FAILURES_TOTAL].add_metric([registry, endpoint, check, reason], count)
        for image in self._images.values():
            labels = [image.image, image.role]
            families[IMAGE_PULLABLE].add_metric(labels, 1.0 if image.ok else 0.0)
            if image.reason is not None:
                families[IMAGE_FAILURE].add_metric([*labels, str(image.reason)], 1.0)
        counts = Counter(p.runtime for p in self.node_problems)
        for runtime, count in sorted(counts.items()):
            families[NODE_CONFIG_PROBLEMS].add_metric([runtime], count)
        families[CONFIG_RELOAD].add_metric([], 1.0 if self.config_reload_success else 0.0)
        families[BUILD_INFO].add_metric([self._version], 1.0)
        yield from families.values()

    @staticmethod
    def _render_report(
        report: RegistryReport,
        families: Mapping[MetricSpec, GaugeMetricFamily | CounterMetricFamily],
    ) -> None:
        registry = report.registry
        for result in report.checks:
            labels = [registry, result.endpoint.label, str(result.check)]
            families[SUCCESS].add_metric(labels, 1.0 if result.ok else 0.0)
            if result.reason is not None:
                families[FAILURE].add_metric([*labels, str(result.reason)], 1.0)
        for address in report.endpoints():
            endpoint = address.label
            checks = [c for c in report.checks if c.endpoint == address]
            names = report.endpoint_phases.get(address, PHASES)
            for phase, seconds in endpoint_phases(checks, names).items():
                families[DURATION].add_metric([registry, endpoint, phase], seconds)
            ok, failed = address_states(checks)
            families[ENDPOINT_ADDRESSES].add_metric([registry, endpoint, "ok"], ok)
            families[ENDPOINT_ADDRESSES].add_metric([registry, endpoint, "failed"], failed)
            cert = next((c.cert for c in checks if c.cert is not None), None)
            if cert is not None and cert.not_after is not None:
                families[CERT_EXPIRY].add_metric([registry, endpoint], cert.not_after)
        families[LAST_RUN].add_metric([registry], report.finished_at)
        for account in report.ratelimits:
            labels = [registry, account.auth]
            families[RATELIMIT_HEADERS_PRESENT].add_metric(
                labels, 1.0 if account.headers_present else 0.0
            )
            for spec, value in (
                (RATELIMIT_LIMIT, account.limit),
                (RATELIMIT_REMAINING, account.remaining),
                (RATELIMIT_WINDOW, account.window_seconds),
            ):
                if value is not None:
                    families[spec].add_metric(labels, value)
            if account.source:
                families[RATELIMIT_SOURCE].add_metric([*labels, account.source], 1.0)
        for route in report.routes:
            families[RUNTIME_PROXY_ROUTE].add_metric([route.runtime, registry, route.route], 1.0)
        if report.proxy_consistent is not None:
            families[PROXY_CONSISTENT].add_metric(
                [registry], 1.0 if report.proxy_consistent else 0.0
            )
        if report.pullable is not None:
            families[PULLABLE].add_metric([registry], 1.0 if report.pullable else 0.0)
        for host in report.hosts:
            if host.role == "mirror":
                labels = [registry, host.endpoint.label]
                families[MIRROR_UP].add_metric(labels, 1.0 if host.usable else 0.0)


def build_registry(collector: ProbeCollector) -> CollectorRegistry:
    """The agent's own registry: its collector plus process and platform metrics.

    Never the global `prometheus_client.REGISTRY`, so tests and embedders get a clean one.
    """
    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


@dataclass(frozen=True)
class Exposition:
    body: bytes
    content_type: str
    content_encoding: str | None


def render(registry: CollectorRegistry, accept: str = "", accept_encoding: str = "") -> Exposition:
    """The /metrics body: OpenMetrics when the Accept header asks for it, else Prometheus text.

    Compressed with gzip when the scraper accepts it, as client_python's own server does.
    """
    encoder, content_type = choose_encoder(accept)
    body = encoder(registry)
    if gzip_accepted(accept_encoding):
        return Exposition(gzip.compress(body), content_type, "gzip")
    return Exposition(body, content_type, None)
