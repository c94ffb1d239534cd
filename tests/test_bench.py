"""bench/: the benchmark still runs end to end, and its bookkeeping counts what it claims.

One short real run (2 registries, 1 s interval, 3 s windows: about 15 s) in its own namespaces,
so the script cannot rot unnoticed; the rest are the pure parts (the schedule check, the log's
time stamps, the profile's aggregation) on made-up input.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lab import missing_requirements

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import run as bench_run  # noqa: E402
import stacks  # noqa: E402


def test_schedule_counts_every_host_and_flags_a_skipped_interval() -> None:
    """Per-Host counts in the window; a Host silent for 2 intervals is one late gap."""
    names = ["a", "b"]
    requests = [(t, "a") for t in (0.5, 2.5, 4.5, 6.5)] + [(t, "b") for t in (0.5, 4.5, 6.5)]
    requests.append((0.6, "stranger"))  # not one of ours: ignored
    result = bench_run.schedule(requests, names, t0=0.0, t1=8.0, interval=2.0)
    assert (result.probes, result.per_host_min, result.per_host_max) == (7, 3, 4)
    assert result.hosts_probed == 2
    assert result.late_gaps == 1
    assert result.max_gap_intervals == pytest.approx(2.0)


def test_registry_log_times_keep_microseconds_and_zone() -> None:
    """docker-registry's RFC 3339 nanosecond time stamps parse to Unix time, zone applied."""
    utc = bench_run._log_time("2026-12-01T22:42:21.187669911Z")
    assert utc == pytest.approx(1796164941.187669, abs=1e-6)
    assert bench_run._log_time("2026-12-01T23:42:21.187669911+01:00") == pytest.approx(utc)
    assert bench_run._log_time("2026-12-01T22:42:21Z") == pytest.approx(utc - 0.187669, abs=1e-6)


def test_collapsed_stacks_give_own_and_cumulative_shares(tmp_path: Path) -> None:
    """Own time goes to the leaf, cumulative once per stack, `under` counts whole stacks; the
    loop's wait in select() is left out (and counted apart)."""
    path = tmp_path / "raw.txt"
    path.write_text(
        "main (probe/cli.py:1);probe (probe/engine.py:5);stat (pathlib.py:9) 6\n"
        "main (probe/cli.py:1);probe (probe/engine.py:7);probe (probe/engine.py:5) 3\n"
        "main (probe/cli.py:2);render (probe/metrics.py:3) 1\n"
        "main (probe/cli.py:2);_run_once (asyncio/base_events.py:9);"
        "EpollSelector.select (selectors.py:468) 5\n"
        "_bootstrap (threading.py:1);_worker (concurrent/futures/thread.py:83) 7\n"
        "_bootstrap (threading.py:1);_worker (concurrent/futures/thread.py:83);"
        "getaddrinfo (socket.py:9) 2\n"
    )
    profile = stacks.read_collapsed(path)
    # select() and a worker thread waiting for a job are idle; the job a worker runs is not.
    assert (profile.total, profile.idle) == (12, 12)
    assert stacks.read_collapsed(path, keep_idle=True).total == 24
    assert profile.own["stat (pathlib.py)"] == 6
    assert profile.cumulative["probe (probe/engine.py)"] == 9  # recursion counted once
    assert profile.own["getaddrinfo (socket.py)"] == 2
    assert stacks.under(profile, "probe") == pytest.approx(9 / 12)
    assert stacks.under(profile, "render") == pytest.approx(1 / 12)


@pytest.mark.lab
def test_a_short_run_measures_both_probers(tmp_path: Path) -> None:
    """2 registries for 3 s: both probers' probes land (and the floor's), figures and ratios are
    sane, lab removed."""
    reason = missing_requirements()
    if reason is None and shutil.which(bench_run.BLACKBOX) is None:
        reason = "prometheus-blackbox-exporter is not installed"
    if reason is not None:
        pytest.skip(reason)
    out = tmp_path / "bench.json"
    argv = [
        sys.executable, str(BENCH / "run.py"), "--registries", "2", "--interval", "1",
        "--seconds", "3", "--warmup", "1", "--node-processes", "20", "--floor", "--json", str(out),
    ]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as bench:
        try:
            stdout, stderr = bench.communicate(timeout=60)
        finally:
            bench.kill()
    assert bench.returncode == 0, stdout + stderr
    assert "cpu ms/probe" in stdout and "ratio" in stdout and "floor/blackbox" in stdout, stdout
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert f"rp{bench.pid}-" not in namespaces, "the bench left its namespaces behind"
    assert not list(Path("/tmp").glob(f"rp{bench.pid}-bench-*")), "work directory left behind"
    figures = json.loads(out.read_text())
    (run,) = figures["runs"]
    (floor,) = figures["floors"]
    for m in (run["agent"], run["blackbox"], floor):
        # 2 registries every second for 3 s: 6 probes expected; allow an edge effect.
        assert 4 <= m["probes"] <= 8, m
        assert m["hosts_probed"] == 2, m
        assert m["healthy"] == 1, m
        assert 0 < m["cpu_ms_per_probe"] < 1000, m
        assert 0 <= m["cpu_system_ms_per_probe"] <= m["cpu_ms_per_probe"], m
        assert 1024 < m["peak_rss_kib"] < 1024 * 1024, m
    for m in (run["agent"], run["blackbox"]):
        assert m["series_per_registry"] > 0 and m["scrape_ms"] > 0, m
    assert run["agent"]["driver"]["scrapes"] >= 2, run["agent"]["driver"]
    assert set(run["ratios"]) == {"cpu_per_probe", "peak_rss", "series"}
    assert all(math.isfinite(r) and r > 0 for r in run["ratios"].values()), run["ratios"]
