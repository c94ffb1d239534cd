"""The agent: scheduling, the HTTP endpoints, signals and state-change logs, with a fake engine.

The fake engine stands in for probe.engine.Engine (whose checks the lab tests cover): it answers
with hand-built reports, or never, so the tests can pin what the agent does around it. Signal
tests run the agent as a subprocess on 127.0.0.1 with the same fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from metricsamples import sample

from probe.agent.logs import setup_logging
from probe.agent.scheduler import JITTER, Agent, jittered
from probe.agent.server import AgentApp, HttpServer
from probe.cli import main
from probe.config import Config, ConfigError, RegistryAddress, RegistryConfig, parse_listen
from probe.images.check import ImageTarget
from probe.images.result import SANDBOX, ImageReport
from probe.node.problems import NodeProblem
from probe.reasons import CheckKind, Reason
from probe.result import CheckResult, RegistryReport

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DEADLINE = 10.0  # no test waits longer than this for anything


# -- the fake engine ---------------------------------------------------------------------------


def report(host: str, reason: Reason | None = None) -> RegistryReport:
    """A one-endpoint report: every check passes, or tcp fails with `reason`."""
    endpoint = RegistryAddress.parse(host).host_port.with_default_port(443)
    tcp = CheckResult(
        endpoint=endpoint,
        check=CheckKind.TCP,
        ok=reason is None,
        reason=reason,
        detail="connected" if reason is None else f"{reason} on {endpoint}",
        phases={"connect": 0.01},
        addresses_ok=1 if reason is None else 0,
        addresses_failed=0 if reason is None else 1,
    )
    dns = CheckResult(endpoint, CheckKind.DNS, True, None, "resolved", {"resolve": 0.001})
    return RegistryReport(registry=host, checks=(dns, tcp), finished_at=time.time())


class FakeEngine:
    """Answers like probe.engine.Engine, by registry name.

    `stuck.*` never answers; `boom.*` raises; `slow.*` answers after 50 ms; `gated.*` waits for
    `FakeEngine.gate`; `scripted.*` answers with the next reason of `FakeEngine.script` (None:
    passing), repeating the last; `blocking.*` holds the event loop 50 ms in a system call when
    probed and when reconfigured (as a slow read of a node file does); anything else passes.
    """

    gate: asyncio.Event | None = None
    script: list[Reason | None] = []  # noqa: RUF012  # set per test, read by every instance
    probes: list[str] = []  # noqa: RUF012  # every probe started, in order
    cancelled: list[str] = []  # noqa: RUF012  # probes that were cancelled, same
    running = 0
    most_running = 0

    def __init__(self, config: Config) -> None:
        self.config = config

    @classmethod
    def reset(cls) -> None:
        cls.gate = None
        cls.script = []
        cls.probes = []
        cls.cancelled = []
        cls.running = cls.most_running = 0

    def registries(self) -> tuple[RegistryConfig, ...]:
        return self.config.registries

    def problems(self) -> tuple[NodeProblem, ...]:
        return ()

    def reconfigured(self, config: Config) -> FakeEngine:
        if any(r.label.startswith("blocking.") for r in config.registries):
            time.sleep(0.05)  # the event loop is blocked: signals pile up in its self-pipe
        return type(self)(config)

    async def probe_registry(self, registry: RegistryConfig) -> RegistryReport:
        cls = type(self)
        host = registry.label
        cls.probes.append(host)
        cls.running += 1
        cls.most_running = max(cls.most_running, cls.running)
        try:
            if host.startswith("stuck."):
                await asyncio.Event().wait()
            if host.startswith("boom."):
                raise RuntimeError("engine bug")
            if host.startswith("slow."):
                await asyncio.sleep(0.05)
            if host.startswith("blocking."):
                time.sleep(0.05)  # holding the loop is the point
            if host.startswith("gated.") and cls.gate is not None:
                await cls.gate.wait()
            if host.startswith("scripted."):
                runs = sum(1 for h in cls.probes if h == host)
                reason = cls.script[min(runs, len(cls.script)) - 1]
                return report(host, reason)
            return report(host)
        except asyncio.CancelledError:
            cls.cancelled.append(host)
            raise
        finally:
            cls.running -= 1


def config_of(*hosts: str, interval: float = 60.0, timeout: float = 10.0) -> Config:
    return Config(
        interval=interval,
        timeout=timeout,
        listen=parse_listen("127.0.0.1:0"),
        registries=tuple(RegistryConfig(RegistryAddress.parse(h)) for h in hosts),
    )


def config_from_file(path: str) -> Callable[[], Config]:
    """A build_config reading `{"registries": [...], "interval": s}` JSON; anything else is bad."""

    def build() -> Config:
        try:
            data = json.loads(Path(path).read_text())
            return config_of(*data["registries"], interval=data.get("interval", 60.0))
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError([f"{path}: {error!r}"]) from None

    return build


@pytest.fixture(autouse=True)
def fresh_fake() -> Iterator[None]:
    FakeEngine.reset()
    yield
    FakeEngine.reset()


# -- in-process harness ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[str]:
    """The agent's loop and HTTP server on 127.0.0.1; yields the base URL, then stops both."""
    server = HttpServer(AgentApp(agent))
    await server.start("127.0.0.1", 0)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(agent.run())
            try:
                host, port = server.address
                yield f"http://{host}:{port}"
            finally:
                agent.stop()
    finally:
        await server.close()


def client() -> httpx.AsyncClient:
    # trust_env=False: a proxy in the test environment must not carry loopback requests.
    return httpx.AsyncClient(trust_env=False, timeout=DEADLINE)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` every 10 ms, for at most DEADLINE seconds."""
    for _ in range(int(DEADLINE / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def agent_for(*hosts: str, **kwargs: float) -> Agent:
    config = config_of(*hosts, **kwargs)
    return Agent(FakeEngine(config), lambda: config)


# -- scheduling --------------------------------------------------------------------------------


def test_jitter_stays_within_ten_percent() -> None:
    """Every wait is interval * [0.9, 1.1], and the waits are not all equal."""
    rng = random.Random(7)
    waits = [jittered(60.0, rng) for _ in range(1000)]
    assert all(60.0 * (1 - JITTER) <= w <= 60.0 * (1 + JITTER) for w in waits)
    assert max(waits) - min(waits) > 6.0


def test_probes_repeat_on_the_interval() -> None:
    """Each registry is probed again after its interval, not only once."""

    async def scenario() -> None:
        agent = agent_for("a.example", interval=0.05)
        async with running(agent):
            await eventually(lambda: FakeEngine.probes.count("a.example") >= 3, "three probes")

    asyncio.run(scenario())


def test_concurrency_is_bounded() -> None:
    """No more than `concurrency` probes run at once, however many registries there are."""

    async def scenario() -> None:
        config = config_of(*(f"slow.{i}.example" for i in range(20)))
        agent = Agent(FakeEngine(config), lambda: config, concurrency=3)
        async with running(agent):
            await eventually(lambda: agent.ready, "first cycle")
        assert FakeEngine.most_running == 3

    asyncio.run(scenario())


def test_once_stops_after_one_cycle() -> None:
    """With once=True the loop returns after every registry was probed once."""

    async def scenario() -> None:
        agent = agent_for("a.example", "slow.b.example", interval=0.01)
        async with asyncio.timeout(DEADLINE):
            await agent.run(once=True)
        assert sorted(FakeEngine.probes) == ["a.example", "slow.b.example"]

    asyncio.run(scenario())


def test_engine_error_is_logged_once_and_the_agent_goes_on() -> None:
    """A probe that raises is logged once, not per interval; the other registries go on."""
    stream = io.StringIO()
    setup_logging("text", stream)

    async def scenario() -> None:
        agent = agent_for("boom.example", "a.example", interval=0.02)
        async with running(agent):
            await eventually(lambda: FakeEngine.probes.count("boom.example") >= 3, "retries")
        assert agent.ready
        assert agent.collector.reports().keys() == {"a.example"}

    asyncio.run(scenario())
    assert stream.getvalue().count("probe failed unexpectedly registry=boom.example") == 1


def test_stuck_probe_is_abandoned_at_the_safety_deadline() -> None:
    """An engine that never answers is given up on after 16 timeouts, logged once."""
    stream = io.StringIO()
    setup_logging("text", stream)

    async def scenario() -> None:
        agent = agent_for("stuck.example", interval=0.05, timeout=0.01)
        async with running(agent):
            await eventually(lambda: FakeEngine.probes.count("stuck.example") >= 3, "retries")
        assert agent.ready

    asyncio.run(scenario())
    assert stream.getvalue().count("safety deadline") == 1


# -- HTTP --------------------------------------------------------------------------------------


def test_scrape_answers_promptly_while_every_probe_is_stuck() -> None:
    """/metrics answers at once while probes hang; /healthz 200, /readyz 503 (no cycle done)."""

    async def scenario() -> None:
        agent = agent_for("stuck.one.example", "stuck.two.example")
        async with running(agent) as url, client() as http:
            await eventually(lambda: FakeEngine.running == 2, "both probes stuck")
            started = time.monotonic()
            metrics = await http.get(f"{url}/metrics")
            assert time.monotonic() - started < 1.0
            assert metrics.status_code == 200
            assert sample(metrics.text, "registry_probe_build_info") == 1
            assert (await http.get(f"{url}/healthz")).status_code == 200
            assert (await http.get(f"{url}/readyz")).status_code == 503
        assert sorted(FakeEngine.cancelled) == ["stuck.one.example", "stuck.two.example"]

    asyncio.run(scenario())


def test_readyz_turns_ready_after_the_first_cycle() -> None:
    """/readyz is 503 until every registry was probed once, then 200."""

    async def scenario() -> None:
        FakeEngine.gate = asyncio.Event()
        agent = agent_for("gated.example", "a.example")
        async with running(agent) as url, client() as http:
            await eventually(lambda: "a.example" in agent.collector.reports(), "a probed")
            assert (await http.get(f"{url}/readyz")).status_code == 503
            FakeEngine.gate.set()
            await eventually(lambda: agent.ready, "first cycle")
            assert (await http.get(f"{url}/readyz")).status_code == 200
            metrics = (await http.get(f"{url}/metrics")).text
            assert sample(metrics, "registry_probe_success", registry="gated.example") == 1

    asyncio.run(scenario())


def test_other_paths_and_methods() -> None:
    """Unknown paths are 404, POST is 405, HEAD has headers and no body, queries are ignored."""

    async def scenario() -> None:
        agent = agent_for("a.example")
        async with running(agent) as url, client() as http:
            assert (await http.get(f"{url}/")).status_code == 404
            assert (await http.get(f"{url}/metricsx")).status_code == 404
            post = await http.post(f"{url}/metrics")
            assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
            head = await http.head(f"{url}/metrics")
            assert head.status_code == 200 and head.content == b""
            assert int(head.headers["content-length"]) > 0
            assert (await http.get(f"{url}/healthz?verbose=1")).status_code == 200

    asyncio.run(scenario())


def test_openmetrics_and_gzip_negotiated_over_http() -> None:
    """Accept: OpenMetrics gets OpenMetrics; Accept-Encoding: gzip gets a gzip body."""

    async def scenario() -> None:
        agent = agent_for("a.example")
        async with running(agent) as url, client() as http:
            await eventually(lambda: agent.ready, "first cycle")
            response = await http.get(
                f"{url}/metrics",
                headers={
                    "Accept": "application/openmetrics-text;version=1.0.0;q=0.9,*/*;q=0.1",
                    "Accept-Encoding": "gzip",
                },
            )
            assert response.headers["content-type"].startswith("application/openmetrics-text")
            assert response.headers["content-encoding"] == "gzip"
            assert response.text.endswith("# EOF\n")
            plain = await http.get(f"{url}/metrics", headers={"Accept-Encoding": "identity"})
            assert plain.headers["content-type"].startswith("text/plain")
            assert "content-encoding" not in plain.headers

    asyncio.run(scenario())


def test_keep_alive_connection_serves_several_requests() -> None:
    """One connection carries several scrapes (Prometheus keeps connections open)."""

    async def scenario() -> None:
        agent = agent_for("a.example")
        async with running(agent) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                for _ in range(3):
                    writer.write(request)
                    await writer.drain()
                    async with asyncio.timeout(DEADLINE):
                        head = await reader.readuntil(b"\r\n\r\n")
                        assert head.startswith(b"HTTP/1.1 200")
                        await reader.readexactly(len(b"ok\n"))
            finally:
                writer.close()
                await writer.wait_closed()

    asyncio.run(scenario())


def test_open_idle_connection_does_not_delay_stopping() -> None:
    """A scraper's idle keep-alive connection is closed when the agent stops."""

    async def scenario() -> None:
        agent = agent_for("a.example")
        started = time.monotonic()
        async with running(agent) as url:
            host, port = url.removeprefix("http://").split(":")
            _, writer = await asyncio.open_connection(host, int(port))
        assert time.monotonic() - started < 3.0
        writer.close()
        await writer.wait_closed()

    asyncio.run(scenario())


# -- reload ------------------------------------------------------------------------------------


def test_reload_swaps_registries_and_drops_removed_series() -> None:
    """A good reload: removed registries' series vanish at once, new ones come; a probe in
    flight is not cancelled (its report is dropped when it ends)."""

    async def scenario() -> None:
        configs = [config_of("stuck.old.example", "kept.example")]
        agent = Agent(FakeEngine(configs[0]), lambda: configs[-1])
        async with running(agent) as url, client() as http:
            await eventually(lambda: "kept.example" in agent.collector.reports(), "kept probed")
            configs.append(config_of("kept.example", "new.example"))
            agent.request_reload()
            await eventually(lambda: "new.example" in agent.collector.reports(), "new probed")
            text = (await http.get(f"{url}/metrics")).text
            assert "stuck.old.example" not in FakeEngine.cancelled  # still running, not starved
        assert 'registry="stuck.old.example"' not in text
        assert sample(text, "registry_probe_success", registry="new.example") == 1
        assert sample(text, "registry_probe_config_last_reload_success") == 1

    asyncio.run(scenario())


def test_reload_with_a_bad_config_keeps_the_old_one() -> None:
    """A reload that raises ConfigError keeps the registries and sets reload success to 0."""
    stream = io.StringIO()
    setup_logging("text", stream)

    def broken() -> Config:
        raise ConfigError(["registries[0].host: expected a string (line 3)"])

    async def scenario() -> None:
        config = config_of("a.example", interval=0.05)
        agent = Agent(FakeEngine(config), broken)
        async with running(agent) as url, client() as http:
            await eventually(lambda: agent.ready, "first cycle")
            agent.request_reload()
            await eventually(lambda: not agent.collector.config_reload_success, "reload failed")
            probes = len(FakeEngine.probes)
            await eventually(lambda: len(FakeEngine.probes) > probes, "still probing")
            text = (await http.get(f"{url}/metrics")).text
        assert sample(text, "registry_probe_config_last_reload_success") == 0
        assert sample(text, "registry_probe_success", registry="a.example") == 1

    asyncio.run(scenario())
    assert "config reload failed; keeping the previous config" in stream.getvalue()
    assert "registries[0].host" in stream.getvalue()


# -- state-change logs -------------------------------------------------------------------------


def test_one_log_line_per_state_change_not_per_probe() -> None:
    """pass, fail A, fail A, fail B, pass, pass → three lines: failing, new reason, recovered."""
    stream = io.StringIO()
    setup_logging("json", stream)
    FakeEngine.script = [
        None,
        Reason.TCP_TIMEOUT,
        Reason.TCP_TIMEOUT,
        Reason.TCP_REFUSED,
        None,
        None,
    ]

    async def scenario() -> None:
        agent = agent_for("scripted.example", interval=0.02)
        async with running(agent):
            await eventually(lambda: len(FakeEngine.probes) >= 7, "the script played")

    asyncio.run(scenario())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    changes = [line for line in lines if line["msg"].startswith("check ")]
    assert [(c["msg"], c.get("reason"), c.get("previous_reason")) for c in changes] == [
        ("check failing", "tcp_timeout", None),
        ("check failing for another reason", "tcp_refused", "tcp_timeout"),
        ("check recovered", None, "tcp_refused"),
    ]
    assert changes[0]["level"] == "warning" and changes[2]["level"] == "info"
    assert changes[0]["registry"] == "scripted.example" and changes[0]["check"] == "tcp"
    assert changes[0]["endpoint"] == "scripted.example:443"


def test_logs_never_show_a_password() -> None:
    """A detail carrying a proxy URL with a password, or a bearer token, is masked in the log."""
    stream = io.StringIO()
    setup_logging("text", stream)
    logging.getLogger("probe.agent").warning(
        "check failing",
        extra={"fields": {"detail": "via http://bob:hunter2@proxy:3128 with Bearer abc.def"}},
    )
    line = stream.getvalue()
    assert "hunter2" not in line and "abc.def" not in line
    assert "http://bob:***@proxy:3128" in line


# -- the command, as a process: signals ----------------------------------------------------------

AGENT_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_agent import FakeEngine, config_from_file
from probe.agent.run import run_agent
build = config_from_file({config!r})
raise SystemExit(
    run_agent(build(), build, once={once}, log_format={fmt!r}, engine_factory=FakeEngine)
)
"""


class AgentProcess:
    """`run_agent` in a subprocess; its stderr goes to a file the test reads."""

    def __init__(
        self, tmp_path: Path, registries: list[str], once: bool = False, fmt: str = "text"
    ):
        self.config = tmp_path / "config.json"
        self.write_config({"registries": registries})
        self.stderr_path = tmp_path / "stderr.log"
        script = AGENT_SCRIPT.format(tests=str(TESTS), once=once, fmt=fmt, config=str(self.config))
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONPATH"] = str(ROOT)
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", script],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=ROOT,
            )

    def write_config(self, data: object) -> None:
        self.config.write_text(data if isinstance(data, str) else json.dumps(data))

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def url(self) -> str:
        """The base URL, once the agent logged the address it listens on."""
        for _ in range(int(DEADLINE / 0.02)):
            found = re.search(r"agent started listen=(\S+)", self.stderr)
            if found:
                return f"http://{found.group(1)}"
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"the agent did not start:\n{self.stderr}")

    def metrics(self) -> str:
        with httpx.Client(trust_env=False, timeout=DEADLINE) as http:
            return http.get(f"{self.url()}/metrics").text

    def wait_for_metric(self, name: str, value: float, **labels: str) -> str:
        for _ in range(int(DEADLINE / 0.05)):
            text = self.metrics()
            if sample(text, name, **labels) == value:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{name}{labels} never became {value}:\n{self.stderr}")

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=DEADLINE)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def agent_process(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def start(registries: list[str], once: bool = False, fmt: str = "text") -> AgentProcess:
        process = AgentProcess(tmp_path, registries, once=once, fmt=fmt)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_exits_zero_quickly_with_probes_in_flight(
    agent_process: Callable[..., AgentProcess], signum: signal.Signals
) -> None:
    """SIGTERM/SIGINT while a probe hangs: in-flight checks cancelled, exit 0 within 3 s."""
    agent = agent_process(["stuck.example", "a.example"])
    agent.wait_for_metric("registry_probe_success", 1, registry="a.example")
    code, elapsed = agent.stop(signum)
    assert code == 0, agent.stderr
    assert elapsed < 3.0
    assert "stopping" in agent.stderr and "stopped" in agent.stderr


def test_sighup_with_a_broken_config_keeps_the_old_one(
    agent_process: Callable[..., AgentProcess],
) -> None:
    """SIGHUP + broken file: reload success 0, old registries stay; a fixed file then applies."""
    agent = agent_process(["a.example"])
    agent.wait_for_metric("registry_probe_success", 1, registry="a.example")
    agent.write_config("{not json")
    agent.process.send_signal(signal.SIGHUP)
    text = agent.wait_for_metric("registry_probe_config_last_reload_success", 0)
    assert sample(text, "registry_probe_success", registry="a.example") == 1
    assert "config reload failed" in agent.stderr

    agent.write_config({"registries": ["b.example"]})
    agent.process.send_signal(signal.SIGHUP)
    agent.wait_for_metric("registry_probe_config_last_reload_success", 1)
    text = agent.wait_for_metric("registry_probe_success", 1, registry="b.example")
    assert 'registry="a.example"' not in text
    code, _ = agent.stop()
    assert code == 0


def test_a_sighup_storm_prints_no_traceback(agent_process: Callable[..., AgentProcess]) -> None:
    """Thousands of SIGHUPs at once: no "signal wakeup fd" traceback, and the agent still stops."""
    agent = agent_process(["blocking.example"])
    agent.wait_for_metric("registry_probe_success", 1, registry="blocking.example")
    # Each signal writes a byte to asyncio's self-pipe (an AF_UNIX socket that holds a few
    # hundred one-byte writes); while the loop is blocked in a system call every signal
    # interrupts it and writes one, so the pipe fills before the loop reads it.
    deadline = time.monotonic() + DEADLINE
    for _ in range(20000):
        os.kill(agent.process.pid, signal.SIGHUP)
        if time.monotonic() > deadline:
            break
    agent.wait_for_metric("registry_probe_config_last_reload_success", 1)
    code, _ = agent.stop()
    assert code == 0, agent.stderr
    assert "Traceback" not in agent.stderr and "wakeup fd" not in agent.stderr, agent.stderr[:2000]


def test_once_prints_one_cycle_of_metrics_and_exits_zero(
    agent_process: Callable[..., AgentProcess],
) -> None:
    """--once probes every registry once, prints the exposition and exits 0, failures or not."""
    agent = agent_process(["a.example", "boom.example"], once=True)
    stdout, _ = agent.process.communicate(timeout=DEADLINE)
    assert agent.process.returncode == 0, agent.stderr
    text = stdout.decode()
    assert sample(text, "registry_probe_success", registry="a.example") == 1
    assert sample(text, "registry_probe_build_info") == 1


def test_json_logs_are_one_object_per_line(agent_process: Callable[..., AgentProcess]) -> None:
    """--log-format json: every stderr line is a JSON object with time, level and msg."""
    agent = agent_process(["a.example"], fmt="json")
    for _ in range(int(DEADLINE / 0.02)):
        if '"agent started"' in agent.stderr:
            break
        time.sleep(0.02)
    code, _ = agent.stop()
    assert code == 0
    lines = [json.loads(line) for line in agent.stderr.splitlines()]
    assert {"time", "level", "msg"} <= lines[0].keys()
    assert [line["msg"] for line in lines][-2:] == ["stopping", "stopped"]


def test_bad_config_at_start_exits_two(tmp_path: Path) -> None:
    """A config that cannot be built stops `run` before it starts, with status 2."""
    bad = tmp_path / "config.yaml"
    bad.write_text("interval: -1s\n")
    assert main(["run", "--config", str(bad), "--listen", "127.0.0.1:0"]) == 2


def test_bad_listen_address_exits_two() -> None:
    """A --listen that is not ADDR:PORT is a usage error: status 2."""
    with pytest.raises(SystemExit) as stopped:
        main(["run", "--listen", "nowhere"])
    assert stopped.value.code == 2


def test_node_problems_are_logged_when_they_come_and_go_and_counted() -> None:
    """A problem in the node's files is one warning when it appears, one line when it is gone,
    and a count per runtime in /metrics while it lasts."""
    stream = io.StringIO()
    setup_logging("json", stream)
    problem = NodeProblem(
        "/etc/systemd/system/containerd.service.d/http-proxy.conf",
        "unknown specifier %z: assignment ignored",
        line=2,
        effect="containerd starts without this setting",
        runtime="containerd",
    )
    found: list[NodeProblem] = [problem]

    class ProblemEngine(FakeEngine):
        def problems(self) -> tuple[NodeProblem, ...]:
            return tuple(found)

    async def scenario() -> None:
        config = config_of("a.example", interval=0.05)
        agent = Agent(ProblemEngine(config), lambda: config)
        async with running(agent) as url, client() as http:
            await eventually(lambda: agent.ready, "first cycle")
            text = (await http.get(f"{url}/metrics")).text
            assert sample(text, "registry_probe_node_config_problems", runtime="containerd") == 1
            found.clear()
            await eventually(lambda: "gone" in stream.getvalue(), "the problem gone")
            text = (await http.get(f"{url}/metrics")).text
        assert "registry_probe_node_config_problems{" not in text

    asyncio.run(scenario())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    said = [(line["msg"], line.get("file")) for line in lines if "problem" in line["msg"]]
    where = "/etc/systemd/system/containerd.service.d/http-proxy.conf:2"
    assert said == [
        ("node configuration problem", where),
        ("node configuration problem gone", where),
    ]


# -- images ---------------------------------------------------------------------------------------


class FakeImageChecker:
    """Answers like probe.images.check.ImageChecker: `missing/*` is image_not_found, `stuck/*`
    never answers, anything else pulls. Its images are `FakeImageChecker.images`."""

    images: list[ImageTarget] = []  # noqa: RUF012  # set per test
    checked: list[str] = []  # noqa: RUF012

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def targets(self) -> tuple[ImageTarget, ...]:
        return tuple(type(self).images)

    async def check(self, target: ImageTarget) -> ImageReport:
        type(self).checked.append(target.image)
        if target.image.startswith("stuck/"):
            await asyncio.Event().wait()
        reason = Reason.IMAGE_NOT_FOUND if target.image.startswith("missing/") else None
        return ImageReport(
            image=target.image,
            reference=target.image,
            role=target.role,
            registry="r.example",
            reason=reason,
            detail="404 here" if reason else "served",
            checks=(),
            finished_at=time.time(),
        )


def image_agent(*images: ImageTarget, interval: float = 60.0, timeout: float = 10.0) -> Agent:
    FakeImageChecker.images = list(images)
    FakeImageChecker.checked = []
    config = config_of("a.example", interval=interval, timeout=timeout)
    return Agent(FakeEngine(config), lambda: config, image_checker=FakeImageChecker)


def test_images_are_checked_beside_the_registries() -> None:
    """The checker's images are scheduled like registries: the first cycle waits for them, and
    each lands in the metrics with its role."""

    async def scenario() -> None:
        agent = image_agent(ImageTarget("nginx:1"), ImageTarget("missing/pause:3", SANDBOX))
        async with asyncio.timeout(DEADLINE):
            await agent.run(once=True)
        assert sorted(FakeImageChecker.checked) == ["missing/pause:3", "nginx:1"]
        reports = agent.collector.images()
        assert reports["nginx:1"].ok and reports["missing/pause:3"].role == SANDBOX
        assert reports["missing/pause:3"].reason == Reason.IMAGE_NOT_FOUND

    asyncio.run(scenario())


def test_image_leaving_the_list_leaves_the_metrics() -> None:
    """An image the checker no longer names (config reload, a new sandbox image) disappears."""

    async def scenario() -> None:
        agent = image_agent(ImageTarget("nginx:1"), ImageTarget("old:1"), interval=0.05)
        async with running(agent):
            await eventually(lambda: "old:1" in agent.collector.images(), "old:1 checked")
            FakeImageChecker.images = [ImageTarget("nginx:1")]
            await eventually(lambda: "old:1" not in agent.collector.images(), "old:1 gone")
            assert "nginx:1" in agent.collector.images()

    asyncio.run(scenario())


def test_stuck_image_check_is_abandoned_and_logged_once() -> None:
    """An image check that never ends is given up at the safety deadline, logged once, and the
    first cycle still completes."""
    stream = io.StringIO()
    setup_logging("json", stream)

    async def scenario() -> None:
        agent = image_agent(ImageTarget("stuck/app:1"), timeout=0.01)
        async with asyncio.timeout(DEADLINE):
            await agent.run(once=True)
        assert agent.ready and "stuck/app:1" not in agent.collector.images()

    asyncio.run(scenario())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert [(e["msg"], e["registry"]) for e in errors] == [
        ("image check did not finish in time", "image stuck/app:1")
    ]


def test_image_state_changes_are_logged_once() -> None:
    """An image that would not pull is logged once with its reason, not on every check."""
    stream = io.StringIO()
    setup_logging("json", stream)

    async def scenario() -> None:
        agent = image_agent(ImageTarget("missing/app:1"), interval=0.02)
        async with running(agent):
            await eventually(lambda: FakeImageChecker.checked.count("missing/app:1") >= 3, "3")

    asyncio.run(scenario())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    warnings = [line for line in lines if line["msg"] == "image would not pull"]
    assert [(w["image"], w["reason"], w["role"]) for w in warnings] == [
        ("missing/app:1", "image_not_found", "configured")
    ]
