"""Each container runtime's proxy settings, the route it takes to a registry, and mismatches.

Where each runtime's environment comes from (SPEC.md, "How a node is read"):
- containerd: `containerd.service`. Under k3s or RKE2 there is no such unit: containerd is a
  child of `k3s.service` / `k3s-agent.service` (`rke2-server.service` / `rke2-agent.service`),
  which passes its own environment on, except that a `CONTAINERD_<NAME>` variable is passed as
  `<NAME>` and wins over a plain `<NAME>` (k3s pkg/agent/containerd: it appends the stripped
  variables last and os/exec keeps the last of duplicates). k3s's unit reads
  /etc/default/k3s, /etc/sysconfig/k3s and /etc/systemd/system/k3s.service.env as
  `EnvironmentFile=`s, so those files count through the unit. A server (k3s.service,
  rke2-server.service) first sets NO_PROXY to NO_PROXY and no_proxy joined, plus `.svc`,
  `.<cluster domain>`, its cluster CIDRs and service CIDRs (defaults 10.42.0.0/16,
  10.43.0.0/16, cluster.local; from config.yaml or the unit's flags otherwise), and unsets
  no_proxy (k3s pkg/server/server.go `setNoProxyEnv`, called by StartServer before the agent
  starts containerd; RKE2 runs the same code). An agent-only node (k3s-agent.service,
  rke2-agent.service) runs no StartServer. A `CONTAINERD_NO_PROXY` still replaces the result.
- dockerd: `docker.service`, then `proxies` in /etc/docker/daemon.json ("http-proxy",
  "https-proxy", "no-proxy"), which dockerd sets over both cases of its environment at start
  (Docker 23+, cmd/dockerd configureProxyEnv); the running process's /proc environ does not
  show them.
- crio: `crio.service`.

A unit's `PassEnvironment=` proxy variable takes its value from the service manager's own
environment, which no file on the node holds: it is reported as a node problem naming the unit
and the variable, and only the live process tells its value.

Present means the unit, the runtime's config directory or its trusted process (uid 0, the unit's
`ExecStart=` binary, a well-known path or the unit's cgroup: `probe.node.processes`) is found.
The CRI runtime
that decides the route kubelet's pulls take is containerd when present, else CRI-O; dockerd is
compared with it but never decides (kubelet pulls through CRI since Kubernetes 1.24).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from probe.config import RUNTIMES, RegistryAddress
from probe.node.dockerd import DAEMON_JSON, read_daemon_json
from probe.node.goproxy import PROXY_VARIABLES, CGIProxyError, ProxyEnv, decide, variable_for
from probe.node.hostfs import HostFS
from probe.node.k3s import read_cluster_networks
from probe.node.problems import NodeProblem
from probe.node.processes import Expected
from probe.node.systemd import UnitEnvironment, effective_environment, executable_paths
from probe.result import RuntimeRoute

# What k3s's install script (get.k3s.io) and RKE2's packages write as the unit's environment
# lines (k3s-io/k3s install.sh create_systemd_service_file; rancher/rke2 bundle/lib/systemd):
# used when the unit itself is not under the host root.
INSTALLED_UNITS = {
    "k3s": "[Service]\nEnvironmentFile=-/etc/default/%N\nEnvironmentFile=-/etc/sysconfig/%N\n"
    "EnvironmentFile=-/etc/systemd/system/k3s.service.env\n",
    "rke2": "[Service]\nEnvironmentFile=-/etc/default/%N\nEnvironmentFile=-/etc/sysconfig/%N\n"
    "EnvironmentFile=-/usr/local/lib/systemd/system/%N.env\n",
}
K3S_UNITS: tuple[str, ...] = (
    "k3s.service",
    "k3s-agent.service",
    "rke2-server.service",
    "rke2-agent.service",
)


@dataclass(frozen=True)
class RuntimeSpec:
    """Where a runtime is found on a node."""

    runtime: str
    units: tuple[str, ...]  # tried in order; the first found is the runtime's unit
    config_dirs: tuple[str, ...]
    process: str  # the process name whose live environment is the runtime's
    restart_name: str  # what `systemctl restart` takes
    # Where distributions install the runtime's binary (`*`: one path component), trusted
    # beside the unit's own ExecStart= binary.
    binaries: tuple[str, ...] = ()


SPECS: Mapping[str, RuntimeSpec] = {
    "containerd": RuntimeSpec(
        "containerd",
        ("containerd.service", *K3S_UNITS),
        (
            "/etc/containerd",
            "/var/lib/rancher/k3s/agent/etc/containerd",
            "/var/lib/rancher/rke2/agent/etc/containerd",
            "/etc/rancher/k3s",  # k3s and RKE2 run their own containerd
            "/etc/rancher/rke2",
        ),
        "containerd",
        "containerd",
        (
            "/usr/bin/containerd",
            "/usr/local/bin/containerd",
            "/usr/sbin/containerd",
            "/opt/bin/containerd",
            # k3s and RKE2 run containerd from their data directory (k3s: data/<hash>/bin, RKE2:
            # data/<version>/bin, linked from /var/lib/rancher/rke2/bin).
            "/var/lib/rancher/k3s/data/*/bin/containerd",
            "/var/lib/rancher/rke2/data/*/bin/containerd",
            "/var/lib/rancher/rke2/bin/containerd",
        ),
    ),
    "dockerd": RuntimeSpec(
        "dockerd",
        ("docker.service",),
        ("/etc/docker",),
        "dockerd",
        "docker",
        ("/usr/bin/dockerd", "/usr/local/bin/dockerd", "/usr/sbin/dockerd"),
    ),
    "crio": RuntimeSpec(
        "crio",
        ("crio.service",),
        ("/etc/crio",),
        "crio",
        "crio",
        ("/usr/bin/crio", "/usr/local/bin/crio", "/usr/sbin/crio"),
    ),
}

# Every variable Go's FromEnvironment reads (both cases), and the CGI marker.
PROXY_VARIABLE_NAMES: frozenset[str] = frozenset(
    name for names in PROXY_VARIABLES.values() for name in names
) | {"REQUEST_METHOD"}


@dataclass(frozen=True)
class RuntimeProxyConfig:
    """A runtime's proxy settings as it starts with them, and where each one was written."""

    runtime: str
    unit: str | None  # the unit found ("k3s.service" for k3s's containerd), None without one
    process_env: Mapping[str, str]  # proxy variables the process is started with (for live diff)
    environment: Mapping[str, str]  # proxy variables as the runtime's Go code finally sees them
    sources: Mapping[str, str]  # variable -> file that set it, as the node names it
    evidence: tuple[str, ...]  # why the runtime counts as present
    problems: tuple[str, ...] = ()
    process: str = ""
    restart_name: str = ""
    suggested_file: str = ""  # where to add a proxy setting for this runtime
    live_process: str | None = None  # "pid 812 (/usr/bin/containerd)": whose environment rules

    @property
    def proxy_env(self) -> ProxyEnv:
        return ProxyEnv.from_environ(self.environment)


def _proxy_only(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k in PROXY_VARIABLE_NAMES}


K3S_SERVER_UNITS = frozenset({"k3s.service", "rke2-server.service"})


def _k3s_child_environment(
    unit_env: UnitEnvironment, fs: HostFS
) -> tuple[dict[str, str], dict[str, str], list[NodeProblem]]:
    """The environment k3s gives its containerd: a server's NO_PROXY additions, then
    CONTAINERD_X passed as X, winning over X."""
    env: dict[str, str] = {}
    sources: dict[str, str] = {}
    prefixed: list[tuple[str, str]] = []
    problems: list[NodeProblem] = []
    for name, value in unit_env.variables.items():
        if name.startswith("CONTAINERD_"):
            prefixed.append((name, value))
        else:
            env[name] = value
            sources[name] = unit_env.sources[name]
    if unit_env.unit in K3S_SERVER_UNITS:
        distribution = "rke2" if unit_env.unit.startswith("rke2") else "k3s"
        arguments = unit_env.exec_start.arguments if unit_env.exec_start else ()
        networks, problems = read_cluster_networks(fs, distribution, arguments)
        given = [
            entry
            for name in ("NO_PROXY", "no_proxy")
            for entry in env.get(name, "").split(",")
            if entry
        ]  # strings.FieldsFunc on ',' drops empty entries, keeps spaces
        added = networks.no_proxy_additions()
        origin = sources.get("NO_PROXY") or sources.get("no_proxy")
        env.pop("no_proxy", None)
        sources.pop("no_proxy", None)
        env["NO_PROXY"] = ",".join([*given, *added])
        where = f"{origin} and " if origin else ""
        sources["NO_PROXY"] = (
            f"{where}{distribution}'s additions ({', '.join(added)}; from {networks.source})"
        )
    for name, value in prefixed:
        stripped = name.removeprefix("CONTAINERD_")
        env[stripped] = value
        sources[stripped] = f"{unit_env.sources[name]} ({name})"
    return env, sources, problems


def _daemon_json_proxies(fs: HostFS) -> tuple[dict[str, str], list[str]]:
    """daemon.json `proxies` as the variables dockerd sets from them (both cases), and problems."""
    settings = read_daemon_json(fs)
    env: dict[str, str] = {}
    for setting, value in settings.proxies.items():
        for name in PROXY_VARIABLES[setting]:  # dockerd overrides both cases
            env[name] = value
    return env, list(settings.problems)


def expected_processes(
    fs: HostFS | None = None, runtimes: Iterable[str] = RUNTIMES
) -> dict[str, Expected]:
    """What each runtime's process must be to be trusted (by process name): root, running the
    binary its unit's `ExecStart=` names (read from `fs` when given) or a well-known one, or in
    the cgroup of one of its units."""
    found: dict[str, Expected] = {}
    for runtime in runtimes:
        spec = SPECS[runtime]
        binaries: list[str] = []
        if fs is not None:
            for unit in spec.units:
                unit_env = effective_environment(fs, unit)
                binaries.extend(executable_paths(unit_env.exec_start))
        found[spec.process] = Expected(
            runtime=runtime,
            name=spec.process,
            binaries=tuple(dict.fromkeys([*binaries, *spec.binaries])),
            units=spec.units,
        )
    return found


def read_runtime(
    fs: HostFS, runtime: str, process_names: Collection[str] = ()
) -> RuntimeProxyConfig | None:
    """A runtime's proxy settings from the node's files, or None when it is not on the node.

    `process_names` are the runtime processes visible to the agent (`ProcessTable.names`); the
    function itself reads only the node's files.
    """
    spec = SPECS[runtime]
    evidence: list[str] = []
    unit_env: UnitEnvironment | None = None
    problems: list[str] = []
    for unit_name in spec.units:
        candidate = effective_environment(fs, unit_name)
        if candidate.masked:
            problems.extend(candidate.problems)
        if candidate.found:
            unit_env = candidate
            evidence.append(f"unit {candidate.unit_path}")
            break
    evidence.extend(f"directory {d}" for d in spec.config_dirs if fs.is_dir(d))
    if spec.process in process_names:
        evidence.append(f"process {spec.process}")
    if not evidence:
        return None
    if unit_env is None:
        # The runtime runs, its unit file is not under the host root: its drop-ins and
        # DefaultEnvironment= still apply; k3s's and RKE2's unit is the one their installers
        # write, with its EnvironmentFile= lines.
        name, text = spec.units[0], ""
        for distribution, unit_name in (("rke2", "rke2-server.service"), ("k3s", "k3s.service")):
            if runtime == "containerd" and fs.is_dir(f"/etc/rancher/{distribution}"):
                name, text = unit_name, INSTALLED_UNITS[distribution]
                break
        assumed = effective_environment(fs, name, assumed=text)
        if assumed.variables or assumed.dropins or text:
            unit_env = assumed

    environment: dict[str, str] = {}
    sources: dict[str, str] = {}
    process_env: dict[str, str] = {}
    unit = unit_env.unit if unit_env else None
    suggested = f"/etc/systemd/system/{spec.units[0]}.d/http-proxy.conf"
    if unit_env is not None:
        problems.extend(unit_env.problems)
        problems.extend(_passed_problems(unit_env))
        if unit_env.unit in K3S_UNITS:
            child, child_sources, found = _k3s_child_environment(unit_env, fs)
            problems.extend(p.message for p in found)
            environment, sources = _proxy_only(child), child_sources
            process_env = dict(environment)
            suggested = f"/etc/systemd/system/{unit_env.unit}.env"
        else:
            environment = _proxy_only(unit_env.variables)
            sources = dict(unit_env.sources)
            process_env = dict(environment)
            suggested = unit_env.suggested_dropin
    if runtime == "dockerd":
        overrides, json_problems = _daemon_json_proxies(fs)
        problems.extend(json_problems)
        environment.update(overrides)
        sources.update(dict.fromkeys(overrides, DAEMON_JSON))
    return RuntimeProxyConfig(
        runtime=runtime,
        unit=unit,
        process_env=MappingProxyType(process_env),
        environment=MappingProxyType(environment),
        sources=MappingProxyType({k: v for k, v in sources.items() if k in environment}),
        evidence=tuple(evidence),
        problems=tuple(problems),
        process=spec.process,
        restart_name=(unit.removesuffix(".service") if unit else spec.restart_name),
        suggested_file=suggested,
    )


def _passed_problems(unit_env: UnitEnvironment) -> list[str]:
    """A proxy variable passed from the service manager's environment: the files cannot say it."""
    found = []
    for name, source in sorted(unit_env.passed.items()):
        if name not in PROXY_VARIABLE_NAMES:
            continue
        fallback = (
            f"the route below takes {name} from {unit_env.sources[name]}"
            if name in unit_env.variables
            else f"the route below takes {name} as unset"
        )
        found.append(
            f"{source}: PassEnvironment={name}: {unit_env.unit} gets {name} from the service "
            "manager's own environment (what PID 1 was started with, or systemctl "
            f"set-environment), which no file on the node holds; {fallback} (only the running "
            "process shows the real value)"
        )
    return found


def read_runtimes(
    fs: HostFS,
    runtimes: Iterable[str] = RUNTIMES,
    process_names: Collection[str] = (),
) -> dict[str, RuntimeProxyConfig]:
    """The runtimes present on the node, by name, in the order asked."""
    found = {r: read_runtime(fs, r, process_names) for r in runtimes}
    return {r: config for r, config in found.items() if config is not None}


def deciding_runtime(configs: Mapping[str, RuntimeProxyConfig]) -> str | None:
    """The CRI runtime whose route kubelet's pulls take: containerd if present, else crio."""
    return next((r for r in ("containerd", "crio") if r in configs), None)


# --- restarts -------------------------------------------------------------------------------------


def restart_pending(unit_env: Mapping[str, str], live_env: Mapping[str, str] | None) -> bool:
    """Whether the running process uses other proxy settings than its unit files now give.

    Compared as Go reads them (`ProxyEnv`): a difference Go would not see (HTTPS_PROXY set in
    both cases, lower case changed) needs no restart. Unknown live environment: False.
    """
    if live_env is None:
        return False
    return ProxyEnv.from_environ(unit_env) != ProxyEnv.from_environ(live_env)


# --- routes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """How one runtime reaches one registry. `proxy` is redacted; the secret one is for use."""

    runtime: str
    registry: str
    route: str  # "direct" or "proxy"
    proxy: str | None  # redacted
    proxy_url_with_secret: str | None = field(default=None, repr=False)
    variable: str | None = None  # the variable that decided (HTTPS_PROXY, https_proxy, NO_PROXY)
    source: str | None = None  # the file that set it
    why: str = ""
    problem: str | None = None
    no_proxy_entry: str | None = None  # the NO_PROXY entry that sent it direct
    process: str | None = None  # the live process whose environment decided, when one did

    def to_result(self) -> RuntimeRoute:
        return RuntimeRoute(
            runtime=self.runtime, route=self.route, proxy=self.proxy, process=self.process
        )


def route_for(registry: RegistryAddress, config: RuntimeProxyConfig) -> Route:
    """The route `config.runtime` takes to `registry`, as Go decides it for its URL."""
    scheme = registry.scheme
    env = config.proxy_env
    try:
        decision = decide(env, scheme, registry.host, registry.port)
    except CGIProxyError as exc:
        return Route(
            config.runtime,
            registry.label,
            "direct",
            None,
            why=str(exc),
            problem=str(exc),
            process=config.live_process,
        )
    setting = "https_proxy" if scheme == "https" else "http_proxy"
    variable = variable_for(config.environment, setting)
    if decision.no_proxy_entry is not None:
        variable = variable_for(config.environment, "no_proxy")
    source = config.sources.get(variable) if variable else None
    if decision.proxy is None:
        return Route(
            config.runtime,
            registry.label,
            "direct",
            None,
            variable=variable,
            source=source,
            why=decision.why,
            problem=decision.problem,
            no_proxy_entry=decision.no_proxy_entry,
            process=config.live_process,
        )
    return Route(
        config.runtime,
        registry.label,
        "proxy",
        decision.proxy.redacted,
        decision.proxy.url,
        variable=variable,
        source=source,
        why=decision.why,
        problem=decision.problem,
        process=config.live_process,
    )


def consistent(routes: Sequence[Route]) -> bool:
    """Every runtime takes the same route through the same proxy (credentials included)."""
    return len({(r.route, r.proxy_url_with_secret) for r in routes}) <= 1


def _said(route: Route) -> str:
    if route.route == "proxy":
        where = f" (from {route.source})" if route.source else ""
        return f"{route.runtime} goes through {route.proxy}{where}"
    if route.no_proxy_entry is not None and route.source:
        return f"{route.runtime} goes direct ({route.why} in {route.source})"
    return f"{route.runtime} goes direct"


def explain_mismatch(
    routes: Sequence[Route], configs: Mapping[str, RuntimeProxyConfig]
) -> str | None:
    """The mismatch in words, with the fix, or None when the routes agree.

    The runtime to fix is the one that differs from the CRI runtime when one is proxied and the
    other is not: proxy settings belong where the pulls happen.
    """
    if consistent(routes) or not routes:
        return None
    decider = deciding_runtime(configs)
    ordered = sorted(routes, key=lambda r: (r.runtime == decider, r.runtime))
    text = "; ".join(_said(r) for r in ordered)
    proxied = [r for r in ordered if r.route == "proxy"]
    direct = [r for r in ordered if r.route == "direct"]
    if proxied and direct:
        model = next((r for r in proxied if r.runtime != decider), proxied[0])
        fixes = []
        for route in direct:
            config = configs.get(route.runtime)
            if config is None:
                continue
            target = config.suggested_file
            if config.unit in K3S_UNITS:
                how = f"add CONTAINERD_{(model.variable or 'HTTPS_PROXY').upper()}= to {target}"
            else:
                how = f"add the same Environment= lines to {target}"
            if route.no_proxy_entry is not None and route.source:
                how = f"remove {route.no_proxy_entry!r} from NO_PROXY in {route.source}"
            fixes.append(f"{how} and restart {config.restart_name}")
        return f"{text}: {'; '.join(fixes)}" if fixes else text
    proxies = {r.proxy for r in proxied}
    if len(proxies) == 1:
        return f"{text}: the same proxy with different credentials; make them the same"
    return f"{text}: make the proxies the same"
