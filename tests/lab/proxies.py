"""The lab's forward proxies: real squid, tinyproxy and dante servers, in the "net" namespace.

They are the only way out of the lab's "proxied" node, whose firewall drops every direct TCP
connection to ports 443 and 5000 (see lab.py):

- squid (Debian's /usr/sbin/squid, `-N`: no daemon, no worker kids) on `squid.lab.test:3128`:
  no cache, CONNECT only to ports 443 and 5000, and `denied.lab.test` refused with 403. It resolves
  with the lab's DNS server (`dns_nameservers`), and logs every request to `access.log`. A name
  it cannot resolve or an address it cannot reach gets its 503 (`ERR_DNS_FAIL`,
  `ERR_CONNECT_FAIL`). The same squid is also an HTTPS proxy (`https_port`, TLS to the proxy,
  then CONNECT inside it) on `tlsproxy.lab.test:3129`, with a certificate from the lab CA, and
  on `tlsproxy-untrusted.lab.test:3129` with one from the CA the node does not trust.
- tinyproxy (/usr/bin/tinyproxy, `-d`: foreground) on `tinyproxy.lab.test:8888`: `BasicAuth`, so a
  CONNECT without credentials is answered 407; a target it cannot reach gets its
  `500 Unable to connect`. tinyproxy resolves with the C library, which reads /etc/resolv.conf:
  it runs in a mount namespace of its own where the lab's resolv.conf is bound over that file
  (nothing changes outside that process).
- dante (Debian's dante-server, /usr/sbin/danted, foreground, one process) as two SOCKS5
  servers: `socks.lab.test:1080` without authentication and `socks-auth.lab.test:1080` with
  RFC 1929 username/password. Both refuse `socks-denied.lab.test` by rule ("connection not
  allowed by ruleset") and resolve target names themselves, with the lab's resolv.conf bound
  over /etc/resolv.conf as for tinyproxy. dante's `username` method checks the system password
  database: the authenticating one also gets a passwd and shadow file of its own, bound over
  /etc/passwd and /etc/shadow in its mount namespace only, holding the lab's SOCKS user.

squid refuses to run as root and drops to its `proxy` user, which must write its logs: its files
live in a directory of their own under /tmp, owned by `proxy` (the pytest temp dir is 0700),
removed when the lab closes. Its shared memory segments are named for the lab (`-n rp<pid>`).
"""

from __future__ import annotations

import contextlib
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .netns import Namespace

SQUID = "/usr/sbin/squid"
TINYPROXY = "/usr/bin/tinyproxy"
CONNECT_PORTS = (443, 5000)
DANTED = "/usr/sbin/danted"
DENIED_NAME = "denied.lab.test"
# dante matches rules on addresses: this name resolves to an address only its rule refuses.
SOCKS_DENIED_NAME, SOCKS_DENIED_ADDRESS = "socks-denied.lab.test", "198.18.1.39"


@dataclass(frozen=True)
class Proxy:
    """One lab proxy: where it listens, and the credentials it wants (if any)."""

    name: str
    address: str
    port: int
    user: str | None = None
    password: str | None = None
    access_log: Path | None = None  # squid only: one line per request it handled
    scheme: str = "http"  # "https" for squid's TLS ports, "socks5" for dante

    @property
    def url(self) -> str:
        """`SCHEME://NAME:PORT`, without credentials (the node's resolvers find NAME)."""
        return f"{self.scheme}://{self.name}:{self.port}"

    @property
    def address_url(self) -> str:
        """`SCHEME://ADDRESS:PORT`, for clients that do not resolve with the lab's DNS (curl)."""
        return f"{self.scheme}://{self.address}:{self.port}"

    def url_with_credentials(
        self, password: str | None = None, *, by_address: bool = False, scheme: str | None = None
    ) -> str:
        """`SCHEME://USER:PASSWORD@HOST:PORT`; pass another `password` for a wrong one."""
        assert self.user is not None, f"{self.name} takes no credentials"
        secret = self.password if password is None else password
        host = self.address if by_address else self.name
        return f"{scheme or self.scheme}://{self.user}:{secret}@{host}:{self.port}"


@dataclass(frozen=True)
class TLSPort:
    """One of squid's `https_port`s: where it listens and the certificate it serves."""

    proxy: Proxy
    cert: Path
    key: Path


def squid_config(
    proxy: Proxy, directory: Path, dns_server: str, tls_ports: tuple[TLSPort, ...] = ()
) -> str:
    ports = " ".join(str(p) for p in CONNECT_PORTS)
    https_ports = "".join(
        f"https_port {t.proxy.address}:{t.proxy.port} tls-cert={t.cert} tls-key={t.key}\n"
        for t in tls_ports
    )
    return f"""# written by the registry-probe lab
http_port {proxy.address}:{proxy.port}
{https_ports}pid_filename {directory}/squid.pid
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


def dante_config(proxy: Proxy) -> str:
    """One danted: no authentication, or username/password when the proxy has a user."""
    method = "username" if proxy.user else "none"
    return f"""# written by the registry-probe lab
logoutput: stderr
internal: {proxy.address} port = {proxy.port}
external: {proxy.address}
clientmethod: none
socksmethod: {method}
user.privileged: root
user.unprivileged: nobody
client pass {{
    from: 198.18.0.0/15 to: 0.0.0.0/0
}}
socks block {{
    from: 0.0.0.0/0 to: {SOCKS_DENIED_ADDRESS}/32
}}
socks pass {{
    from: 198.18.0.0/15 to: 0.0.0.0/0
    command: connect
}}
"""


class Proxies:
    """Starts both proxies in a namespace and cleans up their files when closed."""

    def __init__(self, prefix: str, workdir: Path) -> None:
        self.prefix = prefix
        self.workdir = workdir
        self.squid_dir: Path | None = None

    def start_squid(
        self, net: Namespace, proxy: Proxy, dns_server: str, tls_ports: tuple[TLSPort, ...] = ()
    ) -> Proxy:
        """Start squid (without waiting for it); the returned Proxy knows its access log.

        Each of `tls_ports` is an `https_port`; its certificate and key are copied into
        squid's own directory, readable by its `proxy` user alone.
        """
        self.squid_dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-squid-", dir="/tmp"))
        user = pwd.getpwnam("proxy")
        shutil.chown(self.squid_dir, user.pw_uid, user.pw_gid)
        copied = []
        for index, port in enumerate(tls_ports):
            cert, key = self.squid_dir / f"tls-{index}.crt", self.squid_dir / f"tls-{index}.key"
            shutil.copyfile(port.cert, cert)
            shutil.copyfile(port.key, key)
            for path in (cert, key):
                path.chmod(0o600)
                shutil.chown(path, user.pw_uid, user.pw_gid)
            copied.append(TLSPort(port.proxy, cert, key))
        config = self.squid_dir / "squid.conf"
        config.write_text(
            squid_config(proxy, self.squid_dir, dns_server, tuple(copied)), encoding="utf-8"
        )
        listens = [("tcp", proxy.address, proxy.port)]
        listens += [("tcp", t.proxy.address, t.proxy.port) for t in tls_ports]
        net.spawn(
            "squid",
            [SQUID, "-N", "-n", self.prefix, "-f", str(config)],
            self.workdir / "squid.log",
            listens=listens,
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

    def start_dante(self, net: Namespace, proxy: Proxy, dns_server: str) -> None:
        """Start one danted (without waiting for it) in a mount namespace of its own, where the
        lab's resolv.conf (and, with a user, a passwd and shadow holding it) are bound over the
        node's files."""
        directory = self.workdir / f"dante-{proxy.name}"
        directory.mkdir()
        config = directory / "danted.conf"
        config.write_text(dante_config(proxy), encoding="utf-8")
        resolv = directory / "resolv.conf"
        resolv.write_text(f"nameserver {dns_server}\noptions timeout:1 attempts:2\n")
        binds = [(resolv, "/etc/resolv.conf")]
        if proxy.user is not None:
            assert proxy.password is not None
            passwd, shadow = directory / "passwd", directory / "shadow"
            passwd.write_text(
                "root:x:0:0:root:/root:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                f"{proxy.user}:x:4242:4242:lab SOCKS user:/nonexistent:/usr/sbin/nologin\n",
                encoding="utf-8",
            )
            shadow.write_text(
                "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"
                f"{proxy.user}:{_sha512_crypt(proxy.password)}:19000:0:99999:7:::\n",
                encoding="utf-8",
            )
            shadow.chmod(0o600)
            binds += [(passwd, "/etc/passwd"), (shadow, "/etc/shadow")]
        mounts = " && ".join(f'mount --bind "{source}" {target}' for source, target in binds)
        argv = [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'{mounts} && exec "$@"', "sh",
            DANTED, "-f", str(config), "-p", str(directory / "danted.pid"), "-N", "1",
        ]  # fmt: skip
        net.spawn(
            f"danted-{proxy.name}",
            argv,
            self.workdir / f"danted-{proxy.name}.log",
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


def _sha512_crypt(password: str) -> str:
    """A crypt(3) SHA-512 hash for /etc/shadow (openssl's; Python's crypt module is gone)."""
    done = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout.strip()
