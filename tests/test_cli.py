"""The command line as a person meets it: exit statuses, clear errors, never a traceback.

Nothing here reaches a network: bad input stops before any probe, and registries are listed
without being probed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from probe.cli import build_config, build_parser
from probe.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probe", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate_accepts_a_valid_file() -> None:
    """`validate` on a good file exits 0 and names what it will probe."""
    done = run_cli("validate", str(DATA / "config" / "valid-full.yaml"))
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout


def test_validate_names_every_bad_key_with_its_line() -> None:
    """`validate` on a bad file exits 2 and lists each problem with key path and line."""
    done = run_cli("validate", str(DATA / "config" / "invalid-several-problems.yaml"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "invalid-several-problems.yaml:" in done.stderr
    assert done.stderr.count("\n") >= 3


@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_config_refused_before_probing(command: str) -> None:
    """`check` and `run` refuse a bad config with exit 2, naming the unknown key."""
    config = DATA / "config" / "invalid-unknown-top-level-key.yaml"
    once = ["--once"] if command == "run" else []
    done = run_cli(command, "--config", str(config), "--no-discover", *once)
    assert done.returncode == 2
    assert "unknown key" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["check", "--timeout=-1s"], "negative"),
        (["check", "--timeout", "soon"], "soon"),
        (["check", "--registry", "http://a b"], "registry"),
        (["check", "--host-root", "/does/not/exist"], "not a directory"),
        (["check", "--output", "yaml"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(args: list[str], words: str) -> None:
    """Bad flags exit 2 with a message naming what is wrong, never a traceback."""
    done = run_cli(*args)
    assert done.returncode == 2
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def test_default_registries_are_docker_hub_plus_the_nodes_registries() -> None:
    """With no registry named, Docker Hub is probed, and so are the registries the node's
    runtime has settings for; a mirror is a host of its registry, tried first."""
    args = build_parser().parse_args(
        ["check", "--host-root", str(DATA / "hosts" / "containerd-1.7")]
    )
    engine = Engine(build_config(args))
    registries = engine.registries()
    assert [r.label for r in registries] == [
        "registry-1.docker.io",
        "quay.io",
        "registry.example.com:5000",
    ]
    plan = engine.plan(registries[0], engine.node())
    assert [h.address.url for h in plan.hosts] == [
        "https://mirror.example.com:5000",
        "http://198.18.200.5:5000",
        "https://docker.io",  # `server = "https://docker.io"`: containerd takes it literally
    ]


def test_no_discover_probes_only_what_is_named() -> None:
    """--no-discover leaves the node's runtime config out."""
    args = build_parser().parse_args(
        [
            "check",
            "--no-discover",
            "--host-root",
            str(DATA / "hosts" / "containerd-1.7"),
            "--registry",
            "registry.lab.test:5000",
        ]
    )
    assert [r.label for r in Engine(build_config(args)).registries()] == ["registry.lab.test:5000"]
