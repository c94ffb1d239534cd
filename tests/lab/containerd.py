"""A real containerd (Debian's 1.6 and its `ctr`) pulling in a lab node, as the node's files say.

`NodeView(lab, root)` is one scenario's node: a process space inside a lab node (netns.py: its own
PID namespace and /proc) whose mount namespace has the node files of a host root written by
`Lab.host_root()` bound over the real paths the runtime reads: etc/resolv.conf, etc/hosts,
etc/ssl/certs (Go reads the bundle file and every file of that directory) and etc/containerd
(config.toml and the certs.d hosts directories). Nothing outside it sees the binds, and it sees
no other scenario's processes, so `probe check --host-root ROOT` run in it reads the same files
and the same single containerd (its live environment) as on a real node.

`NodeView.containerd(env)` starts one daemon there (own root, state and socket in a directory
under /tmp: a unix socket path must stay under 108 bytes) with that environment, and its
`pull()` runs `ctr images pull --hosts-dir /etc/containerd/certs.d` against it, bounded by
`ctr --timeout` and a kill. In containerd 1.6, `ctr images pull` resolves and fetches in the ctr
process itself (content.Fetch in the client; only the content store and the unpack are the
daemon's): ctr's own environment (proxy variables), its view of /etc and `--hosts-dir` decide
where the pull goes, so each pull gets the scenario's node view and environment, and the daemon
the same. (containerd 2.x pulls through the daemon's transfer service unless `--local`.)
`classify_pull()` maps ctr's exit status and error text to the outcome classes of
tests/test_containerd_differential.py.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .lab import REPO_ROOT, Lab
from .netns import LabProcess, ProcessSpace

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
HOSTS_DIR = "/etc/containerd/certs.d"
NAMESPACE = "lab"
SNAPSHOTTER = "native"  # works on any filesystem, mounts nothing outside the daemon
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
START_SECONDS = 15
# What one daemon needs for `ctr images pull`: content, metadata, the native snapshotter, the
# walking differ, leases and the gRPC services. The rest would only slow it or touch the host.
CRI_PLUGIN = "io.containerd.grpc.v1.cri"
CRI_PULL = Path(__file__).resolve().parent / "cripull.py"
DISABLED_PLUGINS = (
    CRI_PLUGIN,
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.overlayfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
)
# (the node file, relative to the host root; the path the runtime reads)
NODE_FILES = (
    ("etc/resolv.conf", "/etc/resolv.conf"),
    ("etc/hosts", "/etc/hosts"),
    ("etc/ssl/certs", "/etc/ssl/certs"),
    ("etc/containerd", "/etc/containerd"),
)
_BIND_ALL = 'while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 125; shift 2; done; shift; '
_BIND_ALL += 'exec "$@"'


def missing() -> str | None:
    """Why the differential cannot run here (no containerd), or None."""
    for tool in (CONTAINERD, CTR):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian: containerd)"
    if not Path("/etc/containerd").is_dir():
        return "/etc/containerd is missing (Debian: containerd)"
    return None


def complete_node_files(root: Path) -> None:
    """Give a host root every file the node view binds (an /etc/hosts, an etc/containerd)."""
    hosts = root / "etc" / "hosts"
    if not hosts.exists():
        hosts.write_text("127.0.0.1 localhost\n::1 localhost\n", encoding="utf-8")
    (root / "etc" / "containerd" / "certs.d").mkdir(parents=True, exist_ok=True)


def bind_node_files(root: Path) -> list[str]:
    """A command prefix that binds `root`'s node files over the real ones, then execs the rest."""
    complete_node_files(root)
    pairs = [arg for relative, real in NODE_FILES for arg in (str(root / relative), real)]
    return ["sh", "-c", _BIND_ALL, "sh", *pairs, "--"]


@dataclass(frozen=True)
class Pull:
    """One `ctr images pull`: exit status, output, time, and the outcome class."""

    ref: str
    exit_code: int
    output: str
    elapsed: float

    @property
    def outcome(self) -> str:
        return classify_pull(self.exit_code, self.output)

    @property
    def error(self) -> str:
        """ctr's error line (`ctr: ...`), or "" after a pull that worked."""
        lines = [line for line in self.output.splitlines() if line.startswith(("ctr: ", "cri: "))]
        return lines[-1] if lines else ""

    def describe(self) -> str:
        return f"ctr pull {self.ref}: exit={self.exit_code} {self.elapsed:.1f}s\n{self.output}"


class NodeView:
    """One scenario's view of a lab node: a process space inside the node (its network, a PID
    namespace and /proc of its own) whose mount namespace has `root`'s node files bound over
    /etc. containerd, ctr and the probe all run in it: the probe sees this containerd (and only
    it) in /proc, as on a real node, and reads the same files through `--host-root root`.

    Use as a context manager: every process in it is killed when the block ends.
    """

    _count = itertools.count()

    def __init__(self, lab: Lab, root: Path, *, node: str = "node") -> None:
        self.lab = lab
        self.root = root
        self.node = node
        self.space: ProcessSpace | None = None
        self.daemons: list[Containerd] = []

    def __enter__(self) -> NodeView:
        name = f"{self.lab.prefix}-view-{next(self._count)}"
        self.space = ProcessSpace.start(
            name, self.lab.namespace(self.node).popen, prepare=bind_node_files(self.root)
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.close()
        self.daemons.clear()
        if self.space is not None:
            self.space.close()
            self.space = None

    def run(
        self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A short command in the view (from the repository, without the host's proxies)."""
        assert self.space is not None, "the node view is closed"
        if env is None:
            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        return self.space.run_command(argv, timeout=timeout, cwd=REPO_ROOT, env=env)

    def probe(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        """`python -m probe ARGS` in the view; raises TimeoutExpired (after a kill) past timeout."""
        return self.run([sys.executable, "-m", "probe", *args], timeout=timeout)

    def containerd(
        self, env: dict[str, str], *, cri: bool = False, config_path: str | None = None
    ) -> Containerd:
        """Start a containerd daemon in the view with `env` (plus PATH) as its environment;
        `cri=True` enables its CRI plugin (for `cri_pull`), with `config_path` as its
        registry hosts directory (None: unset, containerd 1.6's default)."""
        assert self.space is not None, "the node view is closed"
        daemon = Containerd(self, env, cri=cri, config_path=config_path)
        self.daemons.append(daemon)
        daemon.start()
        return daemon


class Containerd:
    """One containerd daemon in a node view: own root, state and socket under /tmp."""

    def __init__(
        self,
        view: NodeView,
        env: dict[str, str],
        *,
        cri: bool = False,
        config_path: str | None = None,
    ) -> None:
        self.view = view
        self.env = {"PATH": PATH, **env}
        self.cri = cri
        self.config_path = config_path
        self.directory = Path(tempfile.mkdtemp(prefix=f"{view.lab.prefix}-ctrd-", dir="/tmp"))
        self.socket = self.directory / "sock"
        self.process: LabProcess | None = None

    def config(self) -> str:
        plugins = [p for p in DISABLED_PLUGINS if not (self.cri and p == CRI_PLUGIN)]
        disabled = ", ".join(f'"{p}"' for p in plugins)
        text = (
            "version = 2\n"
            f'root = "{self.directory}/root"\n'
            f'state = "{self.directory}/state"\n'
            f"disabled_plugins = [{disabled}]\n"
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
            '[debug]\n  address = ""\n'
        )
        if self.cri:
            cri = f'[plugins."{CRI_PLUGIN}"]'
            text += (
                f'{cri}\n  disable_tcp_service = true\n  stream_server_address = "127.0.0.1"\n'
                '  stream_server_port = "0"\n'
                f'{cri[:-1]}.containerd]\n  snapshotter = "{SNAPSHOTTER}"\n'
                f'{cri[:-1]}.cni]\n  bin_dir = "{self.directory}/cni/bin"\n'
                f'  conf_dir = "{self.directory}/cni/conf"\n'
            )
            if self.config_path is not None:
                text += f'{cri[:-1]}.registry]\n  config_path = "{self.config_path}"\n'
        return text

    def start(self) -> None:
        assert self.view.space is not None
        config = self.directory / "config.toml"
        config.write_text(self.config(), encoding="utf-8")
        name = f"containerd-{self.directory.name}"
        self.process = self.view.space.spawn(
            name,
            [CONTAINERD, "--config", str(config)],
            self.view.lab.workdir / f"{name}.log",
            listens=[],
            env=self.env,
        )
        deadline = time.monotonic() + START_SECONDS
        while not self.socket.is_socket():
            if self.process.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start:\n{self.process.log_text()}")
            time.sleep(0.02)

    def pull(self, ref: str, *, seconds: float, env: dict[str, str] | None = None) -> Pull:
        """`ctr images pull REF` in the view, with the daemon's environment unless `env` is
        given, ended by ctr after `seconds` (and killed 15 s later if it is still there)."""
        argv = [
            CTR, "--address", str(self.socket), "--namespace", NAMESPACE,
            "--timeout", f"{seconds:g}s", "images", "pull",
            "--snapshotter", SNAPSHOTTER, "--hosts-dir", HOSTS_DIR, ref,
        ]  # fmt: skip
        started = time.monotonic()
        ctr_env = self.env if env is None else {"PATH": PATH, **env}
        try:
            done = self.view.run(argv, timeout=seconds + 15, env=ctr_env)
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as e:
            code, output = -9, f"killed after {e.timeout:.0f}s (ctr --timeout did not end it)"
        return Pull(ref, code, output, time.monotonic() - started)

    def cri_pull(self, ref: str, *, seconds: float, account: tuple[str, str] | None = None) -> Pull:
        """A CRI PullImage of REF (cripull.py), as the kubelet asks: the daemon resolves and
        fetches, with its own environment and config; `account` is the (username, password) the
        kubelet would pass from a pull secret."""
        assert self.cri, "start the daemon with cri=True"
        argv = [sys.executable, str(CRI_PULL), str(self.socket), ref, f"{seconds:g}"]
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        if account is not None:
            env |= {"CRI_USERNAME": account[0], "CRI_PASSWORD": account[1]}
        started = time.monotonic()
        done = self.view.run(argv, timeout=seconds + 15, env=env)
        elapsed = time.monotonic() - started
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            return Pull(ref, -1, f"cripull.py: {done.stdout}\n{done.stderr}", elapsed)
        if answer["ok"]:
            return Pull(ref, 0, str(answer["image"]), elapsed)
        return Pull(ref, 1, f"cri: {answer['code']}: {answer['error']}", elapsed)

    def log(self) -> str:
        return self.process.log_text() if self.process is not None else ""

    def close(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


# ----- outcome classes ----------------------------------------------------------------------------

OUTCOMES = ("ok", "dns", "tcp", "tls", "http", "proxy", "auth", "not_found")

# HTTP status texts as Go prints a proxy's answer to CONNECT (the error is the bare text).
_CONNECT_STATUS = (
    "Proxy Authentication Required|Unauthorized|Forbidden|Not Found|Method Not Allowed|"
    "Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout"
)
# (class, pattern) in order: the first that matches ctr's error line names the class. Every
# pattern stands for error texts seen from Debian's containerd 1.6.20 in the lab; the table test
# in tests/test_containerd_differential.py holds them verbatim.
_PULL_ERRORS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (outcome, re.compile(pattern))
    for outcome, pattern in (
        # Go wraps every failure to reach or speak TLS to the proxy as "proxyconnect tcp: ...";
        # a CONNECT answered with another status than 200 is that status's text, bare.
        ("proxy", r"proxyconnect tcp: "),
        ("proxy", rf'failed to do request: \w+ "[^"]*": (?:{_CONNECT_STATUS})$'),
        ("dns", r"dial tcp: lookup \S+"),
        ("tcp", r"dial tcp \S+: (?:connect: |i/o timeout)"),
        ("tls", r"x509: |tls: |TLS handshake timeout|server gave HTTP response to HTTPS client"),
        ("auth", r"failed to authorize: "),
        # A token without pull access (ErrInvalidAuthorization), or a registry that answers the
        # credentials (or their absence) with 401/403 to the manifest HEAD.
        ("auth", r"pull access denied, repository does not exist or may require authorization"),
        ("auth", r"failed with status code \[[^\]]*\]: 40[13] "),
        ("http", r"unexpected media type|failed with status code|context deadline exceeded"),
        ("not_found", r": not found$"),
    )
)


def classify_pull(exit_code: int, output: str) -> str:
    """The outcome class of one `ctr images pull` from its exit status and output."""
    if exit_code == 0:
        return "ok"
    errors = [line for line in output.splitlines() if line.startswith(("ctr: ", "cri: "))]
    text = errors[-1] if errors else output
    for outcome, pattern in _PULL_ERRORS:
        if pattern.search(text):
            return outcome
    return "unclassified"
