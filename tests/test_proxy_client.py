"""Requests of the node client (token and rate-limit requests) through the runtime's proxy,
against real servers on loopback: an HTTPS proxy that tunnels to a TLS registry (TLS in TLS),
a plain HTTP proxy that records what it is asked, and a proxy port where nothing listens.
Every failure is a FetchError with a reason, never an assertion."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import MappingProxyType

import pytest
from lab.pki import CertificateAuthority

from probe.checks.client import FetchError, NodeClient
from probe.node.resolver import NodeResolver
from probe.node.routes import NodeRoutes
from probe.node.runtimes import RuntimeProxyConfig
from probe.reasons import Reason

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


def client(environment: dict[str, str], context: ssl.SSLContext) -> NodeClient:
    """A node client whose CRI runtime (containerd) runs with `environment`; `proxy.test` and
    `registry.test` are loopback in its hosts file."""
    config = RuntimeProxyConfig(
        runtime="containerd",
        unit="containerd.service",
        process_env=MappingProxyType(environment),
        environment=MappingProxyType(environment),
        sources=MappingProxyType({}),
        evidence=("test",),
    )
    routes = NodeRoutes(
        MappingProxyType({"containerd": config}),
        MappingProxyType({"containerd": config}),
        "containerd",
    )
    hosts = MappingProxyType({"proxy.test": ("127.0.0.1",), "registry.test": ("127.0.0.1",)})
    return NodeClient(NodeResolver(None, "no resolver in this test", hosts), context, routes)


def trusting(ca: CertificateAuthority) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca.pem.decode())
    return context


def server_context(ca: CertificateAuthority, directory: Path, name: str) -> ssl.SSLContext:
    files = ca.issue(directory, name, [name])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    return context


@contextlib.asynccontextmanager
async def serving(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A loopback server for the block; yields its port."""

    async def bounded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(bounded, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def tunnelling_to(port: int, seen: list[bytes]) -> Handler:
    """A proxy: records the request head, answers 200, then relays to 127.0.0.1:port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            sink.close()

        try:
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()

    return handle


async def answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(OK)
    await writer.drain()


def recording(seen: list[bytes]) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(OK)
        await writer.drain()

    return handle


def free_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_https_proxy_is_a_fetch_error_not_a_crash() -> None:
    """containerd's `HTTPS_PROXY=https://...` with the proxy down: proxy_unreachable (this was
    `AssertionError: tls runs after tcp`, exit 2 "internal error")."""
    ca = CertificateAuthority("test CA")
    node = client({"HTTPS_PROXY": f"https://proxy.test:{free_port()}"}, trusting(ca))
    with pytest.raises(FetchError) as raised:
        asyncio.run(node.request("HEAD", "https://registry.test/v2/"))
    assert raised.value.reason == Reason.PROXY_UNREACHABLE
    assert raised.value.detail.startswith("proxyconnect tcp: dial tcp 127.0.0.1:")


def test_request_goes_tls_in_tls_through_an_https_proxy(tmp_path: Path) -> None:
    """TLS to the proxy (its name verified), CONNECT inside, the registry's TLS inside the
    tunnel, and the answer read back through both layers."""
    ca = CertificateAuthority("test CA")
    seen: list[bytes] = []

    async def scenario() -> int:
        registry_tls = server_context(ca, tmp_path, "registry.test")
        proxy_tls = server_context(ca, tmp_path, "proxy.test")
        async with (
            serving(answering, registry_tls) as registry_port,
            serving(tunnelling_to(registry_port, seen), proxy_tls) as proxy_port,
        ):
            node = client({"HTTPS_PROXY": f"https://proxy.test:{proxy_port}"}, trusting(ca))
            response = await node.request("HEAD", f"https://registry.test:{registry_port}/v2/")
            return response.status

    assert asyncio.run(scenario()) == 200
    assert seen[0].startswith(b"CONNECT registry.test:")


def test_https_proxy_with_an_untrusted_certificate_is_a_tls_reason(tmp_path: Path) -> None:
    """The proxy's certificate from a CA the node lacks: tls_unknown_authority, naming it."""
    ca, other = CertificateAuthority("test CA"), CertificateAuthority("other CA")

    async def scenario() -> None:
        async with serving(answering, server_context(other, tmp_path, "proxy.test")) as port:
            node = client({"HTTPS_PROXY": f"https://proxy.test:{port}"}, trusting(ca))
            await node.request("HEAD", "https://registry.test/v2/")

    with pytest.raises(FetchError) as raised:
        asyncio.run(scenario())
    assert raised.value.reason == Reason.TLS_UNKNOWN_AUTHORITY
    assert raised.value.detail.startswith("proxyconnect tcp: proxy https://proxy.test:")


def test_http_url_is_asked_of_an_http_proxy_in_absolute_form_with_its_credentials() -> None:
    """Go asks an HTTP proxy for a plain-http URL as `GET http://host/path`, with
    Proxy-Authorization; not as a request to the registry itself."""
    ca = CertificateAuthority("test CA")
    seen: list[bytes] = []

    async def scenario() -> int:
        async with serving(recording(seen)) as port:
            proxy = f"http://user:secret@proxy.test:{port}"
            node = client({"HTTP_PROXY": proxy}, trusting(ca))
            response = await node.request("GET", "http://registry.test:5000/token?scope=x")
            return response.status

    assert asyncio.run(scenario()) == 200
    head = seen[0].decode()
    assert head.startswith("GET http://registry.test:5000/token?scope=x HTTP/1.1\r\n"), head
    assert "Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=" in head  # user:secret


def test_a_url_with_a_bad_port_is_a_fetch_error() -> None:
    """A realm URL with a port that is not a number fails as a FetchError, never a ValueError."""
    ca = CertificateAuthority("test CA")
    node = client({}, trusting(ca))
    with pytest.raises(FetchError) as raised:
        asyncio.run(node.request("GET", "https://registry.test:99999x/token"))
    assert raised.value.reason == Reason.HTTP_UNEXPECTED_STATUS
