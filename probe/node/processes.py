"""The runtimes' running processes and their live environments, read once per node view.

Where the agent sees the node's processes (hostPID), a runtime's live environment is what it
really uses until it restarts. Reading another process's /proc/<pid>/environ needs uid 0 and
SYS_PTRACE: without them psutil raises AccessDenied, which here means "unknown", never "empty".
The process source is an argument, as client_python's `ProcessCollector(proc=...)` takes it:
psutil in the agent, a stand-in in tests.

A process name proves nothing: any local user can start a program called `containerd` (or
rename one with prctl), and its environment would then decide the route the report shows. So a
process counts as a runtime only when it is trusted (`judge`):

- its owner is root: real and effective uid 0, as every runtime's unit runs it;
- and it is the runtime's program: its executable (/proc/<pid>/exe, as the node's mount
  namespace names it) is the binary the runtime's unit starts (`ExecStart=`) or a well-known
  install path of that runtime, or it lives in the cgroup systemd gives the runtime's unit
  (`/system.slice/<unit>` in /proc/<pid>/cgroup; k3s's containerd is in k3s.service's).

A process that is not trusted is ignored (neither presence nor environment) and reported as a
node problem naming its pid, executable and uid, and why. The report names the process whose
environment was read.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import psutil

from probe.node.problems import NodeProblem

MAX_CGROUP_BYTES = 64 * 1024  # /proc/<pid>/cgroup is a few lines


class ProcessLike(Protocol):
    info: dict[str, Any]

    @property
    def pid(self) -> int: ...

    def environ(self) -> dict[str, str]: ...

    def exe(self) -> str: ...

    def uids(self) -> Any: ...  # psutil's puids(real, effective, saved)


class ProcessSource(Protocol):
    """What the scan needs of psutil: a fake in tests, the psutil module in the agent."""

    def process_iter(self, attrs: list[str]) -> Iterable[ProcessLike]: ...


@runtime_checkable
class CgroupSource(Protocol):
    """A process source that also gives a process's cgroup file (psutil has no call for it:
    /proc/<pid>/cgroup is read then)."""

    def cgroup_of(self, pid: int) -> str | None: ...


@dataclass(frozen=True)
class Expected:
    """What a runtime's process must be to be trusted: its name, the binaries it may run (paths
    as the node names them; `*` matches within one path component) and the units whose cgroup
    it may live in."""

    runtime: str
    name: str
    binaries: tuple[str, ...]
    units: tuple[str, ...]

    def runs_binary(self, exe: str) -> bool:
        path = PurePosixPath(posixpath.normpath(exe))
        return any(path.match(pattern) and pattern.startswith("/") for pattern in self.binaries)

    def in_unit_cgroup(self, cgroup: str) -> bool:
        """Whether a line of /proc/<pid>/cgroup puts the process under `/system.slice/<unit>`.

        Seen from a container with its own cgroup namespace the path starts with `/..`
        components (the part above the namespace's root): they are dropped."""
        for line in cgroup.splitlines():
            path = line.split(":", 2)[-1]
            parts = [p for p in path.split("/") if p]
            while parts and parts[0] == "..":
                parts.pop(0)
            if len(parts) >= 2 and parts[0] == "system.slice" and parts[1] in self.units:
                return True
        return False


@dataclass(frozen=True)
class RuntimeProcess:
    """A visible process named as a runtime: who runs it, what it runs, its environment."""

    name: str
    pid: int
    environ: Mapping[str, str] | None  # None: not readable (no SYS_PTRACE, or it exited)
    uids: tuple[int, int] | None = (0, 0)  # real, effective; None: not readable
    exe: str | None = None  # None: not readable
    cgroup: str | None = field(default=None, repr=False)

    @property
    def described(self) -> str:
        """`pid 812 (/usr/bin/containerd)`: which process, in a report."""
        return f"pid {self.pid} ({self.exe or 'executable unreadable'})"


def judge(process: RuntimeProcess, expected: Expected) -> str | None:
    """Why `process` is not trusted as `expected.runtime`, or None when it is."""
    if process.uids is None:
        return "its owner cannot be read"
    real, effective = process.uids
    if (real, effective) != (0, 0):
        return f"it runs as uid {real} (effective {effective}), not root"
    if process.exe is not None and expected.runs_binary(process.exe):
        return None
    if process.cgroup is not None and expected.in_unit_cgroup(process.cgroup):
        return None
    where = ", ".join(expected.binaries[:4]) + (", ..." if len(expected.binaries) > 4 else "")
    units = " or ".join(expected.units[:2]) + (" ..." if len(expected.units) > 2 else "")
    runs = f"runs {process.exe}" if process.exe else "has an unreadable executable"
    return f"it {runs}, not {where}, and is not in the cgroup of {units}"


@dataclass(frozen=True)
class ProcessTable:
    """The runtime processes visible to the agent, in the order the system lists them: those
    trusted as their runtime, and those ignored with the reason."""

    processes: tuple[RuntimeProcess, ...] = ()
    ignored: tuple[tuple[RuntimeProcess, str, str], ...] = ()  # process, runtime, why

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.processes)

    def live_process(self, name: str) -> RuntimeProcess | None:
        """The first trusted process called `name` whose environment is readable, or None."""
        return next((p for p in self.processes if p.name == name and p.environ is not None), None)

    def live_environment(self, name: str) -> Mapping[str, str] | None:
        """The environment of the first trusted, readable process called `name`, or None."""
        process = self.live_process(name)
        return process.environ if process is not None else None

    @property
    def problems(self) -> tuple[NodeProblem, ...]:
        """One node problem per ignored process."""
        found = []
        for process, runtime, why in self.ignored:
            uid = "unknown" if process.uids is None else str(process.uids[0])
            found.append(
                NodeProblem(
                    source="/proc",  # stable: the pid is in the message, never a label
                    message=(
                        f"process {process.pid} named {process.name} "
                        f"({process.exe or 'executable unreadable'}, uid {uid}) is not "
                        f"trusted as {runtime}: {why}"
                    ),
                    effect=f"its environment is ignored; {runtime}'s files decide its route",
                    runtime=runtime,
                )
            )
        return tuple(found)


def scan_processes(expected: Mapping[str, Expected], proc: ProcessSource = psutil) -> ProcessTable:
    """One pass over the visible processes, keeping those named as a runtime of `expected`
    (process name -> what it must be); each is judged, and read only when trusted."""
    cgroup_of = proc.cgroup_of if isinstance(proc, CgroupSource) else _proc_cgroup
    trusted: list[RuntimeProcess] = []
    ignored: list[tuple[RuntimeProcess, str, str]] = []
    for process in proc.process_iter(["name"]):
        name = process.info.get("name")
        if not isinstance(name, str) or name not in expected:
            continue
        wanted = expected[name]
        candidate = RuntimeProcess(
            name=name,
            pid=process.pid,
            environ=None,
            uids=_uids(process),
            exe=_exe(process),
            cgroup=cgroup_of(process.pid),
        )
        why = judge(candidate, wanted)
        if why is not None:
            ignored.append((candidate, wanted.runtime, why))
            continue
        try:
            environ: Mapping[str, str] | None = MappingProxyType(dict(process.environ()))
        except psutil.Error:
            environ = None
        trusted.append(RuntimeProcess(name, candidate.pid, environ, candidate.uids, candidate.exe))
    return ProcessTable(tuple(trusted), tuple(ignored))


def _uids(process: ProcessLike) -> tuple[int, int] | None:
    try:
        uids = process.uids()
        return int(uids[0]), int(uids[1])
    except (psutil.Error, TypeError, ValueError, IndexError):
        return None


def _exe(process: ProcessLike) -> str | None:
    try:
        exe = process.exe()
    except psutil.Error:
        return None
    return exe if isinstance(exe, str) and exe.startswith("/") else None


def _proc_cgroup(pid: int) -> str | None:
    """/proc/<pid>/cgroup (under psutil's PROCFS_PATH), or None when it cannot be read."""
    try:
        with open(f"{psutil.PROCFS_PATH}/{pid}/cgroup", "rb") as file:
            return file.read(MAX_CGROUP_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
