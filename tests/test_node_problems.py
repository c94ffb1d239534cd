"""Problems in the node's files reach every view: `check`'s text and JSON, with file and line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DROPIN = "etc/systemd/system/containerd.service.d/http-proxy.conf"


def check(root: Path, output: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probe", "check", "--host-root", str(root), "--no-discover",
         "--registry", "127.0.0.1:1", "--timeout", "1", "--output", output],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "NODE_NAME": "lab-node"},
    )  # fmt: skip


def node_with_a_broken_dropin(tmp_path: Path) -> Path:
    """The issue's case: systemd ignores an assignment with an unknown specifier (`%zz`)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/resolv.conf").write_text("nameserver 127.0.0.1\n")
    (tmp_path / "etc/containerd").mkdir()
    unit = tmp_path / "lib/systemd/system/containerd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/containerd\n")
    dropin = tmp_path / DROPIN
    dropin.parent.mkdir(parents=True)
    dropin.write_text('[Service]\nEnvironment="HTTPS_PROXY=http://proxy.example:3128%zz"\n')
    return tmp_path


def test_an_ignored_dropin_line_is_named_with_file_line_and_effect(tmp_path: Path) -> None:
    """Not only "containerd goes direct": the JSON names the drop-in, its line, and what
    containerd does instead."""
    done = check(node_with_a_broken_dropin(tmp_path), "json")
    report = json.loads(done.stdout)
    (problem,) = [p for p in report["node_problems"] if p["source"].endswith("http-proxy.conf")]
    assert problem["source"] == f"/{DROPIN}"
    assert problem["line"] == 2
    assert problem["runtime"] == "containerd"
    assert "specifier" in problem["message"]
    assert problem["effect"] == "containerd starts without this setting"


def test_the_text_report_lists_node_problems(tmp_path: Path) -> None:
    """A person on the node reads the file and line under the registries."""
    done = check(node_with_a_broken_dropin(tmp_path), "text")
    assert "node configuration problems:" in done.stdout
    (line,) = [x for x in done.stdout.splitlines() if f"/{DROPIN}" in x]
    assert line.startswith(f"  /{DROPIN}:2: "), line
    assert line.count(DROPIN) == 1, "the file is named once"
