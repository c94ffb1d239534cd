"""The route each runtime takes, as the node runs it now, and how the engine reports it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fakeprocs import FakeProcess, FakeProcesses

from probe.config import Config, RegistryAddress, RegistryConfig
from probe.engine import Engine
from probe.node.processes import ProcessSource
from probe.node.routes import NodeRoutes
from probe.node.view import NodeReader
from probe.reasons import CheckKind, Reason
from probe.views.advice import advice_for

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


def test_a_failing_proxy_says_when_a_restart_is_pending() -> None:
    """The running containerd's proxy refuses, and its unit already names another proxy: the
    failure keeps its reason, and the detail and the fix say the restart may be all it takes."""
    processes = FakeProcesses([FakeProcess("containerd", {"HTTPS_PROXY": "http://127.0.0.1:1"})])
    reader = NodeReader(str(CONTAINERD_1_7), ("containerd",), processes=processes)
    config = Config(
        host_root=str(CONTAINERD_1_7),
        timeout=2.0,
        discover=False,
        registries=(RegistryConfig(RegistryAddress.parse("registry.lab.test")),),
    )
    _, (report,) = asyncio.run(Engine(config, reader=reader).probe_all())
    failure = report.first_failure
    assert failure is not None
    assert (failure.check, failure.reason) == (CheckKind.PROXY, Reason.PROXY_UNREACHABLE)
    assert "a restart is pending" in failure.detail
    advice = advice_for(failure)
    assert "systemctl daemon-reload && systemctl restart containerd" in advice
    assert "s3cret" not in failure.detail + advice  # the unit's proxy password stays hidden


def test_a_proxy_that_takes_the_request_and_never_tunnels_is_its_upstream() -> None:
    """A proxy that reads CONNECT and never answers (squid waiting on a SYN a firewall drops)
    is `proxy_upstream_failed` when the deadline ends the check, not `proxy_unreachable`."""

    async def scenario() -> None:
        requests: list[bytes] = []
        done = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                requests.append(await reader.readuntil(b"\r\n\r\n"))
                await done.wait()
            finally:
                writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        env = {"HTTPS_PROXY": f"http://127.0.0.1:{port}"}
        processes = FakeProcesses([FakeProcess("containerd", env)])
        reader = NodeReader(str(CONTAINERD_1_7), ("containerd",), processes=processes)
        config = Config(
            host_root=str(CONTAINERD_1_7),
            timeout=1.0,
            discover=False,
            registries=(RegistryConfig(RegistryAddress.parse("registry.lab.test")),),
        )
        async with server:
            report = await Engine(config, reader=reader).probe_registry(config.registries[0])
            done.set()
            await asyncio.sleep(0.05)  # let the handler close its side
        failure = report.first_failure
        assert failure is not None
        assert (failure.check, failure.reason) == (CheckKind.PROXY, Reason.PROXY_UPSTREAM_FAILED)
        assert requests and requests[0].startswith(b"CONNECT registry.lab.test:443 ")

    asyncio.run(scenario())
