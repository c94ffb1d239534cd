"""`registry-probe run`: the agent's event loop, its signals, and its exit status.

One event loop holds the scheduler (`probe.agent.scheduler`), the probes it starts and the
HTTP server (`probe.agent.server`). SIGTERM/SIGINT stop (exit 0), SIGHUP reloads the config.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from probe.agent.logs import setup_logging
from probe.agent.scheduler import Agent, EngineFactory, parse_listen
from probe.agent.server import AgentApp, HttpServer
from probe.config import Config, ConfigError
from probe.engine import Engine
from probe.views.metrics import render

log = logging.getLogger("probe.agent")


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
        server = HttpServer(AgentApp(agent))
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
