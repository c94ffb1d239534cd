"""`registry-probe run`: the agent's event loop, its signals, and its exit status.

One event loop holds the scheduler (`probe.agent.scheduler`), the probes it starts and the
HTTP server (`probe.agent.server`). SIGTERM/SIGINT stop (exit 0), SIGHUP reloads the config.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from probe.agent.logs import setup_logging
from probe.agent.scheduler import Agent, EngineLike
from probe.agent.server import HttpServer, route
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
    config: Config,
    reload: Callable[[], Config],
    *,
    once: bool = False,
    log_format: str = "text",
    engine_factory: Callable[[Config], EngineLike] = Engine,
) -> int:
    """`registry-probe run` with a config built once by the command line; `reload` builds it
    again on SIGHUP. 0 after a clean stop (or one `--once` cycle), 2 on a bad config."""
    setup_logging(log_format)
    try:
        agent = Agent(engine_factory(config), reload)
    except (ConfigError, ValueError) as error:
        log.error("bad configuration", extra={"fields": {"error": str(error)}})
        return 2
    listen = config.listen
    return asyncio.run(_serve_agent(agent, listen.host, listen.port or 0, once))
