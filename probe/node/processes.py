"""The runtimes' running processes and their live environments, read once per node view.

Where the agent sees the node's processes (hostPID), a runtime's live environment is what it
really uses until it restarts. Reading another process's /proc/<pid>/environ needs uid 0 and
SYS_PTRACE: without them psutil raises AccessDenied, which here means "unknown", never "empty".
The process source is an argument, as client_python's `ProcessCollector(proc=...)` takes it:
psutil in the agent, a stand-in in tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import psutil


class ProcessLike(Protocol):
    info: dict[str, Any]

    def environ(self) -> dict[str, str]: ...


class ProcessSource(Protocol):
    """What the scan needs of psutil: a fake in tests, the psutil module in the agent."""

    def process_iter(self, attrs: list[str]) -> Iterable[ProcessLike]: ...


@dataclass(frozen=True)
class RuntimeProcess:
    """A visible process named as a runtime, and its environment when readable."""

    name: str
    environ: Mapping[str, str] | None  # None: not readable (no SYS_PTRACE, or it exited)


@dataclass(frozen=True)
class ProcessTable:
    """The runtime processes visible to the agent, in the order the system lists them."""

    processes: tuple[RuntimeProcess, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.processes)

    def live_environment(self, name: str) -> Mapping[str, str] | None:
        """The environment of the first readable process called `name`, or None."""
        return next(
            (p.environ for p in self.processes if p.name == name and p.environ is not None), None
        )


def scan_processes(names: Iterable[str], proc: ProcessSource = psutil) -> ProcessTable:
    """One pass over the visible processes, keeping those called one of `names`."""
    wanted = frozenset(names)
    found: list[RuntimeProcess] = []
    for process in proc.process_iter(["name"]):
        name = process.info.get("name")
        if not isinstance(name, str) or name not in wanted:
            continue
        try:
            environ: Mapping[str, str] | None = MappingProxyType(dict(process.environ()))
        except psutil.Error:
            environ = None
        found.append(RuntimeProcess(name, environ))
    return ProcessTable(tuple(found))
