"""alerts/alertmanager-inhibit.example.yaml in a real Alertmanager (Debian's), in the lab.

amtool accepts the file; then Alertmanager runs with it in the lab's node namespace, receives
alerts as Prometheus would send them (labels as the rule file gives them), and its API shows
which are muted: the cluster-wide alert silences the per-node alerts of its registry and no
other registry's, an exhausted Docker Hub budget silences the low and forecast alerts of its own
egress source only, and nothing silences the cluster-wide alert itself.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab import Lab
from lab.netns import LabProcess

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "alerts" / "alertmanager-inhibit.example.yaml"
PORT = 29093
DEADLINE = 20.0

# POST or GET against Alertmanager's API from inside the namespace (stock urllib, no proxies).
CLIENT = """
import json, sys, urllib.request
method, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
request = urllib.request.Request(url, method=method, data=body.encode() if body else None,
                                 headers={"Content-Type": "application/json"})
with opener.open(request, timeout=10) as response:
    print(response.read().decode() or "null")
"""

NODE = {"job": "registry-probe", "instance": "10.0.0.1:9741", "node": "node-a"}
SENT: dict[str, dict[str, str]] = {
    "cluster-wide A": {
        "alertname": "RegistryUnreachableClusterWide", "severity": "critical",
        "registry": "registry.example.com",
    },
    "dns A on node-a": {
        "alertname": "RegistryDNSResolutionFailing", "severity": "warning", **NODE,
        "registry": "registry.example.com", "endpoint": "registry.example.com:443",
        "check": "dns", "reason": "dns_nxdomain",
    },
    "tls A on node-a": {
        "alertname": "RegistryTLSFailing", "severity": "warning", **NODE,
        "registry": "registry.example.com", "endpoint": "registry.example.com:443",
        "check": "tls", "reason": "tls_unknown_authority",
    },
    "network B on node-a": {
        "alertname": "RegistryNetworkUnreachable", "severity": "warning", **NODE,
        "registry": "quay.io", "endpoint": "quay.io:443", "check": "tcp", "reason": "tcp_timeout",
    },
    "exhausted S": {
        "alertname": "DockerHubRateLimitExhausted", "severity": "critical",
        "registry": "registry-1.docker.io", "auth": "anonymous", "source": "203.0.113.7",
    },
    "low S": {
        "alertname": "DockerHubRateLimitLow", "severity": "warning",
        "registry": "registry-1.docker.io", "auth": "anonymous", "source": "203.0.113.7",
    },
    "forecast S": {
        "alertname": "DockerHubRateLimitExhaustionForecast", "severity": "warning",
        "registry": "registry-1.docker.io", "auth": "anonymous", "source": "203.0.113.7",
    },
    "low T": {
        "alertname": "DockerHubRateLimitLow", "severity": "warning",
        "registry": "registry-1.docker.io", "auth": "anonymous", "source": "198.51.100.9",
    },
}  # fmt: skip
MUTED = {"dns A on node-a", "tls A on node-a", "low S", "forecast S"}


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian: prometheus-alertmanager)")
    return found


def test_amtool_accepts_the_example() -> None:
    """`amtool check-config` parses the route, both inhibit rules and the receiver."""
    done = subprocess.run(
        [binary("amtool"), "check-config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 inhibit rules" in done.stdout, done.stdout


@pytest.fixture
def alertmanager(lab: Lab, tmp_path: Path) -> Iterator[LabProcess]:
    """Alertmanager with the example, alone (no cluster), on the node namespace's loopback."""
    argv = [
        binary("prometheus-alertmanager"), f"--config.file={EXAMPLE}",
        f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{PORT}",
        "--cluster.listen-address=", "--log.level=warn",
    ]  # fmt: skip
    process = lab.spawn_in("alertmanager", argv, listens=[("tcp", "127.0.0.1", PORT)], env=None)
    try:
        yield process
    finally:
        process.stop()


def _call(lab: Lab, method: str, path: str, body: Any = None) -> Any:
    url = f"http://127.0.0.1:{PORT}{path}"
    done = lab.run_in(
        [sys.executable, "-c", CLIENT, method, url, json.dumps(body) if body is not None else ""],
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_cluster_wide_and_exhausted_alerts_mute_only_what_they_explain(
    lab: Lab, alertmanager: LabProcess
) -> None:
    """Per-node alerts of the failing registry and the exhausted source's warnings are muted;
    the other registry, the other source and the inhibiting alerts themselves are not."""
    now = dt.datetime.now(dt.UTC)
    _call(
        lab,
        "POST",
        "/api/v2/alerts",
        [
            {
                "labels": labels,
                "annotations": {"summary": name},
                "startsAt": now.isoformat(),
                "endsAt": (now + dt.timedelta(hours=1)).isoformat(),
            }
            for name, labels in SENT.items()
        ],
    )
    deadline = time.monotonic() + DEADLINE
    muted: set[str] = set()
    while time.monotonic() < deadline:
        got = _call(lab, "GET", "/api/v2/alerts")
        if len(got) == len(SENT):
            muted = {a["annotations"]["summary"] for a in got if a["status"]["inhibitedBy"]}
            if muted == MUTED:
                break
        time.sleep(0.5)
    assert muted == MUTED, alertmanager.log_text()
    states = {a["annotations"]["summary"]: a["status"]["state"] for a in got}
    assert {n for n, state in states.items() if state == "suppressed"} == MUTED, states
