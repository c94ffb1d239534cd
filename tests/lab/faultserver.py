"""Servers with one fault each ("personalities"), for the lab's "net" namespace.

Run as a script: `python faultserver.py CONFIG.json`. CONFIG is a list of listeners:

    [{"address": "198.18.1.30", "port": 443, "personality": "captive",
      "cert": "/tmp/.../captive.crt", "key": "/tmp/.../captive.key"},
     {"address": "198.18.1.26", "port": 5000, "personality": "registry", "tls": false},
     {"address": "2001:2:0:1::70", "port": 443, "personality": "registry", ...}, ...]

Personalities (what a client sees after TCP connects; the probe's reason after the arrow):

- `registry`: TLS, `GET /v2/` answers 200 `{}` with Docker-Distribution-Api-Version → ok
  (or the reason of the certificate it was given).
- `token-realm`: TLS, 401 with `WWW-Authenticate: Bearer realm=...,scope="...pull,push"` → ok,
  and the realm host becomes an endpoint.
- `tls-silent`: plain TCP, never sends a byte → tls_handshake_timeout.
- `tls-garbage`: reads the ClientHello, answers plain-text HTTP, closes → tls_handshake_failed.
- `tls-alert`: reads the ClientHello, answers a handshake_failure alert → tls_handshake_failed.
- `http-silent`: TLS completes, the request is never answered → http_timeout.
- `captive`: TLS, 200 text/html portal page, no registry header → not_a_registry.
- `status-503`: TLS, 503 text/plain, no registry header → http_unexpected_status.
- `status-503-registry`: TLS, 503 with Docker-Distribution-Api-Version → http_unexpected_status.
- `proxy-garbage`: a "proxy" that answers CONNECT with bytes that are not HTTP and no line end,
  then holds the connection open → proxy_denied, at once (not after the deadline).
- `proxy-endless-headers`: a "proxy" that answers CONNECT `200 Connection established`, then
  header lines without end → proxy_denied (a 200 whose head never ends opens no tunnel).
- `realm-rotating`: TLS, a registry's 401 whose Bearer realm names a new host on every request
  (`https://r1.realm.lab.test/token`, `r2`, ...; none resolves) → ok for the registry, and each
  probe finds a token realm endpoint it never saw before, failing dns_nxdomain: a registry that
  would grow the agent's series without end if it remembered every endpoint.

Every connection is bounded (30 s), so a client that never closes cannot keep the server busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable

HOLD_SECONDS = 30
API_VERSION = ("Docker-Distribution-Api-Version", "registry/2.0")
BEARER = (
    'Bearer realm="https://auth.lab.test/token",service="registry.lab.test",'
    'scope="repository:a/b:pull,push"'
)
UNAUTHORIZED = (
    b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}'
)
PORTAL = b"<!DOCTYPE html><html><head><title>Hotel WiFi</title></head><body>Log in</body></html>"
# A TLS 1.0-framed alert record: level fatal (2), description handshake_failure (40).
TLS_ALERT = bytes([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28])

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The request head, up to the blank line (the lab's clients send no body with GET)."""
    return await reader.readuntil(b"\r\n\r\n")


def response(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + body


def answering(status: str, headers: list[tuple[str, str]], body: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(status, headers, body))
        await writer.drain()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Never write; return when the client gives up (or the hold time ends)."""
    while await reader.read(4096):
        pass


def after_hello(reply: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(reply)
        await writer.drain()

    return handle


async def garbage_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"\x00\x05garbage, not an HTTP answer")
    await writer.drain()
    await silent(reader, writer)


async def endless_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 Connection established\r\n")
    for line in range(1_000_000):  # ends with the hold time, or when the client goes away
        writer.write(f"X-Filler-{line}: {'x' * 64}\r\n".encode())
        await writer.drain()


def rotating_realm() -> Handler:
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await read_request(reader)
        served += 1
        challenge = (
            f'Bearer realm="https://r{served}.realm.lab.test/token",service="rotating.lab.test"'
        )
        headers = [JSON, API_VERSION, ("WWW-Authenticate", challenge)]
        writer.write(response("401 Unauthorized", headers, UNAUTHORIZED))
        await writer.drain()

    return handle


JSON = ("Content-Type", "application/json; charset=utf-8")
PERSONALITIES: dict[str, tuple[bool, Handler]] = {
    # name: (speaks TLS, handler after the handshake)
    "registry": (True, answering("200 OK", [JSON, API_VERSION], b"{}")),
    "token-realm": (
        True,
        answering(
            "401 Unauthorized", [JSON, API_VERSION, ("WWW-Authenticate", BEARER)], UNAUTHORIZED
        ),
    ),
    "tls-silent": (False, silent),
    "tls-garbage": (False, after_hello(response("400 Bad Request", [], b"not TLS\n"))),
    "tls-alert": (False, after_hello(TLS_ALERT)),
    "http-silent": (True, silent),
    "captive": (True, answering("200 OK", [("Content-Type", "text/html")], PORTAL)),
    "status-503": (
        True,
        answering("503 Service Unavailable", [("Content-Type", "text/plain")], b"down\n"),
    ),
    "status-503-registry": (
        True,
        answering("503 Service Unavailable", [JSON, API_VERSION], b'{"errors":[]}'),
    ),
    "proxy-garbage": (False, garbage_connect),
    "proxy-endless-headers": (False, endless_headers),
    "realm-rotating": (True, rotating_realm()),
}


def bounded(handler: Handler) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HOLD_SECONDS):
                await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1):
                    await writer.wait_closed()

    return handle


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def main(config_path: str) -> None:
    with open(config_path, encoding="utf-8") as f:
        listeners = json.load(f)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = []
    for listener in listeners:
        speaks_tls, handler = PERSONALITIES[listener["personality"]]
        # "tls": false serves a TLS personality as plain HTTP (a `http://host:port` registry).
        if speaks_tls and listener.get("tls", True):
            context = tls_context(listener["cert"], listener["key"])
        else:
            context = None
        servers.append(
            await asyncio.start_server(
                bounded(handler),
                listener["address"],
                listener["port"],
                ssl=context,
                ssl_handshake_timeout=10 if context else None,
            )
        )
    print(f"faultserver: {len(servers)} listeners", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
