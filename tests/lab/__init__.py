"""The network lab the fault tests run the probe in: namespaces, DNS, registries, faults.

`Lab.start(workdir)` builds it (tests use the session fixture `lab` from tests/conftest.py);
`lab.check([...], lab.host_root(...))` runs `probe check --output json` on the lab's node, or
with `node="proxied"` on the node whose only way out is a proxy (`lab.squid`, `lab.tinyproxy`,
the HTTPS proxies `lab.tls_proxy` and `lab.untrusted_tls_proxy`, the SOCKS5 servers `lab.socks`
and `lab.socks_auth`);
`lab.dockerhub` is the Docker Hub stand-in behind Docker Hub's real names. Each node is a PID
namespace too: what runs there sees only the processes the tests started in that node. The lab's
node is dual-stack (IPv6 from 2001:2::/48); `lab.ipv6_unrouted()` makes it IPv4-only for a block,
and `lab.golang` builds a Go client that reaches a registry as containerd does.
"""

from .dockerhub import DockerHubStandin, RequestCounts
from .lab import (
    CONTAINERD_CONFIG_PATH,
    DEAD_DNS_ADDRESS,
    DNS_ADDRESS,
    DOCKERHUB_ADDRESS,
    EXTRA_NAMES,
    NODE_ADDRESS,
    NODES,
    PROXIED_NODE_ADDRESS,
    SERVICES,
    AgentRun,
    CompletedRun,
    Lab,
    Service,
    missing_requirements,
)
from .proxies import DENIED_NAME, SOCKS_DENIED_NAME, Proxy

__all__ = [
    "CONTAINERD_CONFIG_PATH",
    "DEAD_DNS_ADDRESS",
    "DENIED_NAME",
    "DNS_ADDRESS",
    "DOCKERHUB_ADDRESS",
    "EXTRA_NAMES",
    "NODES",
    "NODE_ADDRESS",
    "PROXIED_NODE_ADDRESS",
    "SERVICES",
    "SOCKS_DENIED_NAME",
    "AgentRun",
    "CompletedRun",
    "DockerHubStandin",
    "Lab",
    "Proxy",
    "RequestCounts",
    "Service",
    "missing_requirements",
]
