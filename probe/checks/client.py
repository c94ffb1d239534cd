"""HTTP requests the way the node makes them, for checks that need more than `GET /v2/`.

The ratelimit check asks a token service and sends a `HEAD` to Docker Hub; each request goes
through the same phases as the connectivity checks (the node's resolvers and hosts file, one
connection per address tried in the answer's order, the node's trust), so a failure on the way
carries the same reasons. Deadlines come from the caller's `asyncio.timeout()`.
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore

from probe.checks import Endpoint, Outcome, Probe
from probe.checks import dns as dns_check
from probe.checks import proxy as proxy_check
from probe.checks import tcp as tcp_check
from probe.checks import tls as tls_check
from probe.checks.http import Response, exchange
from probe.node.resolver import NodeResolver
from probe.node.routes import NodeRoutes
from probe.reasons import Reason


class FetchError(Exception):
    """A request that failed before an HTTP answer, with the reason a check would give."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class NodeClient:
    """Requests from the node: its resolvers, its trust, its CRI runtime's proxies."""

    resolver: NodeResolver
    ssl_context: ssl.SSLContext
    routes: NodeRoutes | None = None  # the CRI runtime's proxies; None: always direct

    async def request(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]] | None = None,
        content: bytes = b"",
    ) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(Reason.HTTP_UNEXPECTED_STATUS, f"cannot request {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        endpoint = Endpoint(parts.hostname, port, "auth", tls=tls)
        probe = Probe(
            endpoint=endpoint,
            resolver=self.resolver,
            ssl_context=self.ssl_context if tls else None,
        )
        proxy = self.routes.proxy_for(parts.scheme, endpoint.host, port) if self.routes else None
        if proxy is not None:
            probe.proxy = proxy
            try:
                _raise_for(await proxy_check.run(probe))
                return await self._over(probe, method, url, headers, content)
            finally:
                await _close(probe)
        resolved = await dns_check.run(probe)
        _raise_for(resolved)
        last: Outcome | None = None
        for address in resolved.addresses:  # the order Go's dialer tries them
            probe.address, probe.connection = address, None
            connected = await tcp_check.run(probe)
            if not connected.ok:
                last = connected
                continue
            try:
                return await self._over(probe, method, url, headers, content)
            finally:
                await _close(probe)
        assert last is not None  # noqa: S101 - dns passed, so at least one address was tried
        _raise_for(last)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _over(
        probe: Probe, method: str, url: str, headers: list[tuple[str, str]] | None, content: bytes
    ) -> Response:
        """TLS (when https) and the request, on the connection the probe holds."""
        if probe.endpoint.tls:
            _raise_for(await tls_check.run(probe))
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            return await exchange(probe, method, target, headers, content)
        except (httpcore.ProtocolError, httpcore.NetworkError, OSError) as error:
            raise FetchError(
                Reason.NOT_A_REGISTRY,
                f"{method} {url}: no valid HTTP answer ({type(error).__name__})",
            ) from None


async def _close(probe: Probe) -> None:
    if probe.connection is not None:
        with contextlib.suppress(Exception):
            await probe.connection.aclose()


def _raise_for(outcome: Outcome) -> None:
    if not outcome.ok:
        assert outcome.reason is not None  # noqa: S101 - a failed outcome has a reason
        raise FetchError(outcome.reason, outcome.detail)
