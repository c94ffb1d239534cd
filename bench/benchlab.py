"""The benchmark's lab: one TLS docker-registry under N names, a DNS server, and a node.

Topology (198.18.0.0/15 only, in namespaces this process creates and deletes):

    rp<pid>-bnode  198.18.0.2/24 ──veth── 198.18.0.1/24  rp<pid>-bnet
    default via 198.18.0.1                  DNS 198.18.0.53 (tests/lab/dnsserver.py)
    agent, blackbox_exporter, driver        docker-registry 198.18.1.10:443 (lo)

Every name `rNNN.bench.lab.test` resolves to the one registry, whose certificate covers
`*.bench.lab.test`; the registry logs every request with its Host (JSON, level info), which is
where the benchmark counts the probes that landed. Names reuse the test lab's `rp<pid>-` prefix,
so `remove_leftovers()` cleans up after a benchmark that was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from lab.netns import PREFIX, LabProcess, Namespace, ip, remove_leftovers  # noqa: E402
from lab.pki import CertificateAuthority  # noqa: E402

NODE_ADDRESS = "198.18.0.2"
GATEWAY = "198.18.0.1"
DNS_ADDRESS = "198.18.0.53"
REGISTRY_ADDRESS = "198.18.1.10"
DOMAIN = "bench.lab.test"
DNS_SERVER = REPO_ROOT / "tests" / "lab" / "dnsserver.py"

# The stock unit of Debian's containerd package (abridged to what systemd reads): a node has a
# runtime unit, so the agent reads one as it would on a node, rather than finding nothing.
CONTAINERD_UNIT = """\
[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target local-fs.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
LimitNOFILE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
"""


def registry_names(count: int) -> list[str]:
    """The N registry names, `r001.bench.lab.test` ..."""
    return [f"r{i:03d}.{DOMAIN}" for i in range(1, count + 1)]


@dataclass
class BenchLab:
    """A running benchmark lab. Use `with BenchLab.started(workdir, names) as lab:`."""

    workdir: Path
    names: list[str]
    prefix: str = f"{PREFIX}0"
    node: Namespace | None = None
    net: Namespace | None = None
    registry: LabProcess | None = None
    dns: LabProcess | None = None
    ca: CertificateAuthority = field(init=False)
    ca_file: Path = field(init=False)
    registry_log: Path = field(init=False)

    @classmethod
    @contextlib.contextmanager
    def started(cls, workdir: Path, names: list[str]) -> Iterator[BenchLab]:
        """Build the lab; always torn down when the block ends, however it ends."""
        remove_leftovers()
        lab = cls(workdir, names, prefix=f"{PREFIX}{os.getpid()}")
        try:
            lab._build()
            yield lab
        finally:
            lab.close()

    def _build(self) -> None:
        self.ca = CertificateAuthority("registry-probe bench CA")
        self.ca_file = self.workdir / "ca.crt"
        self.ca_file.write_bytes(self.ca.pem)
        self.node = Namespace.create(f"{self.prefix}-bnode")
        self.net = Namespace.create(f"{self.prefix}-bnet")
        node_if, net_if = f"{self.prefix}bn", f"{self.prefix}bx"
        ip(
            "link", "add", node_if, "netns", self.node.name, "type", "veth",
            "peer", "name", net_if, "netns", self.net.name,
        )  # fmt: skip
        self.node.ip("addr", "add", f"{NODE_ADDRESS}/24", "dev", node_if)
        self.node.ip("link", "set", node_if, "up")
        self.node.ip("route", "add", "default", "via", GATEWAY)
        self.net.ip("addr", "add", f"{GATEWAY}/24", "dev", net_if)
        self.net.ip("addr", "add", f"{DNS_ADDRESS}/32", "dev", net_if)
        self.net.ip("link", "set", net_if, "up")
        self.net.ip("addr", "add", f"{REGISTRY_ADDRESS}/32", "dev", "lo")

        zone = self.workdir / "zone.json"
        zone.write_text(
            json.dumps({name: {"A": [REGISTRY_ADDRESS]} for name in self.names}), encoding="utf-8"
        )
        self.dns = self.net.spawn(
            "dnsserver",
            [sys.executable, str(DNS_SERVER), str(zone), DNS_ADDRESS],
            self.workdir / "dnsserver.log",
            listens=[("udp", DNS_ADDRESS, 53), ("tcp", DNS_ADDRESS, 53)],
            wait=False,
        )
        self.registry = self._start_registry()
        self.dns.wait_listening(self.dns.listens, deadline_seconds=15)
        self.registry.wait_listening(self.registry.listens, deadline_seconds=15)

    def _start_registry(self) -> LabProcess:
        assert self.net is not None
        certs = self.ca.issue(self.workdir, "registry", [f"*.{DOMAIN}"])
        storage = self.workdir / "storage"
        storage.mkdir()
        config = self.workdir / "registry.yml"
        # No auth: GET /v2/ answers 200, and docker-registry logs "response completed" (with
        # http.request.host) only for 2xx/3xx answers. The access log (Apache format) has no Host.
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            f"http:\n  addr: {REGISTRY_ADDRESS}:443\n  secret: bench-{self.prefix}\n"
            f"  tls:\n    certificate: {certs.cert}\n    key: {certs.key}\n",
            encoding="utf-8",
        )
        self.registry_log = self.workdir / "registry.log"
        return self.net.spawn(
            "docker-registry",
            ["docker-registry", "serve", str(config)],
            self.registry_log,
            listens=[("tcp", REGISTRY_ADDRESS, 443)],
            wait=False,
        )

    def host_root(self, containerd: str = "/usr/bin/containerd") -> Path:
        """The node's filesystem as the agent reads it: resolv.conf, CA bundle, containerd unit
        (whose `ExecStart=` names `containerd`: the agent trusts a running containerd's
        environment only when its executable is the unit's)."""
        root = self.workdir / "hostroot"
        if root.exists():
            return root
        (root / "etc" / "ssl" / "certs").mkdir(parents=True)
        (root / "etc" / "resolv.conf").write_text(
            f"nameserver {DNS_ADDRESS}\noptions timeout:2 attempts:2\n", encoding="utf-8"
        )
        (root / "etc" / "ssl" / "certs" / "ca-certificates.crt").write_bytes(self.ca.pem)
        unit = root / "usr" / "lib" / "systemd" / "system" / "containerd.service"
        unit.parent.mkdir(parents=True)
        unit.write_text(
            CONTAINERD_UNIT.replace("ExecStart=/usr/bin/containerd", f"ExecStart={containerd}"),
            encoding="utf-8",
        )
        return root

    def resolv_conf(self) -> Path:
        """A resolv.conf naming the lab's DNS server, for processes that read /etc/resolv.conf."""
        path = self.workdir / "resolv.conf"
        path.write_text(f"nameserver {DNS_ADDRESS}\noptions timeout:2 attempts:2\n")
        return path

    def close(self) -> None:
        """Stop every process and delete both namespaces; safe twice."""
        for ns in (self.node, self.net):
            if ns is not None:
                ns.close()
        self.node = self.net = None
