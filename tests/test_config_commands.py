"""A hostile config file through the commands: `validate`, `run` and SIGHUP name it at once.

The merge-key bomb of tests/data/config/invalid-merge-key-bomb.yaml took 34 s to walk (127 s for
the issue's variant), and since a reload runs on the agent's event loop, a SIGHUP with it froze
`/healthz` and every probe for that long. Each command runs as a subprocess, as a user runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from metricsamples import sample

ROOT = Path(__file__).resolve().parents[1]
BOMB = ROOT / "tests" / "data" / "config" / "invalid-merge-key-bomb.yaml"
MESSAGE = (
    ":13: dockerhub.<<: aliases and merge keys repeat more than 100000 entries"
    " (expected a configuration, not a merge-key bomb)"
)
PROMPT_SECONDS = 5.0  # a Python start plus a load that gives up within a second
DEADLINE = 10.0


def probe(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, "-m", "probe", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_validate_names_the_bomb_at_once() -> None:
    """`validate` on the merge-key bomb exits 2 with the line of the merge, within seconds."""
    started = time.monotonic()
    done = probe("validate", str(BOMB))
    assert time.monotonic() - started < PROMPT_SECONDS
    assert done.returncode == 2
    assert f"{BOMB}{MESSAGE}" in done.stderr.splitlines()


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_refuse_the_bomb_at_once(command: str, tmp_path: Path) -> None:
    """`check` and `run` with the bomb as --config exit 2 naming it, before probing anything."""
    started = time.monotonic()
    done = probe(command, "--config", str(BOMB), "--host-root", str(tmp_path))
    assert time.monotonic() - started < PROMPT_SECONDS
    assert done.returncode == 2, done.stderr
    assert f"{BOMB}{MESSAGE}" in done.stderr.splitlines()


def test_run_refuses_a_web_config_bomb_at_once(tmp_path: Path) -> None:
    """--web-config shares the config's walker: the same bomb under tls_server_config is
    refused with its line within seconds, and `run` exits 2."""
    web = tmp_path / "web.yml"
    web.write_text(BOMB.read_text().replace("\ndockerhub:\n", "\ntls_server_config:\n"))
    started = time.monotonic()
    done = probe(
        "run", "--web-config", str(web), "--host-root", str(tmp_path), "--listen", "127.0.0.1:0"
    )
    assert time.monotonic() - started < PROMPT_SECONDS
    assert done.returncode == 2, done.stderr
    assert f"{web}{MESSAGE.replace('dockerhub', 'tls_server_config')}" in done.stderr, done.stderr


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """`probe run` on a config with one loopback registry (nothing listens: tcp_refused)."""
    config = tmp_path / "config.yaml"
    config.write_text("registries:\n  - host: http://127.0.0.1:9\n")
    log = tmp_path / "agent.log"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    argv = [
        sys.executable, "-m", "probe", "run", "--config", str(config),
        "--no-discover", "--host-root", str(tmp_path), "--listen", "127.0.0.1:0",
        "--interval", "1", "--timeout", "0.5",
    ]  # fmt: skip
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield process, config, log
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=DEADLINE)


def _url(log: Path) -> str:
    for _ in range(int(DEADLINE / 0.05)):
        found = re.search(r"agent started listen=(\S+)", log.read_text())
        if found:
            return f"http://{found.group(1)}"
        time.sleep(0.05)
    raise AssertionError(f"the agent did not start:\n{log.read_text()}")


def _hangup_until_reload_fails(
    process: subprocess.Popen[bytes], log: Path, within: float
) -> tuple[str, float, float]:
    """SIGHUP, then /healthz and /metrics every 50 ms until the reload is seen failing; returns
    the last scrape, the slowest /healthz answer meanwhile, and how long it all took."""
    url = _url(log)
    with httpx.Client(trust_env=False, timeout=within) as http:
        process.send_signal(signal.SIGHUP)
        started = time.monotonic()
        slowest = 0.0
        while True:
            asked = time.monotonic()
            assert http.get(f"{url}/healthz").status_code == 200
            slowest = max(slowest, time.monotonic() - asked)
            text = http.get(f"{url}/metrics").text
            if sample(text, "registry_probe_config_last_reload_success") == 0:
                return text, slowest, time.monotonic() - started
            assert time.monotonic() - started < within, log.read_text()
            time.sleep(0.05)


def test_sighup_with_the_bomb_keeps_the_agent_answering(
    agent: tuple[subprocess.Popen[bytes], Path, Path],
) -> None:
    """SIGHUP with the bomb in place: the reload fails naming it within seconds, /healthz never
    stalls, and the old config stays."""
    process, config, log = agent
    _url(log)
    shutil.copy(BOMB, config)
    text, slowest, _ = _hangup_until_reload_fails(process, log, PROMPT_SECONDS)
    assert slowest < 1.0
    assert sample(text, "registry_probe_success", registry="127.0.0.1:9", check="tcp") == 0
    lines = log.read_text().splitlines()
    assert any("config reload failed" in line and MESSAGE in line for line in lines), lines
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=DEADLINE) == 0


def test_sighup_with_a_large_file_never_stalls_the_server(
    agent: tuple[subprocess.Popen[bytes], Path, Path],
) -> None:
    """A 900 KiB config of 38,000 unknown keys takes PyYAML seconds to parse: read on SIGHUP,
    it never holds /healthz up for long meanwhile (the reload runs beside the server, not on
    its loop; before, /healthz waited for the whole parse)."""
    process, config, log = agent
    _url(log)
    keys = [f"unknown_key_{i}: value" for i in range(38_000)]
    config.write_text("\n".join(keys) + "\n")
    _, slowest, took = _hangup_until_reload_fails(process, log, 90.0)
    assert took > 1.0  # the parse was long enough to stall a server that waited for it
    assert slowest < took / 3, (slowest, took)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=DEADLINE) == 0
