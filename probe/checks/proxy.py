"""The `proxy` check: reach an endpoint through the runtime's proxy, as Go's transport does.

For an https endpoint Go resolves the proxy's host with the node's resolvers, dials its
addresses in order, sends `CONNECT host:port` (with `Proxy-Authorization` when the proxy URL
carries credentials) and runs TLS to the registry inside the tunnel. The words follow Go's
errors: `proxyconnect tcp: ...` when the proxy cannot be reached, the proxy's status otherwise.
A plain-http endpoint is asked through the proxy in absolute form by the http check, so here
only the connection to the proxy is made.
"""

from __future__ import annotations

import time
from urllib.parse import unquote

from probe.checks import USER_AGENT, Endpoint, Outcome, Probe
from probe.checks import dns as dns_check
from probe.checks import tcp as tcp_check
from probe.checks.auth import basic_authorization
from probe.node.goproxy import ProxyURL
from probe.reasons import Reason

_TUNNELLED = frozenset({"http"})  # proxy schemes this check can speak (Go also has https, socks5)


def proxy_authorization(proxy: ProxyURL) -> str | None:
    """The Basic credentials Go sends to a proxy whose URL has user info, or None."""
    if proxy.username is None:
        return None
    return basic_authorization(unquote(proxy.username), unquote(proxy.password or ""))


async def run(probe: Probe) -> Outcome:
    proxy = probe.proxy
    assert proxy is not None, "proxy runs only on a proxied endpoint"  # noqa: S101 - engine invariant
    shown = proxy.redacted
    if proxy.scheme not in _TUNNELLED:
        return Outcome(
            detail=f"route through {shown}: {proxy.scheme} proxies are not probed yet, "
            "only the route is reported",
        )
    address = proxy.address
    if address is None:
        return Outcome.failed(Reason.PROXY_UNREACHABLE, f"proxy {shown} has no usable host:port")
    host, port = address
    started = time.perf_counter()
    via = Probe(endpoint=Endpoint(host, port, "proxy", tls=False), resolver=probe.resolver)
    resolved = await dns_check.run(via)
    resolve = time.perf_counter() - started
    if not resolved.ok:
        return Outcome.failed(
            Reason.PROXY_UNREACHABLE,
            f"proxyconnect tcp: {resolved.detail} (proxy {shown})",
            phases={"resolve": resolve},
        )
    failures: list[str] = []
    connect_started = time.perf_counter()
    for proxy_address in resolved.addresses:  # in the answer's order, as Go's dialer tries them
        via.address = proxy_address
        connected = await tcp_check.run(via)
        if connected.ok:
            break
        failures.append(connected.detail)
    else:
        return Outcome.failed(
            Reason.PROXY_UNREACHABLE,
            f"proxyconnect tcp: {'; '.join(failures)} (proxy {shown})",
            phases={"resolve": resolve, "connect": time.perf_counter() - connect_started},
        )
    probe.connection = via.connection
    if not probe.endpoint.tls:
        phases = {"resolve": resolve, "connect": time.perf_counter() - connect_started}
        return Outcome(detail=f"connected to proxy {shown}", phases=phases)
    return await _connect_tunnel(probe, proxy, resolve, connect_started)


async def _connect_tunnel(
    probe: Probe, proxy: ProxyURL, resolve: float, connect_started: float
) -> Outcome:
    connection, endpoint, shown = probe.connection, probe.endpoint, proxy.redacted
    assert connection is not None  # noqa: S101 - connected above
    authority = endpoint.name if ":" not in endpoint.host else f"[{endpoint.host}]:{endpoint.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", f"User-Agent: {USER_AGENT}"]
    credentials = proxy_authorization(proxy)
    if credentials is not None:
        lines.append(f"Proxy-Authorization: {credentials}")
    await connection.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head = await connection.read_head()
    phases = {"resolve": resolve, "connect": time.perf_counter() - connect_started}
    status, phrase = _status(head)
    if status is None:
        return Outcome.failed(
            Reason.PROXY_DENIED,
            f"proxy {shown} gave no HTTP answer to CONNECT {authority}",
            phases=phases,
        )
    answer = f"{status} {phrase}".strip()
    if 200 <= status < 300:
        return Outcome(detail=f"CONNECT {authority} via {shown}: {answer}", phases=phases)
    # 407 is the standard answer; some proxies (tinyproxy) answer 401 to wrong credentials.
    if status == 407 or (status == 401 and credentials is not None):
        sent = "rejected the credentials in the proxy URL" if credentials else "wants credentials"
        return Outcome.failed(
            Reason.PROXY_AUTH_REQUIRED,
            f"proxy {shown} answered CONNECT {authority} with {answer}: it {sent}",
            phases=phases,
        )
    return Outcome.failed(
        Reason.PROXY_DENIED,
        f"proxy {shown} refused CONNECT {authority}: {answer}",
        phases=phases,
    )


def _status(head: bytes) -> tuple[int | None, str]:
    """Status code and reason phrase of a response head, (None, "") when it is not HTTP."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None, ""
    phrase = "".join(ch for ch in (parts[2] if len(parts) > 2 else "") if ch.isprintable())
    return int(parts[1]), phrase[:80]
