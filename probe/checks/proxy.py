"""The `proxy` check: reach an endpoint through the runtime's proxy, as Go's transport does.

Go's net/http (`Transport.dialConn`, src/net/http/transport.go) speaks to a proxy by its URL's
scheme; this check does the same steps, on the same connection the later phases use:

- `http://` (and any scheme Go does not know, which it treats the same): resolve the proxy's
  host with the node's resolvers, dial its addresses in order, send `CONNECT host:port` with
  `Proxy-Authorization: Basic ...` when the URL has user info, read the answer. Only a `200`
  opens the tunnel (Go: `resp.StatusCode != 200` is an error whose text is the status).
- `https://`: the same, after a TLS handshake with the proxy, verified with the trust Go uses
  for the request (the transport's `TLSClientConfig`: for containerd, the registry's own, so
  its certs.d CA and `skip_verify` apply to the proxy too) against the proxy's host name
  (`addTLS(ctx, firstTLSHost)`). CONNECT travels inside that TLS, and the registry's TLS runs
  inside the tunnel: TLS in TLS.
- `socks5://` and `socks5h://`: "socks5" is treated the same as "socks5h" (Transport.Proxy's
  doc): the client never resolves the target, it sends the host name to the SOCKS server
  (RFC 1928, ATYP 3; an IP literal as ATYP 1 or 4). Go's bundled golang.org/x/net/internal/socks
  (socks_bundle.go) offers "no authentication" alone, or with user info in the URL "no
  authentication" and "username/password" (RFC 1929) and authenticates when the server picks
  the latter. Default port 1080 for both (transport.go `portMap`).

Where Go's words exist they are kept: `proxyconnect tcp: ...` when the proxy cannot be reached
(or its TLS fails), `socks connect tcp PROXY->TARGET: ...` for a SOCKS failure, the proxy's
status otherwise. A failure's reason, by what the proxy did:

    what happened                                           reason
    proxy name unresolved, TCP to it refused or dropped     proxy_unreachable
    https proxy: its certificate or TLS handshake fails     the tls check's tls_* reason
                                                            for it, the detail naming the proxy
    CONNECT answered 407 (or 401 to sent credentials)       proxy_auth_required
    CONNECT answered 5xx (squid's 503, tinyproxy's 500)     proxy_upstream_failed
    CONNECT answered 403 or any other status but 200        proxy_denied
    CONNECT answered with bytes that are not HTTP, a head   proxy_denied
      that never ends, or the connection closed unanswered
    SOCKS: no acceptable method, credentials rejected       proxy_auth_required
      or unusable (Go refuses empty ones)
    SOCKS: "connection not allowed by ruleset", a protocol  proxy_denied
      error, the connection closed
    SOCKS: "general SOCKS server failure", network or host  proxy_upstream_failed
      unreachable, connection refused, TTL expired

The proxy answered in every row but the first, so only the first is `proxy_unreachable`. An
answer is read with a bound: it is judged as soon as its first bytes show it is not HTTP (or not
SOCKS), and a head longer than `CONNECT_HEAD_LIMIT` is not a tunnel.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from dataclasses import dataclass

from probe.checks import USER_AGENT, Endpoint, Outcome, Probe
from probe.checks import dns as dns_check
from probe.checks import tcp as tcp_check
from probe.checks import tls as tls_check
from probe.checks.auth import basic_authorization
from probe.checks.connection import Connection
from probe.display import clip, escape
from probe.node.goproxy import ProxyURL
from probe.reasons import Reason

# net/http's portMap (transport.go): the port dialed when the proxy URL names none.
_DIAL_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_SOCKS = frozenset({"socks5", "socks5h"})
CONNECT_HEAD_LIMIT = 16 * 1024  # a proxy's CONNECT answer is a few hundred bytes
_READ = 4096


def proxy_authorization(proxy: ProxyURL) -> str | None:
    """The Basic credentials Go sends to a proxy whose URL has user info, or None.

    `ProxyURL` holds the user info percent-decoded already (as Go's `url.User` does): it is
    encoded as it stands (Go's `connectMethod.proxyAuth`), never decoded twice.
    """
    if proxy.username is None:
        return None
    return basic_authorization(proxy.username, proxy.password or "")


def sends_absolute_form(proxy: ProxyURL) -> bool:
    """Whether Go asks this proxy for a plain-http URL in absolute form (an HTTP proxy), rather
    than tunnelling to the target (SOCKS): `case cm.targetScheme == "http": pconn.isProxy`."""
    return proxy.scheme not in _SOCKS


def dial_address(proxy: ProxyURL) -> tuple[str, int] | None:
    """Where Go dials the proxy: its host and port, the scheme's default filled in (Go's
    `canonicalAddr`); None when it has no host, or no port for a scheme Go has none for."""
    if not proxy.host:
        return None
    if proxy.port:
        usable = proxy.port.isdigit() and 0 < int(proxy.port) < 65536
        return (proxy.host, int(proxy.port)) if usable else None
    default = _DIAL_PORTS.get(proxy.scheme)
    return (proxy.host, default) if default is not None else None


async def run(probe: Probe) -> Outcome:
    """The check: a tunnel (or, for a plain-http endpoint behind an HTTP proxy, a connection to
    the proxy) through the proxy, left on the probe for the tls and http checks."""
    return await open_tunnel(probe)


async def open_tunnel(probe: Probe) -> Outcome:
    """Connect through `probe.proxy` as Go does; on success `probe.connection` is the tunnel
    to the endpoint (for a plain-http endpoint behind an HTTP proxy: the connection to the
    proxy, which is asked in absolute form). A failure carries its reason, never raises."""
    proxy = probe.proxy
    assert proxy is not None, "proxy runs only on a proxied endpoint"  # noqa: S101 - engine invariant
    shown = proxy.redacted
    if proxy.scheme == "https" and probe.ssl_context is None:
        # No trust context on the probe (a plain-http endpoint): the proxy's TLS cannot be
        # verified the way the runtime would, so only the route is reported.
        return Outcome(detail=f"route through {shown}: not probed (no trust context for its TLS)")
    address = dial_address(proxy)
    if address is None:
        return Outcome.failed(
            Reason.PROXY_UNREACHABLE,
            f"proxyconnect tcp: proxy {shown} has no usable host:port",
        )
    dialed = await _dial(probe, proxy, address)
    if isinstance(dialed, Outcome):
        return dialed
    phases, connection = dialed, probe.connection
    assert connection is not None  # noqa: S101 - _dial connected it
    if proxy.scheme == "https":
        assert probe.ssl_context is not None  # noqa: S101 - checked above
        failed = await _proxy_tls(connection, probe.ssl_context, proxy, phases)
        if failed is not None:
            return failed
    try:
        if proxy.scheme in _SOCKS:
            return await _socks_tunnel(probe, proxy, connection, phases)
        if not probe.endpoint.tls:
            # Go asks an HTTP proxy for a plain-http URL in absolute form: the caller does.
            return Outcome(detail=f"connected to proxy {shown}", phases=phases.now())
        return await _connect_tunnel(probe, proxy, connection, phases)
    except OSError as error:  # a reset while asking for the tunnel (ssl.SSLError is one too)
        why = error.strerror or str(error) or type(error).__name__
        return Outcome.failed(
            Reason.PROXY_DENIED,
            f"proxy {shown} dropped the connection while asked for a tunnel to "
            f"{probe.endpoint.name}: {why.lower()}",
            phases=phases.now(),
        )


@dataclass
class _Phases:
    """Resolve and connect time of the proxy check: connect runs until the tunnel is open."""

    resolve: float
    connect_started: float

    def now(self) -> dict[str, float]:
        return {"resolve": self.resolve, "connect": time.perf_counter() - self.connect_started}


async def _dial(probe: Probe, proxy: ProxyURL, address: tuple[str, int]) -> Outcome | _Phases:
    """Resolve the proxy's host and connect to its addresses in order (Go's dialer); the
    connection lands on the probe. The phases so far, or the failure."""
    shown = proxy.redacted
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
            probe.connection = via.connection
            return _Phases(resolve, connect_started)
        failures.append(connected.detail)
    return Outcome.failed(
        Reason.PROXY_UNREACHABLE,
        f"proxyconnect tcp: {'; '.join(failures)} (proxy {shown})",
        phases={"resolve": resolve, "connect": time.perf_counter() - connect_started},
    )


async def _proxy_tls(
    connection: Connection, context: ssl.SSLContext, proxy: ProxyURL, phases: _Phases
) -> Outcome | None:
    """TLS with an https proxy, verified against its host name; the failure, or None.

    The reason is the tls check's for the same failure (the fix is the same: trust the CA,
    renew the certificate, fix the clock), the detail names the proxy, as Go's
    `proxyconnect tcp: tls: ...` does.
    """
    shown = proxy.redacted
    try:
        await connection.start_tls(context, server_hostname=proxy.host)
    except ssl.SSLError as error:
        reason, why = tls_check.classify(error)
        detail = f"proxyconnect tcp: proxy {shown}: {why}"
    except (OSError, EOFError) as error:
        reason = Reason.TLS_HANDSHAKE_FAILED
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        detail = (
            f"proxyconnect tcp: proxy {shown}: connection lost during the TLS handshake "
            f"({why or 'EOF'})"
        )
    else:
        return None
    # The proxy's certificate is named in the detail, not carried as the outcome's facts: those
    # are the endpoint's (its expiry metric), and this certificate is not the registry's.
    cert = tls_check.cert_facts(connection.tls)
    if cert is not None:
        detail += f" (the proxy serves {cert.subject or 'a certificate'}, issued by {cert.issuer})"
    return Outcome.failed(reason, detail, phases=phases.now())


# --- HTTP CONNECT --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectAnswer:
    """A proxy's answer to CONNECT, as far as it was read.

    `status` is None when the answer is not HTTP; `problem` says why the answer cannot open a
    tunnel whatever its status (not HTTP, a head that never ends, closed before its end).
    """

    status: int | None
    phrase: str = ""
    head_length: int = 0  # bytes through the blank line; what follows belongs to the tunnel
    problem: str = ""


def read_connect_answer(
    data: bytes, *, eof: bool, limit: int = CONNECT_HEAD_LIMIT
) -> ConnectAnswer | None:
    """Judge the bytes read so far: an answer, or None while more are needed.

    Decides as early as the bytes allow: a first byte that cannot start `HTTP/` is not HTTP
    (no waiting for a line that may never come), a malformed status line likewise. Lines may
    end in CRLF or LF (Go's textproto accepts both).
    """
    prefix = data[:5]
    if prefix != b"HTTP/"[: len(prefix)]:
        return ConnectAnswer(None, problem=f"an answer that is not HTTP ({_shown(data)})")
    line_end = data.find(b"\n")
    if line_end < 0:
        if len(data) > limit:
            return ConnectAnswer(None, problem=f"a status line longer than {limit} bytes")
        if eof:
            return ConnectAnswer(None, problem=_closed(data))
        return None
    status, phrase = _status_line(data[:line_end])
    if status is None:
        return ConnectAnswer(None, problem=f"a malformed HTTP status line ({_shown(data)})")
    ends = [i + len(m) for m in (b"\r\n\r\n", b"\n\n") if (i := data.find(m)) >= 0]
    if ends:
        return ConnectAnswer(status, phrase, min(ends))
    if len(data) > limit:
        return ConnectAnswer(
            status, phrase, problem=f"{status} whose headers did not end within {limit} bytes"
        )
    if eof:
        return ConnectAnswer(status, phrase, problem=f"{status}, then {_closed(data)}")
    return None


def classify_connect(answer: ConnectAnswer, *, credentials_sent: bool) -> Reason | None:
    """The reason for a CONNECT answer; None when it opens the tunnel (exactly 200, as Go)."""
    if answer.problem or answer.status is None:
        return Reason.PROXY_DENIED
    status = answer.status
    if status == 200:
        return None
    # 407 is the standard answer; some proxies (tinyproxy) answer 401 to wrong credentials.
    if status == 407 or (status == 401 and credentials_sent):
        return Reason.PROXY_AUTH_REQUIRED
    if 500 <= status < 600:
        return Reason.PROXY_UPSTREAM_FAILED
    return Reason.PROXY_DENIED


def connect_request(endpoint: Endpoint, credentials: str | None) -> bytes:
    """Go's CONNECT: the authority (`canonicalAddr`: host:port) as target and Host."""
    authority = endpoint.name
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", f"User-Agent: {USER_AGENT}"]
    if credentials is not None:
        lines.append(f"Proxy-Authorization: {credentials}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _connect_tunnel(
    probe: Probe, proxy: ProxyURL, connection: Connection, phases: _Phases
) -> Outcome:
    shown, authority = proxy.redacted, probe.endpoint.name
    credentials = proxy_authorization(proxy)
    await connection.write(connect_request(probe.endpoint, credentials))
    connection.tunnel_requested = True
    data = b""
    while True:
        chunk = await connection.read(_READ)
        data += chunk
        answer = read_connect_answer(data, eof=not chunk)
        if answer is not None:
            break
    connection.unread(data[answer.head_length :] if not answer.problem else b"")
    reason = classify_connect(answer, credentials_sent=credentials is not None)
    if answer.problem:
        return Outcome.failed(
            reason or Reason.PROXY_DENIED,
            f"proxy {shown} answered CONNECT {authority} with {answer.problem}: no tunnel",
            phases=phases.now(),
        )
    said = f"{answer.status} {answer.phrase}".strip()
    if reason is None:
        return Outcome(detail=f"CONNECT {authority} via {shown}: {said}", phases=phases.now())
    if reason == Reason.PROXY_AUTH_REQUIRED:
        sent = "rejected the credentials in the proxy URL" if credentials else "wants credentials"
        detail = f"proxy {shown} answered CONNECT {authority} with {said}: it {sent}"
    elif reason == Reason.PROXY_UPSTREAM_FAILED:
        detail = (
            f"proxy {shown} answered CONNECT {authority} with {said}: the proxy could not "
            "reach it (its own DNS or egress)"
        )
    else:
        detail = f"proxy {shown} refused CONNECT {authority}: {said}"
    return Outcome.failed(reason, detail, phases=phases.now())


def _status_line(line: bytes) -> tuple[int | None, str]:
    """Go's ReadResponse: `HTTP/major.minor` and a three-digit code, then the phrase."""
    text = line.rstrip(b"\r").decode("latin-1")
    proto, sep, rest = text.partition(" ")
    code, _, phrase = rest.partition(" ")
    version = proto.removeprefix("HTTP/")
    major, dot, minor = version.partition(".")
    well_formed = (
        sep
        and proto.startswith("HTTP/")
        and dot
        and major.isascii()
        and major.isdigit()
        and minor.isascii()
        and minor.isdigit()
        and len(code) == 3
        and code.isascii()
        and code.isdigit()
    )
    if not well_formed:
        return None, ""
    return int(code), clip(escape(phrase.strip()))


def _shown(data: bytes) -> str:
    """The first bytes of an answer, safe to print."""
    head = data[:32]
    return repr(head)[2:-1] + ("..." if len(data) > len(head) else "")


def _closed(data: bytes) -> str:
    return "no answer: the connection was closed" if not data else "the connection closed"


# --- SOCKS5 (RFC 1928, RFC 1929), as golang.org/x/net/internal/socks speaks it ----------------

SOCKS_VERSION = 5
_NO_AUTH, _USER_PASSWORD, _NO_ACCEPTABLE = 0x00, 0x02, 0xFF
_CONNECT = 0x01
_IPV4, _FQDN, _IPV6 = 0x01, 0x03, 0x04

# Reply codes with Go's words (socksReply.String), and what each means for a pull.
SOCKS_REPLIES: dict[int, tuple[str, Reason]] = {
    0x01: ("general SOCKS server failure", Reason.PROXY_UPSTREAM_FAILED),
    0x02: ("connection not allowed by ruleset", Reason.PROXY_DENIED),
    0x03: ("network unreachable", Reason.PROXY_UPSTREAM_FAILED),
    0x04: ("host unreachable", Reason.PROXY_UPSTREAM_FAILED),
    0x05: ("connection refused", Reason.PROXY_UPSTREAM_FAILED),
    0x06: ("TTL expired", Reason.PROXY_UPSTREAM_FAILED),
    0x07: ("command not supported", Reason.PROXY_DENIED),
    0x08: ("address type not supported", Reason.PROXY_DENIED),
}


class SocksError(Exception):
    """A SOCKS handshake that failed: Go's words and the reason."""

    def __init__(self, reason: Reason, words: str) -> None:
        super().__init__(words)
        self.reason = reason
        self.words = words


def socks_greeting(with_credentials: bool) -> bytes:
    """The methods Go offers: "no authentication", plus username/password with user info."""
    if with_credentials:
        return bytes([SOCKS_VERSION, 2, _NO_AUTH, _USER_PASSWORD])
    return bytes([SOCKS_VERSION, 1, _NO_AUTH])


def socks_method(answer: bytes, *, with_credentials: bool) -> int:
    """The method the server chose; raises SocksError as Go's dialer fails."""
    if len(answer) < 2:
        raise _eof(answer, 2)
    if answer[0] != SOCKS_VERSION:
        raise SocksError(Reason.PROXY_DENIED, f"unexpected protocol version {answer[0]}")
    method = answer[1]
    if method == _NO_ACCEPTABLE:
        raise SocksError(Reason.PROXY_AUTH_REQUIRED, "no acceptable authentication methods")
    if with_credentials and method not in (_NO_AUTH, _USER_PASSWORD):
        raise SocksError(Reason.PROXY_DENIED, f"unsupported authentication method {method}")
    return method


def socks_credentials(username: str, password: str) -> bytes:
    """RFC 1929's request; Go refuses an empty or over-long (255 bytes) user or password."""
    user, secret = username.encode(), password.encode()
    if not 0 < len(user) <= 255 or not 0 < len(secret) <= 255:
        raise SocksError(Reason.PROXY_AUTH_REQUIRED, "invalid username/password")
    return bytes([1, len(user)]) + user + bytes([len(secret)]) + secret


def socks_credentials_status(answer: bytes) -> None:
    """RFC 1929's status: version 1, status 0 is success."""
    if len(answer) < 2:
        raise _eof(answer, 2)
    if answer[0] != 1:
        raise SocksError(Reason.PROXY_DENIED, "invalid username/password version")
    if answer[1] != 0:
        raise SocksError(Reason.PROXY_AUTH_REQUIRED, "username/password authentication failed")


def socks_connect_request(host: str, port: int) -> bytes:
    """CONNECT to the target as Go sends it: an IP literal as such, any name as a name (the
    SOCKS server resolves it, for socks5 and socks5h alike)."""
    address = _ip(host)
    if isinstance(address, ipaddress.IPv4Address):
        target = bytes([_IPV4]) + address.packed
    elif isinstance(address, ipaddress.IPv6Address):
        target = bytes([_IPV6]) + address.packed
    else:
        name = host.encode("idna") if not host.isascii() else host.encode()
        if len(name) > 255:
            raise SocksError(Reason.PROXY_DENIED, "FQDN too long")
        target = bytes([_FQDN, len(name)]) + name
    return bytes([SOCKS_VERSION, _CONNECT, 0]) + target + port.to_bytes(2, "big")


def socks_reply_length(head: bytes) -> int:
    """From the reply's first 4 bytes (or 5 for a name): how many bytes the bound address and
    port take after them. Raises SocksError for a failed or malformed reply."""
    if len(head) < 4:
        raise _eof(head, 4)
    if head[0] != SOCKS_VERSION:
        raise SocksError(Reason.PROXY_DENIED, f"unexpected protocol version {head[0]}")
    if head[1] != 0:
        words, reason = SOCKS_REPLIES.get(
            head[1], (f"unknown code: {head[1]}", Reason.PROXY_DENIED)
        )
        raise SocksError(reason, f"unknown error {words}")
    if head[2] != 0:
        raise SocksError(Reason.PROXY_DENIED, "non-zero reserved field")
    if head[3] == _IPV4:
        return 4 + 2
    if head[3] == _IPV6:
        return 16 + 2
    if head[3] == _FQDN:
        if len(head) < 5:
            raise _eof(head, 5)
        return head[4] + 2
    raise SocksError(Reason.PROXY_DENIED, f"unknown address type {head[3]}")


async def _socks_tunnel(
    probe: Probe, proxy: ProxyURL, connection: Connection, phases: _Phases
) -> Outcome:
    endpoint = probe.endpoint
    peer = connection.peer
    where = f"{peer}->{endpoint.name}"
    try:
        await socks_handshake(connection, proxy, endpoint)
    except SocksError as error:
        return Outcome.failed(
            error.reason,
            f"socks connect tcp {where}: {error.words} (proxy {proxy.redacted})",
            phases=phases.now(),
        )
    return Outcome(
        detail=f"SOCKS5 CONNECT {endpoint.name} via {proxy.redacted}: succeeded",
        phases=phases.now(),
    )


async def socks_handshake(connection: Connection, proxy: ProxyURL, endpoint: Endpoint) -> None:
    """Go's `socksDialer.connect` on an open connection; raises SocksError."""
    with_credentials = proxy.username is not None
    await connection.write(socks_greeting(with_credentials))
    method = socks_method(await connection.read_exactly(2), with_credentials=with_credentials)
    # Go authenticates only when it offered credentials; without, it goes on whatever the
    # server chose (d.Authenticate is nil).
    if with_credentials and method == _USER_PASSWORD:
        request = socks_credentials(proxy.username or "", proxy.password or "")
        await connection.write(request)
        socks_credentials_status(await connection.read_exactly(2))
    await connection.write(socks_connect_request(endpoint.host, endpoint.port))
    connection.tunnel_requested = True
    head = await connection.read_exactly(4)
    if head[:3] == bytes([SOCKS_VERSION, 0, 0]) and head[3:] == bytes([_FQDN]):
        head += await connection.read_exactly(1)
    rest = socks_reply_length(head)
    bound = await connection.read_exactly(rest)
    if len(bound) < rest:
        raise _eof(bound, rest)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Go's `net.ParseIP` then `To4`: an IPv4-mapped address goes as IPv4; a zone is a name."""
    if "%" in host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _eof(data: bytes, wanted: int) -> SocksError:
    """io.ReadFull's error: EOF before any byte, unexpected EOF after some. The server closed:
    it refused the node (dante closes on a `client block`)."""
    del wanted
    return SocksError(Reason.PROXY_DENIED, "unexpected EOF" if data else "EOF")


# --- the caller's deadline ----------------------------------------------------------------------


def timeout_reason(probe: Probe) -> tuple[Reason, str]:
    """The reason and words when the caller's deadline ends this check, by how far it got.

    Not connected, or connected and never answered before the tunnel was asked for: the proxy
    did not answer (`proxyconnect tcp: i/o timeout`). In the TLS handshake with an https proxy:
    Go's `net/http: TLS handshake timeout`. Waiting for the answer to CONNECT or to the SOCKS
    request: the proxy took the request and is still trying to reach the registry (squid waits
    up to its connect_timeout, a minute, for a SYN a firewall drops).
    """
    proxy, connection = probe.proxy, probe.connection
    shown = proxy.redacted if proxy is not None else "the proxy"
    if connection is not None and connection.handshaking:
        return (
            Reason.TLS_HANDSHAKE_TIMEOUT,
            f"proxyconnect tcp: net/http: TLS handshake timeout (proxy {shown})",
        )
    if connection is None or not connection.tunnel_requested:
        return (
            Reason.PROXY_UNREACHABLE,
            f"proxyconnect tcp: i/o timeout (proxy {shown} did not answer)",
        )
    return (
        Reason.PROXY_UPSTREAM_FAILED,
        f"proxy {shown} took the request for {probe.endpoint.name} but opened no tunnel in "
        "time: it is still trying to reach it (its own DNS or egress), or it is stuck",
    )
