"""Benchmark: the registry-probe agent against Debian's prometheus-blackbox-exporter.

    python3 bench/run.py --registries 1,10,50,200 --interval 2 --seconds 30 [--repeat 3]
                         [--json out.json] [--profile 30 --profile-registries 50]

Builds the lab of bench/benchlab.py (root needed: network namespaces), then for each number of
registries runs, one after the other, the agent (`python -m probe run`) and blackbox_exporter
(driven as Prometheus drives it: every target's /probe once per interval) against the same
registry names at the same rate, and measures for each over a window of `--seconds`:

- CPU ms per probe: the prober's own CPU (utime+stime of /proc/<pid>/stat; children excluded)
  over the window, divided by the `GET /v2/` requests that reached the registry in that window
  (counted in its log, per Host);
- peak RSS (VmHWM of /proc/<pid>/status), at the end of the window;
- scrape time: the median of several `GET /metrics` of the loaded agent (text format); for
  blackbox the median `/probe` answer, which includes the probe itself: not comparable;
- series per registry: the agent's `registry_probe_*` samples labelled with that registry;
  blackbox's samples in one `/probe` answer (Prometheus adds 5 more per target: up, scrape_*);
- whether every registry was probed every interval: per-Host counts and the largest gap
  between two probes of one Host, from the registry's log.

Then the ratios agent/blackbox. See bench/README.md for what is compared and how fairly.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlab import (
    BENCH_DIR,
    DNS_ADDRESS,
    REPO_ROOT,
    BenchLab,
    LabProcess,
    Namespace,
    registry_names,
)
from prometheus_client.parser import text_string_to_metric_families

AGENT_PORT = 9741
BLACKBOX_PORT = 9115
BLACKBOX = "prometheus-blackbox-exporter"
MODULE = "registry_v2"
LATE_GAP_INTERVALS = 1.5  # a Host not probed for this many intervals missed one
RENDER_GETS = 9
# Where issue 9 says the agent's CPU goes: the node read per probe (processes, systemd units),
# the network work (DNS; TCP, TLS, HTTP per address), /metrics. Names of the code before the
# refactor; `--focus` names others.
PROFILE_FOCUS = (
    "read_node_routes",
    "visible_process_names",
    "live_environment",
    "effective_environment",
    "_query (probe/checks/dns",
    "Engine._probe_address",
    "render (probe/metrics",
)
# Whose GET /v2/ a log line is: the probers' User-Agent prefixes (floor: bench/floor.py).
USER_AGENTS = {"agent": "registry-probe/", "blackbox": "Blackbox Exporter/", "floor": "floor/"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
_RFC3339 = re.compile(r"(\S+?T[\d:]+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


# ----- what is measured -------------------------------------------------------------------------


@dataclass
class Measurement:
    """One prober at one number of registries, over one window."""

    prober: str  # "agent" or "blackbox"
    registries: int
    interval: float
    window_seconds: float
    cpu_seconds: float
    cpu_system_seconds: float  # the part of cpu_seconds in the kernel (stime)
    probes: int  # GET /v2/ that reached the registry in the window
    expected_probes: float  # registries * window / interval
    per_host_min: int
    per_host_max: int
    hosts_probed: int
    max_gap_intervals: float  # largest gap between two probes of one Host, in intervals
    late_gaps: int  # gaps longer than LATE_GAP_INTERVALS intervals, over every Host
    peak_rss_kib: int
    scrape_ms: float  # agent: median GET /metrics; blackbox: median GET /probe (not comparable)
    scrape_ms_min: float  # the fastest of those GETs: the least disturbed by other work
    series_per_registry: float
    healthy: float  # agent: share of registry_probe_success at 1; blackbox: of probe_success 1
    lab_cores: float  # CPU of the registry, the DNS server and the driver in the window, in cores
    other_cores: float  # CPU of everything else on the machine in the window, in cores
    host_processes: int  # processes on the machine at the window's start (what hostPID sees)
    failures: dict[str, int] = field(default_factory=dict)  # agent: failing checks by reason
    driver: dict[str, Any] = field(default_factory=dict)  # what the Prometheus stand-in saw

    @property
    def cpu_ms_per_probe(self) -> float:
        return 1000 * self.cpu_seconds / self.probes if self.probes else float("nan")

    @property
    def cpu_system_ms_per_probe(self) -> float:
        return 1000 * self.cpu_system_seconds / self.probes if self.probes else float("nan")

    @property
    def on_schedule(self) -> bool:
        return self.hosts_probed == self.registries and self.late_gaps == 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "cpu_ms_per_probe": self.cpu_ms_per_probe,
            "cpu_system_ms_per_probe": self.cpu_system_ms_per_probe,
            "on_schedule": self.on_schedule,
        }


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (every thread, no children), in seconds."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of the process (every thread, no children), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def landed(log: Path, since_offset: int, user_agent: str) -> list[tuple[float, str]]:
    """(time, Host) of every `GET /v2/` the registry answered, from its log past an offset, for
    the client whose User-Agent starts with `user_agent`."""
    with log.open("rb") as f:
        f.seek(since_offset)
        data = f.read()
    found = []
    for line in data.splitlines():
        if b'"/v2/"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("http.request.method") != "GET" or entry.get("http.request.uri") != "/v2/":
            continue
        if not str(entry.get("http.request.useragent", "")).startswith(user_agent):
            continue
        found.append((_log_time(entry["time"]), entry.get("http.request.host", "")))
    return found


def _log_time(text: str) -> float:
    """RFC 3339 with nanoseconds ("2026-12-01T22:42:21.187669911Z") as a Unix time."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    head, fraction, zone = match.groups()
    micros = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{head}.{micros}{'+00:00' if zone == 'Z' else zone}").timestamp()


@dataclass(frozen=True)
class Window:
    t0: float
    t1: float
    cpu: float  # the prober's CPU seconds
    cpu_system: float  # of which in the kernel
    lab_cores: float
    other_cores: float


@dataclass
class Schedule:
    probes: int
    per_host_min: int
    per_host_max: int
    hosts_probed: int
    max_gap_intervals: float
    late_gaps: int


def schedule(
    requests: list[tuple[float, str]], names: list[str], t0: float, t1: float, interval: float
) -> Schedule:
    """Per-Host counts in [t0, t1) and the gaps between a Host's probes (window edges count)."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for when, host in requests:
        if t0 <= when < t1 and host in times:
            times[host].append(when)
    counts = [len(t) for t in times.values()]
    max_gap, late = 0.0, 0
    for host_times in times.values():
        edges = [t0, *sorted(host_times), t1]
        for a, b in itertools.pairwise(edges):
            gap = (b - a) / interval
            max_gap = max(max_gap, gap)
            late += gap > LATE_GAP_INTERVALS
    return Schedule(
        probes=sum(counts),
        per_host_min=min(counts),
        per_host_max=max(counts),
        hosts_probed=sum(1 for c in counts if c),
        max_gap_intervals=max_gap,
        late_gaps=late,
    )


def series_per_registry(text: str, names: list[str]) -> float:
    """The mean number of `registry_probe_*` samples carrying each registry's label."""
    per = dict.fromkeys(names, 0)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            registry = s.labels.get("registry")
            if s.name.startswith("registry_probe_") and registry in per:
                per[registry] += 1
    return sum(per.values()) / len(per)


def success_share(text: str, names: list[str]) -> float:
    """The share of the agent's `registry_probe_success` samples (of `names`) that are 1."""
    values = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "registry_probe_success" and s.labels.get("registry") in names
    ]
    return sum(1 for v in values if v == 1) / len(values) if values else 0.0


def failing_reasons(text: str, names: list[str]) -> dict[str, int]:
    """The agent's failing checks (of `names`) by reason, from `registry_probe_failure`."""
    reasons: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "registry_probe_failure" and s.labels.get("registry") in names:
                reason = s.labels.get("reason", "")
                reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every core), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def sample_count(text: str) -> int:
    return sum(len(f.samples) for f in text_string_to_metric_families(text))


# ----- running the probers ----------------------------------------------------------------------


class Bench:
    """The runs of one benchmark over one lab."""

    def __init__(self, lab: BenchLab, args: argparse.Namespace) -> None:
        self.lab = lab
        self.args = args
        self.workdir = lab.workdir
        assert lab.node is not None
        self.node: Namespace = lab.node
        # blackbox_exporter's deadline when Prometheus scrapes every interval: the scrape
        # timeout (at most the interval) less its 0.5 s offset, capped by the module's 5 s.
        self.timeout = min(5.0, args.interval - 0.5)
        self.host_processes = 0
        self._driver_pid: int | None = None

    def driver(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return self.node.run([sys.executable, str(BENCH_DIR / "driver.py"), *argv], timeout=timeout)

    @contextmanager
    def spawned(self, name: str, argv: list[str], port: int, **kw: Any) -> Iterator[LabProcess]:
        """A long-lived process in the node namespace, stopped (and reaped) when the block ends."""
        process = self.node.spawn(
            name,
            argv,
            self.workdir / f"{name}.log",
            listens=[("tcp", "127.0.0.1", port)],
            deadline_seconds=30,
            **kw,
        )
        try:
            yield process
        finally:
            process.stop()
            self.node.processes.remove(process)

    @contextmanager
    def prometheus(self, name: str, urls: list[str]) -> Iterator[dict[str, Any]]:
        """The driver scraping `urls` once per interval until the block ends; yields its summary
        (filled in when the block ends)."""
        urls_file = self.workdir / f"{name}.urls"
        urls_file.write_text("\n".join(urls) + "\n", encoding="utf-8")
        out = self.workdir / f"{name}.driver.json"
        max_seconds = self.args.warmup + self.args.seconds + 120
        argv = [
            sys.executable, str(BENCH_DIR / "driver.py"), "loop", str(urls_file),
            "--interval", str(self.args.interval), "--max-seconds", str(max_seconds),
            "--out", str(out), *([] if self.args.gzip else ["--no-gzip"]),
        ]  # fmt: skip
        process = self.node.spawn(
            f"{name}-driver", argv, self.workdir / f"{name}.driver.log", listens=[]
        )
        summary: dict[str, Any] = {}
        self._driver_pid = process.popen.pid
        try:
            yield summary
        finally:
            self._driver_pid = None
            process.stop()
            self.node.processes.remove(process)
        try:
            per_url = json.loads(out.read_text())
        except (OSError, ValueError) as error:
            raise RuntimeError(f"driver wrote no summary: {process.log_text()}") from error
        summary.update(_driver_summary(per_url))

    def measure_window(self, pid: int) -> Window:
        """Warm up, then the window: the prober's CPU, the lab's, and the rest of the machine's."""
        time.sleep(self.args.warmup)
        assert self.lab.registry is not None and self.lab.dns is not None
        lab_pids = [self.lab.registry.popen.pid, self.lab.dns.popen.pid]
        lab_pids += [self._driver_pid] if self._driver_pid is not None else []
        self.host_processes = sum(1 for entry in os.listdir("/proc") if entry.isdigit())
        t0, busy0 = time.time(), machine_busy_seconds()
        (user0, sys0), lab0 = cpu_split(pid), sum(map(cpu_seconds, lab_pids))
        time.sleep(self.args.seconds)
        (user1, sys1), lab1 = cpu_split(pid), sum(map(cpu_seconds, lab_pids))
        busy1, t1 = machine_busy_seconds(), time.time()
        system, lab = sys1 - sys0, lab1 - lab0
        cpu = user1 - user0 + system
        return Window(t0, t1, cpu, system, lab / (t1 - t0), (busy1 - busy0 - cpu - lab) / (t1 - t0))

    def _agent_argv(self, names: list[str], stem: str) -> list[str]:
        """`python -m probe run` on `names`, with a config file written for them."""
        config = self.workdir / f"{stem}-{len(names)}.yml"
        config.write_text(
            f"interval: {self.args.interval}s\n"
            f"timeout: {self.timeout:g}s\n"
            "discover: false\n"
            # The work of blackbox_exporter's probes and nothing else: the node's sandbox image
            # (containerd's default, registry.k8s.io/pause, which the lab cannot resolve) is
            # not checked.
            "sandbox_image: false\n"
            "registries:\n" + "".join(f"  - host: {name}\n" for name in names),
            encoding="utf-8",
        )
        # A PID namespace of its own, where the agent (pid 1) sees `--node-processes` stand-ins
        # for a node's processes, as the DaemonSet's hostPID variant sees the node's: one named
        # containerd (its environment has no proxy; a copy of `sleep` at the path the node's
        # unit names, so the agent takes it for the runtime), the others `pause`. When the agent
        # exits, the kernel ends them all.
        bin_dir = self.workdir / "bin"
        if not self.args.host_pids and not bin_dir.exists():
            bin_dir.mkdir()
            sleep = shutil.which("sleep") or "/bin/sleep"
            shutil.copy(sleep, bin_dir / "containerd")
            (bin_dir / "pause").symlink_to(sleep)
        containerd = "/usr/bin/containerd" if self.args.host_pids else str(bin_dir / "containerd")
        probe = [
            sys.executable, "-m", "probe", "run", "--config", str(config), "--no-discover",
            "--host-root", str(self.lab.host_root(containerd)),
            "--listen", f"127.0.0.1:{AGENT_PORT}", "--interval", str(self.args.interval),
        ]  # fmt: skip
        if self.args.host_pids:
            return probe
        script = (
            'bin=$1 n=$2; shift 2; i=0; while [ "$i" -lt "$n" ]; do '
            'if [ "$i" = 0 ]; then "$bin/containerd" infinity & else "$bin/pause" infinity & fi; '
            'i=$((i+1)); done; exec "$@"'
        )
        return [
            "unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM",
            "sh", "-c", script, "sh", str(bin_dir), str(self.args.node_processes), *probe,
        ]  # fmt: skip

    def agent_pid(self, process: LabProcess) -> int:
        """The agent's pid: the process itself, or unshare's child in a PID namespace."""
        if self.args.host_pids:
            return process.popen.pid
        children = Path(f"/proc/{process.popen.pid}/task/{process.popen.pid}/children")
        pids = children.read_text().split()
        if len(pids) != 1:
            raise RuntimeError(f"unshare has children {pids}, expected the agent alone")
        return int(pids[0])

    def agent(self, names: list[str]) -> Measurement:
        prober = "agent"
        argv = self._agent_argv(names, "agent")
        env = _agent_env()
        base = f"http://127.0.0.1:{AGENT_PORT}"
        log_offset = self.lab.registry_log.stat().st_size
        with self.spawned("agent", argv, AGENT_PORT, env=env) as agent:
            pid = self.agent_pid(agent)
            self.wait_ready(base)
            urls = [f"{base}/metrics"] if self.args.scrape_agent else []
            with self.prometheus("agent", urls) if urls else _nothing() as scrapes:
                window = self.measure_window(pid)
                hwm = status_kib(pid, "VmHWM")
            render = ["time", f"{base}/metrics", "--count", str(RENDER_GETS), "--body"]
            timed = json.loads(self.driver([*render, "--accept", "text/plain"], 60).stdout)
            if agent.popen.poll() is not None:
                raise RuntimeError(f"the agent exited:\n{agent.log_text()}")
        return self._measurement(
            prober,
            names,
            window,
            hwm,
            log_offset,
            scrape_ms=1000 * statistics.median(timed["seconds"]),
            scrape_ms_min=1000 * min(timed["seconds"]),
            series_per_registry=series_per_registry(timed["body"], names),
            healthy=success_share(timed["body"], names),
            failures=failing_reasons(timed["body"], names),
            driver=scrapes,
        )

    def blackbox(self, names: list[str]) -> Measurement:
        prober = "blackbox"
        config = self.workdir / "blackbox.yml"
        # Debian's defaults but the CA and the statuses of a registry's /v2/: 200, or 401 with
        # a token challenge. Like the agent, it resolves A and AAAA (preferred ip6, fallback).
        config.write_text(
            f"modules:\n  {MODULE}:\n    prober: http\n    timeout: 5s\n    http:\n"
            "      method: GET\n      valid_status_codes: [200, 401]\n"
            f"      tls_config:\n        ca_file: {self.lab.ca_file}\n",
            encoding="utf-8",
        )
        # blackbox_exporter resolves with Go's resolver, which reads /etc/resolv.conf: it runs in
        # a mount namespace of its own where the lab's resolv.conf is bound over it.
        script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
        argv = [
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script, "sh", str(self.lab.resolv_conf()),
            BLACKBOX, f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{BLACKBOX_PORT}", "--log.level=warn",
        ]  # fmt: skip
        base = f"http://127.0.0.1:{BLACKBOX_PORT}"
        urls = [f"{base}/probe?module={MODULE}&target=https://{name}/v2/" for name in names]
        log_offset = self.lab.registry_log.stat().st_size
        with self.spawned("blackbox", argv, BLACKBOX_PORT) as blackbox:
            pid = blackbox.popen.pid
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if not BLACKBOX.startswith(comm):
                raise RuntimeError(f"pid {pid} is {comm!r}, not blackbox_exporter")
            with self.prometheus("blackbox", urls) as scrapes:
                window = self.measure_window(pid)
                hwm = status_kib(pid, "VmHWM")
            timed = json.loads(
                self.driver(["time", urls[0], "--count", str(RENDER_GETS), "--body"], 60).stdout
            )
            if blackbox.popen.poll() is not None:
                raise RuntimeError(f"blackbox_exporter exited:\n{blackbox.log_text()}")
        return self._measurement(
            prober,
            names,
            window,
            hwm,
            log_offset,
            scrape_ms=1000 * statistics.median(timed["seconds"]),
            scrape_ms_min=1000 * min(timed["seconds"]),
            series_per_registry=sample_count(timed["body"]),
            healthy=scrapes["probe_success"].get("1", 0) / max(1, scrapes["scrapes"]),
            driver=scrapes,
        )

    def floor(self, names: list[str]) -> Measurement:
        """bench/floor.py on `names`: the network work alone, in CPython (see its docstring)."""
        argv = [
            sys.executable, str(BENCH_DIR / "floor.py"), "--dns", DNS_ADDRESS,
            "--ca", str(self.lab.ca_file), "--interval", str(self.args.interval), *names,
        ]  # fmt: skip
        log_offset = self.lab.registry_log.stat().st_size
        process = self.node.spawn("floor", argv, self.workdir / "floor.log", listens=[])
        try:
            window = self.measure_window(process.popen.pid)
            hwm = status_kib(process.popen.pid, "VmHWM")
            if process.popen.poll() is not None:
                raise RuntimeError(f"bench/floor.py exited:\n{process.log_text()}")
        finally:
            process.stop()
            self.node.processes.remove(process)
        # floor.py counts its probes and failures over its whole run, on SIGTERM.
        counted = re.search(r"probes (\d+) failures (\d+)", process.log_text())
        if counted is None:
            raise RuntimeError(f"bench/floor.py did not count its probes:\n{process.log_text()}")
        done, failed = int(counted[1]), int(counted[2])
        return self._measurement(
            "floor",
            names,
            window,
            hwm,
            log_offset,
            scrape_ms=float("nan"),
            scrape_ms_min=float("nan"),
            series_per_registry=0.0,
            healthy=done / (done + failed) if done + failed else 0.0,
        )

    def _measurement(
        self,
        prober: str,
        names: list[str],
        window: Window,
        peak_rss_kib: int,
        log_offset: int,
        **own: Any,
    ) -> Measurement:
        """The figures every prober has (CPU, memory, the lab's and the machine's load, its
        probes as the registry's log counts them), and `own`: what only it can say."""
        sched = schedule(
            landed(self.lab.registry_log, log_offset, USER_AGENTS[prober]),
            names,
            window.t0,
            window.t1,
            self.args.interval,
        )
        return Measurement(
            prober,
            len(names),
            self.args.interval,
            window.t1 - window.t0,
            window.cpu,
            window.cpu_system,
            expected_probes=len(names) * (window.t1 - window.t0) / self.args.interval,
            peak_rss_kib=peak_rss_kib,
            lab_cores=window.lab_cores,
            other_cores=window.other_cores,
            host_processes=self.host_processes,
            **own,
            **asdict(sched),
        )

    def wait_ready(self, base: str) -> None:
        """Until the agent's first cycle is complete (/readyz 200); bounded."""
        # Every registry once, 8 at a time: generous for a starved agent, and still bounded.
        deadline = 30 + 0.5 * len(self.lab.names)
        self.driver(["wait", f"{base}/readyz", "--deadline", str(deadline)], deadline + 15)

    def profile(self, names: list[str], seconds: float, out: Path) -> Path:
        """py-spy record of the agent probing `names`, as collapsed stacks (`--format raw`)."""
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            raise SystemExit("py-spy is not installed: pip install py-spy (or .[bench])")
        argv = self._agent_argv(names, "agent-profiled")
        base = f"http://127.0.0.1:{AGENT_PORT}"
        with self.spawned("agent-profiled", argv, AGENT_PORT, env=_agent_env()) as agent:
            self.wait_ready(base)
            pid = self.agent_pid(agent)
            record = [
                py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                "--rate", "100", "--format", "raw", "--nolineno", "--output", str(out),
            ]  # fmt: skip
            # The same load as the measured window: the probes and, unless told otherwise, one
            # scrape of /metrics per interval.
            urls = [f"{base}/metrics"] if self.args.scrape_agent else []
            with self.prometheus("agent-profiled", urls) if urls else _nothing():
                time.sleep(self.args.warmup)
                done = subprocess.run(
                    record,
                    timeout=seconds + 60,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    check=False,
                )
            if done.returncode != 0:
                raise RuntimeError(f"py-spy record failed: {done.stderr.strip()}")
        return out


@contextmanager
def _nothing() -> Iterator[dict[str, Any]]:
    yield {}


def _agent_env() -> dict[str, str]:
    """The bench's environment without proxy variables; this checkout's `probe` first."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _driver_summary(per_url: list[dict[str, Any]]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    successes: dict[str, int] = {}
    errors: dict[str, int] = {}
    medians = []
    for entry in per_url:
        for total, part in (
            (statuses, entry["statuses"]),
            (successes, entry["probe_success"]),
            (errors, entry["errors"]),
        ):
            for key, count in part.items():
                total[key] = total.get(key, 0) + count
        if entry["median_seconds"] is not None:
            medians.append(entry["median_seconds"])
    return {
        "scrapes": sum(statuses.values()),
        "statuses": statuses,
        "probe_success": successes,
        "errors": errors,
        "median_ms": 1000 * statistics.median(medians) if medians else None,
    }


# ----- reporting --------------------------------------------------------------------------------

HEADER = (
    "registries", "prober", "probes", "expected", "cpu ms/probe (sys)", "peak RSS MB",
    "scrape ms (min)", "series/reg", "ok %", "lab", "others", "every interval",
)  # fmt: skip


def table_rows(pairs: list[tuple[Measurement, Measurement]]) -> list[list[str]]:
    rows = []
    for agent, blackbox in pairs:
        for m in (agent, blackbox):
            late = "" if m.on_schedule else f" ({m.late_gaps} late, max {m.max_gap_intervals:.1f}i)"
            rows.append(
                [
                    str(m.registries),
                    m.prober,
                    str(m.probes),
                    f"{m.expected_probes:.0f}",
                    f"{m.cpu_ms_per_probe:.2f} ({m.cpu_system_ms_per_probe:.2f})",
                    f"{m.peak_rss_kib / 1024:.1f}",
                    f"{m.scrape_ms:.1f} ({m.scrape_ms_min:.1f})"
                    + ("*" if m.prober == "blackbox" else ""),
                    f"{m.series_per_registry:.1f}" + ("+5" if m.prober == "blackbox" else ""),
                    f"{100 * m.healthy:.0f}",
                    f"{m.lab_cores:.2f}",
                    f"{m.other_cores:.2f}",
                    ("yes" if m.on_schedule else "NO") + late,
                ]
            )
        r = ratios(agent, blackbox)
        rows.append(
            [
                str(agent.registries),
                "ratio",
                "",
                "",
                f"{r['cpu_per_probe']:.2f}x",
                f"{r['peak_rss']:.2f}x",
                "",
                f"{r['series']:.2f}x",
                "",
                "",
                "",
                "",
            ]
        )
    return rows


def ratios(agent: Measurement, blackbox: Measurement) -> dict[str, float]:
    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {
        "cpu_per_probe": ratio(agent.cpu_ms_per_probe, blackbox.cpu_ms_per_probe),
        "peak_rss": ratio(agent.peak_rss_kib, blackbox.peak_rss_kib),
        "series": ratio(agent.series_per_registry, blackbox.series_per_registry + 5),
    }


def print_table(pairs: list[tuple[Measurement, Measurement]]) -> None:
    header = list(HEADER)
    rows = table_rows(pairs)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print(
        "scrape ms: the agent's GET /metrics (median and min of 9, text format, while probing); "
        "* blackbox: GET /probe, the probe itself, not comparable.\n"
        "series/reg: +5 are what Prometheus adds per blackbox target (up, scrape_*); "
        "the ratio counts them.\n"
        "ok %: checks passing at the end (agent) or probe_success 1 (blackbox); "
        "lab: cores used by the registry, DNS server and driver; others: by everything else on "
        "the machine (a quiet machine: near 0)."
    )


def print_spread(pairs: list[tuple[Measurement, Measurement]]) -> None:
    by_n: dict[int, list[tuple[Measurement, Measurement]]] = {}
    for pair in pairs:
        by_n.setdefault(pair[0].registries, []).append(pair)
    for n, runs in by_n.items():
        if len(runs) < 2:
            continue
        print(f"\n{n} registries, {len(runs)} runs (min / median / max):")
        for label, values in (
            ("agent cpu ms/probe", [a.cpu_ms_per_probe for a, _ in runs]),
            ("agent of which kernel ms", [a.cpu_system_ms_per_probe for a, _ in runs]),
            ("blackbox cpu ms/probe", [b.cpu_ms_per_probe for _, b in runs]),
            ("blackbox of which kernel ms", [b.cpu_system_ms_per_probe for _, b in runs]),
            ("cpu ratio", [ratios(a, b)["cpu_per_probe"] for a, b in runs]),
            ("agent peak RSS MB", [a.peak_rss_kib / 1024 for a, _ in runs]),
            ("blackbox peak RSS MB", [b.peak_rss_kib / 1024 for _, b in runs]),
            ("agent /metrics ms", [a.scrape_ms for a, _ in runs]),
            ("agent /metrics min ms", [a.scrape_ms_min for a, _ in runs]),
            ("agent probes/expected", [a.probes / a.expected_probes for a, _ in runs]),
            ("lab, cores (agent run)", [a.lab_cores for a, _ in runs]),
            ("others, cores (agent run)", [a.other_cores for a, _ in runs]),
        ):
            print(
                f"  {label:<26} {min(values):8.2f} {statistics.median(values):8.2f} "
                f"{max(values):8.2f}"
            )


# ----- the command ------------------------------------------------------------------------------


def print_floors(pairs: list[tuple[Measurement, Measurement]], floors: list[Measurement]) -> None:
    """bench/floor.py beside the pair it ran after: what of the agent's CPU is its own logic."""
    print(
        "\nfloor: the same network work in CPython alone (bench/floor.py), after each pair:\n"
        "registries  floor ms/probe (sys)  probes/expected  floor/blackbox  agent/floor  "
        "agent - floor ms"
    )
    for (agent, blackbox), floor in zip(pairs, floors, strict=True):
        print(
            f"{floor.registries:>10}  {floor.cpu_ms_per_probe:>9.2f}"
            f" ({floor.cpu_system_ms_per_probe:.2f})"
            f"  {floor.probes:>7}/{floor.expected_probes:<7.0f}"
            f"  {floor.cpu_ms_per_probe / blackbox.cpu_ms_per_probe:>13.2f}x"
            f"  {agent.cpu_ms_per_probe / floor.cpu_ms_per_probe:>10.2f}x"
            f"  {agent.cpu_ms_per_probe - floor.cpu_ms_per_probe:>16.2f}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="registry-probe agent vs prometheus-blackbox-exporter, side by side"
    )
    parser.add_argument(
        "--registries",
        default="50",
        type=lambda s: [int(x) for x in s.split(",")],
        help="comma-separated registry counts to run (default 50)",
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window (default 30)")
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds before the window (default 2 intervals)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each count (default 1)")
    parser.add_argument(
        "--no-scrape-agent",
        dest="scrape_agent",
        action="store_false",
        help="do not scrape the agent's /metrics once per interval during the window",
    )
    parser.add_argument(
        "--no-gzip",
        dest="gzip",
        action="store_false",
        help="scrape without Accept-Encoding: gzip (Prometheus asks for gzip by default)",
    )
    parser.add_argument(
        "--node-processes",
        type=int,
        default=200,
        help="processes the agent sees in its PID namespace, one named containerd "
        "(default 200, as a node seen with hostPID; 0: the agent alone, the default DaemonSet)",
    )
    parser.add_argument(
        "--host-pids",
        action="store_true",
        help="let the agent see every process of this machine instead (not hermetic: another "
        "containerd's environment is read as the node's)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--profile", type=float, default=0, metavar="SECONDS", help="py-spy the agent this long"
    )
    parser.add_argument("--profile-registries", type=int, default=50)
    parser.add_argument(
        "--profile-out",
        type=Path,
        default=Path("agent.pyspy.txt"),
        help="where py-spy's collapsed stacks go (default ./agent.pyspy.txt)",
    )
    parser.add_argument("--top", type=int, default=25, help="profile entries to print")
    parser.add_argument(
        "--focus",
        action="append",
        help="a function whose share of the profile to print (repeatable; default: issue 9's)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run bench/floor.py (the network work alone, in CPython) after each pair",
    )
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = 2 * args.interval
    if not 0 <= args.node_processes <= 5000:
        parser.error("--node-processes: between 0 and 5000")
    if min(args.registries) < 1 or max(args.registries) > 999:
        parser.error("--registries: each count between 1 and 999")
    if args.interval < 1 or args.seconds <= 0:
        parser.error("--interval must be at least 1 and --seconds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("the benchmark needs root (network namespaces)", file=sys.stderr)
        return 2
    for tool in ("ip", "unshare", "docker-registry", BLACKBOX):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (see bench/README.md)", file=sys.stderr)
            return 2
    # SIGTERM tears the lab down like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix=f"rp{os.getpid()}-bench-"))
    names = registry_names(max([*args.registries, args.profile_registries if args.profile else 1]))
    pairs: list[tuple[Measurement, Measurement]] = []
    floors: list[Measurement] = []
    profile_out: Path | None = None
    try:
        with BenchLab.started(workdir, names) as lab:
            bench = Bench(lab, args)
            for n in args.registries:
                for run in range(args.repeat):
                    subset = names[:n]
                    # Alternate the order over repeats, so drift on a busy machine hits both.
                    if run % 2 == 0:
                        agent = bench.agent(subset)
                        blackbox = bench.blackbox(subset)
                    else:
                        blackbox = bench.blackbox(subset)
                        agent = bench.agent(subset)
                    pairs.append((agent, blackbox))
                    if args.floor:
                        floors.append(bench.floor(subset))
                    print(
                        f"# {n} registries, run {run + 1}: agent {agent.cpu_ms_per_probe:.2f} ms/"
                        f"probe, blackbox {blackbox.cpu_ms_per_probe:.2f} ms/probe",
                        file=sys.stderr,
                        flush=True,
                    )
            if args.profile:
                profile_out = args.profile_out.resolve()
                bench.profile(names[: args.profile_registries], args.profile, profile_out)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\nagent vs blackbox_exporter, every {args.interval:g}s, window {args.seconds:g}s "
        f"(after {args.warmup:g}s warm-up), {os.cpu_count()} CPUs; the agent sees "
        + (
            "every process of this machine"
            if args.host_pids
            else f"{args.node_processes} stand-in processes (one containerd)"
        )
    )
    if pairs:
        print_table(pairs)
        print_spread(pairs)
    if floors:
        print_floors(pairs, floors)
    if profile_out is not None:
        from stacks import print_top, read_collapsed

        print(f"\npy-spy profile of the agent, {args.profile_registries} registries: {profile_out}")
        print_top(read_collapsed(profile_out), args.top, tuple(args.focus or PROFILE_FOCUS))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "interval": args.interval,
                    "window_seconds": args.seconds,
                    "gzip": args.gzip,
                    "scrape_agent": args.scrape_agent,
                    "host_pids": args.host_pids,
                    "node_processes": None if args.host_pids else args.node_processes,
                    "runs": [
                        {
                            "agent": a.as_json(),
                            "blackbox": b.as_json(),
                            "ratios": ratios(a, b),
                        }
                        for a, b in pairs
                    ],
                    "floors": [f.as_json() for f in floors],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
