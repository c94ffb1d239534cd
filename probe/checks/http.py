"""The `http` check: `GET /v2/` on the address's connection, as the OCI distribution spec asks.

A registry answers 200, or 401 with a `WWW-Authenticate` challenge (a Bearer challenge names the
token realm: another endpoint a pull needs), and marks itself with a
`Docker-Distribution-Api-Version` header or an OCI error body. Anything else answering there is
a captive portal, a proxy's error page or another service (`not_a_registry`), or a registry in
trouble (`http_unexpected_status`). `classify` is the pure mapping, tested with tables.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from probe.checks import USER_AGENT, Outcome, Probe
from probe.checks.challenge import parse_challenges
from probe.checks.connection import Connection
from probe.checks.proxy import proxy_authorization, sends_absolute_form
from probe.config import is_ip_address
from probe.display import SHOWN_MAX, clip, describe_input
from probe.reasons import Reason

_READ_SIZE = 65536
BODY_LIMIT = 64 * 1024  # /v2/ answers are tiny; a portal page is read only this far
REALM_MAX = 2048  # a token realm URL longer than this is not one a registry means
REALM_SHOWN = 120  # how much of an unusable realm a detail quotes
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes  # at most BODY_LIMIT bytes
    processing: float  # seconds from the request to the response's headers
    transfer: float  # seconds reading the body


class ExchangeError(Exception):
    """The peer's answer is not HTTP/1.1 (or ends early); the message says how, briefly."""


HEAD_LIMIT = 16 * 1024  # a response head longer than this is not a registry's


async def exchange(
    probe: Probe,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    content: bytes = b"",
) -> Response:
    """One HTTP/1.1 request on the address's open connection (h11 over it: no other layer),
    which is closed after it. Raises ExchangeError or OSError."""
    endpoint, connection = probe.endpoint, probe.connection
    assert connection is not None, "http runs after tcp (and tls)"  # noqa: S101 - engine invariant
    http = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_LIMIT)
    fields = [("Host", endpoint.host_header), ("User-Agent", USER_AGENT), *(headers or [])]
    if content:
        fields.append(("Content-Length", str(len(content))))
    try:
        data = http.send(h11.Request(method=method, target=target, headers=fields)) or b""
        if content:
            data += http.send(h11.Data(data=content)) or b""
        data += http.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError as error:  # a header value that cannot be sent
        raise ExchangeError(f"the request cannot be written: {error}") from None
    started = time.perf_counter()
    try:
        await connection.write(data)
        response = await _next(http, connection, (h11.Response,))
        headers_at = time.perf_counter()
        assert isinstance(response, h11.Response)  # noqa: S101 - what _next was asked for
        connection.answered, connection.body_received = response.status_code, 0
        body = b""
        while len(body) < BODY_LIMIT:
            event = await _next(http, connection, (h11.Data, h11.EndOfMessage))
            if not isinstance(event, h11.Data):
                break
            body += event.data
            connection.body_received = len(body)
        done = time.perf_counter()
    finally:
        await connection.aclose()
    decoded = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers)
    return Response(
        response.status_code, decoded, body[:BODY_LIMIT], headers_at - started, done - headers_at
    )


async def _next(
    http: h11.Connection, connection: Connection, wanted: tuple[type[h11.Event], ...]
) -> h11.Event:
    """The next event of the answer of one of the `wanted` kinds (1xx answers skipped)."""
    while True:
        try:
            event = http.next_event()
        except h11.RemoteProtocolError as error:
            raise ExchangeError(f"not an HTTP/1.1 answer: {error}") from None
        if event is h11.NEED_DATA:
            http.receive_data(await connection.read(_READ_SIZE))
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, wanted):
            return event
        if isinstance(event, h11.ConnectionClosed):
            raise ExchangeError("the connection closed before the answer was complete")
        raise ExchangeError(f"unexpected {type(event).__name__} in the answer")


async def run(probe: Probe) -> Outcome:
    endpoint = probe.endpoint
    started = time.perf_counter()
    path = f"{endpoint.api_root.rstrip('/')}/"  # /v2/, or a mirror's /some/path/v2/
    target, headers = path, [("Accept", "application/json")]
    if probe.proxy is not None and not endpoint.tls and sends_absolute_form(probe.proxy):
        # Go asks an HTTP proxy for a plain-http URL in absolute form, with its credentials;
        # through a SOCKS tunnel the request goes as to the registry itself.
        target = f"http://{endpoint.host_header}{path}"
        credentials = proxy_authorization(probe.proxy)
        if credentials is not None:
            headers.append(("Proxy-Authorization", credentials))
    try:
        response = await exchange(probe, "GET", target, headers)
    except (ExchangeError, OSError) as error:
        phases = {"processing": time.perf_counter() - started, "transfer": 0.0}
        return Outcome.failed(
            Reason.NOT_A_REGISTRY,
            f"GET {path} on {endpoint.name}: no valid HTTP answer "
            f"({type(error).__name__}: {clip(str(error))})",
            phases=phases,
        )
    phases = {"processing": response.processing, "transfer": response.transfer}
    verdict = classify(response.status, response.headers, response.body)
    detail = f"GET {path} on {endpoint.name}: {verdict.detail}"
    return dataclasses.replace(verdict, detail=detail, phases=phases, status=response.status)


def timeout_detail(probe: Probe) -> str:
    """The words when the caller's deadline ends the http check, by how far the answer got:
    no headers is Go's "awaiting headers"; headers and a body still arriving is Go's "while
    reading body" (net/http's Client.Timeout errors)."""
    path = f"{probe.endpoint.api_root.rstrip('/')}/"
    connection = probe.connection
    if connection is None or connection.answered is None:
        return (
            f"GET {clip(path)}: connected, but no HTTP answer "
            "(Client.Timeout exceeded while awaiting headers)"
        )
    return (
        f"GET {clip(path)}: {connection.answered} received, the body was still arriving "
        f"({connection.body_received} bytes read; Client.Timeout or context cancellation "
        "while reading body)"
    )


def classify(status: int, headers: Iterable[tuple[str, str]], body: bytes) -> Outcome:
    """How a `GET /v2/` answer reads: a registry, a registry in trouble, or something else."""
    fields: dict[str, str] = {}
    challenges_text: list[str] = []
    for name, text in headers:
        key = name.lower()
        if key == "www-authenticate":
            challenges_text.append(text)
        fields.setdefault(key, text)
    api_version = clip(fields.get("docker-distribution-api-version", ""))
    oci_error = _oci_error_code(body)
    marked = api_version.startswith("registry/2") or oci_error is not None
    challenges = [c for text in challenges_text for c in parse_challenges(text)]
    content_type = clip(fields.get("content-type", "no content type").split(";")[0].strip())
    what = f"{status}"

    if status == 200 and (marked or json_object(body) is not None):
        return Outcome(detail=f"{what}, a registry ({api_version or 'OCI'})")
    if status == 401:
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            realm = bearer.realm
            if realm and not usable_realm(realm):
                # Quoted, bounded: the registry's text. Not probed: no host a pull could reach.
                shown = describe_input(realm, REALM_SHOWN)
                return Outcome(detail=f"401 Bearer challenge, a registry, unusable realm {shown}")
            where = f", token realm {clip(realm, SHOWN_MAX)}" if realm else ""
            return Outcome(detail=f"401 Bearer challenge, a registry{where}", realm=realm)
        if any(c.scheme == "basic" for c in challenges):
            return Outcome(detail="401 Basic challenge, a registry")
        if marked:
            return Outcome(detail=f"401, a registry ({api_version or 'OCI error body'})")
    if status == 429:
        return Outcome(Reason.RATE_LIMITED, f"429 {oci_error or 'Too Many Requests'}")
    if status == 407:
        return Outcome(
            Reason.PROXY_AUTH_REQUIRED, "407 from a proxy on the path (Proxy-Authenticate)"
        )
    if status >= 500:
        return Outcome(Reason.HTTP_UNEXPECTED_STATUS, f"{status}: the server failed")
    if marked:
        code = f" {oci_error}" if oci_error else ""
        return Outcome(
            Reason.HTTP_UNEXPECTED_STATUS, f"{status}{code}: not what a registry answers"
        )
    location = fields.get("location")
    moved = f", redirects to {clip(location)}" if location and 300 <= status < 400 else ""
    title = _title(body)
    page = f", page titled {title!r}" if title else ""
    return Outcome(
        Reason.NOT_A_REGISTRY,
        f"{status} {content_type}{moved}{page}: no registry header or OCI error body "
        "(a captive portal, a proxy's error page or another service answers here)",
    )


def usable_realm(realm: str) -> bool:
    """A realm a client can ask: an http(s) URL of at most REALM_MAX characters whose host is a
    DNS name (at most 253 characters, labels of at most 63) or an IP address, and a valid port.
    Anything else is not probed, and only quoted (bounded) in a detail."""
    if len(realm) > REALM_MAX or not realm.isascii() or not realm.isprintable():
        return False
    try:
        url = urlsplit(realm)
        url.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return False
    host = url.hostname or ""
    if url.scheme not in ("http", "https") or not host:
        return False
    if is_ip_address(host):
        return True
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(0 < len(label) <= 63 for label in labels)


def json_object(body: bytes) -> dict[str, object] | None:
    """A body that is a JSON object, or None (not JSON, not an object, nested too deeply)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return document if isinstance(document, dict) else None


def _oci_error_code(body: bytes) -> str | None:
    """The first error code of an OCI error body (`{"errors": [{"code": ...}]}`), if it is one."""
    document = json_object(body)
    errors = document.get("errors") if document is not None else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        if isinstance(code, str):
            return clip(code)
    return None


def _title(body: bytes) -> str | None:
    match = _TITLE.search(body)
    if match is None:
        return None
    return clip(" ".join(match.group(1).decode("utf-8", "replace").split()))
