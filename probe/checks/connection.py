"""One connection to one address, carrying the tcp, tls and http phases as a pull does.

TLS runs over memory BIOs rather than `loop.start_tls` so the engine keeps the `SSLObject`:
after a failed verification the served chain is still readable, and a certificate's expiry is
reported even when the node does not trust it.

TLS layers stack: through an `https://` proxy the first layer is the proxy's, the CONNECT
request travels inside it, and the registry's TLS runs inside that tunnel (TLS in TLS, as Go's
`persistConn.addTLS` does for an https proxy). Each layer reads and writes the application data
of the layer below; `tls` is always the innermost one, the registry's once it is started.

    depth 0   the TCP stream
    depth 1   TLS to the proxy (https proxy) or to the registry
    depth 2   TLS to the registry inside the proxy's TLS
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass

_READ_SIZE = 65536


@dataclass(frozen=True)
class _TLSLayer:
    tls: ssl.SSLObject
    incoming: ssl.MemoryBIO  # what the layer below delivered, for this layer to decrypt
    outgoing: ssl.MemoryBIO  # what this layer encrypted, for the layer below to send


class Connection:
    """A TCP stream to one address, optionally wrapped in one or more TLS layers.

    The socket is used as it is, through the event loop's `sock_*` calls: no transport, protocol
    or stream buffers in between (a probe makes one short exchange; those layers cost more CPU
    than the exchange itself).
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._layers: list[_TLSLayer] = []
        # Bytes read past what a caller needed (a proxy's answer), per depth: read again first.
        self._unread: dict[int, bytes] = {}
        # What a timeout interrupted: a TLS handshake, a proxy deciding on a tunnel, or an HTTP
        # answer whose headers came (its status) and whose body was still arriving.
        self.handshaking = False
        self.tunnel_requested = False
        self.answered: int | None = None
        self.body_received = 0

    @property
    def peer(self) -> str:
        """The remote address as Go's `RemoteAddr().String()` shows it: `ip:port`, IPv6 in
        brackets."""
        try:
            peer = self._sock.getpeername()
        except OSError:
            return "?"
        if not isinstance(peer, tuple) or len(peer) < 2:
            return "?"
        host, port = str(peer[0]), peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @classmethod
    async def open(cls, address: str, port: int) -> Connection:
        """Connect to an IP address; raises OSError (or TimeoutError from the caller's deadline)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    @property
    def tls(self) -> ssl.SSLObject | None:
        """The innermost TLS layer (the registry's once started), None on a plain stream."""
        return self._layers[-1].tls if self._layers else None

    @property
    def tls_layers(self) -> int:
        return len(self._layers)

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> ssl.SSLObject:
        """Run a TLS handshake over what the connection carries now (the TCP stream, or the
        application data of the TLS layer below); the SSLObject stays readable when it fails
        (see `tls`)."""
        depth = len(self._layers)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        layer = _TLSLayer(
            context.wrap_bio(incoming, outgoing, server_hostname=server_hostname),
            incoming,
            outgoing,
        )
        self._layers.append(layer)
        self.handshaking = True
        try:
            while True:
                try:
                    layer.tls.do_handshake()
                except ssl.SSLWantReadError:
                    await self._flush(depth, layer)
                    data = await self._read_at(depth, _READ_SIZE)
                    if data:
                        layer.incoming.write(data)
                    else:
                        layer.incoming.write_eof()
                    continue
                except ssl.SSLError:
                    # Send our alert, so the server logs why, then let the caller classify.
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await self._flush(depth, layer)
                    raise
                # TLS 1.3's last handshake message (the client's Finished) stays in the layer's
                # outgoing buffer and leaves with the first request: one send, as a pull's
                # first write carries it. Anything that reads or closes first sends it then.
                return layer.tls
        finally:
            self.handshaking = False

    async def write(self, data: bytes) -> None:
        """Application data, through every TLS layer."""
        await self._write_at(len(self._layers), data)

    async def read(self, max_bytes: int = _READ_SIZE) -> bytes:
        """Up to max_bytes of application data; b"" at the end of the stream."""
        return await self._read_at(len(self._layers), max_bytes)

    async def read_exactly(self, count: int) -> bytes:
        """`count` bytes of application data, fewer only when the stream ends first."""
        data = b""
        while len(data) < count:
            chunk = await self.read(count - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def unread(self, data: bytes) -> None:
        """Give back bytes read past an answer (they belong to the tunnel): read them first."""
        if data:
            depth = len(self._layers)
            self._unread[depth] = data + self._unread.get(depth, b"")

    async def aclose(self) -> None:
        """Send what a handshake left to send (the server would log a broken handshake
        otherwise), then close."""
        with contextlib.suppress(OSError, ssl.SSLError):
            for depth, layer in enumerate(self._layers):
                if layer.outgoing.pending:
                    async with asyncio.timeout(1.0):
                        await self._flush(depth, layer)
        self._sock.close()

    async def _write_at(self, depth: int, data: bytes) -> None:
        if depth == 0:
            await self._loop.sock_sendall(self._sock, data)
            return
        layer = self._layers[depth - 1]
        layer.tls.write(data)
        await self._flush(depth - 1, layer)

    async def _read_at(self, depth: int, max_bytes: int) -> bytes:
        pending = self._unread.pop(depth, b"")
        if pending:
            if len(pending) > max_bytes:
                self._unread[depth] = pending[max_bytes:]
            return pending[:max_bytes]
        if depth == 0:
            return await self._loop.sock_recv(self._sock, max_bytes)
        layer = self._layers[depth - 1]
        await self._flush(depth - 1, layer)  # nothing left behind before waiting for an answer
        while True:
            try:
                return layer.tls.read(max_bytes)
            except ssl.SSLWantReadError:
                data = await self._read_at(depth - 1, _READ_SIZE)
                if not data:
                    layer.incoming.write_eof()
                    with contextlib.suppress(ssl.SSLError):
                        return layer.tls.read(max_bytes)
                    return b""
                layer.incoming.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def _flush(self, below: int, layer: _TLSLayer) -> None:
        """What `layer` has to send, written as the application data of depth `below`."""
        data = layer.outgoing.read()
        if data:
            await self._write_at(below, data)
