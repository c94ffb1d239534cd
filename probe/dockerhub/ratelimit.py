"""The `ratelimit` check: Docker Hub's remaining pulls for the node's egress, never a pull.

Docker's documented flow ("Docker Hub usage and limits"): a token for
`repository:ratelimitpreview/test:pull` from auth.docker.io, then a `HEAD` on that repository's
manifest, whose `ratelimit-*` headers give the limit, what is left and who is counted
(`docker-ratelimit-source`: the egress IPv4, IPv6 /64 or the account). A `GET` would be a pull.
Anonymous pulls are always read; authenticated ones when a `.dockerconfigjson` is configured.

Docker Hub is asked at most once per `ratelimit_interval` per account, with backoff after a
429 (`RateLimitGate`); between asks the last answer stands. The authenticated account is asked
only when its credentials may go to Docker Hub (`NodeClient.credentials_refused`: verified TLS
to auth.docker.io and registry-1.docker.io); otherwise nothing of it is sent, the detail says
why, and the anonymous limit is still read. The sans-IO rules live in
`probe.dockerhub`; this module only sends what they describe.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from probe.checks.client import CredentialsWithheld, FetchError, NodeClient
from probe.config import HostPort
from probe.dockerhub.rules import (
    DOCKER_HUB_REALM,
    DOCKER_HUB_REGISTRY,
    Auth,
    DockerConfigError,
    DockerCredentials,
    HubAnswer,
    ParsedRateLimit,
    RateLimitGate,
    Token,
    TokenCache,
    classify_manifest_head,
    manifest_head_request,
    parse_docker_config,
    parse_token_response,
    token_request,
)
from probe.reasons import CheckKind, Reason
from probe.result import CheckResult, RateLimit


@dataclass(frozen=True)
class AccountReading:
    """The last answer for one account: the check's verdict and the limits it read."""

    auth: Auth
    reason: Reason | None
    detail: str
    ratelimit: RateLimit | None
    seconds: float
    at: float  # Unix seconds


class DockerHubRateLimit:
    """Reads the limits for the anonymous and (when configured) the authenticated account."""

    def __init__(self, interval: float, credentials_file: str | None, timeout: float) -> None:
        self.credentials_file = credentials_file
        self.timeout = timeout  # each account's token request and HEAD together
        self._gate = RateLimitGate(interval)
        self._tokens = TokenCache()
        self._last: dict[Auth, AccountReading] = {}

    async def check(
        self, client: NodeClient, endpoint: HostPort
    ) -> tuple[CheckResult, tuple[RateLimit, ...]] | None:
        """One `ratelimit` result over every account, or None before any answer exists."""
        accounts = [Auth.ANONYMOUS]
        if self.credentials_file:
            accounts.append(Auth.AUTHENTICATED)
        readings: list[AccountReading] = []
        for auth in accounts:
            if auth is Auth.AUTHENTICATED:
                refused = _credentials_refused(client)
                if refused is not None:
                    self._tokens.drop(auth)  # a token got before is not sent either
                    readings.append(_withheld(auth, refused))
                    continue
            if self._gate.try_acquire(auth, time.monotonic()):
                self._last[auth] = await self._ask(client, auth)
            reading = self._last.get(auth)
            if reading is not None:
                readings.append(reading)
        if not readings:
            return None
        failed = [r for r in readings if r.reason is not None]
        details = "; ".join(f"{r.auth}: {r.detail}" for r in readings)
        cached = [r for r in readings if time.time() - r.at > 1.0]
        if cached:
            details += f" (Docker Hub is asked at most every {self._gate.interval:g}s per account)"
        result = CheckResult(
            endpoint=endpoint,
            check=CheckKind.RATELIMIT,
            ok=not failed,
            reason=failed[0].reason if failed else None,
            detail=details,
            phases={"processing": max(r.seconds for r in readings)},
        )
        limits = tuple(r.ratelimit for r in readings if r.ratelimit is not None)
        return result, limits

    async def _ask(self, client: NodeClient, auth: Auth) -> AccountReading:
        timeout = self.timeout
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                outcome = await self._flow(client, auth)
        except TimeoutError:
            outcome = HubAnswer(Reason.HTTP_TIMEOUT, f"Docker Hub did not answer in {timeout:g}s")
        except FetchError as error:
            outcome = HubAnswer(error.reason, error.detail)
        except CredentialsWithheld as error:
            outcome = HubAnswer(None, error.detail)
        except DockerConfigError as error:
            outcome = HubAnswer(
                Reason.AUTH_FAILED, f"credentials file {self.credentials_file}: {error}"
            )
        except OSError as error:
            outcome = HubAnswer(
                Reason.AUTH_FAILED,
                f"credentials file {self.credentials_file}: {error.strerror or error}",
            )
        now = time.monotonic()
        if outcome.reason == Reason.RATE_LIMITED:
            self._gate.record_rate_limited(auth, now, outcome.retry_after_seconds)
        elif outcome.reason is None:
            self._gate.record_success(auth, now)
        else:
            self._gate.record_failure(auth, now)
        limits: ParsedRateLimit | None = outcome.ratelimit
        return AccountReading(
            auth=auth,
            reason=outcome.reason,
            detail=outcome.detail,
            ratelimit=limits.as_ratelimit(auth) if limits is not None else None,
            seconds=time.perf_counter() - started,
            at=time.time(),
        )

    async def _flow(self, client: NodeClient, auth: Auth) -> HubAnswer:
        secret = auth is Auth.AUTHENTICATED  # an anonymous token is nobody's secret
        credentials = self._credentials() if secret else None
        if auth is Auth.AUTHENTICATED and credentials is None:
            return HubAnswer(
                Reason.AUTH_FAILED,
                f"credentials file {self.credentials_file} names no Docker Hub account",
            )
        token = self._tokens.get(auth, time.time())
        if token is None:
            asked = token_request(credentials, realm=DOCKER_HUB_REALM)
            answer = await client.request(
                asked.method, asked.url, list(asked.headers), asked.body, credentials=secret
            )
            issued = parse_token_response(answer.status, answer.body, time.time(), answer.headers)
            if not isinstance(issued, Token):
                return issued
            token = issued
            self._tokens.put(auth, token)
        head = manifest_head_request(token)
        answer = await client.request(head.method, head.url, list(head.headers), credentials=secret)
        outcome = classify_manifest_head(answer.status, answer.headers)
        if outcome.reason == Reason.AUTH_FAILED:
            self._tokens.drop(auth)
        return outcome

    def _credentials(self) -> DockerCredentials | None:
        assert self.credentials_file is not None  # noqa: S101 - only asked when configured
        with open(self.credentials_file, encoding="utf-8") as secret:
            return parse_docker_config(secret.read())


def _credentials_refused(client: NodeClient) -> str | None:
    """Why the account's credentials may not go to Docker Hub's token service (Basic, refresh
    token) or its registry (the account's Bearer token), or None when they may."""
    return client.credentials_refused(DOCKER_HUB_REALM) or client.credentials_refused(
        DOCKER_HUB_REGISTRY
    )


def _withheld(auth: Auth, refused: str) -> AccountReading:
    """The reading of an account whose credentials may not be sent: no limit, and why."""
    return AccountReading(
        auth=auth,
        reason=None,
        detail=f"credentials not sent: {refused}; only the anonymous limit is read",
        ratelimit=None,
        seconds=0.0,
        at=time.time(),
    )
