"""`probe run` in the network lab: the agent's HTTP endpoints and metrics against real faults.

Each agent runs as `python -m probe run` in the lab's node namespace (started with
`lab.node.spawn`, stopped by the test that started it) against the lab's healthy registry and
its black-holed and expired ones. The tests scrape it over HTTP from inside the node namespace,
with a stock client (urllib), and assert what a user sees: the samples of `/metrics`,
`/healthz` and `/readyz`, `promtool check metrics`, exit status and timing after a signal.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lab import NODE_ADDRESS, Lab
from lab.netns import LabProcess
from metricsamples import sample, samples

from probe import __version__
from probe.reasons import PHASES

pytestmark = pytest.mark.lab

HEALTHY = "registry.lab.test"
BLACK_HOLED = "firewall-drop.lab.test"  # the node's nftables drops every answer from it
EXPIRED = "expired.lab.test"
DEADLINE = 15.0  # no test waits longer than this for the agent to show something
STOP_WITHIN_SECONDS = 3.0  # SIGTERM to exit, with probes in flight
PROMPT_SCRAPE_SECONDS = 1.0
SERIES_BUDGET = 16  # issue 3: at most 16 series for one healthy registry with its endpoints
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
_ports = itertools.count(19741)

# One GET in the node namespace with a stock client that ignores proxy variables; prints the
# status, Content-Type, the time the request alone took, and the body, as JSON.
SCRAPE = """
import json, sys, time, urllib.error, urllib.request
url, accept = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
started = time.monotonic()
try:
    with opener.open(request, timeout=5) as response:
        status, headers, body = response.status, response.headers, response.read()
except urllib.error.HTTPError as error:
    with error:
        status, headers, body = error.code, error.headers, error.read()
elapsed = time.monotonic() - started
print(json.dumps({"status": status, "content_type": headers.get("Content-Type", ""),
                  "elapsed": elapsed, "body": body.decode()}))
"""


@dataclass(frozen=True)
class Scrape:
    status: int
    content_type: str
    elapsed: float
    body: str


class Agent:
    """One `probe run` in the node namespace, listening on NODE_ADDRESS:port."""

    def __init__(self, lab: Lab, process: LabProcess, port: int) -> None:
        self.lab = lab
        self.process = process
        self.url = f"http://{NODE_ADDRESS}:{port}"

    @property
    def log(self) -> str:
        return self.process.log_text()

    def get(self, path: str, accept: str = "") -> Scrape:
        assert self.lab.node is not None
        done = self.lab.node.run([sys.executable, "-c", SCRAPE, self.url + path, accept])
        return Scrape(**json.loads(done.stdout))

    def metrics(self, accept: str = "") -> str:
        scrape = self.get("/metrics", accept)
        assert scrape.status == 200, f"{scrape}\n{self.log}"
        return scrape.body

    def wait_for(self, what: str, condition: Callable[[str], bool]) -> str:
        """Scrape /metrics until `condition(text)` holds; at most DEADLINE seconds."""
        deadline = time.monotonic() + DEADLINE
        for _ in range(int(DEADLINE / 0.1)):
            text = self.metrics()
            if condition(text):
                return text
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        raise AssertionError(f"never saw {what} within {DEADLINE}s\n{text}\nlog:\n{self.log}")

    def wait_for_sample(self, value: float, name: str, **labels: str) -> str:
        return self.wait_for(
            f"{name}{labels} == {value}", lambda text: sample(text, name, **labels) == value
        )

    def stop(self) -> None:
        self.process.stop()


AgentFactory = Callable[..., Agent]


def start_agent(
    lab: Lab,
    workdir: Path,
    *args: str,
    registries: tuple[str, ...] = (),
    timeout: float = 1,
) -> Agent:
    """`python -m probe run` in the node namespace, from this repository, without proxy vars."""
    assert lab.node is not None
    port = next(_ports)
    argv = [
        "--no-discover", "--host-root", str(lab.host_root()),
        "--interval", "1", "--timeout", str(timeout), *args,
    ]  # fmt: skip
    for registry in registries:
        argv += ["--registry", registry]
    process = lab.spawn_agent(argv, port, workdir)
    return Agent(lab, process, port)


@pytest.fixture
def agent_factory(lab: Lab, tmp_path: Path) -> Iterator[AgentFactory]:
    """Starts agents for one test and stops every one of them afterwards, even on failure."""
    started: list[Agent] = []

    def start(*args: str, **kwargs: Any) -> Agent:
        agent = start_agent(lab, tmp_path, *args, **kwargs)
        started.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in started:
            agent.stop()


@pytest.fixture(scope="module")
def agent(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One agent on the healthy, the black-holed and the expired registry, past its first cycle."""
    running = start_agent(
        lab, tmp_path_factory.mktemp("agent"), registries=(HEALTHY, BLACK_HOLED, EXPIRED)
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while running.get("/readyz").status != 200:
            assert time.monotonic() < deadline, f"never ready\n{running.log}"
            time.sleep(0.1)
        yield running
    finally:
        running.stop()


def endpoint_labels(registry: str, **labels: str) -> dict[str, str]:
    return {"registry": registry, "endpoint": f"{registry}:443", **labels}


# ----- one agent on a healthy and two faulty registries ----------------------------------------


def test_health_and_readiness_after_the_first_cycle(agent: Agent) -> None:
    """After the first cycle /readyz and /healthz answer 200."""
    assert agent.get("/readyz").status == 200, agent.log
    assert agent.get("/healthz").status == 200, agent.log


def test_healthy_registry_passes_every_check(agent: Agent) -> None:
    """The healthy registry's http check (and each other) reports success 1 and no failure."""
    text = agent.metrics()
    labels = endpoint_labels(HEALTHY, check="http")
    assert sample(text, "registry_probe_success", **labels) == 1, text
    checks = {
        dict(key)["check"]: value
        for (name, key), value in samples(text).items()
        if name == "registry_probe_success" and dict(key)["registry"] == HEALTHY
    }
    assert {"dns", "tcp", "tls", "http"} <= checks.keys(), text
    assert set(checks.values()) == {1.0}, text
    assert sample(text, "registry_probe_failure", registry=HEALTHY) is None, text
    assert sample(text, "registry_probe_failures_total", registry=HEALTHY) is None, text


@pytest.mark.parametrize(
    ("registry", "check", "reason"),
    [(BLACK_HOLED, "tcp", "tcp_timeout"), (EXPIRED, "tls", "tls_expired")],
)
def test_faulty_registry_fails_with_its_reason(
    agent: Agent, registry: str, check: str, reason: str
) -> None:
    """A black-holed registry shows failure{reason=tcp_timeout} 1, an expired one tls_expired."""
    text = agent.metrics()
    labels = endpoint_labels(registry, check=check)
    assert sample(text, "registry_probe_success", **labels) == 0, text
    assert sample(text, "registry_probe_failure", **labels, reason=reason) == 1, text
    failures = {
        dict(key)["reason"]
        for (name, key), _ in samples(text).items()
        if name == "registry_probe_failure" and dict(key)["registry"] == registry
    }
    assert failures == {reason}, text


def test_failures_total_increases_between_scrapes(agent: Agent) -> None:
    """registry_probe_failures_total of the black-holed registry grows from scrape to scrape."""
    labels = endpoint_labels(BLACK_HOLED, check="tcp", reason="tcp_timeout")
    first = sample(agent.metrics(), "registry_probe_failures_total", **labels)
    assert first is not None and first >= 1, agent.log
    text = agent.wait_for(
        f"failures_total above {first}",
        lambda text: (sample(text, "registry_probe_failures_total", **labels) or 0) > first,
    )
    assert sample(text, "registry_probe_failure", **labels) == 1, text


def test_every_phase_present_for_the_healthy_endpoint(agent: Agent) -> None:
    """duration_seconds has every phase for the healthy endpoint; a real connection timed them."""
    text = agent.metrics()
    phases = {
        dict(key)["phase"]: value
        for (name, key), value in samples(text).items()
        if name == "registry_probe_duration_seconds"
        and dict(key)["registry"] == HEALTHY
        and dict(key)["endpoint"] == f"{HEALTHY}:443"
    }
    assert set(phases) == set(PHASES), text
    assert all(0 <= seconds < DEADLINE for seconds in phases.values()), text
    assert all(phases[p] > 0 for p in ("resolve", "connect", "tls")), phases


@pytest.mark.parametrize(("registry", "ok", "failed"), [(HEALTHY, 1, 0), (BLACK_HOLED, 0, 1)])
def test_endpoint_addresses_count_answering_and_failing(
    agent: Agent, registry: str, ok: int, failed: int
) -> None:
    """endpoint_addresses: the healthy address counts as ok, the black-holed one as failed."""
    text = agent.metrics()
    name = "registry_probe_endpoint_addresses"
    assert sample(text, name, **endpoint_labels(registry, state="ok")) == ok, text
    assert sample(text, name, **endpoint_labels(registry, state="failed")) == failed, text


def test_cert_expiry_in_the_future_for_healthy_in_the_past_for_expired(agent: Agent) -> None:
    """tls_cert_expiry_timestamp_seconds: healthy cert later than now, expired one earlier."""
    text = agent.metrics()
    now = time.time()
    name = "registry_probe_tls_cert_expiry_timestamp_seconds"
    healthy = sample(text, name, **endpoint_labels(HEALTHY))
    expired = sample(text, name, **endpoint_labels(EXPIRED))
    assert healthy is not None and healthy > now + 86400, text
    assert expired is not None and expired < now, text


def test_last_run_is_recent_for_every_registry(agent: Agent) -> None:
    """last_run_timestamp_seconds of each registry lies within the last few seconds."""
    text = agent.metrics()
    now = time.time()
    for registry in (HEALTHY, BLACK_HOLED, EXPIRED):
        last = sample(text, "registry_probe_last_run_timestamp_seconds", registry=registry)
        assert last is not None and now - DEADLINE < last <= now + 1, (registry, last, now)


def test_build_info_names_the_running_version(agent: Agent) -> None:
    """build_info{version=<probe.__version__>} 1 and config_last_reload_success 1 at start."""
    text = agent.metrics()
    assert sample(text, "registry_probe_build_info", version=__version__) == 1, text
    assert sample(text, "registry_probe_config_last_reload_success") == 1, text


def test_series_budget_of_one_healthy_registry(agent: Agent) -> None:
    """The healthy registry with its endpoints has at most 16 series (issue 3's budget)."""
    text = agent.metrics()
    series = [key for key in samples(text) if ("registry", HEALTHY) in key[1]]
    assert 0 < len(series) <= SERIES_BUDGET, "\n".join(map(str, sorted(series)))


def test_promtool_finds_no_problem_in_the_scrape(agent: Agent) -> None:
    """`promtool check metrics` on a real scrape exits 0 and prints nothing."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.access(promtool, os.X_OK):
        pytest.skip("promtool is not installed (Debian: prometheus)")
    text = agent.metrics()
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, ""), text


def test_openmetrics_by_content_negotiation(agent: Agent) -> None:
    """Accept: application/openmetrics-text gets OpenMetrics, ending with `# EOF`."""
    scrape = agent.get("/metrics", OPENMETRICS)
    assert scrape.status == 200, scrape
    assert scrape.content_type.startswith("application/openmetrics-text"), scrape.content_type
    assert scrape.body.endswith("# EOF\n"), scrape.body[-200:]
    assert "registry_probe_failures_total{" in scrape.body, scrape.body
    plain = agent.get("/metrics")
    assert plain.content_type.startswith("text/plain"), plain.content_type
    assert "# EOF" not in plain.body


# ----- agents stuck on black-holed endpoints, signals, reloads ---------------------------------

# Three registries on the black-holed address: every probe hangs until its tcp timeout.
STUCK = (BLACK_HOLED, f"{BLACK_HOLED}:5000", f"{BLACK_HOLED}:8443")


def test_scrape_is_prompt_while_every_probe_is_stuck(agent_factory: AgentFactory) -> None:
    """With every probe hanging, /metrics answers in < 1 s, /healthz 200, /readyz 503."""
    agent = agent_factory(registries=STUCK, timeout=5)
    readyz = agent.get("/readyz")
    assert readyz.status == 503, f"{readyz}\n{agent.log}"
    for _ in range(3):
        scrape = agent.get("/metrics")
        assert scrape.status == 200, scrape
        assert scrape.elapsed < PROMPT_SCRAPE_SECONDS, scrape.elapsed
        assert sample(scrape.body, "registry_probe_build_info") == 1, scrape.body
        assert sample(scrape.body, "registry_probe_success") is None, scrape.body
    assert agent.get("/healthz").status == 200, agent.log
    assert agent.get("/readyz").status == 503, agent.log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_exits_zero_quickly_with_probes_in_flight(
    agent_factory: AgentFactory, signum: signal.Signals
) -> None:
    """SIGTERM/SIGINT while every probe hangs on a 5 s timeout: exit 0 within 3 s, logged."""
    agent = agent_factory(registries=STUCK, timeout=5)
    pid = agent.process.popen.pid
    # `nsenter` and `env` exec: the signal goes to the probe itself, not to a wrapper.
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[:4] == [sys.executable.encode(), b"-m", b"probe", b"run"], cmdline
    time.sleep(0.5)  # every probe is past dns and waits on its unanswered SYN
    assert agent.get("/readyz").status == 503, agent.log  # so no cycle has completed
    started = time.monotonic()
    os.kill(pid, signum)
    try:
        code = agent.process.popen.wait(timeout=STOP_WITHIN_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_WITHIN_SECONDS}s after {signum.name}\n{agent.log}")
    elapsed = time.monotonic() - started
    assert code == 0, agent.log
    assert elapsed < STOP_WITHIN_SECONDS
    assert f"stopping signal={signum.name}" in agent.log, agent.log
    assert "stopped" in agent.log, agent.log


def test_sighup_with_a_broken_config_keeps_the_old_one(
    agent_factory: AgentFactory, tmp_path: Path
) -> None:
    """SIGHUP + unknown key: reload 0, old series kept; a valid file then drops removed series."""
    config = tmp_path / "config.yaml"
    config.write_text(f"registries:\n  - host: {HEALTHY}\n", encoding="utf-8")
    agent = agent_factory("--config", str(config))
    healthy = endpoint_labels(HEALTHY, check="http")
    agent.wait_for_sample(1, "registry_probe_success", **healthy)

    config.write_text(f"registries:\n  - host: {HEALTHY}\nno_such_key: 1\n", encoding="utf-8")
    agent.process.popen.send_signal(signal.SIGHUP)
    text = agent.wait_for_sample(0, "registry_probe_config_last_reload_success")
    assert sample(text, "registry_probe_success", **healthy) == 1, text
    assert "config reload failed" in agent.log, agent.log
    assert "no_such_key" in agent.log, agent.log
    assert agent.process.popen.poll() is None, agent.log

    config.write_text(f"registries:\n  - host: {EXPIRED}\n", encoding="utf-8")
    agent.process.popen.send_signal(signal.SIGHUP)
    text = agent.wait_for(
        f"{EXPIRED} probed after the reload",
        lambda text: (
            sample(text, "registry_probe_last_run_timestamp_seconds", registry=EXPIRED) is not None
        ),
    )
    assert sample(text, "registry_probe_config_last_reload_success") == 1, text
    assert f'registry="{HEALTHY}"' not in text, text
    labels = endpoint_labels(EXPIRED, check="tls", reason="tls_expired")
    assert sample(text, "registry_probe_failure", **labels) == 1, text
