"""The hosts a runtime pulls a registry's images from, in the order it tries them.

A pull of `docker.io/library/nginx` does not simply go to registry-1.docker.io: the node's CRI
runtime may send it to mirrors first, each with its own trust, and only then to the registry
itself (its "upstream", which may itself be configured). This module holds that plan as values
(`RegistryHost`, `PullPlan`) and the rules every runtime shares; the runtimes' own readers
(`probe.node.containerd`, `probe.node.crio`, `probe.node.k3s`, `probe.node.dockerd`) fill it
from their files.

A host is skipped on any transport error, on 404 and on any status >= 400 (containerd's
resolver.go and fetcher.go; CRI-O's containers/image tries mirrors then the location alike): a
pull succeeds when some host in the order answers. Tags are resolved only by hosts with the
`resolve` capability; blobs are fetched from every host in order, so a dead host ahead of the
one that serves costs a timeout on every request of every pull.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from probe.config import DOCKER_HUB, DOCKER_HUB_ALIASES, RegistryAddress
from probe.node.problems import NodeProblem

ALL_CAPABILITIES = frozenset({"pull", "resolve", "push"})
PULL_CAPABILITIES = frozenset({"pull", "resolve"})
ANY_REGISTRY = "*"  # the plan for registries without one of their own (`_default`, `"*"`)


def reference_name(address: RegistryAddress) -> str:
    """The registry as an image reference names it: `docker.io` for every Docker Hub name
    (containerd looks up `certs.d/docker.io`), else `host[:port]` as written."""
    return (
        "docker.io"
        if address.host in DOCKER_HUB_ALIASES and address.port in (None, 443)
        else (address.label)
    )


def is_localhost(host: str) -> bool:
    """containerd's docker.IsLocalhost: `localhost` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RegistryHost:
    """One host a runtime tries for a registry: a mirror, or the registry itself."""

    address: RegistryAddress
    path: str = "/v2"  # the API root requested on it
    capabilities: frozenset[str] = ALL_CAPABILITIES
    ca_files: tuple[str, ...] = ()  # CA files as the node names them, beside the system pool
    skip_verify: bool = False
    source: str = "default"  # the file that names it, or "default" (the runtime's built-in)
    upstream: bool = False  # the registry's own server entry, not a mirror
    # A `_default` directory without a `server`: the address stands for each registry's own.
    template: bool = False
    override_path: bool = False  # the path replaces the API root (hosts.toml override_path)

    @property
    def resolves(self) -> bool:
        """Whether a tag can be resolved here (containerd filters hosts by `resolve`)."""
        return "resolve" in self.capabilities

    @property
    def role(self) -> str:
        return "registry" if self.upstream else "mirror"


@dataclass(frozen=True)
class PullPlan:
    """How one runtime pulls from one registry: its hosts in order, and the rule that chose them."""

    registry: str  # as an image reference names it: "docker.io", "quay.io", "host:5000", "*"
    hosts: tuple[RegistryHost, ...]
    runtime: str  # containerd, crio, k3s, rke2, dockerd
    rule: str  # which of the runtime's rules applied, in words, with its source
    source: str = "default"  # the file that configures this registry
    # Why no pull from it can succeed whatever the network does (a CA file the runtime cannot
    # read fails every pull before any host is tried), or None.
    problem: str | None = None


def default_host(
    name: str,
    *,
    localhost_plain: bool = True,
    capabilities: frozenset[str] = ALL_CAPABILITIES,
) -> RegistryHost:
    """The registry itself, as a runtime reaches it with no configuration: docker.io is
    registry-1.docker.io; a localhost registry is plain HTTP without verification in containerd
    1.x (`localhost_plain`); anything else is https://<name>. containerd gives it every
    capability (hosts.go ConfigureHosts), except on its legacy path: pull and resolve."""
    address = RegistryAddress.parse(name)
    if name == "docker.io" or address.is_docker_hub:
        address = RegistryAddress("https", DOCKER_HUB)
    elif localhost_plain and is_localhost(address.host):
        plain = RegistryAddress("http", address.host, address.port)
        return RegistryHost(plain, capabilities=capabilities, skip_verify=True, upstream=True)
    return RegistryHost(address, capabilities=capabilities, upstream=True)


@dataclass(frozen=True)
class NodeRegistries:
    """What the node's CRI runtime is configured to pull from, and how."""

    runtime: str | None  # whose plans these are: the CRI runtime's; None without one
    rule: str  # the rule that decided where its registry settings are read from
    plans: Mapping[str, PullPlan] = field(default_factory=lambda: MappingProxyType({}))
    fallback: PullPlan | None = None  # for registries without a plan of their own
    sandbox_image: str | None = None  # the pause image every pod needs
    sandbox_source: str = "default"
    problems: tuple[NodeProblem, ...] = ()
    hosts_dirs: tuple[str, ...] = ()  # containerd: the hosts directories read, in order
    localhost_plain: bool = True  # containerd 1.x reaches a localhost registry over plain HTTP
    default_capabilities: frozenset[str] = ALL_CAPABILITIES  # of a registry's own default host
    # TLS settings for a registry's own host by its host[:port] (containerd 1.x legacy
    # `configs.<host>.tls`, k3s `configs`): (CA files, skip_verify).
    host_tls: Mapping[str, tuple[tuple[str, ...], bool]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def plan(self, name: str) -> PullPlan:
        """The hosts a pull from `name` tries: its own plan, the runtime's plan for every
        registry without one (`_default`, `"*"`) with the registry itself last, or the registry
        itself alone."""
        own = self.plans.get(name)
        if own is not None:
            return own
        upstream = default_host(
            name, localhost_plain=self.localhost_plain, capabilities=self.default_capabilities
        )
        label = "docker.io" if name == "docker.io" else upstream.address.label
        cas, skip = self.host_tls.get(label, self.host_tls.get(ANY_REGISTRY, ((), False)))
        if cas or skip:
            upstream = dataclasses.replace(
                upstream, ca_files=cas, skip_verify=True if skip else upstream.skip_verify
            )
        if self.fallback is None:
            return PullPlan(name, (upstream,), self.runtime or "none", self.rule)
        hosts = [
            dataclasses.replace(
                h,
                address=upstream.address,
                skip_verify=h.skip_verify or upstream.skip_verify,
                template=False,
            )
            if h.template
            else h
            for h in self.fallback.hosts
        ]
        if not any(h.upstream for h in hosts):
            hosts.append(upstream)
        fallback = self.fallback
        return PullPlan(name, tuple(hosts), fallback.runtime, fallback.rule, fallback.source)

    @property
    def names(self) -> tuple[str, ...]:
        """The registries the runtime has settings for, in the order its files name them."""
        return tuple(self.plans)


NO_REGISTRIES = NodeRegistries(None, "no CRI runtime found: each registry is reached directly")
