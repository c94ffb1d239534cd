"""A resolv.conf the agent cannot use is said for what it is (issue 11, item 9): missing from
the node, or unreadable by the agent (its own trouble: then nothing is known of the node's
resolvers), never "names no nameserver". The reason stays dns_no_resolvers (SPEC's closed
list); the detail and the node problem say which.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from probe.node.hostfs import HostFS
from probe.node.resolver import read_resolver

ROOT = Path(__file__).resolve().parents[1]


def node(tmp_path: Path, resolv_conf: str | None) -> Path:
    root = tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    if resolv_conf is not None:
        (root / "etc" / "resolv.conf").write_text(resolv_conf)
    return root


@pytest.mark.parametrize(
    ("resolv_conf", "problem"),
    [
        (None, "the node has no /etc/resolv.conf"),
        ("", "/etc/resolv.conf names no nameserver"),
        ("search example.com\n", "/etc/resolv.conf names no nameserver"),
    ],
)
def test_missing_or_empty_resolv_conf(
    tmp_path: Path, resolv_conf: str | None, problem: str
) -> None:
    """No file and a file without nameserver lines are told apart."""
    resolver = read_resolver(HostFS(str(node(tmp_path, resolv_conf))))
    assert resolver.resolver is None
    assert resolver.problem == problem


def test_resolv_conf_that_is_a_directory(tmp_path: Path) -> None:
    """A directory where resolv.conf should be is named as one."""
    root = node(tmp_path, None)
    (root / "etc" / "resolv.conf").mkdir()
    resolver = read_resolver(HostFS(str(root)))
    assert resolver.problem == "the node's /etc/resolv.conf is a directory, not a file"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to drop the DAC capabilities",
)
def test_unreadable_resolv_conf_is_the_agents_trouble(tmp_path: Path) -> None:
    """resolv.conf mode 000 read by an agent without DAC capabilities (the DaemonSet's
    non-root agent): dns_no_resolvers, with a detail saying the agent cannot read it and why,
    and a node problem naming the file."""
    root = node(tmp_path, "nameserver 198.18.0.53\n")
    (root / "etc" / "resolv.conf").chmod(0)
    argv = [
        "setpriv", "--bounding-set=-dac_override,-dac_read_search",
        sys.executable, "-m", "probe", "check", "--no-discover",
        "--registry", "registry.example.com", "--host-root", str(root),
        "--timeout", "2", "--output", "json",
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    [dns] = [c for c in report["registries"][0]["checks"] if c["check"] == "dns"]
    assert dns["reason"] == "dns_no_resolvers", dns
    assert dns["detail"].startswith("the agent cannot read the node's /etc/resolv.conf"), dns
    assert "permission denied" in dns["detail"], dns
    assert "names no nameserver" not in dns["detail"], dns
    # Only resolv.conf's own problem is looked at: this runs in the test machine's PID
    # namespace, where other tests' stand-in runtimes may be ignored processes.
    problems = [p for p in report["node_problems"] if p["source"] == "/etc/resolv.conf"]
    assert [p["message"] for p in problems] == [
        "/etc/resolv.conf cannot be read: permission denied"
    ], report
