"""The agent process under attack: hostile clients leave it small and prompt, able to answer
/healthz, and they never delay its probes (issue 11, item 4).

The agent runs as a subprocess (tests/servedagent.py), so its RSS and its stderr are its own.
Every loop is bounded in count and time; timing bounds are generous (the attacks used to cost
seconds, the bounds are a fraction of one).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from metricsamples import sample
from servedagent import PROBE_SLEEP, ServedAgent

DEADLINE = 10.0
CLIENTS = 1000
SCRAPE = b"GET /metrics HTTP/1.1\r\nHost: agent\r\nAccept-Encoding: gzip\r\n\r\n"


@pytest.fixture
def served() -> Iterator[list[ServedAgent]]:
    started: list[ServedAgent] = []
    yield started
    for agent in started:
        agent.close()


def hosts(count: int) -> list[str]:
    return [f"r{i}.example" for i in range(count)]


@contextlib.contextmanager
def connections(address: tuple[str, int], count: int, first: bytes = b"") -> Iterator[int]:
    """`count` client sockets that send `first` and then never read; yields how many connected.

    Connects without blocking (the kernel completes the handshakes from the listen backlog,
    whether or not the agent accepts), so a slow agent cannot stall the test.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            # A small receive window: responses back up into the agent at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            sock.connect_ex(address)
        pending = set(sockets)
        for _ in range(50):  # up to 5 s: a SYN dropped from a full backlog is sent again at 1 s
            _, writable, _ = select.select([], list(pending), [], 0.1)
            pending -= {
                s for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            }
            if not pending:
                break
        connected = 0
        for sock in sockets:
            if sock.fileno() in pending:
                continue
            with contextlib.suppress(OSError):
                if first:
                    sock.send(first)
                connected += 1
        yield connected
    finally:
        for sock in sockets:
            sock.close()


# -- attacks --------------------------------------------------------------------------------


def test_pipelining_clients_that_never_read_leave_memory_bounded_and_healthz_prompt(
    tmp_path: Path, served: list[ServedAgent]
) -> None:
    """1,000 clients pipelining 1,000 gzip scrapes each and never reading: the agent's RSS grows
    by less than 48 MiB and /healthz answers within 1 s while they stay connected."""
    agent = ServedAgent(tmp_path, hosts(20))
    served.append(agent)
    agent.wait_ready()
    before = agent.rss_mib()
    with connections(agent.address(), CLIENTS, SCRAPE * 1000) as connected:
        time.sleep(2.0)
        status, seconds = agent.timed_get("/healthz")
        grown = agent.rss_mib() - before
    seen = f"{connected} connected, /healthz {status} in {seconds:.2f} s, RSS +{grown:.0f} MiB"
    assert (connected, status, seconds < 1.0, grown < 48) == (CLIENTS, 200, True, True), seen
    assert agent.timed_get("/healthz")[0] == 200


def test_idle_and_slow_clients_do_not_lock_out_healthz(
    tmp_path: Path, served: list[ServedAgent]
) -> None:
    """1,000 connections holding a half-sent request head (slowloris) fill the connection
    table, yet /healthz answers within 1 s and the RSS grows by less than 48 MiB."""
    agent = ServedAgent(tmp_path, hosts(3))
    served.append(agent)
    agent.wait_ready()
    before = agent.rss_mib()
    with connections(agent.address(), CLIENTS, b"GET /metrics HTTP/1.1\r\nX-Slow: ") as connected:
        time.sleep(1.0)
        answers = [agent.timed_get("/healthz") for _ in range(3)]
        grown = agent.rss_mib() - before
    seen = f"{connected} connected, /healthz {answers}, RSS +{grown:.0f} MiB"
    prompt = [(status, seconds < 1.0) for status, seconds in answers]
    assert (connected, prompt, grown < 48) == (CLIENTS, [(200, True)] * 3, True), seen


def test_at_the_descriptor_limit_the_log_stays_small_and_healthz_answers(
    tmp_path: Path, served: list[ServedAgent]
) -> None:
    """With RLIMIT_NOFILE at 64 and 200 clients connected, accept errors make a few log lines
    (no traceback), /healthz still answers within 1 s, and again after they leave."""
    agent = ServedAgent(tmp_path, hosts(3), nofile=64)
    served.append(agent)
    agent.wait_ready()
    logged_before = agent.stderr_bytes
    with connections(agent.address(), 200) as connected:
        time.sleep(2.0)
        during = agent.timed_get("/healthz")
        logged = agent.stderr_bytes - logged_before
    time.sleep(0.5)
    after = agent.timed_get("/healthz")
    seen = f"{connected} connected, {logged} bytes logged, /healthz {during} then {after}"
    assert connected == 200, seen
    assert "Traceback" not in agent.stderr, seen
    assert logged < 2048, seen
    assert "cannot accept connections" in agent.stderr, seen
    assert (during[0], during[1] < 1.0) == (200, True), seen
    assert (after[0], after[1] < 1.0) == (200, True), seen


async def _gzip_scraper(address: tuple[str, int], until: float) -> int:
    """Pipeline 100 gzip scrapes, read all 100 answers, repeat until `until`; answers read."""
    reader, writer = await asyncio.open_connection(*address)
    answered = 0
    try:
        for _ in range(50):
            if time.monotonic() > until:
                break
            writer.write(SCRAPE * 100)
            seen = 0
            async with asyncio.timeout(DEADLINE):
                while seen < 100:
                    data = await reader.read(1 << 20)
                    if not data:
                        return answered
                    seen += data.count(b"HTTP/1.1 200 ")
            answered += seen
    finally:
        writer.close()
    return answered


def test_pipelined_gzip_scrapes_do_not_delay_probes(
    tmp_path: Path, served: list[ServedAgent]
) -> None:
    """Eight clients pipelining gzip scrapes for 2 s: no probe's 20 ms sleep ends more than
    0.3 s late (the engine reports its worst lateness as the connect phase)."""
    agent = ServedAgent(tmp_path, hosts(20), engine="lag", interval=0.2)
    served.append(agent)
    agent.wait_ready()

    async def attack() -> int:
        until = time.monotonic() + 2.0
        scrapers = [_gzip_scraper(agent.address(), until) for _ in range(8)]
        return sum(await asyncio.gather(*scrapers))

    answered = asyncio.run(attack())
    time.sleep(0.5)  # a probe or two after the attack, to report the worst lateness
    with httpx.Client(trust_env=False, timeout=DEADLINE) as http:
        text = http.get(f"{agent.url()}/metrics").text
    worst = max(
        sample(text, "registry_probe_duration_seconds", registry=h, phase="connect") or 0.0
        for h in hosts(20)
    )
    seen = f"{answered} scrapes answered; a {PROBE_SLEEP} s probe sleep ended {worst:.2f} s late"
    assert (answered >= 800, worst < 0.3) == (True, True), seen
