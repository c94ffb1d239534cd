"""`registry-probe run`: the agent's event loop, its signals, and its exit status.

One event loop holds the scheduler (`probe.agent.scheduler`), the probes it starts and the
HTTP server (`probe.agent.server`). SIGTERM/SIGINT stop (exit 0), SIGHUP reloads the config
and the web config (`--web-config`, `probe.agent.webconfig`): TLS and basic auth apply to the
connections opened after it; a bad web config is logged and the previous one stays.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from probe.agent.basicauth import BasicAuth
from probe.agent.logs import setup_logging
from probe.agent.scheduler import Agent, EngineLike
from probe.agent.server import AgentApp, HttpServer
from probe.agent.webconfig import WebConfig, load_web_config
from probe.config import Config, ConfigError
from probe.engine import Engine
from probe.images.check import ImageChecker
from probe.views.metrics import render

log = logging.getLogger("probe.agent")


def _auth(web: WebConfig | None) -> BasicAuth | None:
    return BasicAuth(dict(web.users)) if web is not None and web.users else None


def _warn_if_clear_text(web: WebConfig) -> None:
    if web.users and web.tls is None:
        log.warning(
            "basic_auth_users without TLS: passwords cross the network in clear text",
            extra={"fields": {"web_config": web.path}},
        )


class _WebReload:
    """SIGHUP's part for the web config: read again once per burst of signals, then applied
    to the server (TLS) and the app (basic auth) for the connections and requests after it."""

    def __init__(self, path: str, server: HttpServer, app: AgentApp) -> None:
        self._path = path
        self._server = server
        self._app = app
        self._pending = False

    def request(self) -> None:
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self._reload)

    def _reload(self) -> None:
        self._pending = False
        try:
            web = load_web_config(self._path)
        except ConfigError as error:
            for problem in error.problems:
                log.error(
                    "web config reload failed; keeping the previous one",
                    extra={"fields": {"error": problem}},
                )
            return
        self._server.tls_context = web.tls_context
        self._app.auth = _auth(web)
        log.info("web config reloaded", extra={"fields": web.describe()})
        _warn_if_clear_text(web)


async def _serve_agent(
    agent: Agent, host: str, port: int, once: bool, web: WebConfig | None = None
) -> int:
    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    web_reload: _WebReload | None = None

    def stop(signum: signal.Signals) -> None:
        log.info("stopping", extra={"fields": {"signal": signum.name}})
        agent.stop()

    def hangup() -> None:
        agent.request_reload()
        if web_reload is not None:
            web_reload.request()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    loop.add_signal_handler(signal.SIGHUP, hangup)
    _quiet_wakeup_fd()
    try:
        if once:
            await agent.run(once=True)
            sys.stdout.buffer.write(render(agent.metrics).body)
            sys.stdout.flush()
            return 0
        app = AgentApp(agent, _auth(web))
        server = HttpServer(app, tls_context=web.tls_context if web is not None else None)
        if web is not None:
            web_reload = _WebReload(web.path, server, app)
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
                    **(web.describe() if web is not None else {}),
                }
            },
        )
        if web is not None:
            _warn_if_clear_text(web)
        try:
            await agent.run()
        finally:
            await server.close()
        log.info("stopped")
        return 0
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _quiet_wakeup_fd() -> None:
    """A full self-pipe is not an error: drop the byte without a traceback on stderr.

    add_signal_handler sets the loop's self-pipe as the signal wakeup fd; each signal writes a
    byte there. During a storm of SIGHUPs (while the loop is blocked, every signal interrupts
    it and writes one) the pipe fills and CPython prints "Exception ignored when trying to
    write to the signal wakeup fd" with a traceback per signal. A dropped byte loses nothing
    here: one SIGHUP of the burst still reaches the handler, and reloads are coalesced.
    """
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd, warn_on_full_buffer=False)


def run_agent(
    config: Config,
    reload: Callable[[], Config],
    *,
    once: bool = False,
    log_format: str = "text",
    web_config: str | None = None,
    engine_factory: Callable[[Config], EngineLike] = Engine,
) -> int:
    """`registry-probe run` with a config built once by the command line; `reload` builds it
    again on SIGHUP. 0 after a clean stop (or one `--once` cycle), 2 on a bad config or a bad
    web config."""
    setup_logging(log_format)
    web = None
    if web_config is not None:
        try:
            web = load_web_config(web_config)
        except ConfigError as error:
            for problem in error.problems:
                log.error("bad web configuration", extra={"fields": {"error": problem}})
            return 2
    try:
        agent = Agent(engine_factory(config), reload, image_checker=ImageChecker.for_engine)
    except (ConfigError, ValueError) as error:
        log.error("bad configuration", extra={"fields": {"error": str(error)}})
        return 2
    listen = config.listen
    return asyncio.run(_serve_agent(agent, listen.host, listen.port or 0, once, web))
