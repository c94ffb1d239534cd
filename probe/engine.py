"""The engine: every check of a registry, as the node's runtime would pull from it.

One engine, three views: `check` renders its reports as text or JSON, `run` renders them as
metrics. For each endpoint of a registry (the registry host, its token realm host, its blob
hosts) `dns` runs once with the node's resolvers, then every resolved address gets one
connection that carries `tcp`, `tls` and (for the registry) `http`, as a pull does. A phase that
fails ends that address; the checks after it are not run.

Deadlines come from here: each check runs under `asyncio.timeout(config.timeout)`, and a
timeout becomes the check's own timeout reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from probe.checks import CheckFn, Endpoint, Outcome, Probe, check_functions
from probe.checks.client import NodeClient
from probe.config import DOCKER_HUB, Config, RegistryConfig
from probe.dockerhub.ratelimit import DockerHubRateLimit
from probe.node.discovery import discover
from probe.node.goproxy import ProxyURL
from probe.node.hostfs import host_path, read_host_text
from probe.node.routes import NodeRoutes, read_node_routes
from probe.node.runtimes import Route, consistent
from probe.node.trust import (
    CA_BUNDLES,
    CA_DIRECTORIES,
    HOSTS_FILE,
    RESOLV_CONF,
    TrustSources,
    build_ssl_context,
    containerd_ca_files,
    read_node_trust,
)
from probe.reasons import PHASES, CheckKind, Reason
from probe.result import CheckResult, RateLimit, RegistryReport

# Each check's phase, and the reason and words (kubelet's, where it has them) for its timeout.
_PHASE = {
    CheckKind.DNS: "resolve",
    CheckKind.TCP: "connect",
    CheckKind.PROXY: "connect",
    CheckKind.TLS: "tls",
}
_TIMEOUT: dict[CheckKind, tuple[Reason, str]] = {
    CheckKind.DNS: (Reason.DNS_TIMEOUT, "lookup {host}: i/o timeout (no resolver answered)"),
    CheckKind.TCP: (Reason.TCP_TIMEOUT, "dial tcp {address}: i/o timeout (SYN unanswered)"),
    CheckKind.PROXY: (
        Reason.PROXY_UNREACHABLE,
        "proxyconnect tcp: i/o timeout (the proxy did not answer or tunnel)",
    ),
    CheckKind.TLS: (Reason.TLS_HANDSHAKE_TIMEOUT, "net/http: TLS handshake timeout"),
    CheckKind.HTTP: (
        Reason.HTTP_TIMEOUT,
        "GET /v2/: connected, but no HTTP answer (Client.Timeout exceeded while awaiting headers)",
    ),
}


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` → (host, port)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, int(port)
    return value, default_port


def node_name(host_root: str) -> str:
    """The node's name: the downward API's NODE_NAME, else the node's hostname."""
    name = os.environ.get("NODE_NAME", "").strip()
    if name:
        return name
    text = read_host_text(host_root, "/etc/hostname")
    if text and text.strip():
        return text.strip()
    return socket.gethostname()


@dataclass(frozen=True)
class _AddressRun:
    address: str
    outcomes: tuple[tuple[CheckKind, Outcome], ...]


class Engine:
    """Probes registries as the node under `config.host_root` would reach them."""

    def __init__(self, config: Config, checks: dict[CheckKind, CheckFn] | None = None) -> None:
        self.config = config
        self._checks = checks if checks is not None else check_functions()
        self._trust: tuple[tuple[object, ...], TrustSources] | None = None
        self._contexts: dict[tuple[object, ...], ssl.SSLContext] = {}
        hub = config.dockerhub
        credentials = hub.credentials_file or next(
            (r.credentials_file for r in config.registries if r.is_docker_hub), None
        )
        # One reader for every Docker Hub alias: the per-account budget is Docker Hub's, not
        # a registry entry's.
        self._ratelimit = DockerHubRateLimit(hub.ratelimit_interval, credentials, config.timeout)

    def registries(self) -> tuple[RegistryConfig, ...]:
        """What to probe: the configured registries (Docker Hub when none is named), then the
        registries and mirrors the node's runtimes are configured for, unless discovery is off.
        """
        named = self.config.registries or (RegistryConfig(host=DOCKER_HUB, source="default"),)
        if not self.config.discover:
            return named
        seen = {(r.scheme, r.api_host) for r in named}
        found: list[RegistryConfig] = []
        for discovered in discover(self.config.host_root).registries:
            registry = RegistryConfig(
                host=discovered.host,
                scheme=discovered.scheme,
                insecure_skip_verify=discovered.skip_verify,
                node_ca_files=discovered.ca_files,
                source=f"discovered in {discovered.source}" if discovered.source else "discovered",
            )
            key = (registry.scheme, registry.api_host)
            if key not in seen:
                seen.add(key)
                found.append(registry)
        return named + tuple(found)

    @property
    def node(self) -> str:
        return node_name(self.config.host_root)

    async def probe_all(self) -> list[RegistryReport]:
        """Every registry once, concurrently; reports in the registries' order."""
        registries = self.registries()
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.probe_registry(r)) for r in registries]
        return [task.result() for task in tasks]

    async def probe_registry(self, registry: RegistryConfig) -> RegistryReport:
        tls = registry.scheme == "https"
        host, port = split_host_port(registry.api_host, 443 if tls else 80)
        main = Endpoint(host, port, "registry", tls=tls)
        try:
            context = self._ssl_context(registry) if tls else None
        except (OSError, ssl.SSLError) as error:
            return self._trust_failure(registry, main, error)
        routes = read_node_routes(self.config.host_root, self.config.runtimes)
        blobs = [Endpoint(*split_host_port(b, 443), "blob") for b in registry.effective_blob_hosts]
        async with asyncio.TaskGroup() as group:
            main_task = group.create_task(self._probe_endpoint(main, context, routes))
            blob_tasks = [
                group.create_task(self._probe_endpoint(b, context, routes)) for b in blobs
            ]
        checks = list(main_task.result())
        realm = next((c.realm for c in checks if c.realm), None)
        auth = _realm_endpoint(realm) if realm else None
        checked = {main.name, *(b.name for b in blobs)}
        others: list[_Check] = []
        if auth is not None and auth.name not in checked:
            auth_context = context if auth.tls else None
            others = await self._probe_endpoint(auth, auth_context, routes)
        for task in blob_tasks:
            others.extend(task.result())
        results = [c.result for c in checks]
        reachable = all(r.ok for r in results)
        target = registry.api_host if tls else f"http://{registry.api_host}"
        runtime_routes = routes.routes(target)
        if routes.configs:
            results = _with_route_verdict(results, main, routes, runtime_routes)
        results += [c.result for c in others]
        limits: tuple[RateLimit, ...] = ()
        if registry.is_docker_hub and context is not None and reachable:
            client = NodeClient(self._resolv_conf(), self._hosts_file(), context, routes)
            read = await self._ratelimit.check(client, main.name)
            if read is not None:
                results.append(read[0])
                limits = read[1]
        return RegistryReport(
            registry=registry.host,
            checks=tuple(results),
            finished_at=time.time(),
            ratelimits=limits,
            routes=tuple(r.to_result() for r in runtime_routes),
            proxy_consistent=consistent(runtime_routes) if routes.configs else None,
        )

    def _resolv_conf(self) -> str:
        return str(host_path(self.config.host_root, RESOLV_CONF))

    def _hosts_file(self) -> str:
        return str(host_path(self.config.host_root, HOSTS_FILE))

    async def _probe_endpoint(
        self, endpoint: Endpoint, context: ssl.SSLContext | None, routes: NodeRoutes
    ) -> list[_Check]:
        proxy = routes.proxy_for(endpoint)
        tail = [CheckKind.TLS] if endpoint.tls else []
        if endpoint.role == "registry":
            tail.append(CheckKind.HTTP)
        if proxy is not None:
            # Through a proxy the node neither resolves nor dials the endpoint: the proxy does.
            run = await self._probe_address(endpoint, context, "", [CheckKind.PROXY, *tail], proxy)
            return [_Check.of(endpoint, kind, [("", outcome)]) for kind, outcome in run.outcomes]
        probe = Probe(
            endpoint=endpoint,
            resolv_conf=self._resolv_conf(),
            hosts_file=self._hosts_file(),
            ssl_context=context,
        )
        resolved = await self._run(CheckKind.DNS, probe)
        checks = [_Check.of(endpoint, CheckKind.DNS, [("", resolved)])]
        if not resolved.ok:
            return checks
        kinds = [CheckKind.TCP, *tail]
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._probe_address(endpoint, context, address, kinds))
                for address in resolved.addresses
            ]
        runs = [task.result() for task in tasks]
        for kind in kinds:
            outcomes = [(r.address, o) for r in runs for k, o in r.outcomes if k == kind]
            if outcomes:
                checks.append(_Check.of(endpoint, kind, outcomes))
        return checks

    async def _probe_address(
        self,
        endpoint: Endpoint,
        context: ssl.SSLContext | None,
        address: str,
        kinds: Sequence[CheckKind],
        proxy: ProxyURL | None = None,
    ) -> _AddressRun:
        probe = Probe(
            endpoint=endpoint,
            resolv_conf=self._resolv_conf(),
            hosts_file=self._hosts_file(),
            ssl_context=context,
            address=address or None,
            proxy=proxy,
        )
        outcomes: list[tuple[CheckKind, Outcome]] = []
        try:
            for kind in kinds:
                outcome = await self._run(kind, probe)
                outcomes.append((kind, outcome))
                if not outcome.ok or probe.connection is None:
                    break  # failed, or a proxy this probe cannot speak: nothing to go on with
        finally:
            if probe.connection is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await probe.connection.aclose()
        return _AddressRun(address, tuple(outcomes))

    async def _run(self, kind: CheckKind, probe: Probe) -> Outcome:
        """One check under the deadline; its timeout becomes that check's reason."""
        timeout = self.config.timeout
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                return await self._checks[kind](probe)
        except TimeoutError:
            reason, words = _TIMEOUT[kind]
            address = probe.address or ""
            target = f"[{address}]" if ":" in address else address
            detail = words.format(
                host=probe.endpoint.host, address=f"{target}:{probe.endpoint.port}"
            )
            elapsed = time.perf_counter() - started
            phases = {"processing": elapsed} if kind == CheckKind.HTTP else {_PHASE[kind]: elapsed}
            return Outcome.failed(reason, f"{detail}, after {timeout:g}s", phases=phases)

    def _ssl_context(self, registry: RegistryConfig) -> ssl.SSLContext:
        """The node's trust plus the registry's own CAs, rebuilt only when a file changed."""
        root = self.config.host_root
        trust_key = _files_key(root, (*CA_BUNDLES, *CA_DIRECTORIES))
        if self._trust is None or self._trust[0] != trust_key:
            self._trust = (trust_key, read_node_trust(root))
            self._contexts.clear()
        extra: list[Path | str] = list(containerd_ca_files(root, registry.api_host))
        extra += [host_path(root, ca) for ca in registry.node_ca_files]
        if registry.ca_file:
            extra.append(registry.ca_file)
        key = (registry.host, registry.insecure_skip_verify, *_stat_key(extra))
        context = self._contexts.get(key)
        if context is None:
            context = build_ssl_context(self._trust[1], tuple(extra), registry.insecure_skip_verify)
            self._contexts[key] = context
        return context

    def _trust_failure(
        self, registry: RegistryConfig, endpoint: Endpoint, error: Exception
    ) -> RegistryReport:
        detail = f"cannot load the CA files for {registry.host}: {error}"
        result = CheckResult(
            endpoint=endpoint.name,
            check=CheckKind.TLS,
            ok=False,
            reason=Reason.TLS_UNKNOWN_AUTHORITY,
            detail=detail,
            phases=dict.fromkeys(PHASES, 0.0),
        )
        return RegistryReport(registry=registry.host, checks=(result,), finished_at=time.time())


@dataclass(frozen=True)
class _Check:
    result: CheckResult
    realm: str | None

    @classmethod
    def of(cls, endpoint: Endpoint, kind: CheckKind, outcomes: list[tuple[str, Outcome]]) -> _Check:
        return cls(
            aggregate(endpoint, kind, outcomes),
            next((o.realm for _, o in outcomes if o.realm), None),
        )


def aggregate(
    endpoint: Endpoint, kind: CheckKind, outcomes: list[tuple[str, Outcome]]
) -> CheckResult:
    """One check's result over every address it ran on: one bad address fails it.

    An IPv6 address the node has no route to does not fail the check while an IPv4 address
    passes: Go's dialer falls back to the other family, so pulls work.
    """
    ipv4_ok = any(o.ok and ":" not in a for a, o in outcomes)
    failed = [
        (a, o)
        for a, o in outcomes
        if not o.ok and not (ipv4_ok and ":" in a and o.reason == Reason.TCP_UNREACHABLE)
    ]
    passed = [(a, o) for a, o in outcomes if o.ok]
    phases: dict[str, float] = {}
    for _, outcome in outcomes:
        for phase, seconds in outcome.phases.items():
            phases[phase] = max(phases.get(phase, 0.0), seconds)
    cert = next((o.cert for _, o in failed + passed if o.cert is not None), None)
    many = len(outcomes) > 1
    if not failed:
        first = outcomes[0][1]
        detail = first.detail if not many else f"{len(outcomes)} addresses passed; {first.detail}"
        skipped = len(outcomes) - len(passed)
        if skipped:
            detail += (
                f" ({skipped} IPv6 address(es) unroutable from this node; Go falls back to IPv4)"
            )
        return CheckResult(
            endpoint=endpoint.name,
            check=kind,
            ok=True,
            reason=None,
            detail=detail,
            phases=phases,
            addresses_ok=len(passed),
            addresses_failed=0,
            cert=cert,
        )
    address, first_failure = failed[0]
    detail = first_failure.detail
    if many:
        where = ", ".join(a for a, _ in failed)
        detail = f"{len(failed)} of {len(outcomes)} addresses failed ({where}); {address}: {detail}"
    return CheckResult(
        endpoint=endpoint.name,
        check=kind,
        ok=False,
        reason=first_failure.reason,
        detail=detail,
        phases=phases,
        addresses_ok=len(passed),
        addresses_failed=len(failed),
        cert=cert,
    )


def _with_route_verdict(
    results: list[CheckResult],
    main: Endpoint,
    routes: NodeRoutes,
    runtime_routes: tuple[Route, ...],
) -> list[CheckResult]:
    """Fold route consistency into the registry's `proxy` check (one result per check).

    A tunnel that failed keeps its own reason; otherwise runtimes that disagree are
    `proxy_mismatch`, and a CRI runtime running with other settings than its files is
    `proxy_restart_pending`. A direct route gets a `proxy` check of its own for this verdict.
    """
    mismatch = routes.mismatch(runtime_routes)
    pending = routes.restart_pending()
    said = "; ".join(
        f"{r.runtime} goes {'through ' + (r.proxy or '') if r.route == 'proxy' else 'direct'}"
        for r in runtime_routes
    )
    index = next((i for i, r in enumerate(results) if r.check == CheckKind.PROXY), None)
    current = results[index] if index is not None else None
    if current is not None and not current.ok:
        return results
    verdict: tuple[bool, Reason | None, str]
    if mismatch is not None:
        verdict = (False, Reason.PROXY_MISMATCH, mismatch)
    elif pending is not None:
        verdict = (False, Reason.PROXY_RESTART_PENDING, pending)
    else:
        detail = f"{current.detail}; {said}" if current is not None else said
        verdict = (True, None, detail)
    ok, reason, detail = verdict
    if current is not None:
        if not ok:
            detail = f"{detail} (tunnel: {current.detail})"
        assert index is not None  # noqa: S101 - found together with current
        results = list(results)
        results[index] = dataclasses.replace(current, ok=ok, reason=reason, detail=detail)
        return results
    verdict_result = CheckResult(
        endpoint=main.name, check=CheckKind.PROXY, ok=ok, reason=reason, detail=detail
    )
    return [*results, verdict_result]


def _realm_endpoint(realm: str) -> Endpoint | None:
    """The token realm as an endpoint: `https://auth.docker.io/token` → auth.docker.io:443."""
    try:
        url = urlsplit(realm)
        port = url.port
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.hostname:
        return None
    tls = url.scheme == "https"
    return Endpoint(url.hostname, port or (443 if tls else 80), "auth", tls=tls)


def _files_key(root: str, paths: Sequence[str]) -> tuple[object, ...]:
    return _stat_key([host_path(root, p) for p in paths])


def _stat_key(paths: Sequence[Path | str]) -> tuple[object, ...]:
    key: list[object] = []
    for path in paths:
        try:
            stat = os.stat(path)
            key.append((str(path), stat.st_mtime_ns, stat.st_size))
        except OSError:
            key.append((str(path), None))
    return tuple(key)
