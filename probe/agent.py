"""The agent, `registry-probe run`: probes every registry on its interval and serves /metrics.

One event loop holds three things under one TaskGroup discipline:

- the scheduler (`Agent.run`): wakes at least once a second (the heartbeat /healthz reads),
  starts the probes that are due, each in the TaskGroup, at most `concurrency` at a time, and
  stops, cancelling every probe in flight, when told to;
- the probes: `engine.probe_registry()`, which bounds each check by the config's timeout; the
  agent adds an outer safety deadline only against an engine that never returns;
- the HTTP server (`HttpServer`): h11 over asyncio streams. A scrape renders what the last probes
  left in the collector and never awaits a probe.

Signals: SIGTERM/SIGINT stop (exit 0), SIGHUP reloads the config; a bad new config is logged and
the old one kept, with `registry_probe_config_last_reload_success` 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import h11

from probe.config import Config, ConfigError, RegistryConfig
from probe.engine import Engine
from probe.logs import CheckStates, log_changes, setup_logging
from probe.metrics import ProbeCollector, build_registry, render
from probe.result import RegistryReport

log = logging.getLogger("probe.agent")

CONCURRENCY = 8  # registries probed at once; a node has a handful, this bounds a long list
JITTER = 0.1  # each interval is drawn from interval * [0.9, 1.1] (SPEC.md: ±10%)
HEARTBEAT_SECONDS = 1.0  # the scheduler wakes at least this often
HEALTHY_WITHIN_SECONDS = 15.0  # /healthz fails when the scheduler has not woken for this long
# The engine bounds every check by `timeout`; a registry has at most about a dozen checks
# (dns, tcp, tls per endpoint, http, proxy, ratelimit). Past this many timeouts the engine is
# stuck, and the agent gives up on that probe rather than on the registry.
SAFETY_DEADLINE_TIMEOUTS = 16
IDLE_CONNECTION_SECONDS = 30.0  # a keep-alive connection with no request for this long is closed
STOP_GRACE_SECONDS = 2.0  # how long open HTTP connections get to finish when stopping


class EngineLike(Protocol):
    """What the agent needs from `probe.engine.Engine`."""

    def registries(self) -> tuple[RegistryConfig, ...]: ...

    async def probe_registry(self, registry: RegistryConfig) -> RegistryReport: ...


EngineFactory = Callable[[Config], EngineLike]


def jittered(interval: float, rng: random.Random) -> float:
    """The wait before a registry's next probe: interval ± 10%, so nodes do not probe in step."""
    return interval * rng.uniform(1.0 - JITTER, 1.0 + JITTER)


def parse_listen(listen: str) -> tuple[str, int]:
    """`ADDR:PORT`, `[v6]:PORT` or `:PORT` (every interface) into a host and a port."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--listen must be ADDR:PORT, not {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # raises ValueError on a bad address
    return host or "0.0.0.0", int(port_text)  # noqa: S104  # a DaemonSet agent serves the node IP


class Agent:
    """Schedules the probes and keeps the results the HTTP server renders."""

    def __init__(
        self,
        config: Config,
        build_config: Callable[[], Config],
        engine_factory: EngineFactory,
        *,
        interval: float | None = None,
        collector: ProbeCollector | None = None,
        concurrency: int = CONCURRENCY,
        rng: random.Random | None = None,
    ) -> None:
        self.collector = collector if collector is not None else ProbeCollector()
        self.metrics = build_registry(self.collector)
        self._build_config = build_config
        self._engine_factory = engine_factory
        self._interval_flag = interval
        self._concurrency = concurrency
        self._rng = rng if rng is not None else random.Random()  # noqa: S311  # jitter, not secrets
        self._states = CheckStates()
        self._wake = asyncio.Event()
        self._stopping = False
        self._reload_requested = False
        self._registries: dict[str, RegistryConfig] = {}
        self._due: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._attempted: set[str] = set()
        self._troubled: dict[str, str] = {}  # registry -> what went wrong with its last probe
        self._ready = False
        self.last_tick = time.monotonic()
        self._apply(config, engine_factory(config))

    # -- state the HTTP server reads --------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once every registry has been probed once; stays true across reloads."""
        return self._ready

    def healthy(self) -> bool:
        return time.monotonic() - self.last_tick < HEALTHY_WITHIN_SECONDS

    @property
    def config(self) -> Config:
        return self._config

    @property
    def interval(self) -> float:
        return self._interval_flag if self._interval_flag is not None else self._config.interval

    def registries(self) -> tuple[str, ...]:
        return tuple(self._registries)

    # -- control, from signal handlers ------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    # -- the scheduler ----------------------------------------------------------------------

    async def run(self, *, once: bool = False) -> None:
        """Probe until stopped (or, with `once`, until every registry was probed once)."""
        semaphore = asyncio.Semaphore(self._concurrency)
        try:
            async with asyncio.TaskGroup() as probes:
                while not self._stopping:
                    self.last_tick = time.monotonic()
                    if self._reload_requested:
                        self._reload_requested = False
                        self._reload()
                    self._start_due(probes, semaphore, once)
                    if once and self._ready and not self._inflight:
                        break
                    await self._sleep_until_due(once)
                self._cancel_inflight()
        finally:
            self._inflight.clear()

    def _start_due(
        self, probes: asyncio.TaskGroup, semaphore: asyncio.Semaphore, once: bool
    ) -> None:
        now = time.monotonic()
        for host, registry in self._registries.items():
            if host in self._inflight or self._due.get(host, now) > now:
                continue
            if once and host in self._attempted:
                continue
            self._due[host] = now + jittered(self.interval, self._rng)
            self._inflight[host] = probes.create_task(
                self._probe(self._engine, registry, semaphore), name=f"probe {host}"
            )

    async def _sleep_until_due(self, once: bool) -> None:
        """Until the next registry is due, a probe ends, a signal comes, or a heartbeat passes."""
        now = time.monotonic()
        waiting = [
            self._due.get(host, now) - now
            for host in self._registries
            if host not in self._inflight and not (once and host in self._attempted)
        ]
        delay = max(0.0, min([HEARTBEAT_SECONDS, *waiting]))
        # Always awaits, even with delay 0, so the loop can never starve the server or probes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()
        self._wake.clear()

    def _cancel_inflight(self) -> None:
        for task in self._inflight.values():
            task.cancel()

    async def _probe(
        self, engine: EngineLike, registry: RegistryConfig, semaphore: asyncio.Semaphore
    ) -> None:
        host = registry.host
        try:
            async with semaphore:
                report = await self._bounded_probe(engine, registry)
            if host in self._registries and self._engine is engine:
                if report is not None:
                    self.collector.record(report)
                    log_changes(log, self._states.update(report))
                self._attempted.add(host)
                self._check_ready()
        finally:
            # Also when cancelled (stop, reload): the registry can be probed again.
            if self._inflight.get(host) is asyncio.current_task():
                del self._inflight[host]
            self._wake.set()

    async def _bounded_probe(
        self, engine: EngineLike, registry: RegistryConfig
    ) -> RegistryReport | None:
        """The engine's report, or None when it overran its safety deadline or failed.

        Like check states, the engine's own troubles are logged when they start and end, not
        on every interval.
        """
        host = registry.host
        deadline = self._config.timeout * SAFETY_DEADLINE_TIMEOUTS
        try:
            async with asyncio.timeout(deadline):
                report = await engine.probe_registry(registry)
        except TimeoutError:
            self._engine_trouble(
                host, "probe did not finish within its safety deadline", deadline_seconds=deadline
            )
            return None
        # The outermost edge between the agent and the engine: a bug in one probe is logged and
        # the registry tried again next interval; it never stops the agent.
        except Exception:
            self._engine_trouble(host, "probe failed unexpectedly", exc_info=True)
            return None
        if self._troubled.pop(host, None) is not None:
            log.info("probe completed again", extra={"fields": {"registry": host}})
        return report

    def _engine_trouble(
        self, host: str, message: str, exc_info: bool = False, **fields: float
    ) -> None:
        if self._troubled.get(host) == message:
            return
        self._troubled[host] = message
        log.error(message, exc_info=exc_info, extra={"fields": {"registry": host, **fields}})

    def _check_ready(self) -> None:
        if not self._ready and self._attempted >= self._registries.keys():
            self._ready = True
            log.info("first cycle complete", extra={"fields": {"registries": len(self._attempted)}})

    # -- configuration ----------------------------------------------------------------------

    def _apply(self, config: Config, engine: EngineLike) -> None:
        self._config = config
        self._engine = engine
        self._registries = {r.host: r for r in engine.registries()}
        self.collector.configure(self._registries)
        self._states.retain(self._registries)
        self._attempted &= self._registries.keys()
        self._troubled = {h: m for h, m in self._troubled.items() if h in self._registries}
        # Every registry is probed now with the new config; a probe in flight used the old one.
        self._cancel_inflight()
        self._due = {}
        self._check_ready()

    def _reload(self) -> None:
        old = set(self._registries)
        try:
            config = self._build_config()
            engine = self._engine_factory(config)
        except ConfigError as error:
            self.collector.config_reload_success = False
            log.error(
                "config reload failed; keeping the previous config",
                extra={"fields": {"error": str(error)}},
            )
            return
        if config.listen != self._config.listen:
            log.warning(
                "the listen address changes only on restart",
                extra={"fields": {"listen": self._config.listen}},
            )
        self._apply(config, engine)
        self.collector.config_reload_success = True
        new = set(self._registries)
        log.info(
            "config reloaded",
            extra={
                "fields": {
                    "registries": len(new),
                    "added": ",".join(sorted(new - old)),
                    "removed": ",".join(sorted(old - new)),
                }
            },
        )


# -- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def route(agent: Agent, method: str, target: str, headers: dict[str, str]) -> Response:
    """The agent's three URLs; anything else is 404."""
    path = target.partition("?")[0]
    if path not in ("/metrics", "/healthz", "/readyz"):
        return Response(404, b"not found: try /metrics, /healthz or /readyz\n")
    if method not in ("GET", "HEAD"):
        return Response(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
    if path == "/healthz":
        if agent.healthy():
            return Response(200, b"ok\n")
        return Response(503, b"the probe loop has not run recently\n")
    if path == "/readyz":
        if agent.ready:
            return Response(200, b"ready\n")
        return Response(503, b"the first probe cycle has not completed\n")
    exposition = render(
        agent.metrics, headers.get("accept", ""), headers.get("accept-encoding", "")
    )
    encoding = exposition.content_encoding
    return Response(
        200,
        exposition.body,
        exposition.content_type,
        (("Content-Encoding", encoding),) if encoding else (),
    )


Handler = Callable[[str, str, dict[str, str]], Response]


class HttpServer:
    """A small HTTP/1.1 server (h11 over asyncio streams) that keeps track of its connections."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._connection, host, port)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"  # noqa: S101  # programming error
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Closing a transport ends the read its handler waits on; the handler then returns.
        for writer in self._connections.values():
            writer.close()
        tasks = set(self._connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await self._server.wait_closed()
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101  # asyncio runs connection handlers as tasks
        self._connections[task] = writer
        try:
            await self._serve(reader, writer)
        # The outermost edge of a connection: a broken or slow client ends only its connection.
        except (OSError, TimeoutError, h11.ProtocolError):
            pass
        except asyncio.CancelledError:
            # Cancelled by close() after the grace period; asyncio's own done-callback for
            # connection handlers treats a cancelled handler as an error, so end normally.
            pass
        finally:
            del self._connections[task]
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request = await self._next_request(conn, reader)
            if request is None:
                return
            headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in request.headers
            }
            method = request.method.decode("ascii", "replace")
            response = self._handler(method, request.target.decode("latin-1"), headers)
            writer.write(self._encode(conn, method, response))
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    @staticmethod
    async def _next_request(
        conn: h11.Connection, reader: asyncio.StreamReader
    ) -> h11.Request | None:
        """The next complete request (its body, if any, read and dropped), None at EOF."""
        request: h11.Request | None = None
        async with asyncio.timeout(IDLE_CONNECTION_SECONDS):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.EndOfMessage):
                    return request
                elif isinstance(event, h11.Data):
                    continue  # no URL takes a body: read and dropped
                else:  # ConnectionClosed; PAUSED cannot come before our response
                    return None

    @staticmethod
    def _encode(conn: h11.Connection, method: str, response: Response) -> bytes:
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
        if method != "HEAD":
            data += conn.send(h11.Data(data=response.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        return data


# -- the command -----------------------------------------------------------------------------


async def _serve_agent(agent: Agent, host: str, port: int, once: bool) -> int:
    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def stop(signum: signal.Signals) -> None:
        log.info("stopping", extra={"fields": {"signal": signum.name}})
        agent.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    loop.add_signal_handler(signal.SIGHUP, agent.request_reload)
    try:
        if once:
            await agent.run(once=True)
            sys.stdout.buffer.write(render(agent.metrics).body)
            sys.stdout.flush()
            return 0
        server = HttpServer(lambda method, target, headers: route(agent, method, target, headers))
        try:
            await server.start(host, port)
        except OSError as error:
            log.error(
                "cannot listen", extra={"fields": {"listen": f"{host}:{port}", "error": error}}
            )
            return 1
        bound_host, bound_port = server.address
        log.info(
            "agent started",
            extra={
                "fields": {
                    "listen": f"{bound_host}:{bound_port}",
                    "interval_seconds": agent.interval,
                    "timeout_seconds": agent.config.timeout,
                    "registries": ",".join(agent.registries()),
                }
            },
        )
        try:
            await agent.run()
        finally:
            await server.close()
        log.info("stopped")
        return 0
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def run_agent(
    args: argparse.Namespace,
    build_config: Callable[[], Config],
    engine_factory: EngineFactory = Engine,
) -> int:
    """`registry-probe run`: 0 after a clean stop (or one `--once` cycle), 2 on a bad config."""
    setup_logging(args.log_format)
    try:
        config = build_config()
        host, port = parse_listen(args.listen if args.listen is not None else config.listen)
        if args.interval is not None and args.interval <= 0:
            raise ValueError(f"--interval must be positive, not {args.interval}")
        agent = Agent(config, build_config, engine_factory, interval=args.interval)
    except (ConfigError, ValueError) as error:
        log.error("bad configuration", extra={"fields": {"error": str(error)}})
        return 2
    return asyncio.run(_serve_agent(agent, host, port, args.once))
