"""`run_agent` in a subprocess on 127.0.0.1 with a fake engine, for the server's hostile-client
and web-config tests: its RSS, its stderr and its signals are the agent's alone.

Engines: test_agent's FakeEngine (answers at once), or LagEngine, which measures how late the
event loop lets a probe's 20 ms sleep end and reports the worst lateness it has seen as the
`connect` phase: `registry_probe_duration_seconds{phase="connect"}` is then the longest a probe
was held up, as a scrape shows it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from test_agent import report

from probe.config import Config, RegistryAddress, RegistryConfig, parse_listen
from probe.node.problems import NodeProblem
from probe.reasons import CheckKind
from probe.result import CheckResult, RegistryReport

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DEADLINE = 10.0
PROBE_SLEEP = 0.02

SCRIPT = """
import resource, sys
sys.path.insert(0, {tests!r})
if {nofile}:
    # Lowering the soft limit is allowed without privileges (raising it is not).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, hard))
import servedagent
from probe.agent.run import run_agent
config = servedagent.config_of({registries!r}, {interval!r})
raise SystemExit(
    run_agent(
        config,
        lambda: config,
        web_config={web_config!r},
        engine_factory=servedagent.engine({engine!r}),
    )
)
"""


def config_of(hosts: list[str], interval: float) -> Config:
    return Config(
        interval=interval,
        timeout=min(10.0, interval / 2),
        listen=parse_listen("127.0.0.1:0"),
        registries=tuple(RegistryConfig(RegistryAddress.parse(h)) for h in hosts),
    )


class LagEngine:
    """Probes that sleep PROBE_SLEEP and report the worst lateness of that sleep so far."""

    worst = 0.0

    def __init__(self, config: Config) -> None:
        self.config = config

    def registries(self) -> tuple[RegistryConfig, ...]:
        return self.config.registries

    def problems(self) -> tuple[NodeProblem, ...]:
        return ()

    def reconfigured(self, config: Config) -> LagEngine:
        return LagEngine(config)

    async def probe_registry(self, registry: RegistryConfig) -> RegistryReport:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(PROBE_SLEEP)
        late = loop.time() - started - PROBE_SLEEP
        LagEngine.worst = max(LagEngine.worst, late)
        base = report(registry.label)
        tcp = CheckResult(
            endpoint=registry.address.host_port.with_default_port(443),
            check=CheckKind.TCP,
            ok=True,
            reason=None,
            detail="connected",
            phases={"connect": LagEngine.worst},
            addresses_ok=1,
        )
        return RegistryReport(base.registry, (base.checks[0], tcp), finished_at=time.time())


def engine(name: str) -> type:
    from test_agent import FakeEngine

    return {"fake": FakeEngine, "lag": LagEngine}[name]


class ServedAgent:
    """The agent process; stderr goes to a file the test reads."""

    def __init__(
        self,
        tmp_path: Path,
        registries: list[str],
        *,
        engine: str = "fake",
        interval: float = 60.0,
        nofile: int = 0,
        web_config: str | None = None,
    ) -> None:
        self.stderr_path = tmp_path / f"agent-{time.monotonic_ns()}.log"
        script = SCRIPT.format(
            tests=str(TESTS),
            nofile=nofile,
            registries=registries,
            interval=interval,
            web_config=web_config,
            engine=engine,
        )
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONPATH"] = str(ROOT)
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                cwd=ROOT,
            )
        self._address: str | None = None

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    @property
    def stderr_bytes(self) -> int:
        return self.stderr_path.stat().st_size

    def address(self) -> tuple[str, int]:
        """Host and port, once the agent logged them."""
        if self._address is None:
            for _ in range(int(DEADLINE / 0.02)):
                found = re.search(r"agent started listen=(\S+)", self.stderr)
                if found:
                    self._address = found.group(1)
                    break
                if self.process.poll() is not None:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError(f"the agent did not start:\n{self.stderr}")
            if self._address is None:
                raise AssertionError(f"the agent exited:\n{self.stderr}")
        host, port = self._address.rsplit(":", 1)
        return host, int(port)

    def url(self, scheme: str = "http") -> str:
        host, port = self.address()
        return f"{scheme}://{host}:{port}"

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def timed_get(self, path: str, timeout: float = 5.0) -> tuple[int | str, float]:
        """(status or exception name, seconds) of one GET on a new connection."""
        started = time.monotonic()
        try:
            with httpx.Client(trust_env=False, timeout=timeout) as http:
                status: int | str = http.get(f"{self.url()}{path}").status_code
        except httpx.HTTPError as error:
            status = type(error).__name__
        return status, time.monotonic() - started

    def wait_ready(self) -> None:
        for _ in range(int(DEADLINE / 0.05)):
            if self.timed_get("/readyz")[0] == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"never ready:\n{self.stderr}")

    def hangup(self) -> None:
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=DEADLINE)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
