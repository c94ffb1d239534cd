"""The lab's forward proxies: a real squid and a tinyproxy with Basic auth, in the "net" namespace.

They are the only way out of the lab's "proxied" node, whose firewall drops every direct TCP
connection to ports 443 and 5000 (see lab.py):

- squid (Debian's /usr/sbin/squid, `-N`: no daemon, no worker kids) on `squid.lab.test:3128`:
  no cache, CONNECT only to ports 443 and 5000, and `denied.lab.test` refused with 403. It resolves
  with the lab's DNS server (`dns_nameservers`), and logs every request to `access.log`.
- tinyproxy (/usr/bin/tinyproxy, `-d`: foreground) on `tinyproxy.lab.test:8888`: `BasicAuth`, so a
  CONNECT without credentials is answered 407. tinyproxy resolves with the C library, which reads
  /etc/resolv.conf: it runs in a mount namespace of its own where the lab's resolv.conf is bound
  over that file (nothing changes outside that process).

squid refuses to run as root and drops to its `proxy` user, which must write its logs: its files
live in a directory of their own under /tmp, owned by `proxy` (the pytest temp dir is 0700),
removed when the lab closes. Its shared memory segments are named for the lab (`-n rp<pid>`).
"""

from __future__ import annotations

import contextlib
import pwd
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .netns import Namespace

SQUID = "/usr/sbin/squid"
TINYPROXY = "/usr/bin/tinyproxy"
CONNECT_PORTS = (443, 5000)
DENIED_NAME = "denied.lab.test"


@dataclass(frozen=True)
class Proxy:
    """One lab proxy: where it listens, and the credentials it wants (if any)."""

    name: str
    address: str
    port: int
    user: str | None = None
    password: str | None = None
    access_log: Path | None = None  # squid only: one line per request it handled

    @property
    def url(self) -> str:
        """`http://NAME:PORT`, without credentials (the node's resolvers find NAME)."""
        return f"http://{self.name}:{self.port}"

    @property
    def address_url(self) -> str:
        """`http://ADDRESS:PORT`, for clients that do not resolve with the lab's DNS (curl)."""
        return f"http://{self.address}:{self.port}"

    def url_with_credentials(self, password: str | None = None, *, by_address: bool = False) -> str:
        """`http://USER:PASSWORD@HOST:PORT`; pass another `password` for a wrong one."""
        assert self.user is not None, f"{self.name} takes no credentials"
        secret = self.password if password is None else password
        host = self.address if by_address else self.name
        return f"http://{self.user}:{secret}@{host}:{self.port}"


def squid_config(proxy: Proxy, directory: Path, dns_server: str) -> str:
    ports = " ".join(str(p) for p in CONNECT_PORTS)
    return f"""# written by the registry-probe lab
http_port {proxy.address}:{proxy.port}
pid_filename {directory}/squid.pid
cache_log {directory}/cache.log
access_log stdio:{directory}/access.log
coredump_dir {directory}
cache deny all
cache_mem 4 MB
hosts_file none
dns_nameservers {dns_server}
shutdown_lifetime 0 seconds
acl lab src 198.18.0.0/15
acl connect_ports port {ports}
acl CONNECT method CONNECT
acl denied dstdomain {DENIED_NAME}
http_access deny CONNECT !connect_ports
http_access deny denied
http_access allow lab
http_access deny all
"""


def tinyproxy_config(proxy: Proxy, directory: Path) -> str:
    connect = "".join(f"ConnectPort {p}\n" for p in CONNECT_PORTS)
    return (
        "# written by the registry-probe lab\n"
        f"Port {proxy.port}\nListen {proxy.address}\n"
        f'PidFile "{directory}/tinyproxy.pid"\n'
        "Timeout 30\nMaxClients 50\nLogLevel Connect\n"
        f"BasicAuth {proxy.user} {proxy.password}\n"
        f"{connect}"
    )


class Proxies:
    """Starts both proxies in a namespace and cleans up their files when closed."""

    def __init__(self, prefix: str, workdir: Path) -> None:
        self.prefix = prefix
        self.workdir = workdir
        self.squid_dir: Path | None = None

    def start_squid(self, net: Namespace, proxy: Proxy, dns_server: str) -> Proxy:
        """Start squid (without waiting for it); the returned Proxy knows its access log."""
        self.squid_dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-squid-", dir="/tmp"))
        user = pwd.getpwnam("proxy")
        shutil.chown(self.squid_dir, user.pw_uid, user.pw_gid)
        config = self.squid_dir / "squid.conf"
        config.write_text(squid_config(proxy, self.squid_dir, dns_server), encoding="utf-8")
        net.spawn(
            "squid",
            [SQUID, "-N", "-n", self.prefix, "-f", str(config)],
            self.workdir / "squid.log",
            listens=[("tcp", proxy.address, proxy.port)],
            wait=False,
        )
        return Proxy(
            proxy.name,
            proxy.address,
            proxy.port,
            proxy.user,
            proxy.password,
            self.squid_dir / "access.log",
        )

    def start_tinyproxy(self, net: Namespace, proxy: Proxy, dns_server: str) -> None:
        """Start tinyproxy (without waiting for it), resolving with the lab's DNS server."""
        directory = self.workdir / "tinyproxy"
        directory.mkdir()
        config = directory / "tinyproxy.conf"
        config.write_text(tinyproxy_config(proxy, directory), encoding="utf-8")
        resolv = directory / "resolv.conf"
        resolv.write_text(f"nameserver {dns_server}\noptions timeout:1 attempts:2\n")
        script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
        argv = [
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script, "sh", str(resolv), TINYPROXY, "-d", "-c", str(config),
        ]  # fmt: skip
        net.spawn(
            "tinyproxy",
            argv,
            self.workdir / "tinyproxy.log",
            listens=[("tcp", proxy.address, proxy.port)],
            wait=False,
        )

    def close(self) -> None:
        """Remove squid's directory and any shared memory it left (after its process stopped)."""
        if self.squid_dir is not None:
            for segment in Path("/dev/shm").glob(f"{self.prefix}-*"):
                segment.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                shutil.rmtree(self.squid_dir)
            self.squid_dir = None
