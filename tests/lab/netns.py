"""Network namespaces and the processes the lab runs inside them.

Every name the lab creates starts with `rp<pid>-`, the pid of the pytest process that made it, so
runs do not collide and `remove_leftovers()` can tell an abandoned lab (its pid is gone) from one
in use. Nothing here touches the host's own network namespace except creating and deleting ours.

A node namespace (`Namespace.create(name, pid=True)`) is a network namespace plus a process
space (`ProcessSpace`): a PID namespace with its own /proc. An init process (`unshare --pid
--fork --mount-proc`, started in the network namespace) is its pid 1, and every process the lab
starts in the node is forked straight into that PID namespace (this thread's pid_for_children
is switched around the fork) and then enters the init's network and mount namespaces with
`nsenter` (which execs, it does not fork). So a process that reads /proc in the node (psutil,
the probe) sees only what the lab started there, not the host's processes (a real containerd)
nor another lab's, while the pid the lab holds (`popen.pid`) is the started program itself: a
signal sent to it reaches that program. Killing the init kills everything left in its PID
namespace. A process space can also be started inside a node (containerd.py gives each
scenario one, with the scenario's node files bound over /etc).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "rp"
_CLONE_NEWPID = 0x20000000
_libc = ctypes.CDLL(None, use_errno=True)
# The node's pid 1: reaps the orphans the kernel hands it, and does nothing else.
_INIT = """
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.2)
"""
_LEFTOVER = re.compile(rf"^{PREFIX}(\d+)-\S+")
_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"


def ip(*args: str, timeout: float = 10) -> str:
    """Run `ip ARGS` and return its output; a failure raises with ip's own message."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Delete namespaces (and kill their processes) left by earlier lab runs that crashed."""
    removed = []
    for line in ip("netns", "list").splitlines():
        match = _LEFTOVER.match(line)
        if not match or _alive(int(match.group(1))):
            continue
        name = match.group(0)
        for pid in ip("netns", "pids", name).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(RuntimeError):
            ip("netns", "del", name)
        removed.append(name)
    # squid's shared memory segments, named for the lab's squid service (`rp<pid>-cf__*.shm`),
    # stay behind when squid is killed instead of stopped; its directory (`/tmp/rp<pid>-squid-*`)
    # and containerd's (`/tmp/rp<pid>-ctrd-*`, containerd.py) when pytest is.
    for leftover in [
        *Path("/dev/shm").glob(f"{PREFIX}*-*"),
        *Path("/tmp").glob(f"{PREFIX}*-squid-*"),
        *Path("/tmp").glob(f"{PREFIX}*-ctrd-*"),
    ]:
        match = _LEFTOVER.match(leftover.name)
        if not match or _alive(int(match.group(1))):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    return removed


@dataclass
class LabProcess:
    """A long-lived process started inside a namespace, its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    listens: list[tuple[str, str, int]] = field(default_factory=list)  # (proto, address, port)
    # The command line of the program that enters the namespace, until it has become the command.
    launcher: bytes = b"ip\0netns\0exec\0"

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_listening(self, sockets: list[tuple[str, str, int]], deadline_seconds: float) -> None:
        """Wait until the command runs and every (proto, address, port) is bound in its namespace.

        Reads /proc/<pid>/net/{tcp,udp}, which show the sockets of the namespace the process is
        in, so no probe connection is needed. Bounded by `deadline_seconds`.
        """
        wanted = {(proto, _proc_net_address(addr, port)) for proto, addr, port in sockets}
        deadline = time.monotonic() + deadline_seconds
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}:\n{self.log_text()}"
                )
            if self._execed() and wanted <= self._bound():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} did not listen on {sockets} in {deadline_seconds}s:\n"
                    f"{self.log_text()}"
                )
            time.sleep(0.02)

    def _execed(self) -> bool:
        """Whether the launcher (`ip netns exec`, `nsenter`) has become the command: before
        that, /proc/<pid>/environ and cmdline are the launcher's (or empty while the exec runs)."""
        try:
            cmdline = Path(f"/proc/{self.popen.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return bool(cmdline) and not cmdline.startswith(self.launcher)

    def _bound(self) -> set[tuple[str, str]]:
        found = set()
        # tcp6 and udp6 list the IPv6 sockets; an address's length tells the families apart.
        for proto, state in (("tcp", _TCP_LISTEN), ("udp", _UDP_UNCONNECTED)):
            for table_name in (proto, f"{proto}6"):
                try:
                    path = Path(f"/proc/{self.popen.pid}/net/{table_name}")
                    table = path.read_text(encoding="ascii")
                except OSError:
                    continue
                for row in table.splitlines()[1:]:
                    cols = row.split()
                    if len(cols) > 3 and cols[3] == state:
                        found.add((proto, cols[1]))
        return found

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 3 s; always reaps the process."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=3)


def _proc_net_address(address: str, port: int) -> str:
    # /proc/net/tcp{,6} print an address as the kernel's 32-bit words (one for IPv4, four for
    # IPv6), each in host byte order.
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    packed = socket.inet_pton(family, address)
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


@contextlib.contextmanager
def _forks_into_pid_namespace_of(pid: int) -> Iterator[None]:
    """Processes this thread forks in the block are born in the PID namespace of `pid`.

    setns(CLONE_NEWPID) changes only the calling thread's namespace for its children, never the
    thread itself; it is switched back to the thread's own when the block ends.
    """
    target = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    own = os.open("/proc/thread-self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(target, _CLONE_NEWPID) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into the PID namespace of {pid}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(own, _CLONE_NEWPID) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to our own PID namespace: {os.strerror(err)}")
    finally:
        os.close(target)
        os.close(own)


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (the kernel here has no /proc/<pid>/task/*/children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the fields follow the last ')'.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


class Launcher:
    """Starts commands somewhere (a namespace, a process space) and keeps the long-lived ones.

    Subclasses give `popen()` (how a command gets in) and `launcher` (how its command line
    begins until it has become the command); runs, spawns and stops are shared.
    """

    processes: list[LabProcess]

    @property
    def launcher(self) -> bytes:
        raise NotImplementedError

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        raise NotImplementedError

    def run_command(
        self,
        argv: list[str],
        *,
        timeout: float,
        input_text: str | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`subprocess.run` in here: output captured as text, killed (and TimeoutExpired
        raised) past `timeout`; the exit status is the caller's to judge."""
        with self.popen(
            argv,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        ) as process:
            try:
                stdout, stderr = process.communicate(input_text, timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise
            return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)

    def run(
        self, argv: list[str], *, timeout: float = 10, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command in here; a failure raises with its stderr."""
        done = self.run_command(argv, timeout=timeout, input_text=input_text)
        if done.returncode != 0:
            raise RuntimeError(f"{argv} in {self}: {done.stderr.strip()}")
        return done

    def spawn(
        self,
        name: str,
        argv: list[str],
        log: Path,
        *,
        listens: list[tuple[str, str, int]],
        deadline_seconds: float = 10,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> LabProcess:
        """Start a long-lived process in here and wait until it listens.

        The process is stopped by `close()`; it also gets its own session so that a signal
        meant for pytest does not reach it first. `env` replaces the environment (the process
        sees exactly it, in /proc/<pid>/environ too); `wait=False` returns at once, for
        starting several servers and then waiting for each with `wait_listening()`.
        """
        with log.open("wb") as out:
            popen = self.popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        process = LabProcess(name, popen, log, listens, self.launcher)
        self.processes.append(process)
        if wait:
            process.wait_listening(listens, deadline_seconds)
        return process

    def stop_processes(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


@dataclass
class ProcessSpace(Launcher):
    """A PID namespace with its own /proc (in a mount namespace of its own), and its processes.

    Its pid 1 (`init_pid`, a host pid) is started by `start()` in whatever network namespace
    the given `popen` starts commands (a node's, or the host's); every command started here is
    forked straight into the PID namespace and enters the init's network and mount namespaces
    with `nsenter`, so `popen.pid` is the command itself. `close()` kills the init, and the
    kernel kills everything left in the PID namespace with it.
    """

    name: str
    init: subprocess.Popen[bytes]  # `unshare`, the parent of pid 1
    init_pid: int
    processes: list[LabProcess] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        name: str,
        popen: Callable[..., subprocess.Popen[Any]],
        *,
        prepare: list[str] | None = None,
        deadline_seconds: float = 10,
    ) -> ProcessSpace:
        """Start the init with `popen` and wait until it runs (its /proc is mounted by then).

        `prepare` is a command prefix that runs in the new namespaces before the init and
        execs its arguments (containerd.py binds a node's files with it). `--kill-child`: if
        unshare dies, the kernel kills the init, and with it the PID namespace.
        """
        argv = [
            "unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
            "--propagation", "private", *(prepare or []), sys.executable, "-c", _INIT,
        ]  # fmt: skip
        init = popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if init.poll() is not None:
                raise RuntimeError(f"the init of {name} exited with {init.returncode}")
            for child in _children(init.pid):
                # unshare mounts the new /proc before it execs the init: once the child's
                # command line is python's, the new /proc (and what `prepare` did) is in place.
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                    if cmdline.startswith(sys.executable.encode() + b"\0-c\0"):
                        return cls(name, init, child)
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            init.kill()
        init.wait(timeout=5)
        raise RuntimeError(f"the init of {name} did not start in {deadline_seconds}s")

    def __str__(self) -> str:
        return self.name

    @property
    def launcher(self) -> bytes:
        return b"nsenter\0"

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """`subprocess.Popen(argv, **kwargs)` in the PID namespace, its /proc and network.

        `cwd` is where the command starts (default: ours); the returned pid is the command's
        own once nsenter has exec'd it (nsenter forks only to enter a PID namespace itself).
        """
        cwd = Path(kwargs.pop("cwd", None) or os.getcwd()).resolve()
        wrapped = [
            "nsenter", f"--net=/proc/{self.init_pid}/ns/net",
            f"--mount=/proc/{self.init_pid}/ns/mnt", f"--wd={cwd}", "--", *argv,
        ]  # fmt: skip
        with _forks_into_pid_namespace_of(self.init_pid):
            return subprocess.Popen(wrapped, **kwargs)

    def close(self) -> None:
        """Stop every process started here, then kill the init (and all left in here)."""
        self.stop_processes()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.init_pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.init.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.init.wait(timeout=5)


@dataclass
class Namespace(Launcher):
    """A network namespace this lab created, and the processes running in it.

    With `pid=True` (the lab's nodes) it is also a PID namespace with its own /proc (`space`);
    every command started here is then a member of it.
    """

    name: str
    processes: list[LabProcess] = field(default_factory=list)
    space: ProcessSpace | None = None

    @classmethod
    def create(cls, name: str, *, pid: bool = False) -> Namespace:
        ip("netns", "add", name)
        ns = cls(name)
        try:
            ns.ip("link", "set", "lo", "up")
            if pid:
                ns.space = ProcessSpace.start(name, ns._popen_in_netns)
                # What the space starts is listed here too, so the namespace's close stops it.
                ns.space.processes = ns.processes
        except BaseException:
            ns.close()
            raise
        return ns

    def __str__(self) -> str:
        return self.name

    @property
    def init_pid(self) -> int | None:
        """The node's pid 1 as the host numbers it (None: no PID namespace of its own)."""
        return self.space.init_pid if self.space is not None else None

    def ip(self, *args: str) -> str:
        return ip("-n", self.name, *args)

    @property
    def launcher(self) -> bytes:
        return b"ip\0netns\0exec\0" if self.space is None else self.space.launcher

    def _popen_in_netns(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kwargs)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """`subprocess.Popen(argv, **kwargs)` inside the namespace (and its PID namespace).

        `cwd` is where the command starts (default: ours); the returned pid is the command's
        own once the launcher has exec'd it (`ip netns exec` and `nsenter` both exec).
        """
        if self.space is None:
            return self._popen_in_netns(argv, **kwargs)
        return self.space.popen(argv, **kwargs)

    def close(self) -> None:
        """Stop every process started here, then delete the namespace (and its veth end)."""
        self.stop_processes()
        # Killing the node's pid 1 kills every process left in its PID namespace.
        if self.space is not None:
            self.space.close()
            self.space = None
        # Anything else left inside (a probe run killed by a timeout) goes too.
        with contextlib.suppress(RuntimeError):
            for pid in ip("netns", "pids", self.name).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(RuntimeError):
            ip("netns", "del", self.name)
