"""The checks: one module per kind, one signature for all.

Each check is `async def run(probe: Probe) -> Outcome`: it reads what the earlier phases of the
same address left on the `Probe` (the resolved addresses, the open connection), does one phase,
and returns an `Outcome` carrying exactly one reason when it fails. Deadlines come from the
caller's `asyncio.timeout()`; a check never sets its own. Checks never touch metrics.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from probe import __version__
from probe.checks.connection import Connection
from probe.config import HostPort
from probe.node.goproxy import ProxyURL
from probe.node.resolver import NodeResolver
from probe.reasons import CheckKind, Reason
from probe.result import CertFacts

USER_AGENT = f"registry-probe/{__version__}"


@dataclass(frozen=True)
class Endpoint:
    """A host:port a pull needs: the registry itself, its token realm, or a blob host."""

    host: str  # an IPv6 address without brackets
    port: int
    role: str  # "registry", "auth", "blob" or "proxy"
    tls: bool = True
    api_root: str = "/v2"  # a registry's API root: a mirror's may sit under a path

    @classmethod
    def of(
        cls, address: HostPort, role: str, *, tls: bool = True, api_root: str = "/v2"
    ) -> Endpoint:
        return cls(address.host, address.port or (443 if tls else 80), role, tls, api_root)

    @property
    def address(self) -> HostPort:
        return HostPort(self.host, self.port)

    @property
    def name(self) -> str:
        """`host:port` (IPv6 in brackets): the `endpoint` label."""
        return self.address.label

    @property
    def phases(self) -> tuple[str, ...]:
        """The phases its checks can run: a pull's path through this endpoint."""
        tls = ("tls",) if self.tls else ()
        http = ("processing", "transfer") if self.role == "registry" else ()
        return ("resolve", "connect", *tls, *http)

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        return self.address.bracketed if self.port == default else self.name


@dataclass
class Probe:
    """What one endpoint's phases pass to each other (one per address after dns)."""

    endpoint: Endpoint
    resolver: NodeResolver  # the node's hosts file and resolv.conf
    ssl_context: ssl.SSLContext | None = None
    address: str | None = None
    connection: Connection | None = None
    proxy: ProxyURL | None = None  # the runtime's proxy for this endpoint; None: direct


@dataclass(frozen=True)
class Outcome:
    """The result of one phase on one address (or of dns for the endpoint): passed when it has
    no reason, failed for exactly the one it has."""

    reason: Reason | None = None
    detail: str = ""
    phases: Mapping[str, float] = field(default_factory=dict)
    addresses: tuple[str, ...] = ()  # dns: what the node's resolvers answered
    cert: CertFacts | None = None  # tls: read even when verification fails
    realm: str | None = None  # http: the token realm URL from WWW-Authenticate
    status: int | None = None  # http: the status of the answer, when there was one

    @property
    def ok(self) -> bool:
        return self.reason is None

    @classmethod
    def failed(cls, reason: Reason, detail: str, **facts: object) -> Outcome:
        return cls(reason, detail, **facts)  # type: ignore[arg-type]


CheckFn = Callable[[Probe], Awaitable[Outcome]]


def check_functions() -> dict[CheckKind, CheckFn]:
    """The map from kind to function, as blackbox_exporter's prober table."""
    from probe.checks import dns, http, proxy, tcp, tls

    return {
        CheckKind.DNS: dns.run,
        CheckKind.TCP: tcp.run,
        CheckKind.PROXY: proxy.run,
        CheckKind.TLS: tls.run,
        CheckKind.HTTP: http.run,
    }
