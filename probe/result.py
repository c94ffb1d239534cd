"""Frozen values that the engine produces and every view (text, JSON, metrics) renders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from probe.config import HostPort
from probe.reasons import ROOT_CAUSE, CheckKind, Reason


@dataclass(frozen=True)
class CertFacts:
    """What the served chain says, read even when verification fails."""

    not_after: float | None  # earliest notAfter in the chain, Unix seconds; None: unreadable
    issuer: str  # issuer of the leaf certificate, as "CN=..., O=..."
    subject: str
    tls_version: str  # e.g. "TLSv1.3"


@dataclass(frozen=True)
class CheckResult:
    """One check of one endpoint: passed, or failed for exactly one reason."""

    endpoint: HostPort  # the host and port actually checked
    check: CheckKind
    ok: bool
    reason: Reason | None
    detail: str
    phases: Mapping[str, float] = field(default_factory=dict)  # phase -> seconds
    addresses_ok: int = 0  # resolved addresses that passed this check
    addresses_failed: int = 0
    cert: CertFacts | None = None
    status: int | None = None  # http: the status the endpoint answered (the first failure's)

    def __post_init__(self) -> None:
        if self.ok != (self.reason is None):
            raise ValueError("a passed check has no reason and a failed check has exactly one")


@dataclass(frozen=True)
class RateLimit:
    """Docker Hub's pull budget for one account, as its ratelimit-* headers tell it."""

    auth: str  # "anonymous" or "authenticated"
    limit: int | None
    remaining: int | None
    window_seconds: int | None
    source: str | None
    headers_present: bool


@dataclass(frozen=True)
class RuntimeRoute:
    """How one container runtime reaches a registry: direct, or through a proxy (shown redacted)."""

    runtime: str
    route: str  # "direct" or "proxy"
    proxy: str | None  # redacted URL, never with its password
    process: str | None = None  # "pid 812 (/usr/bin/containerd)": the live environment read


# Failures that do not stop a host from serving pulls: the runtimes disagree, or one must be
# restarted. They still make the registry's verdict a failure, since a restart changes it.
ADVISORY_REASONS = frozenset({Reason.PROXY_MISMATCH, Reason.PROXY_RESTART_PENDING})


@dataclass(frozen=True)
class HostResult:
    """One host of a registry, in the order the node's runtime tries it, and how it did."""

    endpoint: HostPort  # host:port, as its checks name it
    url: str  # the API root the runtime requests: https://mirror.example:5000/v2
    role: str  # "mirror" or "registry" (the registry's own server)
    source: str  # the file that names it, or "default"
    resolves: bool  # may resolve a tag (containerd's `resolve` capability)
    usable: bool  # every check of its endpoints passed (advisories aside)
    reason: Reason | None = None  # the first failure's, when not usable
    skip_verify: bool = False  # its certificate is not verified: said in every view
    # Its API root answered 404: containerd moves on to the next host without keeping that as
    # the pull's error (resolver.go: the first error that is not a 404 is the one reported).
    not_found: bool = False


@dataclass(frozen=True)
class RegistryReport:
    """Everything one run learned about one registry."""

    registry: str  # as configured: host[:port]
    checks: tuple[CheckResult, ...]
    finished_at: float  # Unix seconds
    ratelimits: tuple[RateLimit, ...] = ()
    routes: tuple[RuntimeRoute, ...] = ()
    proxy_consistent: bool | None = None  # None unless two runtimes or more were found
    # The phases each endpoint's checks can run (an endpoint without an http check has no
    # processing or transfer); an endpoint missing here has all of PHASES.
    endpoint_phases: Mapping[HostPort, tuple[str, ...]] = field(default_factory=dict)
    hosts: tuple[HostResult, ...] = ()  # in the runtime's order: mirrors, then the registry
    # Whether a pull would succeed by that order: some host that resolves tags is usable.
    # None for a report that does not know (built without a plan): every check must pass.
    pullable: bool | None = None
    served_by: HostPort | None = None  # the first usable host that resolves tags
    rule: str = ""  # which of the runtime's rules gave the hosts, in words
    warnings: tuple[str, ...] = ()  # what slows or limits pulls without failing them

    @property
    def ok(self) -> bool:
        return self.first_failure is None

    @property
    def first_failure(self) -> CheckResult | None:
        """The failure that stops or changes pulls: on the host that serves them, an advisory
        (mismatch, restart pending), or, when no host serves, the first in the runtime's order.
        A host failing ahead of or behind the serving one is a warning, not a failure."""
        failed = [c for c in self.checks if not c.ok]
        if not failed:
            return None
        if self.pullable is None:
            return failed[0]
        if not self.pullable:
            skipped = {h.endpoint for h in self.hosts if h.not_found}
            return next((c for c in failed if c.endpoint not in skipped), failed[0])
        return next(
            (c for c in failed if c.endpoint == self.served_by or c.reason in ADVISORY_REASONS),
            None,
        )

    @property
    def root_cause(self) -> int | None:
        failure = self.first_failure
        if failure is None or failure.reason is None:
            return None
        return ROOT_CAUSE[failure.reason]

    def endpoints(self) -> tuple[HostPort, ...]:
        """Endpoints in the order they were checked, each once."""
        return tuple(dict.fromkeys(c.endpoint for c in self.checks))
