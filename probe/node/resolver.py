"""How the node resolves a name: `/etc/hosts` first, then the nameservers of `/etc/resolv.conf`.

Go's resolver (and so containerd) reads /etc/hosts before DNS ("files dns"): names are matched
case-insensitively with a trailing dot ignored, and an address may carry an IPv6 zone. Then the
nameservers, search list and options (`ndots`, `timeout`, `attempts`, `rotate`) of resolv.conf,
which dnspython reads with the same rules glibc and Go apply. Both files are read once per node
view; the checks share the one resolver built here.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from probe.config import is_ip_address
from probe.node.hostfs import HostFS

RESOLV_CONF = "/etc/resolv.conf"
HOSTS_FILE = "/etc/hosts"
MAX_HOSTS_FILE_BYTES = 1 << 20
# The caller's asyncio.timeout() bounds every query; dnspython gets no lifetime of its own below
# that, so its default (5 s) never ends a check first.
_LIFETIME = 3600.0


@dataclass(frozen=True)
class NodeResolver:
    """The node's way to a name: its hosts file and the resolver its resolv.conf describes."""

    resolver: dns.asyncresolver.Resolver | None  # None: no usable resolv.conf (see problem)
    problem: str | None = None  # why there is no resolver, in words
    hosts: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def nameservers(self) -> tuple[str, ...]:
        if self.resolver is None:
            return ()
        return tuple(str(server) for server in self.resolver.nameservers)

    def pinned(self, host: str) -> tuple[str, ...]:
        """The addresses /etc/hosts gives a name, in file order."""
        return self.hosts.get(host.rstrip(".").lower(), ())


def read_resolver(fs: HostFS) -> NodeResolver:
    """The node's hosts file and resolv.conf, as Go's resolver reads them."""
    hosts = parse_hosts(fs.read_text(HOSTS_FILE, MAX_HOSTS_FILE_BYTES) or "")
    text = fs.read_text(RESOLV_CONF)
    if text is None:
        return NodeResolver(None, _unread(fs), hosts)
    resolver = dns.asyncresolver.Resolver(configure=False)
    try:
        resolver.read_resolv_conf(io.StringIO(_as_go_reads(text)))
    except dns.resolver.NoResolverConfiguration:
        return NodeResolver(None, f"{RESOLV_CONF} names no nameserver", hosts)
    resolver.lifetime = _LIFETIME
    return NodeResolver(resolver, None, hosts)


def _unread(fs: HostFS) -> str:
    """Why resolv.conf gave no text: missing from the node, or the agent's own trouble reading
    it (the node problem says why), which says nothing about the node's resolvers."""
    refused = next((p.message for p in fs.problems if p.source == RESOLV_CONF), None)
    if refused is not None:
        return (
            f"the agent cannot read the node's {RESOLV_CONF} ({refused}): the resolvers the "
            "runtime uses are unknown, nothing is known of them"
        )
    if fs.is_dir(RESOLV_CONF):
        return f"the node's {RESOLV_CONF} is a directory, not a file"
    return f"the node has no {RESOLV_CONF}"


def _as_go_reads(text: str) -> str:
    """resolv.conf without what Go's resolver skips (src/net/dnsconfig_unix.go): a `nameserver`
    that is not an IP address, and (since no lookup can use it) a search domain that is not a
    DNS name. dnspython raises on either and would lose the whole file."""
    lines = []
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"] and (len(fields) < 2 or not is_ip_address(fields[1])):
            continue
        if fields[:1] in (["search"], ["domain"]):
            line = " ".join([fields[0], *(name for name in fields[1:] if _is_name(name))])
        lines.append(line)
    return "\n".join(lines)


def _is_name(text: str) -> bool:
    try:
        dns.name.from_text(text)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return False
    return True


def parse_hosts(text: str) -> Mapping[str, tuple[str, ...]]:
    """name -> addresses of a hosts file (hosts(5)); names lower-cased, trailing dot dropped."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or not is_ip_address(fields[0].split("%", 1)[0]):
            continue
        for name in fields[1:]:
            addresses = found.setdefault(name.rstrip(".").lower(), [])
            if fields[0] not in addresses:
                addresses.append(fields[0])
    return MappingProxyType({name: tuple(addresses) for name, addresses in found.items()})
