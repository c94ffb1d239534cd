"""The proxy check's pure parts, as tables: a CONNECT answer read and judged, the SOCKS5 bytes
Go's dialer sends and the replies it accepts, where a proxy is dialed, and the reason a deadline
gives by how far the check got."""

from __future__ import annotations

import asyncio
import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.checks import Endpoint, Probe
from probe.checks import proxy as proxy_check
from probe.checks.connection import Connection
from probe.checks.proxy import (
    CONNECT_HEAD_LIMIT,
    ConnectAnswer,
    SocksError,
    classify_connect,
    connect_request,
    dial_address,
    proxy_authorization,
    read_connect_answer,
    sends_absolute_form,
    socks_connect_request,
    socks_credentials,
    socks_credentials_status,
    socks_greeting,
    socks_method,
    socks_reply_length,
    timeout_reason,
)
from probe.node.goproxy import ProxyEnv, decide
from probe.node.resolver import NodeResolver
from probe.reasons import Reason

REGISTRY = Endpoint("registry.example", 443, "registry")
V6_PACKED = bytes.fromhex("20010db8000000000000000000000001")  # 2001:db8::1


def proxy_url(value: str) -> proxy_check.ProxyURL:
    """A proxy URL as Go's httpproxy parses HTTPS_PROXY."""
    found = decide(ProxyEnv(https_proxy=value), "https", "registry.example", 443).proxy
    assert found is not None
    return found


# --- CONNECT -------------------------------------------------------------------------------------

ANSWERS: list[tuple[bytes, bool, ConnectAnswer | None]] = [
    (b"", False, None),
    (b"HT", False, None),
    (b"HTTP/1.1 200 Connection established\r\n", False, None),
    (
        b"HTTP/1.1 200 Connection established\r\n\r\n",
        False,
        ConnectAnswer(200, "Connection established", 39),
    ),
    (b"HTTP/1.0 200 OK\n\n", False, ConnectAnswer(200, "OK", 17)),  # LF alone, as textproto
    (
        b"HTTP/1.1 200 OK\r\nVia: squid\r\n\r\n\x16\x03\x01",  # what follows is the tunnel's
        False,
        ConnectAnswer(200, "OK", 31),
    ),
    (
        b"HTTP/1.1 503 Service Unavailable\r\n\r\n",
        False,
        ConnectAnswer(503, "Service Unavailable", 36),
    ),
    (b"HTTP/1.1 407\r\n\r\n", False, ConnectAnswer(407, "", 16)),
    (
        b"HTTP/1.1 200 OK\r\n",
        True,
        ConnectAnswer(200, "OK", problem="200, then the connection closed"),
    ),
    (b"", True, ConnectAnswer(None, problem="no answer: the connection was closed")),
    (b"HTTP", True, ConnectAnswer(None, problem="the connection closed")),
]


@pytest.mark.parametrize(("data", "eof", "expected"), ANSWERS)
def test_connect_answer_is_read_up_to_its_blank_line(
    data: bytes, eof: bool, expected: ConnectAnswer | None
) -> None:
    """A complete head gives status, phrase and its length; an incomplete one asks for more."""
    assert read_connect_answer(data, eof=eof) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x05garbage",
        b"\x05\xff",  # a SOCKS server named as http://
        b"\x15\x03\x01\x00\x02\x02\x28",  # a TLS alert: a TLS port named as http://
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"H\x00",
    ],
)
def test_an_answer_that_is_not_http_is_judged_from_its_first_bytes(data: bytes) -> None:
    """Bytes that cannot start `HTTP/` decide at once, before any line end or the deadline."""
    answer = read_connect_answer(data, eof=False)
    assert answer is not None and answer.status is None
    assert answer.problem.startswith("an answer that is not HTTP")


@pytest.mark.parametrize(
    "line", [b"HTTP/1.1 20 OK\r\n", b"HTTP/1.1\r\n", b"HTTP/x.1 200 OK\r\n", b"HTTP/1.1 2000\r\n"]
)
def test_malformed_status_line_is_not_http(line: bytes) -> None:
    """Go's ReadResponse refuses these status lines (`malformed HTTP ...`): no tunnel."""
    answer = read_connect_answer(line, eof=False)
    assert answer is not None and answer.status is None
    assert "malformed HTTP status line" in answer.problem


def test_endless_headers_after_200_end_at_the_limit() -> None:
    """A 200 whose head passes the limit without a blank line is no tunnel."""
    data = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"x" * CONNECT_HEAD_LIMIT + b"\r\n"
    answer = read_connect_answer(data, eof=False)
    assert answer == ConnectAnswer(
        200, "OK", problem=f"200 whose headers did not end within {CONNECT_HEAD_LIMIT} bytes"
    )
    assert classify_connect(answer, credentials_sent=False) == Reason.PROXY_DENIED


def test_a_status_line_that_never_ends_stops_at_the_limit() -> None:
    """`HTTP/` and then no line end: bounded too."""
    answer = read_connect_answer(b"HTTP/1.1 " + b"9" * CONNECT_HEAD_LIMIT, eof=False)
    assert answer is not None and answer.status is None


@given(st.binary(max_size=200), st.booleans())
def test_connect_answer_reader_never_raises(data: bytes, eof: bool) -> None:
    """Any bytes are an answer, a request for more, never an exception; at EOF always an answer."""
    answer = read_connect_answer(data, eof=eof)
    if eof:
        assert answer is not None
    if answer is not None and not answer.problem:
        assert 0 < answer.head_length <= len(data)


CONNECT_REASONS = [
    (200, False, None),
    (201, False, Reason.PROXY_DENIED),  # Go accepts exactly 200
    (100, False, Reason.PROXY_DENIED),
    (302, False, Reason.PROXY_DENIED),
    (403, False, Reason.PROXY_DENIED),
    (400, False, Reason.PROXY_DENIED),
    (407, False, Reason.PROXY_AUTH_REQUIRED),
    (407, True, Reason.PROXY_AUTH_REQUIRED),
    (401, True, Reason.PROXY_AUTH_REQUIRED),  # tinyproxy, wrong credentials
    (401, False, Reason.PROXY_DENIED),
    (500, False, Reason.PROXY_UPSTREAM_FAILED),  # tinyproxy "Unable to connect", squid DNS
    (502, False, Reason.PROXY_UPSTREAM_FAILED),
    (503, False, Reason.PROXY_UPSTREAM_FAILED),  # squid ERR_CONNECT_FAIL
    (504, False, Reason.PROXY_UPSTREAM_FAILED),
]


@pytest.mark.parametrize(("status", "sent", "reason"), CONNECT_REASONS)
def test_connect_status_maps_to_one_reason(status: int, sent: bool, reason: Reason | None) -> None:
    """Only 200 opens the tunnel; 407 is credentials, 5xx the proxy's upstream, the rest denial."""
    answer = ConnectAnswer(status, "", 20)
    assert classify_connect(answer, credentials_sent=sent) == reason


def test_connect_request_is_gos() -> None:
    """CONNECT host:port with Host, and Proxy-Authorization only when there are credentials."""
    assert connect_request(REGISTRY, None).startswith(
        b"CONNECT registry.example:443 HTTP/1.1\r\nHost: registry.example:443\r\n"
    )
    assert b"Proxy-Authorization: Basic dTpw\r\n\r\n" in connect_request(REGISTRY, "Basic dTpw")
    v6 = Endpoint("2001:db8::1", 5000, "registry")
    assert connect_request(v6, None).startswith(b"CONNECT [2001:db8::1]:5000 HTTP/1.1\r\n")


def test_proxy_credentials_are_decoded_once() -> None:
    """`%2541` in the URL is `%41` in the password Go sends, not `A` (decoded twice)."""
    proxy = proxy_url("http://us%65r:p%2541ss@proxy.example:3128")
    header = proxy_authorization(proxy)
    assert header is not None
    assert base64.b64decode(header.removeprefix("Basic ")) == b"user:p%41ss"
    assert proxy_authorization(proxy_url("http://proxy.example:3128")) is None
    # Go sends a user without a password as `user:` (connectMethod.proxyAuth).
    lone = proxy_authorization(proxy_url("http://user@proxy.example:3128"))
    assert lone is not None and base64.b64decode(lone.removeprefix("Basic ")) == b"user:"


# --- where the proxy is dialed -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "address", "absolute_form"),
    [
        ("http://proxy.example", ("proxy.example", 80), True),
        ("https://proxy.example", ("proxy.example", 443), True),
        ("socks5://proxy.example", ("proxy.example", 1080), False),
        ("socks5h://proxy.example", ("proxy.example", 1080), False),  # transport.go's portMap
        ("socks5h://proxy.example:9050", ("proxy.example", 9050), False),
        ("proxy.example:3128", ("proxy.example", 3128), True),  # no scheme: http
        ("socks4://proxy.example:1080", ("proxy.example", 1080), True),  # Go: an HTTP proxy
        ("socks4://proxy.example", None, True),  # no default port for it
        ("http://[2001:db8::1]:3128", ("2001:db8::1", 3128), True),
    ],
)
def test_dial_address_and_form(
    value: str, address: tuple[str, int] | None, absolute_form: bool
) -> None:
    """Go's canonicalAddr for the proxy, and whether it is asked as an HTTP proxy."""
    proxy = proxy_url(value)
    assert dial_address(proxy) == address
    assert sends_absolute_form(proxy) is absolute_form


# --- SOCKS5 --------------------------------------------------------------------------------------


def test_socks_greeting_offers_what_go_offers() -> None:
    """No authentication alone; with user info, no authentication and username/password."""
    assert socks_greeting(False) == b"\x05\x01\x00"
    assert socks_greeting(True) == b"\x05\x02\x00\x02"


@pytest.mark.parametrize(
    ("answer", "with_credentials", "result"),
    [
        (b"\x05\x00", False, 0),
        (b"\x05\x02", False, 2),  # Go goes on without authenticating (no Authenticate func)
        (b"\x05\x02", True, 2),
        (b"\x05\x00", True, 0),
        (b"\x05\xff", False, (Reason.PROXY_AUTH_REQUIRED, "no acceptable authentication methods")),
        (b"\x05\xff", True, (Reason.PROXY_AUTH_REQUIRED, "no acceptable authentication methods")),
        (b"\x05\x01", True, (Reason.PROXY_DENIED, "unsupported authentication method 1")),
        (b"HT", False, (Reason.PROXY_DENIED, "unexpected protocol version 72")),
        (b"\x04\x00", False, (Reason.PROXY_DENIED, "unexpected protocol version 4")),
        (b"", False, (Reason.PROXY_DENIED, "EOF")),
        (b"\x05", False, (Reason.PROXY_DENIED, "unexpected EOF")),
    ],
)
def test_socks_method_selection(
    answer: bytes, with_credentials: bool, result: int | tuple[Reason, str]
) -> None:
    """The server's method choice, with Go's words when the dialer gives up."""
    if isinstance(result, int):
        assert socks_method(answer, with_credentials=with_credentials) == result
        return
    with pytest.raises(SocksError) as raised:
        socks_method(answer, with_credentials=with_credentials)
    assert (raised.value.reason, raised.value.words) == result


def test_socks_credentials_as_rfc_1929() -> None:
    """Version 1, length-prefixed user and password; Go refuses empty or over-long ones."""
    assert socks_credentials("user", "pw") == b"\x01\x04user\x02pw"
    for user, password in (("", "pw"), ("user", ""), ("u" * 256, "pw"), ("user", "p" * 256)):
        with pytest.raises(SocksError) as raised:
            socks_credentials(user, password)
        assert raised.value.reason == Reason.PROXY_AUTH_REQUIRED
        assert raised.value.words == "invalid username/password"


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        (b"\x01\x00", None),
        (b"\x01\x01", (Reason.PROXY_AUTH_REQUIRED, "username/password authentication failed")),
        (b"\x05\x00", (Reason.PROXY_DENIED, "invalid username/password version")),
        (b"", (Reason.PROXY_DENIED, "EOF")),
    ],
)
def test_socks_credentials_status(answer: bytes, result: tuple[Reason, str] | None) -> None:
    """Status 0 passes; anything else fails as Go's Authenticate does."""
    if result is None:
        socks_credentials_status(answer)
        return
    with pytest.raises(SocksError) as raised:
        socks_credentials_status(answer)
    assert (raised.value.reason, raised.value.words) == result


@pytest.mark.parametrize(
    ("host", "port", "request_bytes"),
    [
        ("registry.example", 443, b"\x05\x01\x00\x03\x10registry.example\x01\xbb"),
        ("192.0.2.7", 5000, b"\x05\x01\x00\x01\xc0\x00\x02\x07\x13\x88"),
        ("::ffff:192.0.2.7", 443, b"\x05\x01\x00\x01\xc0\x00\x02\x07\x01\xbb"),  # To4()
        ("2001:db8::1", 443, b"\x05\x01\x00\x04" + V6_PACKED + b"\x01\xbb"),
    ],
)
def test_socks_connect_sends_names_unresolved(host: str, port: int, request_bytes: bytes) -> None:
    """A name goes as a name (the SOCKS server resolves it, socks5 or socks5h alike); an IP
    literal as an address."""
    assert socks_connect_request(host, port) == request_bytes


def test_socks_connect_refuses_a_name_over_255_bytes() -> None:
    """Go: "FQDN too long"."""
    with pytest.raises(SocksError, match="FQDN too long"):
        socks_connect_request("a" * 256, 443)


@pytest.mark.parametrize(
    ("code", "words", "reason"),
    [
        (1, "general SOCKS server failure", Reason.PROXY_UPSTREAM_FAILED),
        (2, "connection not allowed by ruleset", Reason.PROXY_DENIED),
        (3, "network unreachable", Reason.PROXY_UPSTREAM_FAILED),
        (4, "host unreachable", Reason.PROXY_UPSTREAM_FAILED),
        (5, "connection refused", Reason.PROXY_UPSTREAM_FAILED),
        (6, "TTL expired", Reason.PROXY_UPSTREAM_FAILED),
        (7, "command not supported", Reason.PROXY_DENIED),
        (8, "address type not supported", Reason.PROXY_DENIED),
        (9, "unknown code: 9", Reason.PROXY_DENIED),
    ],
)
def test_socks_reply_codes(code: int, words: str, reason: Reason) -> None:
    """Each reply code with Go's words (`unknown error <text>`) and its reason."""
    with pytest.raises(SocksError) as raised:
        socks_reply_length(bytes([5, code, 0, 1]))
    assert (raised.value.reason, raised.value.words) == (reason, f"unknown error {words}")


@pytest.mark.parametrize(
    ("head", "result"),
    [
        (b"\x05\x00\x00\x01", 6),
        (b"\x05\x00\x00\x04", 18),
        (b"\x05\x00\x00\x03\x0b", 13),
        (b"\x05\x00\x01\x01", (Reason.PROXY_DENIED, "non-zero reserved field")),
        (b"\x05\x00\x00\x09", (Reason.PROXY_DENIED, "unknown address type 9")),
        (b"\x04\x00\x00\x01", (Reason.PROXY_DENIED, "unexpected protocol version 4")),
        (b"\x05\x00", (Reason.PROXY_DENIED, "unexpected EOF")),
    ],
)
def test_socks_reply_bound_address(head: bytes, result: int | tuple[Reason, str]) -> None:
    """A success reply: how many bytes of bound address and port follow; else Go's error."""
    if isinstance(result, int):
        assert socks_reply_length(head) == result
        return
    with pytest.raises(SocksError) as raised:
        socks_reply_length(head)
    assert (raised.value.reason, raised.value.words) == result


# --- the deadline --------------------------------------------------------------------------------


def test_timeout_reason_follows_how_far_the_check_got() -> None:
    """Not connected: proxy_unreachable; in the proxy's TLS handshake: tls_handshake_timeout;
    the tunnel asked for and not opened: proxy_upstream_failed (the proxy is still trying)."""

    async def scenario() -> list[tuple[Reason, str]]:
        async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        probe = Probe(
            REGISTRY, NodeResolver(None, "none"), proxy=proxy_url("https://proxy.example:3129")
        )
        found = [timeout_reason(probe)]
        probe.connection = await Connection.open("127.0.0.1", port)
        try:
            found.append(timeout_reason(probe))
            probe.connection.handshaking = True
            found.append(timeout_reason(probe))
            probe.connection.handshaking = False
            probe.connection.tunnel_requested = True
            found.append(timeout_reason(probe))
        finally:
            await probe.connection.aclose()
            server.close()
            await server.wait_closed()
        return found

    found = asyncio.run(scenario())
    assert [reason for reason, _ in found] == [
        Reason.PROXY_UNREACHABLE,
        Reason.PROXY_UNREACHABLE,
        Reason.TLS_HANDSHAKE_TIMEOUT,
        Reason.PROXY_UPSTREAM_FAILED,
    ]
    assert found[0][1] == (
        "proxyconnect tcp: i/o timeout (proxy https://proxy.example:3129 did not answer)"
    )
    assert found[2][1].startswith("proxyconnect tcp: net/http: TLS handshake timeout")
    assert "registry.example:443" in found[3][1]
