"""Runtime proxy settings read from fake host trees, routes, mismatches and live environments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakeprocs import FakeProcess, FakeProcesses

from probe.config import RegistryAddress
from probe.node.hostfs import HostFS
from probe.node.processes import scan_processes
from probe.node.runtimes import (
    Route,
    consistent,
    deciding_runtime,
    expected_processes,
    explain_mismatch,
    read_runtime,
    read_runtimes,
    restart_pending,
    route_for,
)
from probe.result import RuntimeRoute

HOSTS = Path(__file__).parent / "data" / "hosts"


def test_docker_proxied_containerd_direct_is_named_with_the_fix() -> None:
    """The seed's case: dockerd has a proxy drop-in, containerd none; the fix names the file."""
    configs = read_runtimes(HostFS(str(HOSTS / "docker-containerd")))
    assert set(configs) == {"containerd", "dockerd"}
    routes = [route_for(RegistryAddress.parse("registry-1.docker.io"), c) for c in configs.values()]
    assert not consistent(routes)
    assert explain_mismatch(routes, configs) == (
        "dockerd goes through http://proxy.corp:3128 "
        "(from /etc/systemd/system/docker.service.d/http-proxy.conf); containerd goes direct: "
        "add the same Environment= lines to "
        "/etc/systemd/system/containerd.service.d/http-proxy.conf and restart containerd"
    )
    assert deciding_runtime(configs) == "containerd"


def test_route_keeps_secret_for_use_and_shows_it_redacted() -> None:
    """A proxy with credentials is shown as user:*** and kept whole only for the connection."""
    config = read_runtime(HostFS(str(HOSTS / "containerd-1.7")), "containerd")
    assert config is not None
    route = route_for(RegistryAddress.parse("registry-1.docker.io"), config)
    assert route.route == "proxy"
    assert route.proxy == "http://user:***@proxy.corp:3128"
    # The fixture drop-in's fake password, kept whole for the connection through the proxy.
    assert route.proxy_url_with_secret == "http://user:" + "s3cret" + "@proxy.corp:3128"
    assert "s3cret" not in repr(route)
    assert route.source == "/etc/systemd/system/containerd.service.d/http-proxy.conf"
    assert route.to_result() == RuntimeRoute(
        "containerd", "proxy", "http://user:***@proxy.corp:3128"
    )


def test_no_proxy_sends_registry_direct_and_names_the_entry() -> None:
    """A NO_PROXY entry that matches the registry gives a direct route, naming entry and file."""
    config = read_runtime(HostFS(str(HOSTS / "containerd-1.7")), "containerd")
    assert config is not None
    route = route_for(RegistryAddress.parse("harbor.svc:8443"), config)
    assert (route.route, route.variable, route.why) == (
        "direct",
        "NO_PROXY",
        "NO_PROXY entry '.svc'",
    )
    assert route.source == "/etc/systemd/system/containerd.service.d/http-proxy.conf"


def test_http_registry_uses_http_proxy() -> None:
    """A plain-HTTP registry (http://host:port) is routed by HTTP_PROXY."""
    config = read_runtime(HostFS(str(HOSTS / "containerd-1.7")), "containerd")
    assert config is not None
    route = route_for(RegistryAddress.parse("http://registry.internal:5000"), config)
    assert (route.route, route.proxy, route.variable) == (
        "proxy",
        "http://proxy.corp:3128",
        "HTTP_PROXY",
    )


def test_k3s_containerd_variables_win() -> None:
    """Under k3s, CONTAINERD_HTTPS_PROXY becomes containerd's HTTPS_PROXY over the plain one."""
    config = read_runtime(HostFS(str(HOSTS / "k3s")), "containerd")
    assert config is not None
    assert config.unit == "k3s.service"
    assert config.environment == {
        "HTTPS_PROXY": "http://containerd-only:3128",
        "NO_PROXY": "registry.local",
    }
    route = route_for(RegistryAddress.parse("registry-1.docker.io"), config)
    assert route.proxy == "http://containerd-only:3128"
    assert route.source == "/etc/systemd/system/k3s.service.env (CONTAINERD_HTTPS_PROXY)"
    assert route_for(RegistryAddress.parse("registry.local"), config).route == "direct"
    assert config.suggested_file == "/etc/systemd/system/k3s.service.env"
    assert config.restart_name == "k3s"


def test_daemon_json_proxies_override_dockerd_environment() -> None:
    """daemon.json proxies replace the unit's HTTPS_PROXY and NO_PROXY in both cases."""
    config = read_runtime(HostFS(str(HOSTS / "docker-daemon-json")), "dockerd")
    assert config is not None
    route = route_for(RegistryAddress.parse("registry-1.docker.io"), config)
    assert (route.proxy, route.source) == ("http://json-proxy:3128", "/etc/docker/daemon.json")
    assert (
        route_for(RegistryAddress.parse("http://cache.internal:5000"), config).route == "direct"
    )  # *.internal
    # The process was started with the unit's values: that is what /proc shows.
    assert config.process_env["HTTPS_PROXY"] == "http://env-proxy:3128"


def test_crio_environment_file() -> None:
    """CRI-O's proxy from its EnvironmentFile, and CRI-O decides when containerd is absent."""
    configs = read_runtimes(HostFS(str(HOSTS / "crio")))
    assert set(configs) == {"crio"}
    assert deciding_runtime(configs) == "crio"
    route = route_for(RegistryAddress.parse("quay.io"), configs["crio"])
    assert (route.proxy, route.source) == ("http://crio-proxy:3128", "/etc/sysconfig/crio")


def test_absent_runtime_is_none(tmp_path: Path) -> None:
    """No unit, no config directory, no process: the runtime is not on the node."""
    assert read_runtime(HostFS(str(tmp_path)), "containerd") is None
    assert read_runtimes(HostFS(str(tmp_path))) == {}
    assert deciding_runtime({}) is None


def test_runtime_present_by_process_alone(tmp_path: Path) -> None:
    """A visible process is enough to count a runtime as present (direct, no settings)."""
    config = read_runtime(HostFS(str(tmp_path)), "crio", process_names={"crio", "kubelet"})
    assert config is not None
    assert config.evidence == ("process crio",)
    assert route_for(RegistryAddress.parse("quay.io"), config).route == "direct"


def test_malformed_settings_are_problems_not_crashes() -> None:
    """Broken daemon.json and unit lines become problems; the runtime is still read."""
    config = read_runtime(HostFS(str(HOSTS / "malformed")), "dockerd")
    assert config is not None
    assert any("daemon.json: not valid JSON" in p for p in config.problems)
    assert not any("p%40ss" in p for p in config.problems)


def test_environment_file_runtime_mismatch_with_crio() -> None:
    """containerd proxied from an EnvironmentFile, crio direct: crio's drop-in is the fix."""
    configs = read_runtimes(HostFS(str(HOSTS / "environment-file")))
    routes = [route_for(RegistryAddress.parse("registry-1.docker.io"), c) for c in configs.values()]
    message = explain_mismatch(routes, configs)
    assert message is not None
    assert (
        "containerd goes through http://from-file:3128 (from /etc/containerd/proxy.env)" in message
    )
    assert message.endswith(
        "add the same Environment= lines to /etc/systemd/system/crio.service.d/http-proxy.conf "
        "and restart crio"
    )


def _route(runtime: str, route: str, proxy: str | None, **extra: Any) -> Route:
    return Route(runtime, "r.io", route, proxy, proxy, **extra)


def test_consistency() -> None:
    """Same route through the same proxy is consistent; a different proxy or route is not."""
    assert consistent([])
    assert consistent([_route("containerd", "direct", None), _route("dockerd", "direct", None)])
    assert consistent(
        [_route("containerd", "proxy", "http://p:1"), _route("crio", "proxy", "http://p:1")]
    )
    assert not consistent(
        [_route("containerd", "proxy", "http://p:1"), _route("dockerd", "proxy", "http://q:1")]
    )
    assert not consistent(
        [_route("containerd", "proxy", "http://p:1"), _route("dockerd", "direct", None)]
    )


def test_different_proxies_and_credentials_explained() -> None:
    """Two proxies, or one proxy with two credentials, are named without showing passwords."""
    configs: dict[str, Any] = {}
    two = [_route("containerd", "proxy", "http://p:1"), _route("dockerd", "proxy", "http://q:1")]
    assert explain_mismatch(two, configs) == (
        "containerd goes through http://p:1; dockerd goes through http://q:1: "
        "make the proxies the same"
    )
    creds = [
        Route("containerd", "r.io", "proxy", "http://u:***@p:1", "http://u:a@p:1"),
        Route("dockerd", "r.io", "proxy", "http://u:***@p:1", "http://u:b@p:1"),
    ]
    message = explain_mismatch(creds, configs)
    assert message is not None
    assert "different credentials" in message
    assert ":a@" not in message
    assert ":b@" not in message


@pytest.mark.parametrize(
    ("processes", "want"),
    [
        ([FakeProcess("containerd", {"HTTPS_PROXY": "http://p:1"})], {"HTTPS_PROXY": "http://p:1"}),
        ([FakeProcess("containerd", None)], None),  # AccessDenied: unknown, not empty
        ([FakeProcess("dockerd", {})], None),  # not visible
        ([FakeProcess("containerd", None), FakeProcess("containerd", {"A": "1"})], {"A": "1"}),
    ],
)
def test_live_environment(processes: list[FakeProcess], want: dict[str, str] | None) -> None:
    """The live environment of a visible, readable process; None when hidden or denied."""
    table = scan_processes(expected_processes(runtimes=("containerd",)), FakeProcesses(processes))
    assert table.live_environment("containerd") == want


def test_scan_keeps_only_runtime_processes() -> None:
    """One pass over the processes keeps the runtimes asked for, for presence."""
    fake = FakeProcesses([FakeProcess("containerd"), FakeProcess("kubelet")])
    expected = expected_processes(runtimes=("containerd", "crio"))
    assert scan_processes(expected, fake).names == {"containerd"}


@pytest.mark.parametrize(
    ("unit", "live", "pending"),
    [
        ({"HTTPS_PROXY": "http://p:1"}, {"HTTPS_PROXY": "http://p:1", "PATH": "/bin"}, False),
        ({"HTTPS_PROXY": "http://new:1"}, {"HTTPS_PROXY": "http://old:1"}, True),
        ({"HTTPS_PROXY": "http://p:1"}, {}, True),  # unit gained a proxy since the start
        ({}, {"https_proxy": "http://p:1"}, True),  # unit lost it
        # Same as Go reads it: upper case wins either way, the lower-case change is invisible.
        ({"HTTPS_PROXY": "http://p:1", "https_proxy": "x"}, {"HTTPS_PROXY": "http://p:1"}, False),
        ({"HTTPS_PROXY": "http://p:1"}, None, False),  # live environment unknown
    ],
)
def test_restart_pending(unit: dict[str, str], live: dict[str, str] | None, pending: bool) -> None:
    """A restart is pending when the proxy settings Go reads differ between unit and process."""
    assert restart_pending(unit, live) is pending


def test_restart_pending_for_k3s_compares_the_child_environment() -> None:
    """k3s's containerd runs with CONTAINERD_* stripped: that is what its /proc shows."""
    config = read_runtime(HostFS(str(HOSTS / "k3s")), "containerd")
    assert config is not None
    live = scan_processes(
        expected_processes(runtimes=("containerd",)),
        FakeProcesses(
            [
                FakeProcess(
                    "containerd",
                    {"HTTPS_PROXY": "http://containerd-only:3128", "NO_PROXY": "registry.local"},
                )
            ]
        ),
    ).live_environment("containerd")
    assert not restart_pending(config.process_env, live)
    assert restart_pending(config.process_env, {"HTTPS_PROXY": "http://k3s-proxy:3128"})


def test_no_proxy_mismatch_names_the_entry_to_remove(tmp_path: Path) -> None:
    """When NO_PROXY sends one runtime direct, the fix names the entry and the file."""
    for unit, no_proxy in (("containerd.service", ".corp"), ("docker.service", "")):
        dropin = tmp_path / "etc/systemd/system" / f"{unit}.d"
        dropin.mkdir(parents=True)
        (dropin / "http-proxy.conf").write_text(
            f'[Service]\nEnvironment="HTTPS_PROXY=http://proxy:3128" "NO_PROXY={no_proxy}"\n'
        )
        (tmp_path / "etc/systemd/system" / unit).write_text("[Service]\n")
    configs = read_runtimes(HostFS(str(tmp_path)))
    routes = [route_for(RegistryAddress.parse("registry.corp"), c) for c in configs.values()]
    assert explain_mismatch(routes, configs) == (
        "dockerd goes through http://proxy:3128 "
        "(from /etc/systemd/system/docker.service.d/http-proxy.conf); "
        "containerd goes direct (NO_PROXY entry '.corp' in "
        "/etc/systemd/system/containerd.service.d/http-proxy.conf): remove '.corp' from NO_PROXY "
        "in /etc/systemd/system/containerd.service.d/http-proxy.conf and restart containerd"
    )
