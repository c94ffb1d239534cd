"""Only a runtime's own process steers the probe (issue 11, item 3).

A process named `containerd` counts only when it is root's and runs the runtime's program: the
binary its unit's `ExecStart=` names or a well-known install path, or it lives in the unit's
cgroup. Anything else is ignored (neither presence nor environment) and shown as a node problem
naming its pid, executable and uid. The route names the process whose environment was read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeprocs import FakeProcess, FakeProcesses
from hypothesis import given
from hypothesis import strategies as st

from probe.config import RegistryAddress
from probe.node.hostfs import HostFS
from probe.node.processes import scan_processes
from probe.node.runtimes import expected_processes
from probe.node.view import NodeReader

PROXIED = {"HTTPS_PROXY": "http://attacker.example:3128"}
UNIT = "etc/systemd/system/containerd.service"


def node(tmp_path: Path, exec_start: str = "/usr/bin/containerd") -> Path:
    """A node with containerd's unit (no proxy in its files)."""
    unit = tmp_path / UNIT
    unit.parent.mkdir(parents=True)
    unit.write_text(f"[Service]\nExecStart={exec_start} --log-level info\n")
    return tmp_path


@pytest.mark.parametrize(
    ("process", "trusted", "why"),
    [
        (FakeProcess("containerd", PROXIED), True, None),
        (FakeProcess("containerd", PROXIED, exe_path="/usr/local/bin/containerd"), True, None),
        (FakeProcess("containerd", PROXIED, uid=1000), False, "runs as uid 1000"),
        (FakeProcess("containerd", PROXIED, uid=None), False, "owner cannot be read"),
        (
            FakeProcess("containerd", PROXIED, exe_path="/tmp/x/containerd"),
            False,
            "it runs /tmp/x/containerd, not /usr/bin/containerd",
        ),
        (
            FakeProcess("containerd", PROXIED, exe_path=None),
            False,
            "has an unreadable executable",
        ),
        (
            FakeProcess(
                "containerd",
                PROXIED,
                exe_path="/tmp/x/containerd",
                cgroup="0::/system.slice/containerd.service\n",
            ),
            True,
            None,
        ),
        (  # seen from a container with its own cgroup namespace
            FakeProcess(
                "containerd",
                PROXIED,
                exe_path=None,
                cgroup="0::/../../../system.slice/containerd.service\n",
            ),
            True,
            None,
        ),
        (  # cgroup v1: the name=systemd hierarchy
            FakeProcess(
                "containerd",
                PROXIED,
                exe_path=None,
                cgroup="12:pids:/system.slice/x\n1:name=systemd:/system.slice/containerd.service\n",
            ),
            True,
            None,
        ),
        (  # a user's own systemd instance may have a unit called containerd.service
            FakeProcess(
                "containerd",
                PROXIED,
                exe_path="/home/u/containerd",
                cgroup="0::/user.slice/user-1000.slice/user@1000.service/app.slice/"
                "containerd.service\n",
            ),
            False,
            "not in the cgroup of containerd.service",
        ),
        (  # k3s's containerd, from its data directory, in k3s.service's cgroup
            FakeProcess(
                "containerd",
                PROXIED,
                exe_path="/var/lib/rancher/k3s/data/4a7e1d/bin/containerd",
                cgroup="0::/system.slice/k3s.service\n",
            ),
            True,
            None,
        ),
        (
            FakeProcess(
                "containerd", PROXIED, exe_path="/var/lib/rancher/k3s/data/a/b/bin/containerd"
            ),
            False,
            "runs /var/lib/rancher/k3s/data/a/b/bin/containerd",
        ),
    ],
    ids=[
        "root-usr-bin",
        "root-usr-local-bin",
        "user",
        "owner-unreadable",
        "root-elsewhere",
        "exe-unreadable",
        "unit-cgroup",
        "cgroup-namespace",
        "cgroup-v1",
        "user-unit-cgroup",
        "k3s-child",
        "k3s-too-deep",
    ],
)
def test_which_process_is_trusted(process: FakeProcess, trusted: bool, why: str | None) -> None:
    """Root and the runtime's binary or unit cgroup: trusted; anything else ignored, and why."""
    table = scan_processes(expected_processes(runtimes=("containerd",)), FakeProcesses([process]))
    assert (table.live_environment("containerd") == PROXIED) is trusted
    assert ("containerd" in table.names) is trusted
    if why is None:
        assert table.ignored == ()
    else:
        [(ignored, runtime, reason)] = table.ignored
        assert (ignored.pid, runtime) == (process.pid, "containerd")
        assert why in reason, reason


@pytest.mark.parametrize(
    ("exec_start", "exe", "trusted"),
    [
        ("/opt/containerd/bin/containerd", "/opt/containerd/bin/containerd", True),
        ("-/opt/containerd/bin/containerd", "/opt/containerd/bin/containerd", True),
        ('"/opt/my containerd/containerd"', "/opt/my containerd/containerd", True),
        ("containerd", "/usr/local/sbin/containerd", True),  # systemd's search path
        ("/opt/containerd/bin/containerd", "/opt/other/containerd", False),
    ],
)
def test_the_units_exec_start_binary_is_trusted(
    tmp_path: Path, exec_start: str, exe: str, trusted: bool
) -> None:
    """The binary the unit's ExecStart= names (prefixes, quotes and systemd's search path read
    as systemd reads them) is the runtime's, wherever it is installed."""
    expected = expected_processes(HostFS(str(node(tmp_path, exec_start))), ("containerd",))
    table = scan_processes(expected, FakeProcesses([FakeProcess("containerd", {}, exe_path=exe)]))
    assert ("containerd" in table.names) is trusted


def test_an_ignored_process_neither_steers_the_route_nor_counts(tmp_path: Path) -> None:
    """A non-root `containerd` with a proxy in its environment: the route comes from the unit
    (direct), a node problem names the process, and a fake `crio` alone makes no CRI-O."""
    fake = FakeProcess("containerd", PROXIED, uid=1000, exe_path="/home/u/containerd")
    crio = FakeProcess("crio", PROXIED, uid=1000, exe_path="/home/u/crio")
    view = NodeReader(
        str(node(tmp_path)), ("containerd", "crio"), processes=FakeProcesses([fake, crio])
    ).view()
    routes = view.routes
    assert routes.decider == "containerd" and set(routes.configs) == {"containerd"}
    [route] = routes.routes(RegistryAddress.parse("registry.example.com"))
    assert (route.route, route.process) == ("direct", None)
    messages = [p.message for p in view.problems if p.source == "/proc"]
    assert messages == [
        f"process {fake.pid} named containerd (/home/u/containerd, uid 1000) is not trusted as "
        "containerd: it runs as uid 1000 (effective 1000), not root",
        f"process {crio.pid} named crio (/home/u/crio, uid 1000) is not trusted as crio: it runs "
        "as uid 1000 (effective 1000), not root",
    ]


def test_the_route_names_the_process_it_read(tmp_path: Path) -> None:
    """A trusted containerd's environment decides, and the route says whose it was."""
    process = FakeProcess("containerd", PROXIED)
    view = NodeReader(
        str(node(tmp_path)), ("containerd",), processes=FakeProcesses([process])
    ).view()
    [route] = view.routes.routes(RegistryAddress.parse("registry.example.com"))
    assert route.route == "proxy"
    assert route.process == f"pid {process.pid} (/usr/bin/containerd)"
    assert route.to_result().process == route.process
    pending = view.routes.restart_pending()
    assert pending is not None and f"pid {process.pid} (/usr/bin/containerd)" in pending


@given(st.text(max_size=300), st.text(max_size=120))
def test_trust_rules_never_raise(cgroup: str, exe: str) -> None:
    """Whatever /proc/<pid>/cgroup and /proc/<pid>/exe hold, the rules answer yes or no."""
    [expected] = expected_processes(runtimes=("containerd",)).values()
    assert expected.in_unit_cgroup(cgroup) in (True, False)
    assert expected.runs_binary(exe) in (True, False)
