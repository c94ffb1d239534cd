"""The Docker Hub stand-in on 127.0.0.1, driven by the probe's own sans-IO requests and parsers."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from lab.pki import CertificateAuthority

from probe.dockerhub.rules import (
    DockerCredentials,
    HttpRequest,
    HubAnswer,
    Token,
    classify_manifest_head,
    manifest_head_request,
    parse_token_response,
    token_request,
)
from probe.images.pull import MANIFEST_ACCEPT
from probe.reasons import Reason

STANDIN = Path(__file__).with_name("dockerhub_standin.py")
USER = "alice"
PASSWORD = "correct-horse-battery"  # noqa: S105 - the stand-in's test account, not a credential
IDENTITY_TOKEN = "refresh-me"  # noqa: S105 - same
WRONG_PASSWORD = "wrong"  # noqa: S105 - same
MANIFEST = "/v2/ratelimitpreview/test/manifests/latest"
START_SECONDS = 10.0


class Standin:
    """A running stand-in: its port, its recorded counts, and a client that speaks to it."""

    def __init__(self, process: subprocess.Popen[bytes], state_file: Path, scheme: str) -> None:
        self.process = process
        self.state_file = state_file
        self.scheme = scheme
        self.port = 0

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.state_file.read_text())
        return result

    def send(self, client: httpx.Client, request: HttpRequest) -> httpx.Response:
        """Send a request meant for Docker Hub to the stand-in, with Docker Hub's Host header."""
        url = urlsplit(request.url)
        target = url.path + (f"?{url.query}" if url.query else "")
        return client.request(
            request.method,
            f"{self.scheme}://127.0.0.1:{self.port}{target}",
            headers=[("Host", url.netloc), *request.headers],
            content=request.body or None,
        )

    def token(
        self, client: httpx.Client, credentials: DockerCredentials | None
    ) -> Token | HubAnswer:
        answer = self.send(client, token_request(credentials))
        return parse_token_response(
            answer.status_code, answer.content, time.time(), answer.headers.multi_items()
        )

    def head(self, client: httpx.Client, token: Token | None) -> HubAnswer:
        answer = self.send(client, manifest_head_request(token))
        assert answer.content == b""
        return classify_manifest_head(answer.status_code, answer.headers.multi_items())


@contextmanager
def standin(tmp_path: Path, *extra: str, scheme: str = "http") -> Iterator[Standin]:
    state_file = tmp_path / "standin-state.json"
    state_file.unlink(missing_ok=True)
    stderr = (tmp_path / "standin.stderr").open("wb")
    argv = [sys.executable, str(STANDIN), "--listen", "127.0.0.1:0", "--state-file"]
    argv += [str(state_file), "--user", USER, "--password", PASSWORD, *extra]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
    running = Standin(process, state_file, scheme)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not state_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                stderr.flush()
                message = (tmp_path / "standin.stderr").read_text()
                pytest.fail(f"stand-in did not start: {message}")
            time.sleep(0.02)
        running.port = int(running.state()["listen"].rsplit(":", 1)[1])
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        stderr.close()


def _remaining(outcome: HubAnswer) -> int | None:
    assert outcome.ratelimit is not None, outcome.detail
    return outcome.ratelimit.remaining


@pytest.fixture(name="client")
def client_fixture() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        yield client


def test_anonymous_flow_reads_limit_without_a_pull(tmp_path: Path, client: httpx.Client) -> None:
    """Token then HEAD: limit 100, window read, source = client address, and no GET recorded."""
    with standin(tmp_path) as hub:
        token = hub.token(client, None)
        assert isinstance(token, Token)
        outcome = hub.head(client, token)
        assert outcome.ok, outcome.detail
        assert outcome.ratelimit is not None
        limits = outcome.ratelimit
        assert (limits.limit, limits.remaining, limits.window_seconds) == (100, 100, 21600)
        assert limits.source == "127.0.0.1"
        assert limits.headers_present
        state = hub.state()
    assert state["manifest_gets"] == 0
    assert state["token_requests"] == {"anonymous": 1}
    assert state["requests"][f"HEAD {MANIFEST}"] == 1
    assert f"GET {MANIFEST}" not in state["requests"]


def test_authenticated_flow_counts_against_account(tmp_path: Path, client: httpx.Client) -> None:
    """With the right password: limit 200 and the source is an account id, not an address."""
    with standin(tmp_path) as hub:
        token = hub.token(client, DockerCredentials(USER, password=PASSWORD))
        assert isinstance(token, Token)
        assert token.expires_at == pytest.approx(time.time() + 300, abs=5)
        outcome = hub.head(client, token)
        state = hub.state()
    assert outcome.ok
    assert outcome.ratelimit is not None
    assert (outcome.ratelimit.limit, outcome.ratelimit.remaining) == (200, 200)
    assert outcome.ratelimit.source not in (None, "127.0.0.1", USER)
    assert state["token_requests"] == {USER: 1}


def test_identity_token_refresh_grant(tmp_path: Path, client: httpx.Client) -> None:
    """An identity token is exchanged by POST and counts as the account it belongs to."""
    with standin(tmp_path, "--identity-token", IDENTITY_TOKEN) as hub:
        token = hub.token(client, DockerCredentials(USER, identity_token=IDENTITY_TOKEN))
        assert isinstance(token, Token)
        outcome = hub.head(client, token)
    assert outcome.ratelimit is not None
    assert outcome.ratelimit.limit == 200


def test_wrong_credentials_are_auth_failed(tmp_path: Path, client: httpx.Client) -> None:
    """A wrong password gets Docker's 401 JSON, which the probe names auth_failed."""
    with standin(tmp_path) as hub:
        answer = hub.send(client, token_request(DockerCredentials(USER, password=WRONG_PASSWORD)))
        assert answer.status_code == 401
        assert answer.json() == {"details": "incorrect username or password"}
        outcome = hub.token(client, DockerCredentials(USER, password=WRONG_PASSWORD))
        state = hub.state()
    assert isinstance(outcome, HubAnswer)
    assert outcome.reason is Reason.AUTH_FAILED
    assert "incorrect username or password" in outcome.detail
    assert state["token_rejected"] == {USER: 2}


def test_registry_root_asks_for_bearer(tmp_path: Path, client: httpx.Client) -> None:
    """GET /v2/ answers 401 with Docker Hub's Bearer challenge and API version header."""
    with standin(tmp_path) as hub:
        answer = hub.send(client, HttpRequest("GET", "https://registry-1.docker.io/v2/"))
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'
    )
    assert answer.headers["docker-distribution-api-version"] == "registry/2.0"
    assert answer.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_manifest_without_valid_token_is_401(tmp_path: Path, client: httpx.Client) -> None:
    """No token or an unknown one: 401 with the pull scope, which the probe names auth_failed."""
    with standin(tmp_path) as hub:
        missing = hub.head(client, None)
        unknown = hub.head(client, Token("forged", time.time() + 60))
    assert missing.reason is Reason.AUTH_FAILED
    assert unknown.reason is Reason.AUTH_FAILED


def test_manifest_get_is_a_pull_and_recorded(tmp_path: Path, client: httpx.Client) -> None:
    """A GET takes one pull and is logged; HEADs before and after take none."""
    with standin(tmp_path, "--remaining", "3") as hub:
        token = hub.token(client, None)
        assert isinstance(token, Token)
        assert _remaining(hub.head(client, token)) == 3
        get = HttpRequest(
            "GET", manifest_head_request(token).url, manifest_head_request(token).headers
        )
        pulled = hub.send(client, get)
        assert pulled.status_code == 200
        assert pulled.headers["ratelimit-remaining"] == "2;w=21600"
        assert _remaining(hub.head(client, token)) == 2
        state = hub.state()
    assert state["manifest_gets"] == 1
    assert state["manifest_get_log"] == [{"path": MANIFEST, "source": "127.0.0.1"}]
    assert state["requests"][f"HEAD {MANIFEST}"] == 2


def test_exhausted_pulls_answer_429(tmp_path: Path, client: httpx.Client) -> None:
    """With no pulls left a HEAD gets 429 with the limit headers: rate_limited, limits read."""
    with standin(tmp_path, "--remaining", "0") as hub:
        token = hub.token(client, None)
        assert isinstance(token, Token)
        outcome = hub.head(client, token)
    assert outcome.reason is Reason.RATE_LIMITED
    assert outcome.ratelimit is not None
    assert (outcome.ratelimit.limit, outcome.ratelimit.remaining) == (100, 0)
    assert outcome.ratelimit.source == "127.0.0.1"


def test_ratelimited_mode(tmp_path: Path, client: httpx.Client) -> None:
    """Mode ratelimited: HEAD is 429 with headers, GET is 429 with the TOOMANYREQUESTS body."""
    with standin(tmp_path, "--mode", "ratelimited") as hub:
        token = hub.token(client, None)
        assert isinstance(token, Token)
        outcome = hub.head(client, token)
        request = manifest_head_request(token)
        answer = hub.send(client, HttpRequest("GET", request.url, request.headers))
    assert outcome.reason is Reason.RATE_LIMITED
    assert outcome.ratelimit is not None
    assert outcome.ratelimit.window_seconds == 21600
    assert answer.status_code == 429
    assert answer.json()["errors"][0]["code"] == "TOOMANYREQUESTS"


def test_noheaders_mode_is_unlimited(tmp_path: Path, client: httpx.Client) -> None:
    """Mode noheaders: 200 without limit headers, which the probe reports as unlimited."""
    with standin(tmp_path, "--mode", "noheaders") as hub:
        token = hub.token(client, None)
        assert isinstance(token, Token)
        outcome = hub.head(client, token)
    assert outcome.ok
    assert outcome.ratelimit is not None
    assert not outcome.ratelimit.headers_present
    assert "not limited" in outcome.detail


def test_token_ratelimited_mode(tmp_path: Path, client: httpx.Client) -> None:
    """Mode token-ratelimited: the token endpoint's 429 is named rate_limited."""
    with standin(tmp_path, "--mode", "token-ratelimited") as hub:
        outcome = hub.token(client, None)
    assert isinstance(outcome, HubAnswer)
    assert outcome.reason is Reason.RATE_LIMITED
    assert "TOOMANYREQUESTS" in outcome.detail
    assert outcome.retry_after_seconds == 60.0


def test_mode_file_switches_at_run_time(tmp_path: Path, client: httpx.Client) -> None:
    """The mode file changes the behaviour between requests without a restart."""
    mode_file = tmp_path / "mode"
    with standin(tmp_path, "--mode-file", str(mode_file)) as hub:
        token = hub.token(client, None)
        assert isinstance(token, Token)
        assert hub.head(client, token).ok
        mode_file.write_text("ratelimited\n")
        assert hub.head(client, token).reason is Reason.RATE_LIMITED
        mode_file.write_text("normal")
        assert hub.head(client, token).ok


def test_unknown_host_is_misdirected(tmp_path: Path, client: httpx.Client) -> None:
    """Requests are dispatched by Host: another name gets 421, not Docker Hub's answers."""
    with standin(tmp_path) as hub:
        answer = hub.send(client, HttpRequest("GET", "https://index.docker.io/v2/"))
        keep = client.get(f"http://127.0.0.1:{hub.port}/v2/", headers={"Host": "127.0.0.1"})
    assert answer.status_code == 421
    assert keep.status_code == 421


def test_tls_serves_both_names(tmp_path: Path, client: httpx.Client) -> None:
    """With a certificate it speaks HTTPS; both Docker Hub names verify against the test CA."""
    authority = CertificateAuthority("standin test CA")
    files = authority.issue(tmp_path, "hub", ["registry-1.docker.io", "auth.docker.io"])
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(authority.pem)
    extra = ("--cert", str(files.cert), "--key", str(files.key))
    with (
        standin(tmp_path, *extra, scheme="https") as hub,
        httpx.Client(
            timeout=5.0, trust_env=False, verify=ssl.create_default_context(cafile=ca_file)
        ) as tls,
    ):
        token_answer = tls.get(
            f"https://127.0.0.1:{hub.port}/token?service=registry.docker.io",
            headers={"Host": "auth.docker.io"},
            extensions={"sni_hostname": "auth.docker.io"},
        )
        token = parse_token_response(token_answer.status_code, token_answer.content, time.time())
        assert isinstance(token, Token)
        request = manifest_head_request(token)
        answer = tls.head(
            f"https://127.0.0.1:{hub.port}{MANIFEST}",
            headers=[("Host", "registry-1.docker.io"), *request.headers],
            extensions={"sni_hostname": "registry-1.docker.io"},
        )
    assert classify_manifest_head(answer.status_code, answer.headers.multi_items()).ok


def test_sigterm_stops_cleanly(tmp_path: Path, client: httpx.Client) -> None:
    """SIGTERM ends the stand-in promptly with status 0, even with a connection open."""
    with standin(tmp_path) as hub:
        hub.send(client, HttpRequest("GET", "https://registry-1.docker.io/v2/"))  # kept alive
        started = time.monotonic()
        hub.process.send_signal(signal.SIGTERM)
        assert hub.process.wait(timeout=5) == 0
    assert time.monotonic() - started < 5


def _image_head(
    hub: Standin, client: httpx.Client, repository: str, tag: str, token: Token | None
) -> httpx.Response:
    """A HEAD on a repository's manifest, as the image check sends it."""
    headers = [("Accept", MANIFEST_ACCEPT)]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token.value}"))
    url = f"https://registry-1.docker.io/v2/{repository}/manifests/{tag}"
    return hub.send(client, HttpRequest("HEAD", url, tuple(headers)))


def test_image_repositories_as_docker_hub_answers(tmp_path: Path, client: httpx.Client) -> None:
    """library/tiny serves its index to anyone; an unknown tag is 404; a repository nobody may
    pull and another account's private one answer the same 401 insufficient_scope (Docker Hub
    hides whether a repository exists); the owner's token pulls its private repository."""
    with standin(tmp_path) as hub:
        anonymous = hub.token(client, None)
        owner = hub.token(client, DockerCredentials(USER, password=PASSWORD))
        assert isinstance(anonymous, Token) and isinstance(owner, Token)
        tiny = _image_head(hub, client, "library/tiny", "1", anonymous)
        assert tiny.status_code == 200
        assert tiny.headers["docker-content-digest"].startswith("sha256:")
        assert tiny.headers["ratelimit-remaining"] == "100;w=21600"
        assert _image_head(hub, client, "library/tiny", "2", anonymous).status_code == 404
        for repository, token in (
            ("library/no-such-image", anonymous),
            ("library/no-such-image", owner),
            (f"{USER}/private", anonymous),
        ):
            answer = _image_head(hub, client, repository, "1", token)
            assert answer.status_code == 401, repository
            assert answer.headers["www-authenticate"].endswith(
                f'scope="repository:{repository}:pull",error="insufficient_scope"'
            )
        assert _image_head(hub, client, f"{USER}/private", "1", owner).status_code == 200
        bare = _image_head(hub, client, "library/tiny", "1", None)
        assert bare.status_code == 401 and "error=" not in bare.headers["www-authenticate"]
        digest = tiny.headers["docker-content-digest"]
        url = f"https://registry-1.docker.io/v2/library/tiny/manifests/{digest}"
        got = hub.send(
            client, HttpRequest("GET", url, (("Authorization", f"Bearer {anonymous.value}"),))
        )
        assert got.json()["manifests"][1]["platform"]["architecture"] == "arm64"
        state = hub.state()
    assert state["manifest_gets"] == 1  # the GET, never the HEADs
