"""A stand-in for the part of psutil that reads processes: the one thing tests cannot run here
(a real containerd whose environment can be chosen). Lab tests start real processes instead.

A fake process is, by default, what a trusted runtime looks like: owned by root, running
/usr/bin/<name>. `uid`, `exe` and `cgroup` make it anything else.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

_PIDS = itertools.count(1000)


@dataclass
class FakeProcess:
    """A psutil.Process stand-in: a name, an owner, an executable, a cgroup, and an environ
    that may be unreadable."""

    name: str
    env: dict[str, str] | None = None  # None: AccessDenied, as without SYS_PTRACE
    uid: int | None = 0  # real and effective; None: AccessDenied
    exe_path: str | None = ""  # "": /usr/bin/<name>; None: AccessDenied
    cgroup: str | None = None  # /proc/<pid>/cgroup; None: unreadable
    pid: int = field(default_factory=lambda: next(_PIDS))
    info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.info = {"name": self.name}
        if self.exe_path == "":
            self.exe_path = f"/usr/bin/{self.name}"

    def environ(self) -> dict[str, str]:
        if self.env is None:
            raise psutil.AccessDenied(pid=self.pid, name=self.name)
        return self.env

    def exe(self) -> str:
        if self.exe_path is None:
            raise psutil.AccessDenied(pid=self.pid, name=self.name)
        return self.exe_path

    def uids(self) -> tuple[int, int, int]:
        if self.uid is None:
            raise psutil.AccessDenied(pid=self.pid, name=self.name)
        return (self.uid, self.uid, self.uid)


@dataclass
class FakeProcesses:
    """The part of the psutil module the process scan uses, and each process's cgroup."""

    processes: list[FakeProcess]

    def process_iter(self, attrs: list[str]) -> Iterable[FakeProcess]:
        return iter(self.processes)

    def cgroup_of(self, pid: int) -> str | None:
        return next((p.cgroup for p in self.processes if p.pid == pid), None)
