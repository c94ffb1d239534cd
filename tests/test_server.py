"""The agent's HTTP server in-process, with small limits so that timeouts take fractions of a
second: timeouts, head and body limits, pipelining, the connection table, handler bugs, and
the rendered /metrics cache (issue 11, item 4). The agent process under attack is in
test_server_hostile.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
import time
from collections.abc import AsyncIterator

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from metricsamples import sample
from test_agent import agent_for, eventually, report

from probe.agent.logs import setup_logging
from probe.agent.server import (
    PROTECTED_SECONDS,
    AgentApp,
    Handler,
    HttpServer,
    Limits,
    Request,
    Response,
)
from probe.reasons import Reason

DEADLINE = 10.0


async def _answer(request: Request) -> Response:
    if request.path == "/big":
        return Response(200, b"x" * (1 << 20))
    return Response(200, f"{request.method} {request.path}\n".encode())


@contextlib.asynccontextmanager
async def serving(
    limits: Limits, handler: Handler = _answer
) -> AsyncIterator[tuple[HttpServer, tuple[str, int]]]:
    server = HttpServer(handler, limits=limits)
    await server.start("127.0.0.1", 0)
    try:
        yield server, server.address
    finally:
        await server.close()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (what it sent is dropped)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                try:
                    if not await reader.read(65536):
                        return True
                except ConnectionError:
                    return True
    return False


def test_client_that_never_reads_is_dropped_after_the_write_timeout() -> None:
    """A client that pipelines requests for 1 MiB answers and never reads is disconnected once
    an answer waits longer than write_seconds."""

    async def scenario() -> None:
        limits = Limits(write_seconds=0.5)
        async with serving(limits) as (server, address):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(address)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
            await eventually(lambda: server.open_connections == 1, "connection open")
            started = time.monotonic()
            await eventually(lambda: server.open_connections == 0, "connection dropped")
            assert time.monotonic() - started < 2.0
            sock.close()

    asyncio.run(scenario())


def test_request_head_must_arrive_within_the_head_timeout() -> None:
    """A head trickled one byte per 0.1 s is cut off after head_seconds; an idle connection
    after idle_seconds; a prompt request on a fresh connection is answered."""

    async def scenario() -> None:
        limits = Limits(head_seconds=0.5, idle_seconds=1.0)
        async with serving(limits) as (_, address):
            reader, writer = await asyncio.open_connection(*address)
            started = time.monotonic()

            async def trickle() -> None:
                for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 50:
                    if writer.transport.is_closing() or reader.at_eof():
                        return
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.1)

            trickling = asyncio.create_task(trickle())
            assert await _closed_within(reader, 3.0)
            assert 0.4 < time.monotonic() - started < 1.5
            trickling.cancel()
            writer.close()

            idle_reader, idle_writer = await asyncio.open_connection(*address)
            started = time.monotonic()
            assert await _closed_within(idle_reader, 3.0)
            assert 0.9 < time.monotonic() - started < 2.0
            idle_writer.close()

    asyncio.run(scenario())


def test_a_pipelined_partial_head_must_end_within_the_head_timeout() -> None:
    """A request followed by the start of another that never ends: the first is answered, and
    the connection closed head_seconds later, not idle_seconds."""

    async def scenario() -> None:
        async with serving(Limits(head_seconds=0.5, idle_seconds=30.0)) as (_, address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nX-Slow: ")
            started = time.monotonic()
            async with asyncio.timeout(DEADLINE):
                answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 200 ") and b"GET /one" in answer
            assert time.monotonic() - started < 2.0
            writer.close()

    asyncio.run(scenario())


def test_oversized_request_head_gets_431_and_is_closed() -> None:
    """A head beyond max_head_bytes is answered 431 and its connection closed."""

    async def scenario() -> None:
        async with serving(Limits(max_head_bytes=8192)) as (_, address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
            async with asyncio.timeout(DEADLINE):
                answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 431 ")
            assert b"connection: close" in answer.lower()
            writer.close()

    asyncio.run(scenario())


def test_request_body_is_not_read() -> None:
    """A POST announcing a 100 MB body is answered at once, without reading the body, and its
    connection closed; the client sees the answer, not a reset."""

    async def scenario() -> None:
        agent = agent_for("a.example")
        async with serving(Limits(), AgentApp(agent)) as (_, address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
            writer.write(b"x" * 1000)
            async with asyncio.timeout(3.0):
                answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 405 ")
            assert b"connection: close" in answer.lower()
            writer.close()

    asyncio.run(scenario())


def test_pipelined_requests_are_answered_in_order() -> None:
    """Pipelining still works for a client that reads: each request answered, in order."""

    async def scenario() -> None:
        async with serving(Limits()) as (_, address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(
                b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                b"HEAD /two HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            async with asyncio.timeout(DEADLINE):
                answer = await reader.read()
            assert answer.count(b"HTTP/1.1 200 ") == 3
            assert answer.index(b"GET /one") < answer.index(b"GET /three")
            assert b"HEAD /two" not in answer  # HEAD: headers only
            writer.close()

    asyncio.run(scenario())


def test_a_full_connection_table_drops_the_oldest_connection_once_it_is_not_new() -> None:
    """With max_connections idle connections open, a newcomer is refused while they are new
    (unanswered, younger than PROTECTED_SECONDS); after that it is served and the oldest idle
    connection is the one closed."""

    async def scenario() -> None:
        async with serving(Limits(max_connections=4)) as (server, address):
            idle = [await asyncio.open_connection(*address) for _ in range(4)]
            await eventually(lambda: server.open_connections == 4, "four open")
            refused, refused_writer = await asyncio.open_connection(*address)
            assert await _closed_within(refused, 1.0)
            refused_writer.close()
            await asyncio.sleep(PROTECTED_SECONDS)
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"GET /new HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            async with asyncio.timeout(DEADLINE):
                assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
            assert await _closed_within(idle[0][0], 1.0)
            assert not await _closed_within(idle[1][0], 0.2)
            assert server.open_connections <= 4
            for _, idle_writer in idle:
                idle_writer.close()
            writer.close()

    asyncio.run(scenario())


def test_a_handler_bug_answers_500_and_is_logged_once() -> None:
    """A handler that raises answers 500; fifty such requests log one traceback, not fifty."""

    async def broken(request: Request) -> Response:
        raise RuntimeError("bug")

    stream = io.StringIO()
    setup_logging("text", stream=stream, level=logging.INFO)

    async def scenario() -> None:
        async with (
            serving(Limits(), broken) as (_, address),
            httpx.AsyncClient(trust_env=False, timeout=DEADLINE) as http,
        ):
            for _ in range(50):
                assert (await http.get(f"http://{address[0]}:{address[1]}/")).status_code == 500

    asyncio.run(scenario())
    assert stream.getvalue().count("Traceback") == 1
    assert stream.getvalue().count("internal error serving a request") == 1


# -- the rendered /metrics cache ---------------------------------------------------------------


def test_metrics_are_rendered_once_per_second_and_again_after_a_probe() -> None:
    """Fifty scrapes in a row render once per content type and encoding; a new probe result
    is shown on the very next scrape."""

    async def scenario() -> None:
        agent = agent_for("scripted.example")
        app = AgentApp(agent)
        agent.collector.record(report("scripted.example"))
        for _ in range(50):
            plain = await app(Request("GET", "/metrics", {}))
            zipped = await app(Request("GET", "/metrics", {"accept-encoding": "gzip"}))
        assert app.metrics.renders == 2
        assert sample(plain.body.decode(), "registry_probe_success", check="tcp") == 1
        assert dict(zipped.headers)["Content-Encoding"] == "gzip"

        agent.collector.record(report("scripted.example", Reason.TCP_REFUSED))
        text = (await app(Request("GET", "/metrics", {}))).body.decode()
        assert sample(text, "registry_probe_success", check="tcp") == 0
        assert app.metrics.renders == 3

    asyncio.run(scenario())


# -- what the network sends, fuzzed ----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(accept=st.text(max_size=200), accept_encoding=st.text(max_size=200))
def test_any_accept_headers_get_metrics(accept: str, accept_encoding: str) -> None:
    """Whatever Accept and Accept-Encoding say, /metrics answers 200 with an exposition."""
    agent = agent_for("a.example")
    app = AgentApp(agent)
    headers = {"accept": accept, "accept-encoding": accept_encoding}
    response = asyncio.run(app(Request("GET", "/metrics", headers)))
    assert response.status == 200
    assert response.body


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=600))
def test_any_bytes_get_an_answer_or_a_close_and_the_server_goes_on(data: bytes) -> None:
    """Arbitrary bytes on a connection end in an answer or a close within the timeouts, never
    a handler crash; the next client is served."""

    async def scenario() -> None:
        limits = Limits(head_seconds=0.1, idle_seconds=0.1)
        async with serving(limits) as (server, address):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(data)
            assert await _closed_within(reader, 2.0)
            writer.close()
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            async with asyncio.timeout(DEADLINE):
                assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
            writer.close()
            assert server.open_connections <= 1

    asyncio.run(scenario())
