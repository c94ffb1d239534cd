"""Frozen values that the engine produces and every view (text, JSON, metrics) renders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from probe.config import HostPort
from probe.reasons import ROOT_CAUSE, CheckKind, Reason


@dataclass(frozen=True)
class CertFacts:
    """What the served chain says, read even when verification fails."""

    not_after: float  # earliest notAfter in the chain, Unix seconds
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

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def first_failure(self) -> CheckResult | None:
        return next((c for c in self.checks if not c.ok), None)

    @property
    def root_cause(self) -> int | None:
        failure = self.first_failure
        if failure is None or failure.reason is None:
            return None
        return ROOT_CAUSE[failure.reason]

    def endpoints(self) -> tuple[HostPort, ...]:
        """Endpoints in the order they were checked, each once."""
        return tuple(dict.fromkeys(c.endpoint for c in self.checks))
