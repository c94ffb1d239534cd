"""Where a runtime's environment comes from, beyond Environment= (issue 10, item 6): systemd's
`PassEnvironment=` (the service manager's own environment, which no file holds) and the NO_PROXY
entries a k3s or RKE2 server adds for its containerd; and `ExecStart=`, which names the binary
a trusted runtime process runs.

Sources: systemd.exec(5) and systemd.service(5); k3s pkg/server/server.go `setNoProxyEnv`
(k3s-io/k3s at 25c0b5fb9bb369842d8300e7afe9456eda50c912: NO_PROXY and no_proxy joined, then
".svc", "."+ClusterDomain, the cluster CIDRs, the service CIDRs; no_proxy unset), and k3s's
docs (docs/advanced.md, "Configuring an HTTP proxy": "K3s will automatically add the cluster
internal Pod and Service IP ranges and cluster DNS domain to the list of NO_PROXY entries").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.config import RegistryAddress
from probe.node.hostfs import HostFS
from probe.node.runtimes import read_runtime, route_for
from probe.node.systemd import (
    ExecStart,
    effective_environment,
    executable_paths,
    parse_exec_start,
    parse_unit_environment,
)

PROXY = "http://proxy.corp:3128"
K3S_DEFAULTS = ".svc,.cluster.local,10.42.0.0/16,10.43.0.0/16"


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# --- ExecStart= -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "command"),
    [
        ("/usr/bin/containerd", ("/usr/bin/containerd", ())),
        ("/usr/local/bin/k3s server --cluster-cidr 10.0.0.0/16", ("/usr/local/bin/k3s",
            ("server", "--cluster-cidr", "10.0.0.0/16"))),
        ("-/usr/bin/dockerd -H fd://", ("/usr/bin/dockerd", ("-H", "fd://"))),
        ("!!/usr/bin/crio", ("/usr/bin/crio", ())),
        ("@/usr/bin/containerd containerd-alias", ("/usr/bin/containerd", ("containerd-alias",))),
        ('"/opt/a b/containerd" --x', ("/opt/a b/containerd", ("--x",))),
        ("containerd", ("containerd", ())),
        ("", None),
        ("-", None),
        ('"/unterminated', None),
    ],
)  # fmt: skip
def test_exec_start_command(value: str, command: tuple[str, tuple[str, ...]] | None) -> None:
    """ExecStart='s executable and arguments, prefixes and quotes read as systemd reads them."""
    assert parse_exec_start(value) == command


def test_exec_start_reset_by_a_dropin(tmp_path: Path) -> None:
    """A drop-in's empty ExecStart= then a new one replaces the unit's command."""
    root = write(
        tmp_path,
        {
            "lib/systemd/system/containerd.service": "[Service]\nExecStart=/usr/bin/containerd\n",
            "etc/systemd/system/containerd.service.d/10-path.conf": (
                "[Service]\nExecStart=\nExecStart=/opt/bin/containerd --config /etc/c.toml\n"
            ),
        },
    )
    unit = effective_environment(HostFS(str(root)), "containerd.service")
    assert unit.exec_start is not None
    assert executable_paths(unit.exec_start) == ("/opt/bin/containerd",)
    assert unit.exec_start.arguments == ("--config", "/etc/c.toml")


def test_a_bare_executable_is_looked_up_in_systemds_path() -> None:
    """ExecStart=containerd: any directory of systemd's fixed search path."""
    assert executable_paths(ExecStart("containerd", (), 1)) == (
        "/usr/local/sbin/containerd",
        "/usr/local/bin/containerd",
        "/usr/sbin/containerd",
        "/usr/bin/containerd",
    )


# --- PassEnvironment= ---------------------------------------------------------------------------


def test_pass_environment_parsed_and_reset() -> None:
    """PassEnvironment= names accumulate, an empty one resets, a bad name is a problem."""
    settings = parse_unit_environment(
        "[Service]\nPassEnvironment=A\nPassEnvironment=\nPassEnvironment=HTTPS_PROXY 9bad\n"
    )
    names = [getattr(d, "name", None) for d in settings.directives]
    assert names == ["A", None, "HTTPS_PROXY"]
    assert settings.problems == ("line 4: PassEnvironment= invalid variable name '9bad' ignored",)


def test_pass_environment_proxy_variable_is_a_named_problem(tmp_path: Path) -> None:
    """A proxy variable passed from the manager's environment: a problem naming the unit, the
    file and the variable; the route is read as if it were unset, and says so."""
    dropin = "/etc/systemd/system/containerd.service.d/proxy.conf"
    root = write(
        tmp_path,
        {
            "lib/systemd/system/containerd.service": "[Service]\nExecStart=/usr/bin/containerd\n",
            dropin.lstrip("/"): "[Service]\nPassEnvironment=HTTPS_PROXY LANG\n",
        },
    )
    config = read_runtime(HostFS(str(root)), "containerd")
    assert config is not None
    assert config.environment == {}
    assert config.problems == (
        f"{dropin}: PassEnvironment=HTTPS_PROXY: containerd.service gets HTTPS_PROXY from the "
        "service manager's own environment (what PID 1 was started with, or systemctl "
        "set-environment), which no file on the node holds; the route below takes HTTPS_PROXY "
        "as unset (only the running process shows the real value)",
    )


def test_environment_wins_over_pass_environment(tmp_path: Path) -> None:
    """Environment= sets the variable above PassEnvironment=: nothing unknown, no problem."""
    root = write(
        tmp_path,
        {
            "lib/systemd/system/containerd.service": (
                f"[Service]\nPassEnvironment=HTTPS_PROXY\nEnvironment=HTTPS_PROXY={PROXY}\n"
            ),
        },
    )
    config = read_runtime(HostFS(str(root)), "containerd")
    assert config is not None
    assert config.environment == {"HTTPS_PROXY": PROXY}
    assert config.problems == ()


def test_pass_environment_over_default_environment_is_unknown(tmp_path: Path) -> None:
    """DefaultEnvironment= sets it, PassEnvironment= may override it from PID 1's environment:
    the route uses the DefaultEnvironment= value and the problem says where it came from."""
    root = write(
        tmp_path,
        {
            "etc/systemd/system.conf": f"[Manager]\nDefaultEnvironment=HTTPS_PROXY={PROXY}\n",
            "lib/systemd/system/containerd.service": "[Service]\nPassEnvironment=HTTPS_PROXY\n",
        },
    )
    config = read_runtime(HostFS(str(root)), "containerd")
    assert config is not None
    assert config.environment == {"HTTPS_PROXY": PROXY}
    [problem] = config.problems
    assert "takes HTTPS_PROXY from /etc/systemd/system.conf" in problem


# --- k3s's NO_PROXY additions ---------------------------------------------------------------------

K3S_UNIT = (
    "[Service]\nEnvironmentFile=-/etc/systemd/system/k3s.service.env\n"
    "ExecStart=/usr/local/bin/k3s \\\n    server {flags}\n"
)


def k3s_node(
    tmp_path: Path, env: str, *, unit: str = "k3s.service", flags: str = "", **more: str
) -> Path:
    files = {
        f"etc/systemd/system/{unit}": K3S_UNIT.format(flags=flags).replace(
            "k3s.service.env", f"{unit}.env"
        ),
        f"etc/systemd/system/{unit}.env": env,
    }
    files.update({k.replace("__", "/"): v for k, v in more.items()})
    return write(tmp_path, files)


@pytest.mark.parametrize(
    ("env", "flags", "more", "no_proxy"),
    [
        (f"HTTPS_PROXY={PROXY}\n", "", {}, K3S_DEFAULTS),
        (
            f"HTTPS_PROXY={PROXY}\nNO_PROXY=127.0.0.0/8,,corp.example\nno_proxy=.lower\n",
            "",
            {},
            f"127.0.0.0/8,corp.example,.lower,{K3S_DEFAULTS}",
        ),
        (
            f"HTTPS_PROXY={PROXY}\n",
            "",
            {
                "etc__rancher__k3s__config.yaml": (
                    'cluster-cidr: "10.100.0.0/16,2001:db8:42::/56"\ncluster-domain: k8s.corp\n'
                ),
                "etc__rancher__k3s__config.yaml.d__50-svc.yaml": "service-cidr: [10.200.0.0/16]\n",
            },
            ".svc,.k8s.corp,10.100.0.0/16,2001:db8:42::/56,10.200.0.0/16",
        ),
        (
            f"HTTPS_PROXY={PROXY}\n",
            "--service-cidr=10.96.0.0/12 --cluster-domain example.internal",
            {"etc__rancher__k3s__config.yaml": "service-cidr: 10.1.0.0/16\n"},
            ".svc,.example.internal,10.42.0.0/16,10.96.0.0/12",
        ),
        # CONTAINERD_NO_PROXY is appended last to containerd's environment: it replaces it all.
        (f"HTTPS_PROXY={PROXY}\nCONTAINERD_NO_PROXY=only.this\n", "", {}, "only.this"),
    ],
    ids=["defaults", "joined", "config-yaml", "flags-win", "containerd-no-proxy"],
)
def test_k3s_server_adds_its_networks_to_no_proxy(
    tmp_path: Path, env: str, flags: str, more: dict[str, str], no_proxy: str
) -> None:
    """A k3s server's containerd gets NO_PROXY and no_proxy joined, plus .svc, the cluster
    domain and the cluster and service CIDRs; no_proxy itself is unset."""
    root = k3s_node(tmp_path, env, flags=flags, **more)
    config = read_runtime(HostFS(str(root)), "containerd")
    assert config is not None
    assert config.environment.get("NO_PROXY") == no_proxy
    assert "no_proxy" not in config.environment


def test_k3s_no_proxy_additions_send_in_cluster_registries_direct(tmp_path: Path) -> None:
    """A registry on the service network or at a .svc name goes direct, as k3s's containerd
    does; the route names k3s's additions as the source."""
    config = read_runtime(HostFS(str(k3s_node(tmp_path, f"HTTPS_PROXY={PROXY}\n"))), "containerd")
    assert config is not None
    for registry in ("10.43.12.7:5000", "registry.kube-system.svc:5000", "r.ns.svc.cluster.local"):
        route = route_for(RegistryAddress.parse(registry), config)
        assert route.route == "direct", registry
        assert route.source is not None and "k3s's additions" in route.source, route
    outside = route_for(RegistryAddress.parse("registry-1.docker.io"), config)
    assert outside.route == "proxy"


def test_k3s_agent_adds_nothing(tmp_path: Path) -> None:
    """An agent-only node (k3s-agent.service) runs no server: NO_PROXY stays as written."""
    root = k3s_node(tmp_path, f"HTTPS_PROXY={PROXY}\nNO_PROXY=corp\n", unit="k3s-agent.service")
    config = read_runtime(HostFS(str(root)), "containerd")
    assert config is not None
    assert config.environment.get("NO_PROXY") == "corp"


def test_rke2_server_adds_them_too(tmp_path: Path) -> None:
    """rke2-server runs k3s's server code: the same additions, from RKE2's config.yaml."""
    root = k3s_node(
        tmp_path,
        f"HTTPS_PROXY={PROXY}\n",
        unit="rke2-server.service",
        **{"etc__rancher__rke2__config.yaml": "cluster-cidr: 10.52.0.0/16\n"},
    )
    config = read_runtime(HostFS(str(root)), "containerd")
    assert config is not None
    assert config.environment.get("NO_PROXY") == ".svc,.cluster.local,10.52.0.0/16,10.43.0.0/16"
