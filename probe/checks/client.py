"""HTTP requests the way the node makes them, for checks that need more than `GET /v2/`.

The ratelimit check asks a token service and sends a `HEAD` to Docker Hub; each request goes
through the same phases as the connectivity checks (the node's resolvers and hosts file, one
connection per address tried in the answer's order, the node's trust), so a failure on the way
carries the same reasons. Through the CRI runtime's proxy the request goes as Go sends it: a
tunnel for https (CONNECT, or SOCKS), absolute form with the proxy's credentials for http through
an HTTP proxy. Deadlines come from the caller's `asyncio.timeout()`.

Every failure before an HTTP answer is a `FetchError` carrying one reason: a proxy, DNS, TCP or
TLS failure has the reason its check gives, a broken answer is `not_a_registry`.
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from probe.checks import Endpoint, Outcome, Probe
from probe.checks import dns as dns_check
from probe.checks import proxy as proxy_check
from probe.checks import tcp as tcp_check
from probe.checks import tls as tls_check
from probe.checks.http import ExchangeError, Response, exchange
from probe.display import describe_input
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
        """One request; raises FetchError (with the reason a check would give) for every
        failure before an HTTP answer."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port, parts = None, parts._replace(scheme="")  # an unusable port: refused below
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(Reason.HTTP_UNEXPECTED_STATUS, f"cannot request {describe_input(url)}")
        tls = parts.scheme == "https"
        port = port or (443 if tls else 80)
        endpoint = Endpoint(parts.hostname, port, "auth", tls=tls)
        # The trust context goes on the probe even for http: an https proxy is verified with it.
        probe = Probe(endpoint=endpoint, resolver=self.resolver, ssl_context=self.ssl_context)
        proxy = self.routes.proxy_for(parts.scheme, endpoint.host, port) if self.routes else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if proxy is not None:
            probe.proxy = proxy
            try:
                _raise_for(await proxy_check.open_tunnel(probe))
                if probe.connection is None:
                    raise FetchError(
                        Reason.PROXY_UNREACHABLE,
                        f"{method} {url}: no tunnel through {proxy.redacted} "
                        "(this proxy is not probed)",
                    )
                extra = list(headers or [])
                if not tls and proxy_check.sends_absolute_form(proxy):
                    # Go asks an HTTP proxy for a plain-http URL in absolute form, with the
                    # proxy's credentials (transport.go: pconn.isProxy, mutateHeaderFunc).
                    target = f"http://{endpoint.host_header}{target}"
                    credentials = proxy_check.proxy_authorization(proxy)
                    if credentials is not None:
                        extra.append(("Proxy-Authorization", credentials))
                return await self._over(probe, method, url, target, extra, content)
            finally:
                await _close(probe)
        resolved = await dns_check.run(probe)
        _raise_for(resolved)
        last: Outcome | None = None
        for address in resolved.addresses:  # the order Go's dialer tries them
            probe.address, probe.connection = address, None
            connected = await tcp_check.run(probe)
            if not connected.ok or probe.connection is None:
                last = connected
                continue
            try:
                return await self._over(probe, method, url, target, headers, content)
            finally:
                await _close(probe)
        if last is None:
            raise FetchError(Reason.DNS_NO_ANSWER, f"{method} {url}: no address to connect to")
        _raise_for(last)
        raise FetchError(Reason.TCP_UNREACHABLE, f"{method} {url}: no connection")

    @staticmethod
    async def _over(
        probe: Probe,
        method: str,
        url: str,
        target: str,
        headers: list[tuple[str, str]] | None,
        content: bytes,
    ) -> Response:
        """TLS (when https) and the request, on the connection the probe holds."""
        if probe.endpoint.tls:
            _raise_for(await tls_check.run(probe))
        try:
            return await exchange(probe, method, target, headers, content)
        except (ExchangeError, OSError) as error:
            raise FetchError(
                Reason.NOT_A_REGISTRY,
                f"{method} {url}: no valid HTTP answer ({type(error).__name__})",
            ) from None


async def _close(probe: Probe) -> None:
    if probe.connection is not None:
        with contextlib.suppress(Exception):
            await probe.connection.aclose()


def _raise_for(outcome: Outcome) -> None:
    if outcome.reason is not None:
        raise FetchError(outcome.reason, outcome.detail)
