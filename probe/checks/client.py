"""HTTP requests the way the node makes them, for checks that need more than `GET /v2/`.

The ratelimit check asks a token service and sends a `HEAD` to Docker Hub; each request goes
through the same phases as the connectivity checks (the node's resolvers and hosts file, one
connection per address tried in the answer's order, the node's trust), so a failure on the way
carries the same reasons. Through the CRI runtime's proxy the request goes as Go sends it: a
tunnel for https (CONNECT, or SOCKS), absolute form with the proxy's credentials for http through
an HTTP proxy. Deadlines come from the caller's `asyncio.timeout()`.

Every failure before an HTTP answer is a `FetchError` carrying one reason: a proxy, DNS, TCP or
TLS failure has the reason its check gives, a broken answer is `not_a_registry`.

Credentials (a Basic `Authorization`, a Bearer token of an account, a refresh token in a body)
go only where a man in the middle cannot read them: over TLS that verified the server (never
with `skip_verify`: a CERT_NONE context proves nothing about who answers), or over plain HTTP
only when the registry itself is configured as plain HTTP (the runtime sends them so too). A
request marked `credentials=True` that breaks the rule is never sent: `CredentialsWithheld`.
Redirects are never followed: a 3xx is the answer (so credentials never go to another host).
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
from probe.display import SHOWN_MAX, clip, describe_input
from probe.node.resolver import NodeResolver
from probe.node.routes import NodeRoutes
from probe.reasons import Reason


class FetchError(Exception):
    """A request that failed before an HTTP answer, with the reason a check would give."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class CredentialsWithheld(Exception):
    """A request with credentials that would go over an unverified or clear-text connection:
    not sent. The detail says why and never holds a secret."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class NodeClient:
    """Requests from the node: its resolvers, its trust, its CRI runtime's proxies."""

    resolver: NodeResolver
    ssl_context: ssl.SSLContext
    routes: NodeRoutes | None = None  # the CRI runtime's proxies; None: always direct
    # The registry itself is configured as plain HTTP: its credentials go in the clear to it
    # and its realm, as the runtime sends them. False: credentials only over verified TLS.
    plain_http_credentials: bool = False

    def credentials_refused(self, url: str) -> str | None:
        """Why credentials may not be sent to `url` from this client, or None when they may."""
        parts = urlsplit(url)
        host = clip(parts.hostname or "?")
        if parts.scheme == "https":
            if tls_check.verifies(self.ssl_context):
                return None
            return f"the connection to {host} is not verified (skip_verify)"
        if parts.scheme == "http" and self.plain_http_credentials:
            return None
        return f"{host} would get them in clear text ({parts.scheme or 'no'} scheme)"

    async def request(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]] | None = None,
        content: bytes = b"",
        *,
        credentials: bool = False,
    ) -> Response:
        """One request; raises FetchError (with the reason a check would give) for every
        failure before an HTTP answer, and CredentialsWithheld, before connecting, for a request
        with `credentials` that may not go to `url` (`credentials_refused`)."""
        if credentials:
            refused = self.credentials_refused(url)
            if refused is not None:
                raise CredentialsWithheld(f"credentials not sent: {refused}")
        shown = clip(url, SHOWN_MAX)  # a realm is the registry's text: bounded in every detail
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
                        f"{method} {shown}: no tunnel through {proxy.redacted} "
                        "(this proxy is not probed)",
                    )
                extra = list(headers or [])
                if not tls and proxy_check.sends_absolute_form(proxy):
                    # Go asks an HTTP proxy for a plain-http URL in absolute form, with the
                    # proxy's credentials (transport.go: pconn.isProxy, mutateHeaderFunc).
                    target = f"http://{endpoint.host_header}{target}"
                    proxy_credentials = proxy_check.proxy_authorization(proxy)
                    if proxy_credentials is not None:
                        extra.append(("Proxy-Authorization", proxy_credentials))
                return await self._over(probe, method, shown, target, extra, content)
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
                return await self._over(probe, method, shown, target, headers, content)
            finally:
                await _close(probe)
        if last is None:
            raise FetchError(Reason.DNS_NO_ANSWER, f"{method} {shown}: no address to connect to")
        _raise_for(last)
        raise FetchError(Reason.TCP_UNREACHABLE, f"{method} {shown}: no connection")

    @staticmethod
    async def _over(
        probe: Probe,
        method: str,
        shown: str,
        target: str,
        headers: list[tuple[str, str]] | None,
        content: bytes,
    ) -> Response:
        """TLS (when https) and the request, on the connection the probe holds; `shown` is the
        URL as details quote it (clipped)."""
        if probe.endpoint.tls:
            _raise_for(await tls_check.run(probe))
        try:
            return await exchange(probe, method, target, headers, content)
        except (ExchangeError, OSError) as error:
            raise FetchError(
                Reason.NOT_A_REGISTRY,
                f"{method} {shown}: no valid HTTP answer ({type(error).__name__})",
            ) from None


async def _close(probe: Probe) -> None:
    if probe.connection is not None:
        with contextlib.suppress(Exception):
            await probe.connection.aclose()


def _raise_for(outcome: Outcome) -> None:
    if outcome.reason is not None:
        raise FetchError(outcome.reason, outcome.detail)
