"""A stand-in for the part of psutil that reads processes: the one thing tests cannot run here
(a real containerd whose environment can be chosen). Lab tests start real processes instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass
class FakeProcess:
    """A psutil.Process stand-in: a name, and an environ that may be unreadable."""

    name: str
    env: dict[str, str] | None = None  # None: AccessDenied, as without SYS_PTRACE
    info: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.info = {"name": self.name}

    def environ(self) -> dict[str, str]:
        if self.env is None:
            raise psutil.AccessDenied(pid=1, name=self.name)
        return self.env


@dataclass
class FakeProcesses:
    """The part of the psutil module live_environment uses."""

    processes: list[FakeProcess]

    def process_iter(self, attrs: list[str]) -> Iterable[FakeProcess]:
        return iter(self.processes)
