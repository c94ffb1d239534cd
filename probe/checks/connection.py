"""One connection to one address, carrying the tcp, tls and http phases as a pull does.

TLS runs over memory BIOs rather than `loop.start_tls` so the engine keeps the `SSLObject`:
after a failed verification the served chain is still readable, and a certificate's expiry is
reported even when the node does not trust it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import httpcore

_READ_SIZE = 65536


class Connection:
    """A TCP stream to one address, optionally wrapped in TLS."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()

    @classmethod
    async def open(cls, address: str, port: int) -> Connection:
        """Connect to an IP address; raises OSError (or TimeoutError from the caller's deadline)."""
        reader, writer = await asyncio.open_connection(address, port)
        return cls(reader, writer)

    @property
    def tls(self) -> ssl.SSLObject | None:
        return self._tls

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> ssl.SSLObject:
        """Run the TLS handshake; the SSLObject stays readable when it fails (see `tls`)."""
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
                continue
            except ssl.SSLError:
                # Send our alert, so the server logs why, then let the caller classify.
                with contextlib.suppress(OSError):
                    await self._flush()
                raise
            await self._flush()
            return self._tls

    async def write(self, data: bytes) -> None:
        if self._tls is None:
            self._writer.write(data)
        else:
            self._tls.write(data)
            self._writer.write(self._outgoing.read())
        await self._writer.drain()

    async def read(self, max_bytes: int = _READ_SIZE) -> bytes:
        """Up to max_bytes of application data; b"" at the end of the stream."""
        if self._tls is None:
            return await self._reader.read(max_bytes)
        while True:
            try:
                return self._tls.read(max_bytes)
            except ssl.SSLWantReadError:
                if not await self._fill():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def read_head(self, limit: int = 16384) -> bytes:
        """An HTTP response head (through the blank line) before TLS, leaving the rest unread.

        Used for a proxy's answer to CONNECT: whatever follows belongs to the tunnel.
        """
        try:
            return await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            return error.partial
        except asyncio.LimitOverrunError:
            return await self._reader.read(limit)

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def _fill(self) -> bool:
        data = await self._reader.read(_READ_SIZE)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True


# httpcore's interface has `timeout=` parameters; deadlines here come from asyncio.timeout().
class ConnectionStream(httpcore.AsyncNetworkStream):
    """Lets httpcore speak HTTP/1.1 over a connection the engine opened and timed itself.

    Deadlines come from the caller's `asyncio.timeout()`, so httpcore's per-call timeouts are
    not used.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._connection.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._connection.write(buffer)

    async def aclose(self) -> None:
        await self._connection.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        raise NotImplementedError("TLS is started by the engine before HTTP")

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._connection.tls
        return None
