"""The network lab: a node, an internet, and on it every fault the probe must name.

Topology (IPv4 in 198.18.0.0/15, RFC 2544's benchmarking range; IPv6 in 2001:2::/48, RFC 5180's
benchmarking prefix; nothing on the host changes):

    rp<pid>-node   198.18.0.2/24 ──veth── 198.18.0.1/24  rp<pid>-net
                   2001:2::2/64             2001:2::1/64
    default via 198.18.0.1                  DNS 198.18.0.53 (UDP+TCP), services 198.18.1.x/32 on lo
    default via 2001:2::1                   IPv6 services 2001:2:0:1::x/128 on lo
    rp<pid>-pnode  198.18.0.3/24 ──veth── 198.18.0.1/32, route 198.18.0.3/32
    default via 198.18.0.1                  (IPv4 only)

"node" is where the probe runs, with nftables rules of its own for the firewall faults; "net"
holds the DNS server, two real docker-registry instances, the fault server, the Docker Hub
stand-in (dockerhub.py) and the proxies (proxies.py: squid, also as an HTTPS proxy, tinyproxy,
two dante SOCKS5 servers). "pnode", the proxied node, drops every direct TCP connection to ports
443 and 5000: the proxies are its only way to a registry.
Both nodes are also PID namespaces with their own /proc (netns.py): a process in a node, the probe
included, sees only the processes the tests started in that node, never the host's (a real
containerd) nor another lab's. `run_in`, `probe`, `check`, `run_agent` and `spawn_in` all start
their command there.
`SERVICES` is the map of the fault tests: every lab name, its address and what answers there;
`EXTRA_NAMES` the names of Docker Hub and the proxies. All names are known when the lab starts;
`Lab.set_name()` adds or changes one at runtime (the DNS server rereads its zone file).
A service's IPv6 addresses are its AAAA records; `Lab.ipv6_unrouted()` takes the node's IPv6
default route away for a block, so those addresses become unroutable from the node.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dockerhub import NAMES as DOCKERHUB_NAMES
from .dockerhub import DockerHubStandin
from .netns import PREFIX, LabProcess, Namespace, ip, remove_leftovers
from .pki import CertFiles, CertificateAuthority
from .proxies import (
    DENIED_NAME,
    SOCKS_DENIED_ADDRESS,
    SOCKS_DENIED_NAME,
    Proxies,
    Proxy,
    TLSPort,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = Path(__file__).resolve().parent
REQUIRED_TOOLS = (
    "ip", "nft", "docker-registry", "squid", "tinyproxy", "danted", "unshare", "nsenter",
    "mount", "openssl",
)  # fmt: skip

NODE_ADDRESS = "198.18.0.2"
GATEWAY = "198.18.0.1"
NODE_ADDRESS6 = "2001:2::2"
GATEWAY6 = "2001:2::1"
DNS_ADDRESS = "198.18.0.53"
DEAD_DNS_ADDRESS = "198.18.0.99"  # exists on net, but node's firewall drops all it sends back
PROXIED_NODE_ADDRESS = "198.18.0.3"
DOCKERHUB_ADDRESS = "198.18.1.50"
REGISTRY_ADDRESS = "198.18.1.10"  # registry.lab.test
SQUID = Proxy("squid.lab.test", "198.18.1.60", 3128)
TINYPROXY_USER = "labproxy"
TINYPROXY_NAME, TINYPROXY_ADDRESS, TINYPROXY_PORT = "tinyproxy.lab.test", "198.18.1.61", 8888
# squid's https_ports: a certificate from the lab CA, and one from the CA the node lacks.
TLS_PROXY = Proxy("tlsproxy.lab.test", "198.18.1.62", 3129, scheme="https")
UNTRUSTED_TLS_PROXY = Proxy("tlsproxy-untrusted.lab.test", "198.18.1.63", 3129, scheme="https")
SOCKS = Proxy("socks.lab.test", "198.18.1.64", 1080, scheme="socks5")
SOCKS_AUTH_NAME, SOCKS_AUTH_ADDRESS = "socks-auth.lab.test", "198.18.1.65"
SOCKS_USER = "labsocks"
NODES = ("node", "proxied")
CONTAINERD_CONFIG_PATH = """version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
"""


@dataclass(frozen=True)
class Service:
    """One lab name: its addresses (IPv4 ones its A records, IPv6 ones its AAAA records) and
    what answers on `port` there."""

    name: str
    addresses: tuple[str, ...]
    # "docker-registry", "docker-registry-silly", a fault-server personality, or "" (nothing)
    server: str = ""
    # which certificate the TLS server presents: "valid", "expired", "not-yet-valid",
    # "wrong-name" (issued for another name), "other-ca" (signed by the CA the node lacks),
    # or "none": plain HTTP, no TLS (fault-server personalities only)
    cert: str = "valid"
    port: int = 443
    # (address, personality) pairs where another fault-server personality answers instead of
    # `server`; "" leaves nothing listening on that address
    served_by: tuple[tuple[str, str], ...] = ()

    @property
    def listeners(self) -> list[tuple[str, str]]:
        """(address, server) for every address where something listens."""
        other = dict(self.served_by)
        found = [(a, other.get(a, self.server)) for a in self.addresses]
        return [(address, server) for address, server in found if server]

    def records(self) -> dict[str, list[str]]:
        """The DNS records of the name: A for its IPv4 addresses, AAAA for its IPv6 ones."""
        return {
            "A": [a for a in self.addresses if ":" not in a],
            "AAAA": [a for a in self.addresses if ":" in a],
        }


SERVICES: tuple[Service, ...] = (
    Service("registry.lab.test", ("198.18.1.10",), "docker-registry"),
    Service("authreg.lab.test", ("198.18.1.11",), "docker-registry-silly"),
    Service("auth.lab.test", ("198.18.1.12",), "registry"),
    Service("token.lab.test", ("198.18.1.13",), "token-realm"),
    Service("private.lab.test", ("198.18.1.14",), "registry", "other-ca"),
    Service("untrusted.lab.test", ("198.18.1.15",), "registry", "other-ca"),
    Service("expired.lab.test", ("198.18.1.16",), "registry", "expired"),
    Service("notyet.lab.test", ("198.18.1.17",), "registry", "not-yet-valid"),
    Service("wrongname.lab.test", ("198.18.1.18",), "registry", "wrong-name"),
    # Trusted only through etc/containerd/certs.d/port5000.lab.test:5000/ca.crt.
    Service("port5000.lab.test", ("198.18.1.19",), "registry", "other-ca", port=5000),
    Service("plain.lab.test", ("198.18.1.26",), "registry", "none", port=5000),
    Service("firewall-drop.lab.test", ("198.18.1.20",)),
    Service("firewall-reset.lab.test", ("198.18.1.21",)),
    Service("closed.lab.test", ("198.18.1.22",)),
    Service("host-unreachable.lab.test", ("198.18.1.23",)),
    Service("net-unreachable.lab.test", ("198.18.1.24",)),
    Service("no-route.lab.test", ("198.18.1.25",)),
    Service("tls-silent.lab.test", ("198.18.1.30",), "tls-silent"),
    Service("tls-garbage.lab.test", ("198.18.1.31",), "tls-garbage"),
    Service("tls-alert.lab.test", ("198.18.1.32",), "tls-alert"),
    Service("http-silent.lab.test", ("198.18.1.33",), "http-silent"),
    Service("captive.lab.test", ("198.18.1.34",), "captive"),
    Service("status-503.lab.test", ("198.18.1.35",), "status-503"),
    Service("status-503-registry.lab.test", ("198.18.1.36",), "status-503-registry"),
    # "Proxies" with a broken answer to CONNECT (plain TCP, port 3128).
    Service("garbage-proxy.lab.test", ("198.18.1.37",), "proxy-garbage", "none", port=3128),
    Service("endless-proxy.lab.test", ("198.18.1.38",), "proxy-endless-headers", "none", port=3128),
    # A registry whose 401 names a new token realm host on every request (none resolves).
    Service("realm-rotating.lab.test", ("198.18.1.90",), "realm-rotating"),
    # Two addresses: the first a healthy registry, the second with nothing listening.
    Service(
        "multi.lab.test",
        ("198.18.1.40", "198.18.1.41"),
        "registry",
        served_by=(("198.18.1.41", ""),),
    ),
    # Dual stack: A and AAAA, a registry on both; the node's firewall drops what one family's
    # address sends back (-drop6, -drop4); -tls6 answers a TLS alert on IPv6 only.
    Service("dual.lab.test", ("198.18.1.70", "2001:2:0:1::70"), "registry"),
    Service("dual-drop6.lab.test", ("198.18.1.71", "2001:2:0:1::71"), "registry"),
    Service("dual-drop4.lab.test", ("198.18.1.72", "2001:2:0:1::72"), "registry"),
    Service(
        "dual-tls6.lab.test",
        ("198.18.1.73", "2001:2:0:1::73"),
        "registry",
        served_by=(("2001:2:0:1::73", "tls-alert"),),
    ),
    # AAAA only: a real docker-registry listening on IPv6 alone.
    Service("v6only.lab.test", ("2001:2:0:1::74",), "docker-registry"),
)

# Names whose DNS answer is the fault (values as in dnsserver.py's zone file).
DNS_FAULTS: dict[str, object] = {
    "nxdomain.lab.test": "nxdomain",
    "noanswer.lab.test": {"TXT": ["this name exists and has no address"]},
    "servfail.lab.test": "servfail",
    "refused.lab.test": "refused",
    "dns-drop.lab.test": "drop",
}

# The node's firewall (nft, node namespace only) and routes; see SERVICES for the names.
NODE_NFT = """
table ip registry_probe_lab {
    chain output {
        type filter hook output priority 0; policy accept;
        ip daddr 198.18.1.21 tcp dport 443 reject with tcp reset
        ip daddr 198.18.1.23 reject with icmp type host-unreachable
        ip daddr 198.18.1.24 reject with icmp type net-unreachable
    }
    chain input {
        # Dropped on the way back, so the SYN (or DNS query) leaves and nothing ever returns:
        # a drop in "output" would fail sendto() at once with EPERM instead of timing out.
        type filter hook input priority 0; policy accept;
        ip saddr 198.18.1.20 drop
        ip saddr 198.18.0.99 drop
        ip saddr 198.18.1.72 drop
    }
}
table ip6 registry_probe_lab {
    chain input {
        # As above: the SYN to dual-drop6.lab.test's IPv6 address leaves, its answer is dropped.
        type filter hook input priority 0; policy accept;
        ip6 saddr 2001:2:0:1::71 drop
    }
}
"""
NODE_UNREACHABLE_ROUTE = "198.18.1.25/32"

# Names beside SERVICES: Docker Hub's (the stand-in), the proxies, a name squid refuses (it
# resolves to registry.lab.test, so only the proxy's rule stands in the way), and one dante's
# rule refuses (by its address, which nothing serves).
EXTRA_NAMES: dict[str, str] = {
    **dict.fromkeys(DOCKERHUB_NAMES, DOCKERHUB_ADDRESS),
    SQUID.name: SQUID.address,
    TINYPROXY_NAME: TINYPROXY_ADDRESS,
    TLS_PROXY.name: TLS_PROXY.address,
    UNTRUSTED_TLS_PROXY.name: UNTRUSTED_TLS_PROXY.address,
    SOCKS.name: SOCKS.address,
    SOCKS_AUTH_NAME: SOCKS_AUTH_ADDRESS,
    DENIED_NAME: REGISTRY_ADDRESS,
    SOCKS_DENIED_NAME: SOCKS_DENIED_ADDRESS,
}
PROXY_ADDRESSES = (
    SQUID.address,
    TINYPROXY_ADDRESS,
    TLS_PROXY.address,
    UNTRUSTED_TLS_PROXY.address,
    SOCKS.address,
    SOCKS_AUTH_ADDRESS,
)

# The proxied node's firewall: no direct TCP to a registry port; the proxies are the way out.
# Dropped in "output", so the SYN never leaves: connect() times out, as behind a real egress
# firewall (TCP retransmits; only a datagram socket would see EPERM).
_PROXY_PORTS = f"{SQUID.address} . {SQUID.port}, {TINYPROXY_ADDRESS} . {TINYPROXY_PORT}"
PROXIED_NODE_NFT = f"""
table ip registry_probe_lab {{
    chain output {{
        type filter hook output priority 0; policy accept;
        ip daddr . tcp dport {{ {_PROXY_PORTS} }} accept
        tcp dport {{ 443, 5000 }} drop
    }}
}}
"""


@dataclass(frozen=True)
class CompletedRun:
    """One `probe check` run: exit status, the parsed JSON report (None if unparseable), timing."""

    exit_code: int
    json: dict[str, Any] | None
    stdout: str
    stderr: str
    elapsed: float

    def registry(self, name: str) -> dict[str, Any]:
        """The report of one registry (as given on the command line)."""
        assert self.json is not None, f"no JSON report; stdout={self.stdout!r} {self.stderr=}"
        for entry in self.json["registries"]:
            if entry["registry"] == name:
                return dict(entry)
        raise AssertionError(f"{name} not in report: {self.json}")

    def checks(self, registry: str, check: str | None = None) -> list[dict[str, Any]]:
        """The checks of one registry, optionally only those of one kind."""
        return [
            c for c in self.registry(registry)["checks"] if check is None or c["check"] == check
        ]

    def failed(self, registry: str) -> list[dict[str, Any]]:
        return [c for c in self.checks(registry) if not c["ok"]]

    def describe(self) -> str:
        """Everything about the run, for assertion messages."""
        body = json.dumps(self.json, indent=1) if self.json is not None else self.stdout
        return f"exit={self.exit_code} elapsed={self.elapsed:.2f}s\n{body}\nstderr:\n{self.stderr}"


@dataclass(frozen=True)
class AgentRun:
    """One `probe run` that was stopped with SIGTERM after a while: exit status and output."""

    exit_code: int
    stdout: str
    stderr: str
    elapsed: float

    def describe(self) -> str:
        return (
            f"exit={self.exit_code} elapsed={self.elapsed:.2f}s\nstdout:\n{self.stdout}\n"
            f"stderr:\n{self.stderr}"
        )


class Lab:
    """A running lab. Build with `Lab.start(workdir)`, always `close()` it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"{PREFIX}{os.getpid()}"
        self.node: Namespace | None = None
        self.pnode: Namespace | None = None  # the proxied node
        self.net: Namespace | None = None
        self.ca = CertificateAuthority("registry-probe lab CA")
        self.other_ca = CertificateAuthority("registry-probe other CA (not trusted by the node)")
        self.zone_path = workdir / "zone.json"
        self.zone: dict[str, object] = {}
        self._roots = 0
        self.dockerhub = DockerHubStandin(workdir, DOCKERHUB_ADDRESS)
        self._proxies = Proxies(self.prefix, workdir)
        self.squid = SQUID  # gets its access log when started
        # tinyproxy's password is random, so a test can search every output for it.
        self.tinyproxy = Proxy(
            TINYPROXY_NAME,
            TINYPROXY_ADDRESS,
            TINYPROXY_PORT,
            TINYPROXY_USER,
            f"proxy-pw-{secrets.token_hex(8)}",
        )
        self.tls_proxy = TLS_PROXY  # squid's https_port, certificate from the lab CA
        self.untrusted_tls_proxy = UNTRUSTED_TLS_PROXY  # its certificate from the other CA
        self.socks = SOCKS  # dante, no authentication
        self.socks_auth = Proxy(  # dante, RFC 1929 username/password
            SOCKS_AUTH_NAME,
            SOCKS_AUTH_ADDRESS,
            SOCKS.port,
            SOCKS_USER,
            f"socks-pw-{secrets.token_hex(8)}",
            scheme="socks5",
        )

    # ----- building -----------------------------------------------------------------------------

    @classmethod
    def start(cls, workdir: Path) -> Lab:
        remove_leftovers()
        lab = cls(workdir)
        try:
            lab._build()
        except BaseException:
            lab.close()
            raise
        return lab

    def _build(self) -> None:
        self.node = Namespace.create(f"{self.prefix}-node", pid=True)
        self.net = Namespace.create(f"{self.prefix}-net")
        node_if, net_if = f"{self.prefix}n", f"{self.prefix}x"
        # Both veth ends are born inside their namespaces: no name ever appears on the host.
        ip(
            "link", "add", node_if, "netns", self.node.name, "type", "veth",
            "peer", "name", net_if, "netns", self.net.name,
        )  # fmt: skip
        self.node.ip("addr", "add", f"{NODE_ADDRESS}/24", "dev", node_if)
        self.node.ip("link", "set", node_if, "up")
        self.node.ip("route", "add", "default", "via", GATEWAY)
        self.node.ip("route", "add", "unreachable", NODE_UNREACHABLE_ROUTE)
        self.net.ip("addr", "add", f"{GATEWAY}/24", "dev", net_if)
        self.net.ip("link", "set", net_if, "up")
        # IPv6 beside: `nodad`, so the addresses are usable at once (no duplicate address
        # detection, during which a connect from a tentative address fails).
        self.node.ip("-6", "addr", "add", f"{NODE_ADDRESS6}/64", "dev", node_if, "nodad")
        self.net.ip("-6", "addr", "add", f"{GATEWAY6}/64", "dev", net_if, "nodad")
        self.node.ip("-6", "route", "add", "default", "via", GATEWAY6)
        for address in (DNS_ADDRESS, DEAD_DNS_ADDRESS):
            self.net.ip("addr", "add", f"{address}/32", "dev", net_if)
        for service in SERVICES:
            for address in service.addresses:
                length = 128 if ":" in address else 32
                self.net.ip("addr", "add", f"{address}/{length}", "dev", "lo")
        self.node.run(["nft", "-f", "-"], input_text=NODE_NFT)
        self._build_proxied_node()
        for address in (DOCKERHUB_ADDRESS, *PROXY_ADDRESSES):
            self.net.ip("addr", "add", f"{address}/32", "dev", "lo")

        self.zone = (
            {s.name: s.records() for s in SERVICES}
            | dict(DNS_FAULTS)
            | {name: {"A": [address]} for name, address in EXTRA_NAMES.items()}
        )
        self._write_zone()
        self.net.spawn(
            "dnsserver",
            [sys.executable, str(LAB_DIR / "dnsserver.py"), str(self.zone_path), DNS_ADDRESS],
            self.workdir / "dnsserver.log",
            listens=[("udp", DNS_ADDRESS, 53), ("tcp", DNS_ADDRESS, 53)],
        )
        # Started together, then waited for: each takes a moment to come up.
        started = len(self.net.processes)
        self.dockerhub.start(self.net, self.ca)
        tls_ports = (
            TLSPort(self.tls_proxy, *self._proxy_certs(self.tls_proxy, self.ca)),
            TLSPort(
                self.untrusted_tls_proxy,
                *self._proxy_certs(self.untrusted_tls_proxy, self.other_ca),
            ),
        )
        self.squid = self._proxies.start_squid(self.net, SQUID, DNS_ADDRESS, tls_ports)
        self._proxies.start_tinyproxy(self.net, self.tinyproxy, DNS_ADDRESS)
        for socks in (self.socks, self.socks_auth):
            self._proxies.start_dante(self.net, socks, DNS_ADDRESS)
        waiting = self.net.processes[started:]
        self._start_registries()
        self._start_fault_server()
        for process in waiting:
            process.wait_listening(process.listens, deadline_seconds=15)

    def _build_proxied_node(self) -> None:
        """A second node whose only way to ports 443 and 5000 is through a proxy."""
        assert self.net is not None
        self.pnode = Namespace.create(f"{self.prefix}-pnode", pid=True)
        pnode_if, net_if = f"{self.prefix}p", f"{self.prefix}q"
        ip(
            "link", "add", pnode_if, "netns", self.pnode.name, "type", "veth",
            "peer", "name", net_if, "netns", self.net.name,
        )  # fmt: skip
        self.pnode.ip("addr", "add", f"{PROXIED_NODE_ADDRESS}/24", "dev", pnode_if)
        self.pnode.ip("link", "set", pnode_if, "up")
        self.pnode.ip("route", "add", "default", "via", GATEWAY)
        # net already has the /24 on the first node's veth: this end gets the gateway address
        # alone (so it answers ARP for it) and a host route, more specific than the /24.
        self.net.ip("addr", "add", f"{GATEWAY}/32", "dev", net_if)
        self.net.ip("link", "set", net_if, "up")
        self.net.ip("route", "add", f"{PROXIED_NODE_ADDRESS}/32", "dev", net_if)
        self.pnode.run(["nft", "-f", "-"], input_text=PROXIED_NODE_NFT)

    @property
    def proxies(self) -> tuple[Proxy, Proxy]:
        """squid (no credentials), then tinyproxy (Basic auth)."""
        return (self.squid, self.tinyproxy)

    def _proxy_certs(self, proxy: Proxy, ca: CertificateAuthority) -> tuple[Path, Path]:
        directory = self.workdir / "certs"
        directory.mkdir(exist_ok=True)
        files = ca.issue(directory, proxy.name, [proxy.name])
        return files.cert, files.key

    def _certs_for(self, service: Service) -> CertFiles:
        directory = self.workdir / "certs"
        directory.mkdir(exist_ok=True)
        stem = service.name
        now = dt.datetime.now(dt.UTC)
        match service.cert:
            case "valid":
                return self.ca.issue(directory, stem, [service.name])
            case "expired":
                return self.ca.issue(
                    directory,
                    stem,
                    [service.name],
                    not_before=now - dt.timedelta(days=30),
                    not_after=now - dt.timedelta(days=1),
                )
            case "not-yet-valid":
                return self.ca.issue(
                    directory,
                    stem,
                    [service.name],
                    not_before=now + dt.timedelta(days=1),
                    not_after=now + dt.timedelta(days=30),
                )
            case "wrong-name":
                return self.ca.issue(directory, stem, ["elsewhere.lab.test"])
            case "other-ca":
                return self.other_ca.issue(directory, stem, [service.name])
        raise ValueError(service.cert)

    def _start_registries(self) -> None:
        for service in SERVICES:
            if service.server.startswith("docker-registry"):
                self._start_registry(service)

    def _start_registry(self, service: Service, auth: str = "") -> LabProcess:
        """A real docker-registry for `service` in "net" (filesystem storage, lab TLS); `auth`
        is the YAML of its `auth:` section (htpasswd, token), if any."""
        assert self.net is not None
        [(address, _)] = service.listeners  # docker-registry listens on one address
        certs = self._certs_for(service)
        storage = self.workdir / f"storage-{service.name}"
        storage.mkdir()
        if service.server == "docker-registry-silly":
            # "silly" auth answers any request without Authorization with 401 and a Bearer
            # challenge, as a registry behind a token service does (Docker Hub, Harbor).
            auth = (
                "auth:\n  silly:\n    realm: https://auth.lab.test/token\n"
                f"    service: {service.name}\n"
            )
        config = self.workdir / f"registry-{service.name}.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            f"http:\n  addr: '{_host_port(address, service.port)}'\n"
            f"  secret: lab-{self.prefix}\n"
            f"  tls:\n    certificate: {certs.cert}\n    key: {certs.key}\n"
            f"{auth}",
            encoding="utf-8",
        )
        return self.net.spawn(
            service.name,
            ["docker-registry", "serve", str(config)],
            self.workdir / f"registry-{service.name}.log",
            listens=[("tcp", address, service.port)],
        )

    def add_registry(self, service: Service, auth: str = "") -> LabProcess:
        """Start one more docker-registry (`server="docker-registry"`) on a new lab address and
        name, for the rest of the session; `cert` as in SERVICES ("valid", "other-ca", ...);
        `auth` the YAML of its `auth:` section (`auth:\n  htpasswd: ...`), if any."""
        assert self.net is not None
        assert service.server.startswith("docker-registry"), service
        assert all(a.startswith("198.18.") for a in service.addresses), service
        for address in service.addresses:
            self.net.ip("addr", "add", f"{address}/32", "dev", "lo")
        process = self._start_registry(service, auth)
        self.set_name(service.name, {"A": list(service.addresses)})
        return process

    def _start_fault_server(self) -> None:
        assert self.net is not None
        listeners = []
        for service in SERVICES:
            if not service.listeners or service.server.startswith("docker-registry"):
                continue
            certs = self._certs_for(service) if service.cert != "none" else None
            for address, personality in service.listeners:
                listener: dict[str, object] = {
                    "address": address,
                    "port": service.port,
                    "personality": personality,
                    "tls": certs is not None,
                }
                if certs is not None:
                    listener |= {"cert": str(certs.cert), "key": str(certs.key)}
                listeners.append(listener)
        config = self.workdir / "faultserver.json"
        config.write_text(json.dumps(listeners, indent=1), encoding="utf-8")
        self.net.spawn(
            "faultserver",
            [sys.executable, str(LAB_DIR / "faultserver.py"), str(config)],
            self.workdir / "faultserver.log",
            listens=[("tcp", str(x["address"]), int(str(x["port"]))) for x in listeners],
        )

    def close(self) -> None:
        """Stop every lab process and delete the namespaces and squid's files; safe twice."""
        for ns in (self.node, self.pnode, self.net):
            if ns is not None:
                ns.close()
        self.node = self.pnode = self.net = None
        self._proxies.close()

    # ----- using --------------------------------------------------------------------------------

    def set_name(self, name: str, behaviour: object) -> None:
        """Add or change one DNS name (`{"A": [...]}` or "nxdomain"/"servfail"/"refused"/"drop")."""
        self.zone[name] = behaviour
        self._write_zone()

    @contextlib.contextmanager
    def name_changed(self, name: str, behaviour: object) -> Iterator[None]:
        """Give `name` another DNS behaviour for the duration of a `with` block."""
        before = self.zone.get(name)
        self.set_name(name, behaviour)
        try:
            yield
        finally:
            if before is None:
                del self.zone[name]
                self._write_zone()
            else:
                self.set_name(name, before)

    @contextlib.contextmanager
    def ipv6_unrouted(self) -> Iterator[None]:
        """The node without its IPv6 default route for a `with` block: an IPv4-only node's view
        of the lab's AAAA records (connect fails with ENETUNREACH). Only its own link stays."""
        assert self.node is not None, "the lab is closed"
        self.node.ip("-6", "route", "del", "default", "via", GATEWAY6)
        try:
            yield
        finally:
            self.node.ip("-6", "route", "add", "default", "via", GATEWAY6)

    def _write_zone(self) -> None:
        # Rename over the old file, so the server never reads a half-written zone; bump the mtime
        # past the old one in case two writes land within the filesystem's timestamp granularity.
        old = self.zone_path.stat().st_mtime_ns if self.zone_path.exists() else 0
        tmp = self.zone_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.zone, indent=1), encoding="utf-8")
        new = max(time.time_ns(), old + 1_000_000)
        os.utime(tmp, ns=(new, new))
        tmp.replace(self.zone_path)

    def host_root(
        self,
        *,
        nameservers: tuple[str, ...] = (DNS_ADDRESS,),
        resolv_options: str = "options timeout:1 attempts:1",
        trust_lab_ca: bool = True,
        certs_d: dict[str, bytes] | None = None,
        files: dict[str, str] | None = None,
    ) -> Path:
        """A fresh node filesystem: resolv.conf, CA bundle and containerd certs.d CAs.

        `nameservers=()` writes a resolv.conf without any nameserver line; `certs_d` maps a
        `host[:port]` to the PEM of `etc/containerd/certs.d/<host[:port]>/ca.crt`; `files` maps
        a path relative to the root (`etc/systemd/system/containerd.service.d/http-proxy.conf`,
        `etc/docker/daemon.json`) to its text, written last (it may replace the files above).
        """
        self._roots += 1
        root = self.workdir / f"hostroot-{self._roots}"
        etc = root / "etc"
        (etc / "ssl" / "certs").mkdir(parents=True)
        lines = ["# written by the registry-probe lab"]
        lines += [f"nameserver {n}" for n in nameservers]
        if resolv_options:
            lines.append(resolv_options)
        (etc / "resolv.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        bundle = self.ca.pem if trust_lab_ca else b""
        (etc / "ssl" / "certs" / "ca-certificates.crt").write_bytes(bundle)
        for host, pem in (certs_d or {}).items():
            directory = etc / "containerd" / "certs.d" / host
            directory.mkdir(parents=True)
            (directory / "ca.crt").write_bytes(pem)
        if certs_d:
            # containerd reads certs.d only when config_path names it (1.x and 2.x alike).
            (etc / "containerd" / "config.toml").write_text(CONTAINERD_CONFIG_PATH)
        for relative, text in (files or {}).items():
            path = (root / relative).resolve()
            assert path.is_relative_to(root.resolve()), f"{relative} is outside the host root"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return root

    def namespace(self, node: str = "node") -> Namespace:
        """The namespace of `node`: "node" (the plain node) or "proxied" (egress via proxy)."""
        assert node in NODES, f"node is one of {NODES}, not {node!r}"
        ns = self.node if node == "node" else self.pnode
        assert ns is not None, "the lab is closed"
        return ns

    def check(
        self,
        registries: list[str],
        host_root: Path | None = None,
        timeout: float = 2.0,
        extra_args: tuple[str, ...] = (),
        node: str = "node",
    ) -> CompletedRun:
        """Run `python -m probe check ... --output json` inside a node's namespace."""
        root = host_root if host_root is not None else self.host_root()
        argv = [
            "check", "--no-discover",
            "--host-root", str(root), "--timeout", str(timeout), "--output", "json",
        ]  # fmt: skip
        for registry in registries:
            argv += ["--registry", registry]
        argv += list(extra_args)
        started = time.monotonic()
        try:
            done = self.probe(argv, node=node, timeout=timeout * 3 + 15)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"probe check {registries} still running after {e.timeout:.0f}s"
            ) from e
        elapsed = time.monotonic() - started
        report = None
        with contextlib.suppress(ValueError):
            report = json.loads(done.stdout)
        return CompletedRun(done.returncode, report, done.stdout, done.stderr, elapsed)

    def probe(
        self, args: list[str], *, node: str = "node", timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -m probe ARGS` in a node's namespace, without the host's proxy variables.

        Raises subprocess.TimeoutExpired (after killing it) if it runs past `timeout`.
        """
        return self.run_in([sys.executable, "-m", "probe", *args], node=node, timeout=timeout)

    def run_in(
        self,
        argv: list[str],
        *,
        node: str = "node",
        timeout: float = 10,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run any short command in a node's namespace; its exit status is the caller's to judge.

        `env` replaces the environment; by default it is pytest's without any proxy variable
        (the probe reads proxies from the node's files only).
        """
        return self.namespace(node).run_command(
            argv,
            timeout=timeout,
            cwd=REPO_ROOT,
            env=env if env is not None else _without_proxies(),
        )

    def run_agent(
        self, args: list[str], *, seconds: float, node: str = "node", stop_timeout: float = 10
    ) -> AgentRun:
        """Run `python -m probe run ARGS` in a node's namespace for `seconds`, then SIGTERM it.

        Add `--listen 127.0.0.1:0` (or another free port) to ARGS. Raises AssertionError if it
        has not stopped `stop_timeout` seconds after the signal (it is then killed).
        """
        ns = self.namespace(node)
        started = time.monotonic()
        with ns.popen(
            [sys.executable, "-m", "probe", "run", *args],
            cwd=REPO_ROOT,
            env=_without_proxies(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as agent:
            try:
                try:
                    stdout, stderr = agent.communicate(timeout=seconds)
                except subprocess.TimeoutExpired:
                    agent.send_signal(signal.SIGTERM)  # nsenter execs: this is python
                    stdout, stderr = agent.communicate(timeout=stop_timeout)
            except subprocess.TimeoutExpired as e:
                agent.kill()
                out, err = agent.communicate(timeout=5)
                raise AssertionError(
                    f"probe run did not stop {stop_timeout}s after SIGTERM\n{out}\n{err}"
                ) from e
        return AgentRun(agent.returncode, stdout, stderr, time.monotonic() - started)

    def spawn_agent(self, args: list[str], port: int, log_dir: Path) -> LabProcess:
        """`python -m probe run ARGS` left running in the node namespace, from this repository,
        without proxy variables, listening on NODE_ADDRESS:`port`; stopped by its `stop()` or at
        lab end. An agent that never listened is stopped at once, not at the end of the session.
        """
        assert self.node is not None
        # `nsenter` and `env` both exec, so the spawned pid is the probe's own.
        unset = [arg for k in os.environ if "proxy" in k.lower() for arg in ("-u", k)]
        argv = [
            "env", "-C", str(REPO_ROOT), *unset, sys.executable, "-m", "probe", "run", *args,
            "--listen", f"{NODE_ADDRESS}:{port}",
        ]  # fmt: skip
        name = f"agent-{port}"
        try:
            return self.node.spawn(
                name, argv, log_dir / f"{name}.log", listens=[("tcp", NODE_ADDRESS, port)]
            )
        except BaseException:
            for process in self.node.processes:
                if process.name == name:
                    process.stop()
            raise

    def spawn_in(
        self,
        name: str,
        argv: list[str],
        *,
        node: str = "node",
        env: dict[str, str] | None = None,
        listens: list[tuple[str, str, int]] | None = None,
    ) -> LabProcess:
        """Start a long-lived process in a node's namespace, stopped by `stop()` or at lab end.

        `env` is its whole environment (what psutil reads from /proc/<pid>/environ); `listens`
        lists the (proto, address, port) to wait for, if any.
        """
        return self.namespace(node).spawn(
            name, argv, self.workdir / f"{name}.log", listens=listens or [], env=env
        )

    def run_in_node(self, argv: list[str], timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run a short command in the node namespace (for checking the lab itself)."""
        assert self.node is not None
        return self.node.run(argv, timeout=timeout)


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _without_proxies() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def missing_requirements() -> str | None:
    """Why the lab cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the network lab needs root (network namespaces, nftables)"
    if not Path("/proc/net/if_inet6").exists():
        return "the network lab needs IPv6 in the kernel (booted with ipv6.disable=1?)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"the lab needs {', '.join(missing)} "
            "(Debian: iproute2, nftables, docker-registry, squid, tinyproxy, dante-server, "
            "util-linux, openssl)"
        )
    return None
