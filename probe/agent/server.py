"""The agent's HTTP server: /metrics, /healthz and /readyz, h11 over asyncio streams.

A scrape renders what the last probes left in the collector and never awaits a probe.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import h11

from probe.agent.scheduler import Agent
from probe.views.metrics import render

IDLE_CONNECTION_SECONDS = 30.0  # a keep-alive connection with no request for this long is closed
STOP_GRACE_SECONDS = 2.0  # how long open HTTP connections get to finish when stopping


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
