"""The agent's HTTP server: /metrics, /healthz and /readyz, h11 over asyncio streams.

A scrape renders what the last probes left in the collector and never awaits a probe.

The agent listens on the node's own network (hostNetwork, `0.0.0.0:9741`), so anyone who can
reach the node can reach this server. Whatever they send, it stays small, prompt, and able to
answer kubelet's `/healthz`, and it never delays the probes:

- **At most `max_connections` connections** (64). Accepting one more drops the oldest one
  that is not protected (a connection is protected until its first answer, for at most
  PROTECTED_SECONDS), so idle, slow or pipelining connections cannot fill the table and lock
  kubelet's probes and Prometheus out; when every one is protected, the new connection is
  closed at once. Our own accept loop (`sock_accept`, then up to ACCEPT_BATCH `accept()`s per
  wakeup) does this before any transport or task exists for the connection: a refused
  connection costs an `accept` and a `close`.
- **Bounded reading.** A connection gets `idle_seconds` to start a request and `head_seconds`
  from its first byte to finish the head (slowloris), of at most `max_head_bytes` (431 beyond).
  Reads are small and happen only when h11 needs data: one request is served at a time, and
  pipelined requests wait unread in the socket (h11's PAUSED state) until the response before
  them is written, so a client pipelining thousands of requests pins one small buffer, not one
  response per request. Request bodies are never read: no URL takes one; such a request is
  answered and its connection closed.
- **Bounded writing.** A response must be taken by the client within `write_seconds`, else the
  connection is dropped (a client that never reads).
- **Bounded rendering.** `/metrics` is rendered (and gzipped) at most once per content type and
  encoding per `RENDER_FRESH_SECONDS`, or again when a probe result arrives: pipelined gzip
  scrapes reuse one body instead of compressing for each request on the event loop.
- **Accept errors** (`EMFILE` at the descriptor limit, `ENFILE`, `ENOBUFS`, `ENOMEM`) are logged
  when they start and then at most once per `TROUBLE_LOG_SECONDS`, never as a traceback;
  asyncio's own accept loop would log one traceback per failed accept. At `EMFILE` the oldest
  connection is closed to free a descriptor, so `/healthz` still gets in.

TLS (the web config's `tls_server_config`) is started per connection after the accept, so the
connection cap and the head timeout also bound handshakes. Basic auth (`basic_auth_users`)
guards `/metrics` only: see `probe.agent.webconfig` for why health endpoints stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import h11
from prometheus_client.exposition import choose_encoder, gzip_accepted

from probe.agent.basicauth import BasicAuth
from probe.agent.scheduler import Agent
from probe.result import RegistryReport
from probe.views.metrics import Exposition, render

log = logging.getLogger("probe.agent")

STOP_GRACE_SECONDS = 2.0  # how long open HTTP connections get to finish when stopping
RENDER_FRESH_SECONDS = 1.0  # a rendered /metrics body is reused this long (or until a probe ends)
TROUBLE_LOG_SECONDS = 60.0  # an ongoing server trouble is logged at most this often
ACCEPT_RETRY_SECONDS = 0.25  # at a resource limit with nothing to free: retry after this
ACCEPT_BATCH = 64  # connections accepted per wakeup of the accept loop
PROTECTED_SECONDS = 0.5  # a new connection cannot be dropped for another until answered or this old
LISTEN_BACKLOG = 128
READ_CHUNK = 4096  # bytes read at a time, and the reader's buffer limit
WRITE_BUFFER_HIGH = 16384  # bytes queued in the transport before a write waits for the client
LINGER_SECONDS = 1.0  # closing with unread input: how long it is read and dropped ...
LINGER_BYTES = 65536  # ... and how much, so the client sees the response rather than a reset

# accept() failures that mean "out of a resource", as asyncio's own accept loop lists them.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() failures of one connection (the peer gave up, or a firewall rule): try the next one.
_CONNECTION_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET})
_STATUS_TEXT = {431: b"request header fields too large\n"}
_WWW_AUTHENTICATE = ("WWW-Authenticate", 'Basic realm="registry-probe", charset="UTF-8"')


@dataclass(frozen=True)
class Limits:
    """How much one client may cost the server (see the module docstring)."""

    max_connections: int = 64
    idle_seconds: float = 30.0  # keep-alive connection with no new request: closed
    head_seconds: float = 10.0  # from a request's first byte (or the accept, for TLS) to its end
    write_seconds: float = 10.0  # for the client to take a response
    max_head_bytes: int = 8192


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: Mapping[str, str]  # names in lower case; a repeated header keeps its last value

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]


class ServerTrouble:
    """A trouble of the server that may repeat thousands of times a second (accept errors, a
    full connection table): logged when it starts, then at most once per `every` seconds with
    the count since, and as over once it has not happened for `every` seconds, so a trouble
    that comes and goes (each freed descriptor taken at once) is not logged at each turn.
    A traceback only where asked for (a bug)."""

    def __init__(
        self,
        message: str,
        over_message: str,
        every: float = TROUBLE_LOG_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._message = message
        self._over_message = over_message
        self._every = every
        self._clock = clock
        self._logged_at: float | None = None  # None: not in trouble
        self._last_at = 0.0
        self._unlogged = 0
        self.total = 0

    def happened(self, *, exc_info: bool = False, **fields: object) -> None:
        now = self._clock()
        self.total += 1
        self._unlogged += 1
        self._last_at = now
        if self._logged_at is None or now - self._logged_at >= self._every:
            log.warning(
                self._message,
                exc_info=exc_info,
                extra={"fields": {**fields, "times": self._unlogged}},
            )
            self._logged_at = now
            self._unlogged = 0

    def over(self) -> None:
        """Things went well: say the trouble is over if it has been quiet for `every` seconds."""
        if self._logged_at is None or self._clock() - self._last_at < self._every:
            return
        fields = {"times_not_logged": self._unlogged} if self._unlogged else {}
        log.info(self._over_message, extra={"fields": fields})
        self._logged_at = None
        self._unlogged = 0


@dataclass(eq=False)
class _Connection:
    """One accepted connection: what choosing and dropping it needs."""

    accepted_at: float
    answered: bool = False  # a response was written on it
    dropped: bool = False
    transport: asyncio.WriteTransport | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def protected(self, now: float) -> bool:
        """New and not answered yet: never dropped to make room (kubelet's probe gets its
        answer); a slowloris stops being new after PROTECTED_SECONDS."""
        return not self.answered and now - self.accepted_at < PROTECTED_SECONDS

    def drop(self) -> None:
        self.dropped = True
        if self.transport is not None:
            self.transport.abort()
        # A task that has not started yet sees `dropped` when it does; it is never cancelled
        # (asyncio's done-callback for connection handlers cannot take a cancelled task).
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


class HttpServer:
    """A small HTTP/1.1 server (h11 over asyncio streams) that a hostile client cannot exhaust.

    `tls_context` may be replaced while serving (a web config reload): new connections use it.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        limits: Limits | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._handler = handler
        self.limits = limits if limits is not None else Limits()
        self.tls_context = tls_context
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._opening: set[asyncio.Task[None]] = set()
        self._connections: dict[_Connection, None] = {}  # an ordered set
        self._accept_trouble = ServerTrouble(
            "cannot accept connections", "accepting connections again"
        )
        self._handler_trouble = ServerTrouble("internal error serving a request", "")
        self._full = ServerTrouble(
            "connection limit reached; closing the oldest connections",
            "below the connection limit again",
        )

    # -- listening --------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        """Listen on every address `host` resolves to (as asyncio.start_server does)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                listener = socket.socket(family, kind, proto)
                self._listeners.append(listener)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                listener.bind(address)
                listener.listen(LISTEN_BACKLOG)
                listener.setblocking(False)
        except OSError:
            self._close_listeners()
            raise
        self._accepting = [
            asyncio.create_task(self._accept_loop(listener), name="http accept")
            for listener in self._listeners
        ]

    @property
    def address(self) -> tuple[str, int]:
        assert self._listeners, "start() first"  # noqa: S101  # programming error
        sockname = self._listeners[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def close(self) -> None:
        """Stop accepting, give open connections STOP_GRACE_SECONDS, then drop them."""
        for task in self._accepting:
            task.cancel()
        if self._accepting:
            await asyncio.wait(self._accepting)
        self._accepting = []
        self._close_listeners()
        if self._opening:
            await asyncio.wait(self._opening)
        connections = list(self._connections)
        for connection in connections:
            # Closing a transport ends the read its handler waits on; the handler then returns.
            if connection.transport is not None:
                connection.transport.close()
        tasks = {c.task for c in connections if c.task is not None}
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for connection in connections:
                if connection.task in late:
                    connection.drop()
            if late:
                await asyncio.wait(late)
        self._connections.clear()

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners = []

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as error:
                await self._accept_failed(error)
                continue
            self._admit(sock)
            # Drain the backlog in one go (as asyncio's own accept loop does): accepting one
            # connection per round of a loop busy with 64 others would leave kubelet's probe
            # waiting in the backlog for seconds.
            for _ in range(ACCEPT_BATCH - 1):
                try:
                    sock, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as error:
                    await self._accept_failed(error)
                    break
                self._admit(sock)
            self._accept_trouble.over()

    async def _accept_failed(self, error: OSError) -> None:
        if error.errno in _CONNECTION_GONE:
            return
        self._accept_trouble.happened(error=error.strerror or type(error).__name__)
        if error.errno == errno.EMFILE and self._drop_oldest(time.monotonic()):
            # The dropped connection's descriptor is closed by the loop's next round; then the
            # accept that failed can succeed (kubelet's probe gets in).
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(ACCEPT_RETRY_SECONDS)

    def _admit(self, sock: socket.socket) -> None:
        now = time.monotonic()
        if len(self._connections) >= self.limits.max_connections:
            self._full.happened(limit=self.limits.max_connections)
            if not self._drop_oldest(now):
                sock.close()  # every connection is new: this one is refused
                return
        else:
            self._full.over()
        sock.setblocking(False)
        connection = _Connection(accepted_at=now)
        self._connections[connection] = None
        task = asyncio.create_task(self._open(sock, connection), name="http open")
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    def _drop_oldest(self, now: float) -> bool:
        """Drop the connection accepted longest ago that is not protected; False if none.

        The oldest, not the least active: a client pipelining requests is always active, and a
        rule that spared activity would drop kubelet's probe. A scraper's keep-alive connection
        cut by a flood reconnects at its next scrape."""
        oldest = next((c for c in self._connections if not c.protected(now)), None)
        if oldest is None:
            return False
        del self._connections[oldest]
        oldest.drop()
        return True

    async def _open(self, sock: socket.socket, connection: _Connection) -> None:
        """Streams for an accepted socket; `_connection` then serves them in its own task."""
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=READ_CHUNK)
            return asyncio.StreamReaderProtocol(reader, partial(self._connection, connection))

        try:
            transport, _ = await loop.connect_accepted_socket(protocol, sock)
        except OSError:
            self._connections.pop(connection, None)
            sock.close()
            return
        if connection.transport is None:
            connection.transport = transport
        if connection.dropped:
            transport.abort()

    # -- one connection ---------------------------------------------------------------------

    async def _connection(
        self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection.task = asyncio.current_task()
        if connection.dropped:
            writer.transport.abort()
            return
        connection.transport = writer.transport
        graceful = False
        try:
            writer.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
            if self.tls_context is not None:
                await self._start_tls(writer, self.tls_context)
                connection.transport = writer.transport
            graceful = await self._serve(connection, reader, writer)
        # The outermost edge of a connection: a broken, slow or hostile client ends only its
        # connection (ssl.SSLError is an OSError: a failed handshake lands here too). A drop
        # (eviction, or close() after its grace period) cancels the task: it ends normally,
        # since asyncio's done-callback for connection handlers cannot take a cancelled one.
        except (OSError, TimeoutError, h11.ProtocolError, asyncio.CancelledError):
            pass
        self._connections.pop(connection, None)
        if graceful:
            with contextlib.suppress(asyncio.CancelledError):
                await self._close_gracefully(reader, writer)
        writer.transport.abort()  # a no-op after a graceful close

    async def _start_tls(self, writer: asyncio.StreamWriter, context: ssl.SSLContext) -> None:
        seconds = self.limits.head_seconds
        async with asyncio.timeout(seconds):
            await writer.start_tls(context, ssl_handshake_timeout=seconds)
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)

    async def _serve(
        self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Requests one at a time until the client is done; True to close gracefully."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_bytes)
        while True:
            try:
                request = await self._next_request(conn, reader)
            except h11.RemoteProtocolError as error:
                if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                    return False
                status = error.error_status_hint
                reply = Response(status, _STATUS_TEXT.get(status, b"bad request\n"))
                await self._write(writer, self._encode(conn, "GET", reply, close=True))
                return True
            if request is None:
                return False
            body_unread = conn.their_state is not h11.DONE
            try:
                response = await self._handler(request)
            # The edge between the server and what it serves: a bug answers 500 and is logged
            # (with its traceback, once per TROUBLE_LOG_SECONDS), it never ends the server.
            except Exception:
                self._handler_trouble.happened(exc_info=True)
                response = Response(500, b"internal error\n")
            await self._write(writer, self._encode(conn, request.method, response, body_unread))
            connection.answered = True
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return True
            conn.start_next_cycle()
            # Pipelined requests already read are served next without waiting for the socket:
            # yield here, so one connection never holds the loop for more than one request.
            await asyncio.sleep(0)

    async def _next_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> Request | None:
        """The next request's head (its body, if any, is never read), None at EOF.

        `idle_seconds` to start it, and `head_seconds` from its first byte to its end.
        """
        loop = asyncio.get_running_loop()
        started = bool(conn.trailing_data[0])  # part of a pipelined head is already here
        idle = self.limits.head_seconds if started else self.limits.idle_seconds
        async with asyncio.timeout(idle) as deadline:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(READ_CHUNK)
                    if data and not started:
                        started = True
                        head_deadline = loop.time() + self.limits.head_seconds
                        current = deadline.when()
                        if current is None or head_deadline < current:
                            deadline.reschedule(head_deadline)
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    # Look once more without reading: EndOfMessage when it has no body; else
                    # their_state stays SEND_BODY, and the connection closes after the answer.
                    conn.next_event()
                    return Request(
                        method=event.method.decode("ascii", "replace"),
                        target=event.target.decode("latin-1"),
                        headers={
                            name.decode("latin-1").lower(): value.decode("latin-1")
                            for name, value in event.headers
                        },
                    )
                else:  # ConnectionClosed; PAUSED cannot come before our response
                    return None

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Queue a response and wait, at most `write_seconds`, until the client takes it."""
        writer.write(data)
        async with asyncio.timeout(self.limits.write_seconds):
            await writer.drain()

    @staticmethod
    def _encode(conn: h11.Connection, method: str, response: Response, close: bool) -> bytes:
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        if close:
            headers.append(("Connection", "close"))
        data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
        if method != "HEAD":
            data += conn.send(h11.Data(data=response.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        return data

    async def _close_gracefully(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Close after a last response. On TCP, half-close first and read and drop what the
        client still sends for a moment: closing a socket with unread input resets it, and
        the client would lose the response (the "lingering close" of Apache and nginx). TLS
        cannot half-close: its close_notify ends the stream for the client instead."""
        with contextlib.suppress(OSError, TimeoutError):
            if writer.can_write_eof():
                writer.write_eof()
                async with asyncio.timeout(LINGER_SECONDS):
                    dropped = 0
                    while dropped < LINGER_BYTES:
                        data = await reader.read(READ_CHUNK)
                        if not data:
                            break
                        dropped += len(data)
            writer.close()
            async with asyncio.timeout(self.limits.write_seconds):
                await writer.wait_closed()


# -- what the agent serves ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Rendered:
    exposition: Exposition
    at: float
    state: tuple[object, ...]


class RenderedMetrics:
    """/metrics bodies, rendered at most once per RENDER_FRESH_SECONDS for each content type and
    encoding, and again as soon as a probe result or a reload changes what the collector holds.

    The process metrics (CPU, memory) are at most that old; everything the probes found is
    current. Without this, every pipelined gzip scrape rendered and compressed the whole
    exposition on the event loop (2-10 ms each), delaying probes and /healthz.
    """

    def __init__(self, agent: Agent, clock: Callable[[], float] = time.monotonic) -> None:
        self._agent = agent
        self._clock = clock
        self._cache: dict[tuple[str, bool], _Rendered] = {}
        self.renders = 0

    def _state(self) -> tuple[object, ...]:
        """What the collector renders from: the report objects themselves (held, so compared by
        identity), the reload flag and the node's problems. A new report, a reload or a change
        of the node's problems makes a new state."""
        collector = self._agent.collector
        reports: tuple[RegistryReport, ...] = tuple(collector.reports().values())
        return (*reports, collector.config_reload_success, collector.node_problems)

    @staticmethod
    def _same(left: tuple[object, ...], right: tuple[object, ...]) -> bool:
        return len(left) == len(right) and all(a is b for a, b in zip(left, right, strict=True))

    def get(self, accept: str, accept_encoding: str) -> Exposition:
        _, content_type = choose_encoder(accept)
        key = (content_type, gzip_accepted(accept_encoding))
        now = self._clock()
        state = self._state()
        cached = self._cache.get(key)
        if (
            cached is not None
            and now - cached.at < RENDER_FRESH_SECONDS
            and self._same(cached.state, state)
        ):
            return cached.exposition
        exposition = render(self._agent.metrics, accept, accept_encoding)
        self.renders += 1
        if len(self._cache) >= 8:  # a handful of content types exist; never grow with input
            self._cache.clear()
        self._cache[key] = _Rendered(exposition, now, state)
        return exposition


class AgentApp:
    """The agent's three URLs; anything else is 404. `auth` (replaced on a web config reload)
    guards /metrics; /healthz and /readyz answer anyone (see probe.agent.webconfig)."""

    def __init__(self, agent: Agent, auth: BasicAuth | None = None) -> None:
        self.agent = agent
        self.auth = auth
        self.metrics = RenderedMetrics(agent)

    async def __call__(self, request: Request) -> Response:
        path = request.path
        if path not in ("/metrics", "/healthz", "/readyz"):
            return Response(404, b"not found: try /metrics, /healthz or /readyz\n")
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
        if path == "/healthz":
            if self.agent.healthy():
                return Response(200, b"ok\n")
            return Response(503, b"the probe loop has not run recently\n")
        if path == "/readyz":
            if self.agent.ready:
                return Response(200, b"ready\n")
            return Response(503, b"the first probe cycle has not completed\n")
        auth = self.auth
        if auth is not None and not await auth.allows(request.headers.get("authorization")):
            return Response(401, b"unauthorized\n", headers=(_WWW_AUTHENTICATE,))
        exposition = self.metrics.get(
            request.headers.get("accept", ""), request.headers.get("accept-encoding", "")
        )
        encoding = exposition.content_encoding
        return Response(
            200,
            exposition.body,
            exposition.content_type,
            (("Content-Encoding", encoding),) if encoding else (),
        )
