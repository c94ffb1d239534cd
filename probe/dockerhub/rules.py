"""Docker Hub's pull rate limit, read without spending a pull: the sans-IO core of `ratelimit`.

The flow is the one Docker documents ("Docker Hub pull usage and limits", docs.docker.com):

1. a token from ``auth.docker.io/token`` (``service=registry.docker.io``,
   ``scope=repository:ratelimitpreview/test:pull``), anonymous, or with the credentials of a
   ``.dockerconfigjson`` (as a Kubernetes ``docker-registry`` secret mounts it);
2. ``HEAD`` on ``registry-1.docker.io/v2/ratelimitpreview/test/manifests/latest`` with that token.
   Never a GET: Docker's docs say "using GET emulates a real pull and will count towards the
   limit; using HEAD will not";
3. the answer's ``ratelimit-limit`` / ``ratelimit-remaining`` (``N;w=SECONDS``) and
   ``docker-ratelimit-source`` headers, which a 429 carries too. No headers at all means the
   account's pulls are not limited (paid plans).

Nothing here does I/O. Requests are described as values (`HttpRequest`), answers are classified
from status, headers and body into a `HubAnswer` carrying at most one `Reason`, and the schedule
(`RateLimitGate`, `TokenCache`) takes the time as an argument. Secrets (passwords, identity and
bearer tokens) never appear in a repr, a detail or an error message.

Exceptions::

    ValueError
     └── DockerConfigError    a .dockerconfigjson that cannot be used; the message names the key,
                              never a secret, and the cause is not chained (it may quote the file)
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal
from urllib.parse import urlencode

from probe.checks.auth import basic_authorization
from probe.checks.http import json_object
from probe.config import DOCKER_HUB_ALIASES
from probe.display import describe_input
from probe.reasons import Reason
from probe.result import RateLimit

DOCKER_HUB_REALM = "https://auth.docker.io/token"
DOCKER_HUB_SERVICE = "registry.docker.io"
DOCKER_HUB_REGISTRY = "https://registry-1.docker.io"
# Docker's own example repository for reading the limit; a HEAD on it costs nothing.
RATELIMIT_PREVIEW_REPOSITORY = "ratelimitpreview/test"
RATELIMIT_PREVIEW_SCOPE = f"repository:{RATELIMIT_PREVIEW_REPOSITORY}:pull"

# What containerd asks for when it resolves a tag: index and list types first, so the registry
# answers with the multi-platform index it would serve to a pull.
MANIFEST_ACCEPT: tuple[str, ...] = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

# Distribution's token client (registry/client/auth/session.go, minimumTokenLifetimeSeconds):
# a missing or shorter expires_in counts as 60 s.
MINIMUM_TOKEN_LIFETIME_SECONDS = 60


class Auth(StrEnum):
    """The account a request counts against; the `auth` label of the dockerhub metrics."""

    ANONYMOUS = "anonymous"
    AUTHENTICATED = "authenticated"


# --- ratelimit-* headers ---------------------------------------------------------------------

_LIMIT_NAMES = ("ratelimit-limit", "x-ratelimit-limit")
_REMAINING_NAMES = ("ratelimit-remaining", "x-ratelimit-remaining")
_SOURCE_NAME = "docker-ratelimit-source"
_NUMBER = re.compile(r"[0-9]{1,15}")  # ASCII only: int() would also take "١٢" and "1_0"
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")
# What a token may be to go in `Authorization: Bearer <token>`: visible ASCII. RFC 6750's
# b64token is narrower (JWTs, Docker Hub's tokens, fit it); a space, a control character (a CR LF
# would split the header) or a non-ASCII character cannot be sent as a header value here.
_HEADER_TOKEN = re.compile(r"[!-~]+")
_QUOTE_LENGTH = 40
_MESSAGE_LENGTH = 200


@dataclass(frozen=True)
class ParsedRateLimit:
    """What Docker Hub's rate-limit headers say; `problem` explains any value that was unusable."""

    limit: int | None
    remaining: int | None
    window_seconds: int | None
    source: str | None
    headers_present: bool
    problem: str | None = None

    def as_ratelimit(self, auth: Auth) -> RateLimit:
        return RateLimit(
            auth=str(auth),
            limit=self.limit,
            remaining=self.remaining,
            window_seconds=self.window_seconds,
            source=self.source,
            headers_present=self.headers_present,
        )

    def describe(self) -> str:
        """The limit in words, for a check's detail."""
        if not self.headers_present:
            text = "no rate-limit headers: pulls by this account are not limited"
        else:
            left = "?" if self.remaining is None else str(self.remaining)
            of = "?" if self.limit is None else str(self.limit)
            text = f"{left} of {of} pulls left"
            if self.window_seconds is not None:
                text += f" per {self.window_seconds} s window"
        if self.source is not None:
            text += f", counted against {self.source}"
        if self.problem is not None:
            text += f" ({self.problem})"
        return text


@dataclass(frozen=True)
class _Quota:
    count: int
    window: int | None


def _parse_quota(name: str, value: str) -> tuple[_Quota | None, str | None]:
    """``N;w=S`` (Docker Hub), also ``N``, extra parameters, spaces, and the IETF draft's list
    form ``10, 10;w=1, 50;w=60`` whose first item is the quota in force."""
    if not value.strip():
        return None, f"{name} is empty"
    items = value.split(",")
    count_text = items[0].split(";", 1)[0].strip()
    shown = describe_input(value, _QUOTE_LENGTH)
    if not _NUMBER.fullmatch(count_text):
        return None, f"{name} {shown} is not a pull count (N;w=SECONDS)"
    count = int(count_text)
    window: int | None = None
    for item in items:
        for param in item.split(";")[1:]:
            key, _, raw = param.partition("=")
            if key.strip().lower() != "w":
                continue  # other parameters (comments, policies) carry nothing we need
            raw = raw.strip().strip('"')
            if not _NUMBER.fullmatch(raw) or int(raw) == 0:
                return None, f"{name} {shown} has a window that is not a number of seconds"
            if window is None:
                window = int(raw)
    return _Quota(count, window), None


def _parse_source(value: str) -> tuple[str | None, str | None]:
    text = value.strip()
    if not text:
        return None, f"{_SOURCE_NAME} is empty"
    try:
        return str(ipaddress.ip_address(text)), None
    except ValueError:
        pass
    try:  # an IPv6 /64 may come written as a network
        return str(ipaddress.ip_network(text, strict=False)), None
    except ValueError:
        pass
    if _ACCOUNT_ID.fullmatch(text):
        return text, None
    shown = describe_input(text, _QUOTE_LENGTH)
    return None, f"{_SOURCE_NAME} {shown} is neither an address nor an account id"


def parse_ratelimit_headers(headers: Iterable[tuple[str, str]]) -> ParsedRateLimit:
    """Read Docker Hub's limit from response headers; never raises on what a server sends.

    Names are matched case-insensitively; ``ratelimit-*`` wins over ``x-ratelimit-*``, and the
    first of repeated headers counts. The window is read from ``;w=``, never assumed.
    """
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name.strip().lower(), value)

    problems: list[str] = []

    def quota(names: tuple[str, ...]) -> tuple[bool, _Quota | None]:
        for name in names:
            if name in first:
                parsed, problem = _parse_quota(name, first[name])
                if problem is not None:
                    problems.append(problem)
                return True, parsed
        return False, None

    limit_sent, limit = quota(_LIMIT_NAMES)
    remaining_sent, remaining = quota(_REMAINING_NAMES)
    source: str | None = None
    if _SOURCE_NAME in first:
        source, problem = _parse_source(first[_SOURCE_NAME])
        if problem is not None:
            problems.append(problem)

    if limit_sent != remaining_sent:
        missing, sent = ("limit", "remaining") if remaining_sent else ("remaining", "limit")
        problems.append(f"ratelimit-{sent} sent without ratelimit-{missing}")
    window = limit.window if limit is not None else None
    if remaining is not None and remaining.window is not None:
        if window is None:
            window = remaining.window
        elif remaining.window != window:
            problems.append(
                f"limit and remaining windows differ ({window} s, {remaining.window} s)"
            )
    if limit is not None and remaining is not None and remaining.count > limit.count:
        problems.append(f"remaining {remaining.count} exceeds limit {limit.count}")

    return ParsedRateLimit(
        limit=None if limit is None else limit.count,
        remaining=None if remaining is None else remaining.count,
        window_seconds=window,
        source=source,
        headers_present=limit_sent or remaining_sent,
        problem="; ".join(problems) or None,
    )


# --- credentials from .dockerconfigjson ------------------------------------------------------


class DockerConfigError(ValueError):
    """A .dockerconfigjson that cannot be used. The message never contains a secret."""


@dataclass(frozen=True, repr=False)
class DockerCredentials:
    """A Docker Hub account: username with password (or access token), or an identity token."""

    username: str
    password: str | None = None
    identity_token: str | None = None

    def __repr__(self) -> str:
        secret = "identity_token" if self.identity_token is not None else "password"
        return f"DockerCredentials(username={self.username!r}, {secret}='***')"

    __str__ = __repr__


def _registry_host(key: str) -> str:
    """``https://index.docker.io/v1/`` -> ``index.docker.io``."""
    host = key.strip().lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    return host.split("/", 1)[0]


def _string_field(entry: Mapping[str, object], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DockerConfigError(f"{where}.{key} is not a string")
    return value


def _decode_auth(auth: str, where: str) -> tuple[str, str]:
    text = auth.strip()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise DockerConfigError(f'{where}.auth is not base64 of "user:password"') from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise DockerConfigError(f'{where}.auth has no ":" between user and password')
    return username, password


def _credentials_from_entry(entry: Mapping[str, object], where: str) -> DockerCredentials:
    username = _string_field(entry, "username", where)
    password = _string_field(entry, "password", where)
    identity_token = _string_field(entry, "identitytoken", where)
    auth = _string_field(entry, "auth", where)
    if auth is not None:
        # As the docker CLI does: a non-empty "auth" overrides username and password.
        username, password = _decode_auth(auth, where)
    if identity_token is not None:
        return DockerCredentials(username=username or "", identity_token=identity_token)
    if username and password:
        return DockerCredentials(username=username, password=password)
    raise DockerConfigError(f"{where} has neither auth, username and password, nor identitytoken")


def _auths(text: str) -> tuple[dict[str, object], dict[str, object]]:
    """The document and its registry map: ``auths`` (``.dockerconfigjson``) or, in the older
    ``.dockercfg`` shape, the top level. Raises `DockerConfigError`."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.doc is the whole file: report the position only, and do not chain.
        raise DockerConfigError(f"not JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise DockerConfigError("not JSON (nested too deeply)") from None
    if not isinstance(document, dict):
        raise DockerConfigError("the top level is not a JSON object")
    auths = document.get("auths", document)
    if not isinstance(auths, dict):
        raise DockerConfigError("auths is not a JSON object")
    return document, auths


def parse_docker_config(text: str) -> DockerCredentials | None:
    """Docker Hub's credentials from a .dockerconfigjson; None when it names no Docker Hub key.

    Also reads the older ``.dockercfg`` shape (registries at the top level, no ``auths``).
    Raises `DockerConfigError` for a file that cannot be used.
    """
    document, auths = _auths(text)
    hub_keys = sorted(
        (key for key in auths if _registry_host(key) in DOCKER_HUB_ALIASES),
        key=lambda key: DOCKER_HUB_ALIASES.index(_registry_host(key)),
    )
    if not hub_keys:
        helpers = document.get("credHelpers")
        if isinstance(helpers, dict) and any(
            _registry_host(key) in DOCKER_HUB_ALIASES for key in helpers
        ):
            raise DockerConfigError(
                "Docker Hub's credentials are in a credential helper (credHelpers), "
                "which cannot run here: put them in auths"
            )
        return None
    key = hub_keys[0]
    where = f"auths[{json.dumps(key)}]"
    entry = auths[key]
    if not isinstance(entry, dict):
        raise DockerConfigError(f"{where} is not a JSON object")
    if not entry and document.get("credsStore"):
        # What `docker login` leaves when a credential store (desktop, osxkeychain) holds it.
        raise DockerConfigError(
            f"{where} is empty: the credentials are in a credential store (credsStore), "
            "which cannot run here: put them in auths"
        )
    return _credentials_from_entry(entry, where)


@dataclass(frozen=True)
class ConfigEntry:
    """One registry key of a .dockerconfigjson and the account it holds for the kubelet.

    The kubelet reads `username`, `password` and `auth` of each key (pkg/credentialprovider,
    DockerConfigEntry.UnmarshalJSON: a non-empty `auth` replaces the other two) and nothing else:
    an entry with only an `identitytoken` reaches the runtime as no credentials at all, so
    `credentials` is None then, and `note` says why.
    """

    key: str  # as the file writes it: "https://index.docker.io/v1/", "registry.example.com"
    credentials: DockerCredentials | None
    note: str | None = None


def parse_docker_config_entries(text: str) -> tuple[ConfigEntry, ...]:
    """Every registry key of a .dockerconfigjson (or .dockercfg), in the file's order, with the
    username and password the kubelet would offer for it.

    Raises `DockerConfigError` for a file the kubelet cannot read (not JSON, an entry that is not
    an object, an `auth` that is not base64 of `user:password`): it fails every pull then.
    """
    _, auths = _auths(text)
    entries: list[ConfigEntry] = []
    for key, entry in auths.items():
        where = f"auths[{json.dumps(key)}]"
        if not isinstance(entry, dict):
            raise DockerConfigError(f"{where} is not a JSON object")
        username = _string_field(entry, "username", where)
        password = _string_field(entry, "password", where)
        auth = _string_field(entry, "auth", where)
        if auth is not None:
            username, password = _decode_auth(auth, where)
        if username and password:
            entries.append(ConfigEntry(key, DockerCredentials(username, password=password)))
        elif _string_field(entry, "identitytoken", where) is not None:
            note = "holds only an identitytoken, which the kubelet does not pass to the runtime"
            entries.append(ConfigEntry(key, None, note))
        else:
            entries.append(ConfigEntry(key, None, "holds no username and password"))
    return tuple(entries)


# --- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """One request to make; headers and body are left out of the repr (they carry secrets)."""

    method: Literal["GET", "HEAD", "POST"]
    url: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    body: bytes = field(default=b"", repr=False)


def token_request_url(
    realm: str = DOCKER_HUB_REALM,
    service: str = DOCKER_HUB_SERVICE,
    scope: str = RATELIMIT_PREVIEW_SCOPE,
) -> str:
    """The token URL as Docker's docs write it (``:`` and ``/`` of the scope left unescaped)."""
    query = urlencode({"service": service, "scope": scope}, safe=":/")
    return f"{realm}{'&' if '?' in realm else '?'}{query}"


def token_request(
    credentials: DockerCredentials | None,
    realm: str = DOCKER_HUB_REALM,
    service: str = DOCKER_HUB_SERVICE,
    scope: str = RATELIMIT_PREVIEW_SCOPE,
    client_id: str = "registry-probe",
) -> HttpRequest:
    """The token request: anonymous GET, GET with Basic auth, or an OAuth2 refresh-token POST
    for an identity token (distribution's docs, "Docker Registry v2 authentication via OAuth2")."""
    if credentials is None:
        return HttpRequest("GET", token_request_url(realm, service, scope))
    if credentials.identity_token is not None:
        form = {
            "grant_type": "refresh_token",
            "service": service,
            "scope": scope,
            "client_id": client_id,
            "refresh_token": credentials.identity_token,
        }
        return HttpRequest(
            "POST",
            realm,
            headers=(("Content-Type", "application/x-www-form-urlencoded"),),
            body=urlencode(form).encode("ascii"),
        )
    basic = basic_authorization(credentials.username, credentials.password or "")
    return HttpRequest(
        "GET",
        token_request_url(realm, service, scope),
        headers=(("Authorization", basic),),
    )


def manifest_head_request(
    token: Token | None,
    registry: str = DOCKER_HUB_REGISTRY,
    repository: str = RATELIMIT_PREVIEW_REPOSITORY,
    reference: str = "latest",
) -> HttpRequest:
    """The HEAD that reads the limit. Always HEAD: a GET on a manifest is a pull."""
    headers = [("Accept", ", ".join(MANIFEST_ACCEPT))]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token.value}"))
    url = f"{registry.rstrip('/')}/v2/{repository}/manifests/{reference}"
    return HttpRequest("HEAD", url, headers=tuple(headers))


# --- answers ----------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Token:
    """A bearer token and when it stops being valid (Unix seconds)."""

    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Token(value='***', expires_at={self.expires_at!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class HubAnswer:
    """What one step of the check learned: ok (reason None) or exactly one reason, in words."""

    reason: Reason | None
    detail: str
    ratelimit: ParsedRateLimit | None = None  # None when the answer said nothing about limits
    retry_after_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _server_message(body: bytes) -> str | None:
    """The human part of an error body: distribution's ``errors[0]`` or auth.docker.io's
    ``details``. Only these fields are read (never echo a body wholesale), bounded."""
    document = json_object(body)
    if document is None:
        return None
    message: object = document.get("details")
    errors = document.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code, text = errors[0].get("code"), errors[0].get("message")
        parts = [str(p) for p in (code, text) if isinstance(p, str) and p]
        message = ": ".join(parts) or message
    if not isinstance(message, str):
        return None
    text = "".join(c for c in " ".join(message.split()) if c.isprintable())
    if len(text) > _MESSAGE_LENGTH:
        text = text[:_MESSAGE_LENGTH] + "..."
    return text or None


def _retry_after(headers: Iterable[tuple[str, str]]) -> float | None:
    """Retry-After in delta-seconds; an HTTP-date form is ignored (the backoff applies)."""
    for name, value in headers:
        if name.strip().lower() == "retry-after":
            text = value.strip()
            return float(text) if _NUMBER.fullmatch(text) else None
    return None


def _expires_in(document: Mapping[str, object]) -> int:
    value = document.get("expires_in")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        return MINIMUM_TOKEN_LIFETIME_SECONDS
    # Clamped before int(): json.loads reads Infinity, and a day is longer than any Hub token.
    return int(max(MINIMUM_TOKEN_LIFETIME_SECONDS, min(value, 86400)))


def _issued_at(document: Mapping[str, object]) -> float | None:
    value = document.get("issued_at")
    if not isinstance(value, str):
        return None
    try:
        issued = datetime.fromisoformat(value)
        return issued.timestamp() if issued.tzinfo is not None else None
    except (ValueError, OverflowError, OSError):  # not RFC 3339, or a year timestamp() rejects
        return None


def _limits_clause(limits: ParsedRateLimit) -> str:
    """The limit after a 429's detail; nothing when the 429 carried no limit headers (saying
    "not limited" there would contradict the 429)."""
    return f"; {limits.describe()}" if limits.headers_present else ""


def parse_token_response(
    status: int, body: bytes, now: float, headers: Iterable[tuple[str, str]] = ()
) -> Token | HubAnswer:
    """A token, or why there is none: 401/403 auth_failed, 429 rate_limited (with the limit
    headers of the 429), a 200 without a usable token not_a_registry, anything else
    http_unexpected_status. `now` is Unix time, as ``issued_at`` is."""
    headers = list(headers)
    if status == 200:
        document = json_object(body)
        if document is None:
            return HubAnswer(Reason.NOT_A_REGISTRY, "token service answered 200 without JSON")
        value = document.get("token") or document.get("access_token")
        if not isinstance(value, str) or not value:
            return HubAnswer(Reason.NOT_A_REGISTRY, "token service answered 200 without a token")
        if not _HEADER_TOKEN.fullmatch(value):
            # Answered, but not with what a token service gives: like a 200 without a token,
            # not a status problem. The token itself is never quoted.
            return HubAnswer(
                Reason.NOT_A_REGISTRY,
                "token service answered 200 with a token that cannot be sent in a header "
                "(a space, a control or a non-ASCII character)",
            )
        lifetime = _expires_in(document)
        issued = _issued_at(document)
        # issued_at counts only when the clocks roughly agree; otherwise the lifetime runs from
        # now (the token spec's rule when issued_at is absent).
        start = issued if issued is not None and 0 <= now - issued < lifetime else now
        return Token(value=value, expires_at=start + lifetime)

    message = _server_message(body)
    said = f": {message}" if message else ""
    if status in (401, 403):
        return HubAnswer(
            Reason.AUTH_FAILED,
            f"token service rejected the credentials ({status}){said}",
        )
    if status == 429:
        limits = parse_ratelimit_headers(headers)
        return HubAnswer(
            Reason.RATE_LIMITED,
            f"token service answered 429{said or ': toomanyrequests'}{_limits_clause(limits)}",
            ratelimit=limits,
            retry_after_seconds=_retry_after(headers),
        )
    return HubAnswer(Reason.HTTP_UNEXPECTED_STATUS, f"token service answered {status}{said}")


def classify_manifest_head(status: int, headers: Iterable[tuple[str, str]]) -> HubAnswer:
    """The answer to the manifest HEAD: 200 ok with the limit, 429 rate_limited with the limit
    read from the 429 too, 401/403 auth_failed, anything else http_unexpected_status."""
    headers = list(headers)
    limits = parse_ratelimit_headers(headers)
    names = {name.strip().lower() for name, _ in headers}
    if status == 200:
        if not names & {"docker-distribution-api-version", "docker-content-digest"}:
            return HubAnswer(
                Reason.NOT_A_REGISTRY,
                "manifest HEAD answered 200 without Docker-Content-Digest or "
                "Docker-Distribution-Api-Version: not a registry (a captive portal or proxy page?)",
                ratelimit=limits,
            )
        return HubAnswer(None, limits.describe(), ratelimit=limits)
    if status == 429:
        return HubAnswer(
            Reason.RATE_LIMITED,
            f"toomanyrequests: pull rate limit reached{_limits_clause(limits)}",
            ratelimit=limits,
            retry_after_seconds=_retry_after(headers),
        )
    if status in (401, 403):
        return HubAnswer(
            Reason.AUTH_FAILED,
            f"registry rejected the token for {RATELIMIT_PREVIEW_REPOSITORY} ({status})",
            ratelimit=limits if limits.headers_present else None,
        )
    return HubAnswer(
        Reason.HTTP_UNEXPECTED_STATUS,
        f"manifest HEAD answered {status}",
        ratelimit=limits if limits.headers_present else None,
    )


# --- schedule ---------------------------------------------------------------------------------


@dataclass
class _Schedule:
    next_at: float
    rate_limited_streak: int = 0


class RateLimitGate:
    """Docker Hub is asked at most once per `interval` per account, and after a 429 at most once
    per ``interval * 2**n`` (n consecutive 429s; at least Retry-After; capped at `max_backoff`,
    never below `interval`). A success resets the backoff. Times are seconds on one monotonic
    clock, passed in.

    `try_acquire` reserves the slot before the request is made, so two checks running at once
    cannot both ask.
    """

    def __init__(self, interval: float, *, max_backoff: float = 3600.0) -> None:
        if interval <= 0:
            raise ValueError("ratelimit_interval must be positive")
        self.interval = interval
        self.max_backoff = max_backoff
        self._schedules: dict[Auth, _Schedule] = {}

    def try_acquire(self, account: Auth, now: float) -> bool:
        """True (and the slot is taken) when this account may ask Docker Hub now."""
        schedule = self._schedules.get(account)
        if schedule is not None and now < schedule.next_at:
            return False
        if schedule is None:
            self._schedules[account] = _Schedule(next_at=now + self.interval)
        else:
            schedule.next_at = now + self.interval
        return True

    def record_success(self, account: Auth, now: float) -> None:
        self._schedules[account] = _Schedule(next_at=now + self.interval)

    def record_failure(self, account: Auth, now: float) -> None:
        """Any failure but a 429: the next ask waits one interval; the backoff is unchanged."""
        schedule = self._schedules.setdefault(account, _Schedule(next_at=now))
        schedule.next_at = now + self.interval

    def record_rate_limited(
        self, account: Auth, now: float, retry_after: float | None = None
    ) -> float:
        """A 429: back off. Returns the delay until the next ask."""
        schedule = self._schedules.setdefault(account, _Schedule(next_at=now))
        schedule.rate_limited_streak += 1
        exponent = min(schedule.rate_limited_streak, 32)  # 2.0**n overflows a float past 1023
        wanted = max(self.interval * 2.0**exponent, retry_after or 0.0)
        delay = max(self.interval, min(self.max_backoff, wanted))
        schedule.next_at = now + delay
        return delay


class TokenCache:
    """Bearer tokens per account, reused until `refresh_margin` seconds before they expire.
    Times are Unix seconds (the clock of `Token.expires_at`)."""

    def __init__(self, *, refresh_margin: float = 10.0) -> None:
        self.refresh_margin = refresh_margin
        self._tokens: dict[Auth, Token] = {}

    def get(self, account: Auth, now: float) -> Token | None:
        token = self._tokens.get(account)
        if token is None or now >= token.expires_at - self.refresh_margin:
            return None
        return token

    def put(self, account: Auth, token: Token) -> None:
        self._tokens[account] = token

    def drop(self, account: Auth) -> None:
        """Forget the token (the registry answered 401 to it, or the credentials changed)."""
        self._tokens.pop(account, None)
