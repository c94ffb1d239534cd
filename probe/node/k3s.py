"""k3s's and RKE2's registries.yaml: the mirrors their containerd pulls through; and the
cluster networks a k3s or RKE2 server adds to its containerd's NO_PROXY.

Sources: k3s-io/docs docs/installation/private-registry.md and rancher/rke2-docs
docs/install/private_registry.md (K-REGISTRIES). k3s and RKE2 render containerd's hosts.toml
from this file under /var/lib/rancher/{k3s,rke2}/agent/etc/containerd/certs.d, which the agent
does not mount, so the file itself is read: `mirrors.<name>.endpoint` in order, then the
registry's default endpoint (endpoints equal to it are dropped); `"*"` for registries without an
entry of their own; `configs.<endpoint host>.tls` (`ca_file`, `insecure_skip_verify`), `"*"`
for the rest. Mirrors are given pull and resolve, the default endpoint every capability.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.node.files import (
    Problems,
    boolean,
    dig,
    endpoint,
    load_yaml,
    string_list,
    table,
    unreadable_cas,
)
from probe.node.hostfs import HostFS
from probe.node.problems import NodeProblem
from probe.node.registries import (
    ALL_CAPABILITIES,
    ANY_REGISTRY,
    PULL_CAPABILITIES,
    NodeRegistries,
    PullPlan,
    RegistryHost,
    default_host,
)

REGISTRIES_YAML = {
    "k3s": "/etc/rancher/k3s/registries.yaml",
    "rke2": "/etc/rancher/rke2/registries.yaml",
}
_IGNORED = "k3s starts without these mirrors"

CONFIG_YAML = {
    "k3s": "/etc/rancher/k3s/config.yaml",
    "rke2": "/etc/rancher/rke2/config.yaml",
}
# k3s's and RKE2's defaults (k3s-io/docs docs/cli/server.md, rancher/rke2-docs
# docs/reference/server_config.md): --cluster-cidr, --service-cidr, --cluster-domain.
DEFAULT_CLUSTER_CIDRS = ("10.42.0.0/16",)
DEFAULT_SERVICE_CIDRS = ("10.43.0.0/16",)
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
_NETWORK_FLAGS = ("cluster-cidr", "service-cidr", "cluster-domain")


@dataclass(frozen=True)
class ClusterNetworks:
    """A k3s or RKE2 server's pod and service networks and cluster domain, and where they were
    read ("defaults" when nothing on the node sets them)."""

    cluster_cidrs: tuple[str, ...] = DEFAULT_CLUSTER_CIDRS
    service_cidrs: tuple[str, ...] = DEFAULT_SERVICE_CIDRS
    domain: str = DEFAULT_CLUSTER_DOMAIN
    source: str = "k3s's defaults"

    def no_proxy_additions(self) -> tuple[str, ...]:
        """What the server appends to NO_PROXY, in its order (k3s pkg/server/server.go
        `setNoProxyEnv`: ".svc", "."+ClusterDomain, the cluster CIDRs, the service CIDRs)."""
        return (".svc", f".{self.domain}", *self.cluster_cidrs, *self.service_cidrs)


def read_cluster_networks(
    fs: HostFS, distribution: str, arguments: tuple[str, ...] = ()
) -> tuple[ClusterNetworks, list[NodeProblem]]:
    """The server's cluster networks: config.yaml, then config.yaml.d/*.yaml in name order
    (later files win), then the unit's `ExecStart=` flags (flags win over files), else the
    defaults."""
    problems = Problems(distribution)
    found: dict[str, tuple[tuple[str, ...], str]] = {}
    config = CONFIG_YAML[distribution]
    directory = f"{config}.d"
    for path in [config, *fs.files(directory, "*.yaml")]:
        text = fs.read_text(path)
        if text is None:
            continue
        data = load_yaml(text, path, problems, f"{distribution} does not start with it")
        if not isinstance(data, dict):
            continue
        for flag in _NETWORK_FLAGS:
            values = string_list(data.get(flag), flag, path, problems)
            items = tuple(v.strip() for value in values for v in value.split(",") if v.strip())
            if items:
                found[flag] = (items, path)
    for flag, value in _flag_values(arguments):
        found[flag] = (tuple(v.strip() for v in value.split(",") if v.strip()), "ExecStart=")
    if not found:
        return ClusterNetworks(), problems.found
    sources = sorted({source for _, source in found.values()})
    return (
        ClusterNetworks(
            cluster_cidrs=found.get("cluster-cidr", (DEFAULT_CLUSTER_CIDRS, ""))[0],
            service_cidrs=found.get("service-cidr", (DEFAULT_SERVICE_CIDRS, ""))[0],
            domain=found.get("cluster-domain", ((DEFAULT_CLUSTER_DOMAIN,), ""))[0][0],
            source=", ".join(sources),
        ),
        problems.found,
    )


def _flag_values(arguments: tuple[str, ...]) -> list[tuple[str, str]]:
    """`--cluster-cidr=X` and `--cluster-cidr X` (and the other network flags) in order."""
    values: list[tuple[str, str]] = []
    for index, argument in enumerate(arguments):
        name, equals, value = argument.removeprefix("--").partition("=")
        if not argument.startswith("--") or name not in _NETWORK_FLAGS:
            continue
        if not equals:
            if index + 1 >= len(arguments):
                continue
            value = arguments[index + 1]
        values.append((name, value))
    return values


def read_registries_yaml(fs: HostFS, distribution: str) -> NodeRegistries:
    """The plans of `distribution` ("k3s" or "rke2") from its registries.yaml."""
    problems = Problems(distribution)
    source = REGISTRIES_YAML[distribution]
    text = fs.read_text(source)
    if text is None:
        rule = f"{distribution}: no {source}: each registry reached directly"
        return NodeRegistries(
            distribution, rule, problems=tuple(problems.found), localhost_plain=False
        )
    rule = f"{distribution}: {source}: each registry's mirrors in order, then the registry itself"
    data = load_yaml(text, source, problems, _IGNORED)
    if data is not None and not isinstance(data, dict):
        problems.add(source, "not a YAML mapping", _IGNORED)
        data = None
    data = data or {}
    configs = table(data.get("configs"), "configs", source, problems)
    tls: dict[str, tuple[tuple[str, ...], bool]] = {}
    for host, settings in configs.items():
        where = f"configs.{host!r}.tls"
        settings_tls = table(dig(settings, ("tls",)), where, source, problems)
        ca_list = string_list(settings_tls.get("ca_file"), f"{where}.ca_file", source, problems)
        skip = boolean(
            settings_tls.get("insecure_skip_verify"),
            f"{where}.insecure_skip_verify",
            source,
            problems,
        )
        tls[str(host).lower()] = (tuple(ca_list), skip)

    def settings_for(label: str) -> tuple[tuple[str, ...], bool]:
        return tls.get(label, tls.get(ANY_REGISTRY, ((), False)))

    plans: dict[str, PullPlan] = {}
    fallback: PullPlan | None = None
    for name, mirror in table(data.get("mirrors"), "mirrors", source, problems).items():
        name = str(name)
        where = f"mirrors.{name!r}.endpoint"
        hosts: list[RegistryHost] = []
        try:
            upstream = None if name == ANY_REGISTRY else default_host(name, localhost_plain=False)
        except ValueError as error:  # not a registry name: no pull ever matches it
            problems.add(source, f"mirrors.{name!r}: {error}", "this entry is not used")
            continue
        for index, url in enumerate(
            string_list(dig(mirror, ("endpoint",)), where, source, problems)
        ):
            found = endpoint(url, f"{where}[{index}]", source, problems)
            if found is None:
                continue
            address, path = found
            if upstream is not None and address.label == upstream.address.label:
                continue  # the default endpoint comes last anyway
            cas, skip = settings_for(address.label)
            hosts.append(RegistryHost(address, path or "/v2", PULL_CAPABILITIES, cas, skip, source))
        if upstream is None:
            fallback = PullPlan(ANY_REGISTRY, tuple(hosts), distribution, rule, source)
            continue
        cas, skip = settings_for(upstream.address.label if name != "docker.io" else "docker.io")
        hosts.append(
            RegistryHost(
                upstream.address, "/v2", ALL_CAPABILITIES, cas, skip, "default", upstream=True
            )
        )
        named = tuple(ca for host in hosts for ca in host.ca_files)
        problem = unreadable_cas(fs, named, source, problems, distribution)
        plans[name] = PullPlan(name, tuple(hosts), distribution, rule, source, problem)
    return NodeRegistries(
        distribution,
        rule,
        plans,
        fallback,
        sandbox_image=None,
        problems=tuple(problems.found),
        localhost_plain=False,
        host_tls=tls,
    )
