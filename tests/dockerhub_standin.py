"""A stand-in for Docker Hub (auth.docker.io and registry-1.docker.io) on one listener, for tests.

    python tests/dockerhub_standin.py --listen ADDR:PORT [--cert C --key K] --state-file F
        [--mode normal|ratelimited|noheaders|token-ratelimited] [--user U --password P]

It follows what Docker documents ("Docker Hub pull usage and limits", the distribution token
spec), so that the probe can be tested where the real Docker Hub cannot be reached:

- ``auth.docker.io``: ``GET /token?service=registry.docker.io&scope=...`` anonymous or with Basic
  auth answers ``{"token", "access_token", "expires_in", "issued_at"}``; wrong credentials get 401
  ``{"details":"incorrect username or password"}``. ``POST /token`` takes the OAuth2
  ``password`` and ``refresh_token`` grants (``--identity-token``).
- ``registry-1.docker.io``: ``GET /v2/`` without a token is 401 with ``WWW-Authenticate: Bearer
  realm=...,service=...`` and ``Docker-Distribution-Api-Version: registry/2.0``.
  ``HEAD``/``GET /v2/<repository>/manifests/<tag or digest>`` of a repository the token may pull
  answers 200 with ``ratelimit-limit: 100;w=21600`` (200 when authenticated),
  ``ratelimit-remaining: N;w=21600`` and ``docker-ratelimit-source`` (the client address, an IPv6
  client's /64, or the account id); an unknown tag is 404 ``MANIFEST_UNKNOWN``. The public
  repositories are ``ratelimitpreview/test`` (tag ``latest``) and ``library/tiny`` (tag ``1``, an
  OCI index for linux/amd64 and linux/arm64); ``<user>/private`` (tag ``1``) only ``--user`` may
  pull. Any other repository, and a private one without its owner's token, is 401
  ``UNAUTHORIZED`` with ``error="insufficient_scope"`` (or no error without a token): Docker
  Hub does not say whether a repository exists ("pull access denied ... repository does not
  exist or may require 'docker login'").
  A GET is a pull: it is recorded and takes one from the remaining pulls; a HEAD does not.
  With no pulls left, or in mode ``ratelimited``, the manifest answers 429 ``TOOMANYREQUESTS``
  with the limit headers; mode ``token-ratelimited`` makes the token endpoint answer 429;
  mode ``noheaders`` answers 200 without limit headers (an unlimited account).

Requests are dispatched by the Host header (any other host gets 421). After every request the
counts are written to the state file (JSON, replaced atomically), so tests can assert that no
manifest GET was ever received and that token requests stayed bounded. ``--mode-file`` names a
file whose content, when it exists, overrides ``--mode`` for each request (switch at run time).
Plain HTTP when no certificate is given. SIGTERM or SIGINT stops it cleanly (exit status 0).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import secrets
import signal
import ssl
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MODES = ("normal", "ratelimited", "noheaders", "token-ratelimited")
REPOSITORY = "ratelimitpreview/test"
API_VERSION = ("Docker-Distribution-Api-Version", "registry/2.0")
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
# A small OCI index standing in for ratelimitpreview/test:latest; only its digest and size matter.
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + "0" * 64,
                "size": 0,
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    },
    separators=(",", ":"),
).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
# library/tiny:1, a multi-platform image; only its digest, size and platforms matter.
TINY_INDEX = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + "1" * 64,
                "size": 1,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + "2" * 64,
                "size": 1,
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            },
        ],
    },
    separators=(",", ":"),
).encode()
PUBLIC = {REPOSITORY: {"latest": MANIFEST}, "library/tiny": {"1": TINY_INDEX}}
MANIFEST_PATH = re.compile(r"/v2/(.+)/manifests/([^/]+)")
TOOMANYREQUESTS = json.dumps(
    {
        "errors": [
            {
                "code": "TOOMANYREQUESTS",
                "message": "You have reached your pull rate limit. You may increase the limit by "
                "authenticating and upgrading: https://www.docker.com/increase-rate-limits",
            }
        ]
    }
).encode()
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024
IDLE_SECONDS = 30


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; the first of repeated headers
    body: bytes
    client: str


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    421: "Misdirected Request",
    429: "Too Many Requests",
}


def json_response(
    status: int, document: object, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(
        status,
        [("Content-Type", "application/json"), *(headers or [])],
        json.dumps(document).encode(),
    )


def registry_error(
    status: int, code: str, message: str, headers: list[tuple[str, str]]
) -> Response:
    body = {"errors": [{"code": code, "message": message, "detail": None}]}
    return json_response(status, body, [API_VERSION, *headers])


def ratelimit_source(client: str) -> str:
    """Docker counts anonymous pulls per IPv4 address or per IPv6 /64."""
    address = ipaddress.ip_address(client.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False).network_address)
    return str(address)


def account_id(user: str) -> str:
    """A stable id per account, as Docker reports an account (never the username itself)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://hub.docker.com/u/{user}"))


@dataclass
class Grant:
    account: str | None  # username; None for anonymous
    expires_at: float


class DockerHub:
    """Both Docker Hub services and their counters; one instance per server."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tokens: dict[str, Grant] = {}
        self.remaining: dict[str, int] = {}
        self.requests: Counter[str] = Counter()
        self.token_requests: Counter[str] = Counter()
        self.token_rejected: Counter[str] = Counter()
        self.hosts: Counter[str] = Counter()
        self.manifest_gets: list[dict[str, str]] = []
        # The Accept header of the first manifest HEAD per User-Agent and path: what a resolve
        # asks for.
        self.manifest_accept: dict[str, str] = {}
        self.listen = ""

    # -- state ---------------------------------------------------------------------------

    def mode(self) -> str:
        if self.args.mode_file:
            with contextlib.suppress(OSError):
                text = Path(self.args.mode_file).read_text().strip()
                if text in MODES:
                    return text
        return str(self.args.mode)

    def write_state(self) -> None:
        state = {
            "listen": self.listen,
            "mode": self.mode(),
            "requests": dict(self.requests),
            "hosts": dict(self.hosts),
            "token_requests": dict(self.token_requests),
            "token_rejected": dict(self.token_rejected),
            "manifest_gets": len(self.manifest_gets),
            "manifest_get_log": self.manifest_gets,
            "manifest_accept": dict(self.manifest_accept),
            "remaining": dict(self.remaining),
        }
        path = Path(self.args.state_file)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(temporary, path)

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        host = request.headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
        self.requests[f"{request.method} {request.path}"] += 1
        self.hosts[host] += 1
        if host == self.args.auth_host:
            return self.auth(request)
        if host == self.args.registry_host:
            return self.registry(request)
        return Response(421, [("Content-Type", "text/plain")], b"no such host here\n")

    # -- auth.docker.io ------------------------------------------------------------------

    def auth(self, request: Request) -> Response:
        if request.path != "/token":
            return json_response(404, {"details": "not found"})
        if request.method == "GET":
            params = request.query
            user, password = self.basic(request.headers.get("authorization"))
        elif request.method == "POST":
            params = parse_qs(request.body.decode("utf-8", "replace"))
            user, password = self.grant(params)
        else:
            return json_response(405, {"details": "method not allowed"})

        account = "anonymous" if user is None else user
        self.token_requests[account] += 1
        if params.get("service", [""])[0] != self.args.service:
            return json_response(400, {"details": "invalid service"})
        if user is not None and not self.valid(user, password):
            self.token_rejected[account] += 1
            return json_response(401, {"details": "incorrect username or password"})
        if self.mode() == "token-ratelimited":
            return json_response(429, json.loads(TOOMANYREQUESTS), [("Retry-After", "60")])

        token = secrets.token_urlsafe(32)
        now = time.time()
        self.tokens[token] = Grant(user, now + self.args.token_ttl)
        issued = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        return json_response(
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": self.args.token_ttl,
                "issued_at": issued,
            },
        )

    def basic(self, header: str | None) -> tuple[str | None, str | None]:
        if header is None:
            return None, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return "(not basic)", None
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "(malformed)", None
        return user, password

    def grant(self, form: dict[str, list[str]]) -> tuple[str | None, str | None]:
        """The OAuth2 grants of distribution's token spec; a refresh token names its account."""
        kind = form.get("grant_type", [""])[0]
        if kind == "password":
            return form.get("username", [""])[0], form.get("password", [""])[0]
        if kind == "refresh_token":
            refresh = form.get("refresh_token", [""])[0]
            if self.args.identity_token and secrets.compare_digest(
                refresh, self.args.identity_token
            ):
                return self.args.user, self.args.password
            return "(refresh token)", None
        return "(no grant)", None

    def valid(self, user: str, password: str | None) -> bool:
        return (
            self.args.user is not None
            and self.args.password is not None
            and password is not None
            and secrets.compare_digest(user, self.args.user)
            and secrets.compare_digest(password, self.args.password)
        )

    # -- registry-1.docker.io ------------------------------------------------------------

    def challenge(self, scope: str | None, error: str | None = None) -> tuple[str, str]:
        value = f'Bearer realm="{self.args.realm}",service="{self.args.service}"'
        if scope:
            value += f',scope="{scope}"'
        if error:
            value += f',error="{error}"'
        return ("WWW-Authenticate", value)

    def bearer(self, request: Request) -> Grant | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        grant = self.tokens.get(token.strip())
        if grant is None or grant.expires_at <= time.time():
            return None
        return grant

    def registry(self, request: Request) -> Response:
        grant = self.bearer(request)
        if request.path in ("/v2", "/v2/"):
            if grant is None:
                return registry_error(
                    401, "UNAUTHORIZED", "authentication required", [self.challenge(None)]
                )
            return json_response(200, {}, [API_VERSION])
        match = MANIFEST_PATH.fullmatch(request.path)
        if match is None:
            return registry_error(404, "NAME_UNKNOWN", "repository name not known to registry", [])
        repository, reference = match.group(1), match.group(2)
        agent = request.headers.get("user-agent", "")[:100]
        if request.method == "HEAD" and len(self.manifest_accept) < 50:
            # What a resolve asks for (the first HEAD per client): a fetch by digest that
            # follows asks for the one media type it expects.
            key = f"{agent} {request.path}"
            self.manifest_accept.setdefault(key, request.headers.get("accept", ""))
        scope = f"repository:{repository}:pull"
        manifests = self.repositories(grant).get(repository)
        if grant is None or manifests is None:
            error = None
            if "authorization" in request.headers:
                error = "invalid_token" if grant is None else "insufficient_scope"
            return registry_error(
                401, "UNAUTHORIZED", "authentication required", [self.challenge(scope, error)]
            )
        if request.method not in ("GET", "HEAD"):
            return registry_error(405, "UNSUPPORTED", "the operation is unsupported", [])
        by_digest = {
            "sha256:" + hashlib.sha256(body).hexdigest(): body for body in manifests.values()
        }
        body = manifests.get(reference) or by_digest.get(reference)
        if body is None:
            return registry_error(404, "MANIFEST_UNKNOWN", "manifest unknown", [])
        return self.manifest(request, grant, body)

    def repositories(self, grant: Grant | None) -> dict[str, dict[str, bytes]]:
        """What the grant's account may pull: the public repositories, and its own."""
        own = {}
        if grant is not None and grant.account is not None and grant.account == self.args.user:
            own = {f"{self.args.user}/private": {"1": TINY_INDEX}}
        return {**PUBLIC, **own}

    def manifest(self, request: Request, grant: Grant, body: bytes = MANIFEST) -> Response:
        authenticated = grant.account is not None
        source = account_id(grant.account) if grant.account else ratelimit_source(request.client)
        limit = self.args.authenticated_limit if authenticated else self.args.anonymous_limit
        initial = limit if self.args.remaining is None else min(self.args.remaining, limit)
        remaining = self.remaining.setdefault(source, initial)
        mode = self.mode()
        window = self.args.window
        limits = [
            ("ratelimit-limit", f"{limit};w={window}"),
            ("ratelimit-remaining", f"{remaining};w={window}"),
            ("docker-ratelimit-source", source),
        ]
        if mode == "ratelimited" or (mode != "noheaders" and remaining <= 0):
            if request.method == "GET":
                self.record_pull(request, source, counted=False)
            limits[1] = ("ratelimit-remaining", f"0;w={window}")
            return json_response(429, json.loads(TOOMANYREQUESTS), [API_VERSION, *limits])
        if request.method == "GET":
            # A GET on a manifest is a pull: Docker counts it against the limit.
            self.record_pull(request, source, counted=mode != "noheaders")
            if mode != "noheaders":
                remaining = self.remaining[source]
                limits[1] = ("ratelimit-remaining", f"{remaining};w={window}")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        headers = [
            ("Content-Type", INDEX_TYPE),
            ("Docker-Content-Digest", digest),
            ("Etag", f'"{digest}"'),
            API_VERSION,
        ]
        if mode != "noheaders":
            headers += limits
        return Response(200, headers, body)

    def record_pull(self, request: Request, source: str, *, counted: bool) -> None:
        self.manifest_gets.append({"path": request.path, "source": source})
        if counted:
            self.remaining[source] = max(0, self.remaining[source] - 1)


# -- HTTP/1.1 over asyncio streams ---------------------------------------------------------------


def parse_head(head: bytes, client: str) -> tuple[Request, int, bool]:
    """The request, its Content-Length and whether the connection stays open."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    length = int(headers.get("content-length", "0") or "0")
    if length < 0 or length > MAX_BODY:
        raise ValueError("body too large")
    url = urlsplit(target)
    keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    request = Request(method, url.path, parse_qs(url.query), headers, b"", client)
    return request, length, keep_alive


def serialize(response: Response, *, head_only: bool, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    lines.append(f"Content-Length: {len(response.body)}")
    lines.append(f"Date: {datetime.now(UTC).strftime('%a, %d %b %Y %H:%M:%S GMT')}")
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    # A HEAD answer has the headers the GET would have, and no body (RFC 9110, 9.3.2).
    return head if head_only else head + response.body


class Server:
    def __init__(self, hub: DockerHub) -> None:
        self.hub = hub
        self.connections: set[asyncio.StreamWriter] = set()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else "127.0.0.1"
        try:
            keep_alive = True
            while keep_alive:
                async with asyncio.timeout(IDLE_SECONDS):
                    head = await reader.readuntil(b"\r\n\r\n")
                try:
                    request, length, keep_alive = parse_head(head, client)
                    if length:
                        async with asyncio.timeout(IDLE_SECONDS):
                            body = await reader.readexactly(length)
                        request = Request(
                            request.method,
                            request.path,
                            request.query,
                            request.headers,
                            body,
                            client,
                        )
                except ValueError:
                    writer.write(serialize(Response(400), head_only=False, keep_alive=False))
                    await writer.drain()
                    return
                response = self.hub.handle(request)
                self.hub.write_state()
                writer.write(
                    serialize(response, head_only=request.method == "HEAD", keep_alive=keep_alive)
                )
                await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ConnectionError,
            ssl.SSLError,
        ):
            pass
        finally:
            self.connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                await writer.wait_closed()


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(args: argparse.Namespace) -> None:
    context: ssl.SSLContext | None = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    hub = DockerHub(args)
    server_state = Server(hub)
    host, port = split_listen(args.listen)
    server = await asyncio.start_server(
        server_state.connection, host, port, ssl=context, limit=MAX_HEAD
    )
    bound = server.sockets[0].getsockname()
    hub.listen = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
    hub.write_state()
    print(f"listening on {hub.listen}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
        server.close()
        for writer in list(server_state.connections):
            writer.close()
        await server.wait_closed()


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", required=True, help="ADDR:PORT ([::1]:0 for IPv6; 0 = any)")
    parser.add_argument("--cert", help="PEM chain; plain HTTP without it")
    parser.add_argument("--key", help="PEM key for --cert")
    parser.add_argument("--state-file", required=True)
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--mode-file", help="overrides --mode while it holds a mode name")
    parser.add_argument("--user", help="the one account that exists")
    parser.add_argument("--password", help="its password (or access token)")
    parser.add_argument("--identity-token", help="a refresh token accepted for --user")
    parser.add_argument("--auth-host", default="auth.docker.io")
    parser.add_argument("--registry-host", default="registry-1.docker.io")
    parser.add_argument("--realm", default="https://auth.docker.io/token")
    parser.add_argument("--service", default="registry.docker.io")
    parser.add_argument("--token-ttl", type=int, default=300, help="expires_in (Docker Hub: 300)")
    parser.add_argument("--window", type=int, default=21600)
    parser.add_argument("--anonymous-limit", type=int, default=100)
    parser.add_argument("--authenticated-limit", type=int, default=200)
    parser.add_argument("--remaining", type=int, help="pulls left at start (default: the limit)")
    args = parser.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")
    return args


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(arguments(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
