"""The node view: everything the checks need to know about the node, read at most once per
interval and shared by every registry's probe of that cycle.

blackbox_exporter hands each probe its module config; here each probe gets one immutable
`NodeView`: the node's name, resolvers and hosts file, trust store, the runtimes' proxy settings
as they run now, the hosts the CRI runtime pulls each registry from (mirrors first), and the
problems found while reading. `NodeReader` builds it and keeps it for `max_age` seconds (the probe
interval). When that has passed it reads again, but only what changed: each part remembers the
signature of every file it read (`HostFS.signature`: identity, size, mtimes and the links on
the way), and is kept as long as none changed. The runtimes' processes are scanned once per
view. So a new hosts.toml mirror or a proxy drop-in shows within one interval, without SIGHUP,
and a node that does not change costs one round of `stat`s per interval.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import psutil

from probe.node.containerd import read_containerd
from probe.node.crio import read_crio
from probe.node.dockerd import read_dockerd
from probe.node.hostfs import HostFS, Signature
from probe.node.k3s import read_registries_yaml
from probe.node.problems import NodeProblem
from probe.node.processes import ProcessSource, ProcessTable, scan_processes
from probe.node.registries import NO_REGISTRIES, NodeRegistries
from probe.node.resolver import NodeResolver, read_resolver
from probe.node.routes import NodeRoutes, node_routes
from probe.node.runtimes import (
    K3S_UNITS,
    RuntimeProxyConfig,
    deciding_runtime,
    expected_processes,
    read_runtimes,
)
from probe.node.trust import CAFile, NodeTrust, certs_d_ca_files, read_ca_files, read_trust

HOSTNAME_FILE = "/etc/hostname"

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class NodeView:
    """The node as its runtime sees it, at one moment; never changes once built."""

    name: str
    resolver: NodeResolver
    trust: NodeTrust
    routes: NodeRoutes
    registries: NodeRegistries  # what the CRI runtime pulls from, and how
    problems: tuple[NodeProblem, ...]
    generation: int  # a new number whenever anything in the view differs from the last one
    _fs: HostFS = field(repr=False)
    _ca_files: dict[tuple[str, ...], tuple[CAFile, ...]] = field(default_factory=dict, repr=False)

    def ca_files(self, paths: tuple[str, ...]) -> tuple[CAFile, ...]:
        """CA files the node names for a registry, read once per view."""
        found = self._ca_files.get(paths)
        if found is None:
            found = read_ca_files(self._fs, paths)
            self._ca_files[paths] = found
        return found

    def certs_d(self, registry_label: str) -> tuple[str, ...]:
        """containerd's `certs.d/<host[:port]>/*.crt` for a registry, listed once per view."""
        key = ("certs.d", registry_label)
        found = self._ca_files.get(key)
        if found is None:
            paths = certs_d_ca_files(self._fs, registry_label)
            found = tuple(CAFile(path, "") for path in paths)
            self._ca_files[key] = found
        return tuple(ca.name for ca in found)

    def read_again(self) -> bool:
        """Whether a file read through this view (CA files) changed since."""
        return self._fs.changed(self._fs.reads)


@dataclass(frozen=True)
class _Part(Generic[T]):
    """One part of the view, and the signatures of the files it was read from."""

    value: T
    reads: dict[str, Signature]
    problems: tuple[NodeProblem, ...]
    key: object = None  # what else it was read with (the visible runtime processes)


class NodeReader:
    """Builds the node view from `host_root`, and keeps it while it is fresh."""

    def __init__(
        self,
        host_root: str,
        runtimes: tuple[str, ...],
        *,
        processes: ProcessSource = psutil,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host_root = host_root
        self.runtimes = runtimes
        self._processes = processes
        self._clock = clock
        self._fs = HostFS(host_root)
        self._parts: dict[str, _Part[object]] = {}
        self._view: NodeView | None = None
        self._read_at = 0.0
        self._table = ProcessTable()

    def view(self, max_age: float = 0.0) -> NodeView:
        """The current view: the last one while younger than `max_age` seconds, else a new one."""
        now = self._clock()
        if self._view is not None and now - self._read_at < max_age:
            return self._view
        self._view = self._read(self._view)
        self._read_at = now
        return self._view

    def _read(self, last: NodeView | None) -> NodeView:
        # What a runtime's process must be to be trusted depends on its unit's ExecStart=.
        expected, changed = self._part(
            "processes", lambda fs: expected_processes(fs, self.runtimes)
        )
        table = scan_processes(expected, self._processes)
        changed |= last is None or table != self._table or last.read_again()
        self._table = table

        resolver, fresh = self._part("resolver", read_resolver)
        changed |= fresh
        trust, fresh = self._part("trust", read_trust)
        changed |= fresh
        files, fresh = self._part(
            "runtimes", lambda fs: read_runtimes(fs, self.runtimes, table.names), key=table.names
        )
        changed |= fresh
        decider = deciding_runtime(files)
        key = (decider, files[decider].unit if decider else None, "dockerd" in files)
        found, fresh = self._part("registries", lambda fs: read_registries(fs, files), key=key)
        changed |= fresh
        name, fresh = self._part("name", _node_name)
        changed |= fresh
        routes = node_routes(files, table)
        problems = [p for part in self._parts.values() for p in part.problems]
        problems += found.problems
        problems += table.problems
        problems += _runtime_problems(files)
        generation = 1 if last is None else last.generation + (1 if changed else 0)
        if not changed and last is not None:
            return last
        return NodeView(
            name=name,
            resolver=resolver,
            trust=trust,
            routes=routes,
            registries=found,
            problems=tuple(dict.fromkeys(problems)),
            generation=generation,
            _fs=self._fs.fork(),
        )

    def _part(self, name: str, read: Callable[[HostFS], T], key: object = None) -> tuple[T, bool]:
        """The part `name`, read again only when a file it read changed; (value, read anew)."""
        part = self._parts.get(name)
        if part is not None and part.key == key and not self._fs.changed(part.reads):
            return part.value, False  # type: ignore[return-value]  # stored under its own name
        fs = self._fs.fork()
        value = read(fs)
        self._parts[name] = _Part(value, dict(fs.reads), tuple(fs.problems), key)
        return value, True


def read_registries(fs: HostFS, files: Mapping[str, RuntimeProxyConfig]) -> NodeRegistries:
    """The registry settings of the runtime whose pulls kubelet makes: containerd (k3s's and
    RKE2's as their registries.yaml gives them), else CRI-O; dockerd only on a node with
    neither (cri-dockerd)."""
    decider = deciding_runtime(files)
    if decider == "containerd":
        unit = files["containerd"].unit
        if unit in K3S_UNITS:
            return read_registries_yaml(fs, "rke2" if unit and unit.startswith("rke2") else "k3s")
        if unit is None:  # no unit under the host root: k3s's or RKE2's files still tell
            for distribution in ("rke2", "k3s"):
                if fs.is_dir(f"/etc/rancher/{distribution}"):
                    return read_registries_yaml(fs, distribution)
        return read_containerd(fs)
    if decider == "crio":
        return read_crio(fs)
    if "dockerd" in files:
        return read_dockerd(fs)
    return NO_REGISTRIES


def _node_name(fs: HostFS) -> str:
    """The node's name: the downward API's NODE_NAME, else the node's hostname."""
    name = os.environ.get("NODE_NAME", "").strip()
    if name:
        return name
    text = fs.read_text(HOSTNAME_FILE, 4096)
    if text and text.strip():
        return text.strip().splitlines()[0][:253]
    return socket.gethostname()


_SYSTEMD_PROBLEM = re.compile(r"(?P<source>/[^:\s]+): (?:line (?P<line>\d+): )?(?P<message>.+)")


def _runtime_problems(files: Mapping[str, RuntimeProxyConfig]) -> list[NodeProblem]:
    """A runtime's unit and daemon.json problems, with the file and line they name."""
    found: list[NodeProblem] = []
    for runtime, config in files.items():
        for problem in config.problems:
            match = _SYSTEMD_PROBLEM.fullmatch(problem)
            if match is None:
                found.append(NodeProblem(config.unit or runtime, problem, runtime=runtime))
                continue
            line = match.group("line")
            found.append(
                NodeProblem(
                    match.group("source"),
                    problem,
                    int(line) if line else None,
                    f"{runtime} starts without this setting",
                    runtime,
                )
            )
    return found
