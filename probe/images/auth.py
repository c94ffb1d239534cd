"""Authorizing at a registry as the runtime does: a token from the realm it names, or Basic.

A registry that wants credentials answers 401 with `WWW-Authenticate`. For `Bearer`, the
runtime asks the named realm for a token (`GET realm?service=...&scope=repository:<name>:pull`,
with the account as Basic when it has one: distribution's token spec, the fallback containerd
takes when a realm refuses the OAuth POST) and sends the request again with it; for `Basic`, it
sends the request again with the username and password.

Where credentials go (SPEC.md, "Images"): only over TLS the node verifies, to the registry's
host or the realm that host named; over plain HTTP only to a registry configured as plain HTTP;
never to a host whose certificate is not verified (`skip_verify`), never after a redirect (the
client follows none). `NodeClient.credentials_refused` is that rule, and every request carrying
an account is marked `credentials=True`, so the client refuses it too. Where they may not go,
the request is made without them and the detail says why. Tokens and passwords live in memory
for one check and are never shown.

`verify_registry_credentials` is the registry check's part (issue 10, item 7): the config's
`credentials_file` for a registry, tried at its `GET /v2/` challenge, so that rejected
credentials are `auth_failed` on the `http` check before any pull fails.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from probe.checks.auth import basic_authorization
from probe.checks.challenge import Challenge
from probe.checks.client import FetchError, NodeClient
from probe.config import HostPort
from probe.display import describe_input
from probe.dockerhub.rules import ConfigEntry, DockerConfigError, DockerCredentials, Token
from probe.dockerhub.rules import parse_docker_config_entries as parse_entries
from probe.images.keyring import Keyring
from probe.images.pull import Answer, Step, classify_manifest, classify_token
from probe.reasons import Reason
from probe.result import CheckResult

_ACCEPT_JSON = ("Accept", "application/json")


@dataclass(frozen=True, repr=False)
class Authorization:
    """The `Authorization` header a retried request carries; never shown."""

    scheme: str  # "bearer" or "basic"
    header: str
    account: bool  # it carries an account (Basic, or a token issued for one): a credential
    note: str = ""  # why credentials were not sent, when they were withheld

    def __repr__(self) -> str:
        return f"Authorization({self.scheme}, '***')"

    __str__ = __repr__


def token_url(realm: str, service: str | None, scopes: tuple[str, ...]) -> str:
    """The realm with `service` and each `scope` (containerd's getToken; `:` and `/` of a scope
    left as they are, as Docker's examples write them)."""
    params = [("service", service)] if service else []
    params += [("scope", scope) for scope in scopes if scope]
    query = urlencode(params, safe=":/")
    if not query:
        return realm
    return f"{realm}{'&' if '?' in realm else '?'}{query}"


async def authorize(
    client: NodeClient,
    challenges: tuple[Challenge, ...],
    scope: str,
    credentials: DockerCredentials | None,
) -> Authorization | Answer:
    """What to send again after a 401: a Bearer token from the realm, or Basic. An `Answer`
    (failed) when the token service refuses or cannot be reached, or Basic without
    credentials. Credentials go to the realm only where `client.credentials_refused` allows
    (verified TLS; plain HTTP for a registry configured so); else the token is asked for
    without them, and the authorization's note says why."""
    challenge = challenges[0]  # the runtime answers the first challenge it knows
    if challenge.scheme == "basic":
        if credentials is None or credentials.password is None:
            return Answer(
                Step.FAILED,
                Reason.IMAGE_AUTH_MISSING,
                "401 Basic challenge, and no username and password offered for this registry",
            )
        return Authorization(
            "basic", basic_authorization(credentials.username, credentials.password), True
        )
    realm = challenge.realm
    parsed = urlsplit(realm or "")
    try:
        port = parsed.port
    except ValueError:  # a port out of range or not a number
        parsed = parsed._replace(scheme="")
        port = None
    if not realm or parsed.scheme not in ("http", "https") or not parsed.hostname:
        return Answer(
            Step.FAILED,
            Reason.NOT_A_REGISTRY,
            f"401 Bearer challenge without a usable realm ({describe_input(realm)})",
        )
    note = ""
    if credentials is not None:
        withheld = client.credentials_refused(realm)
        if withheld is not None:
            note = f"credentials not sent to the token service: {withheld}"
            credentials = None
    url = token_url(realm, challenge.params.get("service"), (scope,))
    headers = [_ACCEPT_JSON]
    if credentials is not None and credentials.password is not None:
        headers.append(
            ("Authorization", basic_authorization(credentials.username, credentials.password))
        )
    host = parsed.hostname
    endpoint = HostPort(host, port or (443 if parsed.scheme == "https" else 80))
    try:
        answer = await client.request("GET", url, headers, credentials=credentials is not None)
    except FetchError as error:
        detail = f"token service {host}: {error.detail}"
        return Answer(Step.FAILED, error.reason, detail, endpoint=endpoint)
    issued = classify_token(
        answer.status,
        answer.body,
        answer.headers,
        time.time(),
        credentials_offered=credentials is not None,
    )
    if isinstance(issued, Token):
        return Authorization("bearer", f"Bearer {issued.value}", credentials is not None, note)
    detail = f"token service {host}: {issued.detail}"
    detail = f"{detail} ({note})" if note else detail
    return dataclasses.replace(issued, detail=detail, endpoint=endpoint)


def credentials_timed_out(http: CheckResult, timeout: float) -> CheckResult:
    """The `http` check when checking the credentials took longer than the deadline."""
    return dataclasses.replace(
        http,
        ok=False,
        reason=Reason.HTTP_TIMEOUT,
        detail=f"{http.detail}; no answer in {timeout:g}s while checking the credentials",
    )


def _read_entries(path: str) -> tuple[ConfigEntry, ...]:
    with open(path, encoding="utf-8") as secret:
        return parse_entries(secret.read(1 << 20))


async def verify_registry_credentials(
    client: NodeClient,
    http: CheckResult,
    api_url: str,
    registry: str,
    credentials_file: str,
) -> CheckResult:
    """The `http` check of a registry with a `credentials_file`, with the credentials tried at
    its `GET /v2/` challenge: `auth_failed` when the token service (Bearer) or the registry
    (Basic) rejects them, the check unchanged (detail extended) otherwise. The caller bounds it
    with its deadline (`credentials_timed_out` when it passes)."""

    def failed(reason: Reason, detail: str) -> CheckResult:
        return dataclasses.replace(http, ok=False, reason=reason, detail=f"{http.detail}; {detail}")

    def noted(detail: str) -> CheckResult:
        return dataclasses.replace(http, detail=f"{http.detail}; {detail}")

    try:
        entries = _read_entries(credentials_file)
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        return failed(Reason.AUTH_FAILED, f"credentials file {credentials_file}: {reason}")
    except DockerConfigError as error:
        return failed(Reason.AUTH_FAILED, f"credentials file {credentials_file}: {error}")
    offered = Keyring.of(f"credentials_file {credentials_file}", entries).lookup(registry)
    account = next((o for o in offered if o.credentials is not None), None)
    if account is None or account.credentials is None:
        return failed(
            Reason.AUTH_FAILED,
            f"credentials file {credentials_file} holds no username and password for {registry}",
        )
    who = account.describe()
    withheld = client.credentials_refused(api_url)
    if withheld is not None:
        return noted(f"credentials not checked: {withheld}")
    try:
        verdict = await _login(client, api_url, account.credentials)
    except FetchError as error:
        return failed(error.reason, f"checking the credentials: {error.detail}")
    if verdict is None:
        return noted(f"{who} accepted")
    if isinstance(verdict, str):
        return noted(verdict)
    assert verdict.reason is not None  # noqa: S101 - a failed answer carries its reason
    return failed(verdict.reason, f"{who}: {verdict.detail}")


async def _login(
    client: NodeClient, api_url: str, credentials: DockerCredentials
) -> Answer | str | None:
    """`docker login`'s check: None when accepted, a note when there was nothing to check, or
    the failed answer."""
    first = await client.request("GET", api_url, [_ACCEPT_JSON])
    read = classify_manifest(
        first.status, first.headers, authorization=None, credentials_offered=True
    )
    if first.status == 200:
        return "the registry asks for no credentials at /v2/: not checked"
    if read.step != Step.CHALLENGED:
        return f"credentials not checked: GET /v2/ answered {first.status}"
    scheme = read.challenges[0].scheme
    authorization = await authorize(client, read.challenges, "", credentials)
    if isinstance(authorization, Answer):
        if authorization.reason == Reason.IMAGE_AUTH_MISSING:  # cannot happen with credentials
            return dataclasses.replace(authorization, reason=Reason.AUTH_FAILED)
        return authorization
    if authorization.note:
        return f"credentials not checked: {authorization.note}"
    if scheme == "bearer":
        return None  # the token service accepted them; /v2/ needs no scope to answer
    again = await client.request(
        "GET",
        api_url,
        [_ACCEPT_JSON, ("Authorization", authorization.header)],
        credentials=authorization.account,
    )
    if again.status == 200:
        return None
    return Answer(
        Step.FAILED, Reason.AUTH_FAILED, f"GET /v2/ with them (Basic) answered {again.status}"
    )
