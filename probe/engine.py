"""The engine: every check of a registry, as the node's runtime would pull from it.

One engine, three views: `check` renders its reports as text or JSON, `run` renders them as
metrics. For each endpoint of a registry (the registry host, its token realm host, its blob
hosts) `dns` runs once with the node's resolvers, then every resolved address gets one
connection that carries `tcp`, `tls` and (for the registry) `http`, as a pull does. A phase that
fails ends that address; the checks after it are not run.

The node is read once per interval into a `NodeView` (probe.node.view) that every registry's
probe of that interval shares: resolvers, trust, routes and discovered registries.

Deadlines come from here: each check runs under `asyncio.timeout(config.timeout)`, and a
timeout becomes the check's own timeout reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from probe.checks import CheckFn, Endpoint, Outcome, Probe, check_functions
from probe.checks import http as http_check
from probe.checks import proxy as proxy_check
from probe.checks.client import NodeClient
from probe.config import (
    DOCKER_HUB_REGISTRY,
    Config,
    RegistryAddress,
    RegistryConfig,
)
from probe.dockerhub.ratelimit import DockerHubRateLimit
from probe.images.auth import credentials_timed_out, verify_registry_credentials
from probe.node.problems import NodeProblem
from probe.node.registries import PullPlan, RegistryHost, reference_name
from probe.node.routes import NodeRoutes
from probe.node.runtimes import Route, consistent
from probe.node.trust import CAFile
from probe.node.view import NodeReader, NodeView
from probe.reasons import CheckKind, Reason
from probe.result import ADVISORY_REASONS, CheckResult, HostResult, RateLimit, RegistryReport

MAX_CA_FILE_BYTES = 1 << 20  # a `ca_file` of the config: a few certificates, never a megabyte

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
    CheckKind.TLS: (Reason.TLS_HANDSHAKE_TIMEOUT, "net/http: TLS handshake timeout"),
    CheckKind.HTTP: (
        Reason.HTTP_TIMEOUT,
        "GET /v2/: connected, but no HTTP answer (Client.Timeout exceeded while awaiting headers)",
    ),
}


@dataclass(frozen=True)
class _AddressRun:
    address: str
    outcomes: tuple[tuple[CheckKind, Outcome], ...]


class Engine:
    """Probes registries as the node under `config.host_root` would reach them."""

    def __init__(
        self,
        config: Config,
        *,
        reader: NodeReader | None = None,
        ratelimit: DockerHubRateLimit | None = None,
        checks: dict[CheckKind, CheckFn] | None = None,
    ) -> None:
        self.config = config
        self.reader = reader or NodeReader(config.host_root, config.runtimes)
        self._checks = checks if checks is not None else check_functions()
        # One reader for every Docker Hub alias: the per-account budget is Docker Hub's, not
        # a registry entry's.
        self._ratelimit = ratelimit or DockerHubRateLimit(
            config.dockerhub.ratelimit_interval, _hub_credentials(config), config.timeout
        )
        self._registries: tuple[int, tuple[RegistryConfig, ...], tuple[NodeProblem, ...]] | None
        self._registries = None

    def reconfigured(self, config: Config) -> Engine:
        """An engine for a reloaded config that keeps what it can: the node reader (when it
        reads the same node the same way) and Docker Hub's schedule (same account and interval),
        so a SIGHUP neither re-reads an unchanged node nor spends another ask of Docker Hub."""
        same_node = (config.host_root, config.runtimes) == (
            self.config.host_root,
            self.config.runtimes,
        )
        hub = (config.dockerhub.ratelimit_interval, _hub_credentials(config), config.timeout)
        old_hub = (
            self.config.dockerhub.ratelimit_interval,
            _hub_credentials(self.config),
            self.config.timeout,
        )
        return Engine(
            config,
            reader=self.reader if same_node else None,
            ratelimit=self._ratelimit if hub == old_hub else None,
            checks=self._checks,
        )

    def node(self) -> NodeView:
        """The node as it is now: read at most once per interval."""
        return self.reader.view(max_age=self.config.interval)

    def registries(self, view: NodeView | None = None) -> tuple[RegistryConfig, ...]:
        """What to probe: the configured registries (Docker Hub when none is named), then the
        registries and mirrors the node's runtimes are configured for, unless discovery is off.
        Worked out again only when the node view changed.
        """
        view = view or self.node()
        if self._registries is None or self._registries[0] != view.generation:
            registries, problems = _registries(self.config, view)
            self._registries = (view.generation, registries, (*view.problems, *problems))
        return self._registries[1]

    def problems(self, view: NodeView | None = None) -> tuple[NodeProblem, ...]:
        """What the node's files get wrong: the view's problems and unusable discovered hosts.
        The same tuple until the node view changes, like `registries()`."""
        view = view or self.node()
        self.registries(view)
        assert self._registries is not None  # noqa: S101 - set by registries()
        return self._registries[2]

    async def probe_all(self) -> tuple[NodeView, list[RegistryReport]]:
        """Every registry once, concurrently, on one view; reports in the registries' order."""
        view = self.node()
        registries = self.registries(view)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.probe_registry(r, view)) for r in registries]
        return view, [task.result() for task in tasks]

    def plan(self, registry: RegistryConfig, view: NodeView) -> PullPlan:
        """The hosts the CRI runtime tries for `registry`, in its order, with the config's own
        settings for the registry added to the registry's own host: its `ca_file` trusted
        beside the node's, `insecure_skip_verify`, a plain-HTTP address, its blob hosts."""
        plan = view.registries.plan(reference_name(registry.address))
        own = registry.address.pull_address
        hosts: list[RegistryHost] = []
        for host in plan.hosts:
            if host.upstream:
                address = host.address
                if host.source == "default" and not own.tls:
                    address = own  # `http://host:port` named in the config or on the flag
                host = dataclasses.replace(
                    host,
                    address=address,
                    skip_verify=host.skip_verify or registry.insecure_skip_verify,
                    ca_files=host.ca_files + registry.node_ca_files,
                )
            hosts.append(host)
        return dataclasses.replace(plan, hosts=tuple(hosts))

    async def probe_registry(
        self, registry: RegistryConfig, view: NodeView | None = None
    ) -> RegistryReport:
        """Every host of the registry's plan, concurrently; the verdict by the runtime's order."""
        view = view or self.node()
        plan = self.plan(registry, view)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._probe_host(registry, h, view)) for h in plan.hosts]
        runs = [task.result() for task in tasks]
        own = next((r for r in runs if r.host.upstream), runs[-1] if runs else None)
        routes = view.routes
        runtime_routes = routes.routes(own.host.address if own else registry.address.pull_address)
        if own is not None and routes.configs:
            own.results[:] = _with_route_verdict(own.results, own.main, routes, runtime_routes)
        hosts = tuple(_host_result(r) for r in runs)
        serving = next((h for h in hosts if h.usable and h.resolves), None)
        return RegistryReport(
            registry=registry.label,
            checks=tuple(c for r in runs for c in r.results),
            finished_at=time.time(),
            ratelimits=next((r.ratelimits for r in runs if r.ratelimits), ()),
            routes=tuple(r.to_result() for r in runtime_routes),
            # With one runtime the routes cannot disagree: no series that is 1 by construction.
            proxy_consistent=consistent(runtime_routes) if len(routes.configs) > 1 else None,
            endpoint_phases={e.address: e.phases for r in runs for e in r.endpoints},
            hosts=hosts,
            pullable=serving is not None and plan.problem is None,
            served_by=serving.endpoint if serving is not None and plan.problem is None else None,
            rule=plan.rule,
            warnings=_warnings(hosts, serving, plan),
        )

    async def _probe_host(
        self, registry: RegistryConfig, host: RegistryHost, view: NodeView
    ) -> _HostRun:
        """One host: its own endpoint, the blob hosts of the registry's own, and the token
        realm its `GET /v2/` announces."""
        address = host.address
        main = Endpoint.of(
            address.host_port.with_default_port(address.effective_port),
            "registry",
            tls=address.tls,
            # With override_path the path is a repository prefix under the host's API, not an
            # API root one can GET; only an image (check --image) tells whether it serves.
            api_root="/v2" if host.override_path else host.path,
        )
        run = _HostRun(host, main, [main])
        try:
            # A plain-http registry needs one too when an https proxy stands in front of it:
            # Go verifies the proxy with the transport's TLS config.
            context = self.ssl_context(registry, host, view)
        except (OSError, ssl.SSLError) as error:
            run.results.append(_trust_failure(main, error))
            return run
        blobs = []
        if host.upstream:
            blobs = [
                Endpoint.of(b.with_default_port(443), "blob") for b in registry.effective_blob_hosts
            ]
        async with asyncio.TaskGroup() as group:
            main_task = group.create_task(self._probe_endpoint(main, context, view))
            blob_tasks = [group.create_task(self._probe_endpoint(b, context, view)) for b in blobs]
        checks = list(main_task.result())
        realm = next((c.realm for c in checks if c.realm), None)
        auth = _realm_endpoint(realm) if realm else None
        run.endpoints += blobs
        run.results += [c.result for c in checks]
        reachable = all(c.result.ok for c in checks)
        if auth is not None and auth.name not in {main.name, *(b.name for b in blobs)}:
            run.endpoints.append(auth)
            checked = await self._probe_endpoint(auth, context, view)
            run.results += [c.result for c in checked]
        for task in blob_tasks:
            run.results += [c.result for c in task.result()]
        http = next((i for i, r in enumerate(run.results) if r.check == CheckKind.HTTP), None)
        login_wanted = host.upstream and not registry.is_docker_hub and reachable
        if login_wanted and registry.credentials_file and http is not None:
            # The configured credentials, tried at the challenge of GET /v2/ (issue 10, item 7);
            # Docker Hub's are the ratelimit check's.
            login = run.results[http]
            try:
                async with asyncio.timeout(self.config.timeout):
                    login = await verify_registry_credentials(
                        NodeClient(
                            view.resolver,
                            context,
                            view.routes,
                            plain_http_credentials=not address.tls,
                        ),
                        login,
                        f"{address.url}{main.api_root.rstrip('/')}/",
                        registry.label,
                        registry.credentials_file,
                    )
            except TimeoutError:
                login = credentials_timed_out(login, self.config.timeout)
            run.results[http] = login
        if registry.is_docker_hub and address.is_docker_hub and context is not None and reachable:
            client = NodeClient(view.resolver, context, view.routes)
            read = await self._ratelimit.check(client, main.address)
            if read is not None:
                run.results.append(read[0])
                run.ratelimits = read[1]
        return run

    async def _probe_endpoint(
        self, endpoint: Endpoint, context: ssl.SSLContext | None, view: NodeView
    ) -> list[_Check]:
        scheme = "https" if endpoint.tls else "http"
        proxy = view.routes.proxy_for(scheme, endpoint.host, endpoint.port)
        tail = [CheckKind.TLS] if endpoint.tls else []
        if endpoint.role == "registry":
            tail.append(CheckKind.HTTP)
        if proxy is not None:
            # Through a proxy the node neither resolves nor dials the endpoint: the proxy does.
            probe = Probe(endpoint, view.resolver, context, proxy=proxy)
            run = await self._probe_address(probe, [CheckKind.PROXY, *tail])
            return [_Check.of(endpoint, kind, [("", outcome)]) for kind, outcome in run.outcomes]
        resolved = await self._run(CheckKind.DNS, Probe(endpoint, view.resolver))
        checks = [_Check.of(endpoint, CheckKind.DNS, [("", resolved)])]
        if not resolved.ok:
            return checks
        kinds = [CheckKind.TCP, *tail]
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(
                    self._probe_address(Probe(endpoint, view.resolver, context, address), kinds)
                )
                for address in resolved.addresses
            ]
        runs = [task.result() for task in tasks]
        for kind in kinds:
            outcomes = [(r.address, o) for r in runs for k, o in r.outcomes if k == kind]
            if outcomes:
                checks.append(_Check.of(endpoint, kind, outcomes))
        return checks

    async def _probe_address(self, probe: Probe, kinds: Sequence[CheckKind]) -> _AddressRun:
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
        return _AddressRun(probe.address or "", tuple(outcomes))

    async def _run(self, kind: CheckKind, probe: Probe) -> Outcome:
        """One check under the deadline; its timeout becomes that check's reason."""
        timeout = self.config.timeout
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                return await self._checks[kind](probe)
        except TimeoutError:
            if kind == CheckKind.PROXY:
                # How far it got decides: the proxy silent, its TLS stalled, or the tunnel
                # asked for and never opened (the proxy still trying the registry).
                reason, detail = proxy_check.timeout_reason(probe)
            else:
                reason, words = _TIMEOUT[kind]
                address = probe.address or ""
                target = f"[{address}]" if ":" in address else address
                detail = words.format(
                    host=probe.endpoint.host, address=f"{target}:{probe.endpoint.port}"
                )
                if kind == CheckKind.HTTP:  # awaiting headers, or reading a body still arriving
                    detail = http_check.timeout_detail(probe)
            elapsed = time.perf_counter() - started
            phases = {"processing": elapsed} if kind == CheckKind.HTTP else {_PHASE[kind]: elapsed}
            return Outcome.failed(reason, f"{detail}, after {timeout:g}s", phases=phases)

    def ssl_context(
        self, registry: RegistryConfig, host: RegistryHost, view: NodeView
    ) -> ssl.SSLContext:
        """The node's trust plus the host's own CAs (the runtime's config names them) and, for
        the registry's own host, the config's `ca_file` (on the agent's own filesystem).

        Raises OSError or ssl.SSLError when a CA cannot be read or parsed: the runtime fails
        every pull of the registry then, before trying any host.
        """
        extra = list(view.ca_files(host.ca_files))
        missing = set(host.ca_files) - {ca.name for ca in extra}
        if missing:
            raise OSError(f"the runtime cannot read the CA file {sorted(missing)[0]}")
        if registry.ca_file and host.upstream:
            with open(registry.ca_file, encoding="utf-8", errors="replace") as file:
                extra.append(CAFile(registry.ca_file, file.read(MAX_CA_FILE_BYTES)))
        return view.trust.context(tuple(extra), host.skip_verify)


def _hub_credentials(config: Config) -> str | None:
    return config.dockerhub.credentials_file or next(
        (r.credentials_file for r in config.registries if r.is_docker_hub), None
    )


def _registries(
    config: Config, view: NodeView
) -> tuple[tuple[RegistryConfig, ...], tuple[NodeProblem, ...]]:
    """The config's registries (Docker Hub when it names none), then those the CRI runtime has
    settings for, unless discovery is off; each registry once, whatever name it goes by."""
    named = config.registries or (DOCKER_HUB_REGISTRY,)
    if not config.discover:
        return named, ()
    seen = {r.address.identity for r in named}
    found: list[RegistryConfig] = []
    problems: list[NodeProblem] = []
    for name in view.registries.names:
        plan = view.registries.plans[name]
        try:
            address = RegistryAddress.parse(name)
        except ValueError as error:
            problems.append(
                NodeProblem(plan.source, f"{plan.source}: {error}", effect="not probed")
            )
            continue
        if address.identity in seen:
            continue
        seen.add(address.identity)
        registry = DOCKER_HUB_REGISTRY if address.is_docker_hub else RegistryConfig(address)
        found.append(dataclasses.replace(registry, source=f"discovered in {plan.source}"))
    return (*named, *found), tuple(problems)


def _trust_failure(endpoint: Endpoint, error: Exception) -> CheckResult:
    detail = f"cannot load the CA files for {endpoint.name}: {error}"
    if isinstance(error, OSError) and error.strerror:
        detail = f"cannot load the CA files for {endpoint.name}: {error.strerror}"
    return CheckResult(
        endpoint=endpoint.address,
        check=CheckKind.TLS,
        ok=False,
        reason=Reason.TLS_UNKNOWN_AUTHORITY,
        detail=f"{detail} (every pull of this registry fails until it can)",
        phases=dict.fromkeys(endpoint.phases, 0.0),
    )


@dataclass
class _HostRun:
    """What probing one host of a plan gave: its endpoints, results and rate limits."""

    host: RegistryHost
    main: Endpoint
    endpoints: list[Endpoint]
    results: list[CheckResult] = field(default_factory=list)
    ratelimits: tuple[RateLimit, ...] = ()


def _host_result(run: _HostRun) -> HostResult:
    failures = [r for r in run.results if not r.ok and r.reason not in ADVISORY_REASONS]
    host = run.host
    return HostResult(
        endpoint=run.main.address,
        url=f"{host.address.url}{host.path}",
        role=host.role,
        source=host.source,
        resolves=host.resolves,
        usable=not failures,
        reason=failures[0].reason if failures else None,
        skip_verify=host.skip_verify and host.address.tls,
        not_found=any(r.check == CheckKind.HTTP and r.status == 404 for r in failures),
    )


def _warnings(
    hosts: tuple[HostResult, ...], serving: HostResult | None, plan: PullPlan
) -> tuple[str, ...]:
    """What the runtime's order costs: a failing host ahead of the one that serves is tried,
    and waited for, on every request of every pull; one behind it limits what can be pulled."""
    found: list[str] = []
    if plan.problem is not None:
        found.append(f"{plan.problem}: every pull of this registry fails")
    if serving is None:
        return tuple(found)
    ahead = True
    for host in hosts:
        if host is serving:
            ahead = False
            continue
        if host.usable:
            continue
        if ahead:
            found.append(
                f"{host.role} {host.endpoint} fails ({host.reason}): every pull tries it first "
                f"and waits for it to fail before {serving.endpoint} serves"
            )
        else:
            found.append(
                f"{host.role} {host.endpoint} fails ({host.reason}): pulls work while "
                f"{serving.endpoint} serves them, and fail for what it does not hold"
            )
    for host in hosts:
        if host.skip_verify:
            found.append(f"{host.endpoint}'s certificate is not verified (skip_verify)")
    return tuple(found)


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
    """One check's result over every address it ran on: one bad address fails it, unless the
    other address family makes it harmless to a pull.

    The rule, for `tcp` only: when every address of one family (IPv4 or IPv6) connected, the
    connect failures of the other family do not fail the check. They still count as failed
    (`addresses_failed`, so `registry_probe_endpoint_addresses{state="failed"}` shows them),
    the detail names them and what Go does about them, and the phases are those of the
    addresses that passed (the pull's path). With one family, or when neither family connected
    on every address, every failure fails the check, as before. A failure after connecting
    (`tls`, `http`) always fails it.

    Why: containerd dials with Go's net.Dialer, FallbackDelay 300 ms (containerd
    remotes/docker/config/hosts.go, ConfigureHosts; pkg/cri/server/image_pull.go in 1.6).
    Go's src/net/dial.go: `DialContext` takes the resolver's answer, sorted by RFC 6724
    (dnsclient_unix.go `goLookupIPCNAMEOrder` calls `sortByRFC6724`, addrselect.go: an address
    without a route sorts last, rule 1; IPv6 before IPv4 otherwise, precedence 40 over 35,
    rule 6), and `partition(isIPv4)`s it: the family of the first address are the primaries,
    the other family the fallbacks. `dialParallel` dials the primaries and starts the
    fallbacks after FallbackDelay, or at once when the primaries have all failed; the first
    connection wins. `dialSerial` tries one family's addresses in turn, each with its share of
    the time left (`partialDeadline`, at least 2 s), so a dropped address costs a pull seconds
    when the other family cannot take over. Hence: a family that connects on every address
    makes any dial succeed within 300 ms of its start, whichever family is sorted first and
    whatever the order of its addresses (Go 1.19, as Debian ships it, and master agree; the
    lab test tests/test_dual_stack_lab.py holds this against a Go client built from
    tests/lab/gopull). Once a dial has returned a connection, Go's transport does not try
    another address: a TLS or HTTP error on a fresh connection is the pull's error
    (net/http/transport.go `shouldRetryRequest`: never for a connection that was not reused).
    """
    failures = [(a, o) for a, o in outcomes if not o.ok]
    families = {_family(a) for a, _ in outcomes}
    whole = [f for f in families if all(o.ok for a, o in outcomes if _family(a) == f)]
    tolerated = failures if kind == CheckKind.TCP and whole and len(families) > 1 else []
    failed = [] if tolerated else failures
    passed = [(a, o) for a, o in outcomes if o.ok]
    counted = failed + passed
    phases: dict[str, float] = {}
    for _, outcome in counted:
        for phase, seconds in outcome.phases.items():
            phases[phase] = max(phases.get(phase, 0.0), seconds)
    cert = next((o.cert for _, o in counted if o.cert is not None), None)
    many = len(outcomes) > 1
    if not failed:
        first = passed[0][1]
        detail = first.detail
        if tolerated:
            detail = f"{len(passed)} of {len(outcomes)} addresses passed; {detail}"
            detail += _fallback_note(tolerated)
        elif many:
            detail = f"{len(outcomes)} addresses passed; {detail}"
        return CheckResult(
            endpoint=endpoint.address,
            check=kind,
            ok=True,
            reason=None,
            detail=detail,
            phases=phases,
            addresses_ok=len(passed),
            addresses_failed=len(tolerated),
            cert=cert,
        )
    address, first_failure = failed[0]
    detail = first_failure.detail
    if many:
        where = ", ".join(a for a, _ in failed)
        detail = f"{len(failed)} of {len(outcomes)} addresses failed ({where}); {address}: {detail}"
    return CheckResult(
        endpoint=endpoint.address,
        check=kind,
        ok=False,
        reason=first_failure.reason,
        detail=detail,
        phases=phases,
        addresses_ok=len(passed),
        addresses_failed=len(failed),
        cert=cert,
        status=first_failure.status,
    )


def _family(address: str) -> str:
    return "IPv6" if ":" in address else "IPv4"


def _fallback_note(tolerated: list[tuple[str, Outcome]]) -> str:
    """What Go's dialer does about one family's failed addresses, for an aggregate's detail."""
    family = _family(tolerated[0][0])
    other = "IPv4" if family == "IPv6" else "IPv6"
    where = ", ".join(a for a, _ in tolerated)
    if any(o.reason == Reason.TCP_TIMEOUT for _, o in tolerated):
        # Unanswered: Go waits FallbackDelay before the other family when this one is sorted
        # first (RFC 6724 puts IPv6 first), and not at all otherwise.
        does = (
            f"Go's dialer starts {other} within 300 ms (containerd's FallbackDelay), so pulls "
            "work, each new connection up to 300 ms slower"
        )
    else:
        does = f"Go's dialer falls back to {other} at once, so pulls work"
    return (
        f" (not counted: {len(tolerated)} {family} address(es) failed, {where}: "
        f"{tolerated[0][1].detail}; {does})"
    )


def _with_route_verdict(
    results: list[CheckResult],
    main: Endpoint,
    routes: NodeRoutes,
    runtime_routes: tuple[Route, ...],
) -> list[CheckResult]:
    """Fold route consistency into the registry's `proxy` check (one result per check).

    A tunnel that failed keeps its own reason, and says so when a restart is pending too (the
    running process uses another proxy than its unit files now name: the fix may already be
    written); otherwise runtimes that disagree are `proxy_mismatch`, and a CRI runtime running
    with other settings than its files is `proxy_restart_pending`. A direct route gets a `proxy`
    check of its own for this verdict. What Go would make of a malformed setting (the route's
    problem) is added to the detail.
    """
    mismatch = routes.mismatch(runtime_routes)
    pending = routes.restart_pending()
    said = "; ".join(
        f"{r.runtime} goes {'through ' + (r.proxy or '') if r.route == 'proxy' else 'direct'}"
        + (f" ({r.problem})" if r.problem else "")
        for r in runtime_routes
    )
    index = next((i for i, r in enumerate(results) if r.check == CheckKind.PROXY), None)
    current = results[index] if index is not None else None
    if current is not None and not current.ok:
        if pending is None:
            return results
        assert index is not None  # noqa: S101 - found together with current
        results = list(results)
        detail = f"{current.detail}; and a restart is pending: {pending}"
        results[index] = dataclasses.replace(current, detail=detail)
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
        endpoint=main.address, check=CheckKind.PROXY, ok=ok, reason=reason, detail=detail
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
