"""The route each runtime takes, as the node runs it now, and how the engine reports it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fakeprocs import FakeProcess, FakeProcesses

from probe.config import Config
from probe.engine import Engine
from probe.node.processes import ProcessSource
from probe.node.routes import NodeRoutes
from probe.node.view import NodeReader
from probe.reasons import CheckKind, Reason

HOSTS = Path(__file__).parent / "data" / "hosts"


NO_PROCESSES = FakeProcesses([])
CONTAINERD_1_7 = HOSTS / "containerd-1.7"
DOCKER_HUB = ("https", "registry-1.docker.io", 443)


def read_node_routes(root: Path, runtimes: tuple[str, ...], processes: ProcessSource) -> NodeRoutes:
    return NodeReader(str(root), runtimes, processes=processes).view().routes


def test_unit_files_decide_without_a_visible_process() -> None:
    """Without the process, the unit's drop-in decides the CRI runtime's proxy."""
    routes = read_node_routes(CONTAINERD_1_7, ("containerd", "dockerd", "crio"), NO_PROCESSES)
    assert routes.decider == "containerd"
    proxy = routes.proxy_for(*DOCKER_HUB)
    assert proxy is not None
    assert routes.restart_pending() is None


def test_live_environment_wins_and_flags_a_restart() -> None:
    """A running containerd without the unit's proxy goes direct now: restart pending."""
    processes = FakeProcesses([FakeProcess("containerd", {"PATH": "/usr/bin"})])
    routes = read_node_routes(CONTAINERD_1_7, ("containerd",), processes)
    assert routes.proxy_for(*DOCKER_HUB) is None
    pending = routes.restart_pending()
    assert pending is not None
    assert "systemctl restart containerd" in pending


def test_unreadable_live_environment_counts_as_unknown() -> None:
    """AccessDenied on /proc/<pid>/environ is unknown, never an empty environment."""
    processes = FakeProcesses([FakeProcess("containerd", None)])
    routes = read_node_routes(CONTAINERD_1_7, ("containerd",), processes)
    assert routes.restart_pending() is None
    assert routes.proxy_for(*DOCKER_HUB) is not None


def test_mismatch_is_the_registry_proxy_check() -> None:
    """dockerd proxied and containerd direct: the report's proxy check is proxy_mismatch."""
    config = Config(host_root=str(HOSTS / "docker-containerd"), timeout=1.0, discover=False)
    engine = Engine(config)
    _, (report,) = asyncio.run(engine.probe_all())
    proxy = [c for c in report.checks if c.check == CheckKind.PROXY]
    assert len(proxy) == 1
    assert proxy[0].reason == Reason.PROXY_MISMATCH
    assert "containerd.service.d" in proxy[0].detail
    assert report.proxy_consistent is False
    assert {(r.runtime, r.route) for r in report.routes} == {
        ("containerd", "direct"),
        ("dockerd", "proxy"),
    }
