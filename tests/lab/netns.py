"""Network namespaces and the processes the lab runs inside them.

Every name the lab creates starts with `rp<pid>-`, the pid of the pytest process that made it, so
runs do not collide and `remove_leftovers()` can tell an abandoned lab (its pid is gone) from one
in use. Nothing here touches the host's own network namespace except creating and deleting ours.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "rp"
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
    # when pytest is.
    for leftover in [
        *Path("/dev/shm").glob(f"{PREFIX}*-*"),
        *Path("/tmp").glob(f"{PREFIX}*-squid-*"),
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
        """Whether `ip netns exec` has become the command: before that, /proc/<pid>/environ
        and cmdline are ip's (or empty while the exec runs)."""
        try:
            cmdline = Path(f"/proc/{self.popen.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return bool(cmdline) and not cmdline.startswith(b"ip\0netns\0exec\0")

    def _bound(self) -> set[tuple[str, str]]:
        found = set()
        for proto, state in (("tcp", _TCP_LISTEN), ("udp", _UDP_UNCONNECTED)):
            try:
                table = Path(f"/proc/{self.popen.pid}/net/{proto}").read_text(encoding="ascii")
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
    # /proc/net/tcp prints the IPv4 address as the kernel's 32-bit word in host byte order.
    (word,) = struct.unpack("=I", socket.inet_aton(address))
    return f"{word:08X}:{port:04X}"


@dataclass
class Namespace:
    """A network namespace this lab created, and the processes running in it."""

    name: str
    processes: list[LabProcess] = field(default_factory=list)

    @classmethod
    def create(cls, name: str) -> Namespace:
        ip("netns", "add", name)
        ns = cls(name)
        try:
            ns.ip("link", "set", "lo", "up")
        except BaseException:
            ns.close()
            raise
        return ns

    def ip(self, *args: str) -> str:
        return ip("-n", self.name, *args)

    def run(
        self, argv: list[str], *, timeout: float = 10, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside the namespace; a failure raises with its stderr."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv} in {self.name}: {done.stderr.strip()}")
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
        """Start a long-lived process in the namespace and wait until it listens.

        The process is stopped by `close()`; it also gets its own session so that a signal
        meant for pytest does not reach it first. `env` replaces the environment (the process
        sees exactly it, in /proc/<pid>/environ too); `wait=False` returns at once, for
        starting several servers and then waiting for each with `wait_listening()`.
        """
        with log.open("wb") as out:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", self.name, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        process = LabProcess(name, popen, log, listens)
        self.processes.append(process)
        if wait:
            process.wait_listening(listens, deadline_seconds)
        return process

    def close(self) -> None:
        """Stop every process started here, then delete the namespace (and its veth end)."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        # Anything else left inside (a probe run killed by a timeout) goes too.
        with contextlib.suppress(RuntimeError):
            for pid in ip("netns", "pids", self.name).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(RuntimeError):
            ip("netns", "del", self.name)
