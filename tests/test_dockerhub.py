"""The sans-IO core of the Docker Hub `ratelimit` check: headers, credentials, tokens, schedule."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.dockerhub.rules import (
    MANIFEST_ACCEPT,
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
    parse_ratelimit_headers,
    parse_token_response,
    token_request,
    token_request_url,
)
from probe.reasons import Reason
from probe.result import RateLimit

# Fixtures the tests look for in every repr and message; not credentials to anything.
SECRET = "s3cr3t-Pa55word"  # noqa: S105 - a marker to search output for, not a credential
TOKEN_VALUE = "eyJhbGciOiJSUzI1NiJ9.tok3n-value"  # noqa: S105 - same: a marker
COLON_PASSWORD = "pa:ss:word"  # noqa: S105 - same: a marker
ACCESS_TOKEN = "dckr_pat_abc"  # noqa: S105 - same: a marker
IDENTITY_TOKEN = "idtok"  # noqa: S105 - same: a marker

# --- ratelimit-* headers ---------------------------------------------------------------------

# (headers, limit, remaining, window, source, headers_present, problem contains)
HEADER_TABLE = [
    pytest.param(
        [("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "76;w=21600")],
        100,
        76,
        21600,
        None,
        True,
        None,
        id="docker-hub-anonymous",
    ),
    pytest.param(
        [
            ("RateLimit-Limit", "200;w=21600"),
            ("RateLimit-Remaining", "199;w=21600"),
            ("Docker-RateLimit-Source", "3a4b1c2d-0000-4000-8000-00000000abcd"),
        ],
        200,
        199,
        21600,
        "3a4b1c2d-0000-4000-8000-00000000abcd",
        True,
        None,
        id="mixed-case-account-source",
    ),
    pytest.param(
        [("x-ratelimit-limit", "100;w=3600"), ("X-RateLimit-Remaining", "0;w=3600")],
        100,
        0,
        3600,
        None,
        True,
        None,
        id="x-prefixed-window-read-not-assumed",
    ),
    pytest.param(
        [
            ("ratelimit-limit", "100;w=21600"),
            ("x-ratelimit-limit", "5;w=60"),
            ("ratelimit-remaining", "9;w=21600"),
        ],
        100,
        9,
        21600,
        None,
        True,
        None,
        id="unprefixed-wins",
    ),
    pytest.param(
        [("ratelimit-limit", ' 100 ; w = 21600 ; comment="x" '), ("ratelimit-remaining", "7")],
        100,
        7,
        21600,
        None,
        True,
        None,
        id="spaces-extra-params-no-window-on-remaining",
    ),
    pytest.param(
        [("ratelimit-limit", "10, 10;w=1, 50;w=60"), ("ratelimit-remaining", "3")],
        10,
        3,
        1,
        None,
        True,
        None,
        id="ietf-draft-list-form",
    ),
    pytest.param(
        [
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "1;w=21600"),
            ("docker-ratelimit-source", "203.0.113.7"),
        ],
        100,
        1,
        21600,
        "203.0.113.7",
        True,
        None,
        id="ipv4-source",
    ),
    pytest.param(
        [
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "0;w=21600"),
            ("docker-ratelimit-source", "2600:3c00::"),
        ],
        100,
        0,
        21600,
        "2600:3c00::",
        True,
        None,
        id="ipv6-64-source",
    ),
    pytest.param(
        [
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "0;w=21600"),
            ("docker-ratelimit-source", "2001:DB8:0:1::/64"),
        ],
        100,
        0,
        21600,
        "2001:db8:0:1::/64",
        True,
        None,
        id="ipv6-source-as-network",
    ),
    pytest.param([], None, None, None, None, False, None, id="no-headers-unlimited"),
    pytest.param(
        [("content-type", "application/json"), ("docker-ratelimit-source", "198.51.100.2")],
        None,
        None,
        None,
        "198.51.100.2",
        False,
        None,
        id="source-only-still-unlimited",
    ),
    pytest.param(
        [("ratelimit-limit", ""), ("ratelimit-remaining", "5;w=21600")],
        None,
        5,
        21600,
        None,
        True,
        "ratelimit-limit is empty",
        id="empty-limit",
    ),
    pytest.param(
        [("ratelimit-limit", "200=21600"), ("ratelimit-remaining", "196;w=21600")],
        None,
        196,
        21600,
        None,
        True,
        'ratelimit-limit "200=21600" is not a pull count',
        id="malformed-limit",
    ),
    pytest.param(
        [("ratelimit-limit", "100;w=six-hours"), ("ratelimit-remaining", "5;w=21600")],
        None,
        5,
        21600,
        None,
        True,
        "has a window that is not a number of seconds",
        id="malformed-window",
    ),
    pytest.param(
        [("ratelimit-limit", "100;w=0"), ("ratelimit-remaining", "5")],
        None,
        5,
        None,
        None,
        True,
        "window that is not a number of seconds",
        id="zero-window",
    ),
    pytest.param(
        [("ratelimit-limit", "-1;w=21600"), ("ratelimit-remaining", "5")],
        None,
        5,
        None,
        None,
        True,
        "not a pull count",
        id="negative-limit",
    ),
    pytest.param(
        [("ratelimit-limit", "1" * 40), ("ratelimit-remaining", "5")],
        None,
        5,
        None,
        None,
        True,
        "not a pull count",
        id="absurdly-large-number",
    ),
    pytest.param(
        [("ratelimit-limit", "100;w=21600")],
        100,
        None,
        21600,
        None,
        True,
        "ratelimit-limit sent without ratelimit-remaining",
        id="remaining-missing",
    ),
    pytest.param(
        [("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "5;w=3600")],
        100,
        5,
        21600,
        None,
        True,
        "windows differ (21600 s, 3600 s)",
        id="windows-differ",
    ),
    pytest.param(
        [("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "150;w=21600")],
        100,
        150,
        21600,
        None,
        True,
        "remaining 150 exceeds limit 100",
        id="remaining-above-limit",
    ),
    pytest.param(
        [
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "5;w=21600"),
            ("docker-ratelimit-source", "not an\x00 address!"),
        ],
        100,
        5,
        21600,
        None,
        True,
        "is neither an address nor an account id",
        id="garbage-source",
    ),
    pytest.param(
        [
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "5;w=21600"),
            ("docker-ratelimit-source", "  "),
        ],
        100,
        5,
        21600,
        None,
        True,
        "docker-ratelimit-source is empty",
        id="empty-source",
    ),
]


@pytest.mark.parametrize(
    ("headers", "limit", "remaining", "window", "source", "present", "problem"), HEADER_TABLE
)
def test_parse_ratelimit_headers_table(
    headers: list[tuple[str, str]],
    limit: int | None,
    remaining: int | None,
    window: int | None,
    source: str | None,
    present: bool,
    problem: str | None,
) -> None:
    """Each header shape Docker Hub (or a proxy in front of it) sends maps to these values."""
    parsed = parse_ratelimit_headers(headers)
    assert (parsed.limit, parsed.remaining, parsed.window_seconds) == (limit, remaining, window)
    assert parsed.source == source
    assert parsed.headers_present is present
    if problem is None:
        assert parsed.problem is None
    else:
        assert parsed.problem is not None
        assert problem in parsed.problem


def test_parse_ratelimit_headers_quotes_bad_values_bounded() -> None:
    """A malformed value is quoted in the problem, escaped and cut short, never dumped whole."""
    parsed = parse_ratelimit_headers(
        [("ratelimit-limit", "x\r\n" + "A" * 500), ("ratelimit-remaining", "1")]
    )
    assert parsed.problem is not None
    assert "\\r\\n" in parsed.problem
    assert "A" * 100 not in parsed.problem


def test_parse_ratelimit_headers_reads_iterator_once() -> None:
    """Headers may come as a one-shot iterator, not only a list."""
    parsed = parse_ratelimit_headers(
        iter([("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "2;w=21600")])
    )
    assert (parsed.limit, parsed.remaining) == (100, 2)


header_names = st.sampled_from(
    [
        "ratelimit-limit",
        "RateLimit-Remaining",
        "x-ratelimit-limit",
        "X-RATELIMIT-REMAINING",
        "docker-ratelimit-source",
        "retry-after",
        "content-type",
    ]
)
header_values = st.one_of(
    st.text(),
    st.from_regex(r"\A[0-9 ]{0,20}(;[ a-zA-Z=0-9\"]{0,20}){0,3}(,[0-9;w= ]{0,10}){0,2}\Z"),
)


@given(st.lists(st.tuples(st.one_of(header_names, st.text()), header_values), max_size=8))
def test_parse_ratelimit_headers_never_raises(headers: list[tuple[str, str]]) -> None:
    """Whatever text a server or proxy sends, parsing returns a value and never raises."""
    parsed = parse_ratelimit_headers(headers)
    assert isinstance(parsed, ParsedRateLimit)
    for number in (parsed.limit, parsed.remaining, parsed.window_seconds):
        assert number is None or number >= 0
    assert parsed.window_seconds != 0
    if parsed.problem is not None:
        assert len(parsed.problem) < 2000
    parsed.describe()


@given(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=1, max_value=10**7),
)
def test_parse_ratelimit_headers_round_trips_docker_form(
    limit: int, remaining: int, window: int
) -> None:
    """Any well-formed N;w=S pair is read back exactly."""
    parsed = parse_ratelimit_headers(
        [
            ("ratelimit-limit", f"{limit};w={window}"),
            ("ratelimit-remaining", f"{remaining};w={window}"),
        ]
    )
    assert (parsed.limit, parsed.remaining, parsed.window_seconds) == (limit, remaining, window)


def test_as_ratelimit_carries_auth_label() -> None:
    """The parsed headers become the RateLimit value the report and metrics render."""
    parsed = parse_ratelimit_headers(
        [
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "40;w=21600"),
            ("docker-ratelimit-source", "192.0.2.1"),
        ]
    )
    assert parsed.as_ratelimit(Auth.ANONYMOUS) == RateLimit(
        auth="anonymous",
        limit=100,
        remaining=40,
        window_seconds=21600,
        source="192.0.2.1",
        headers_present=True,
    )


def test_describe_names_unlimited_accounts() -> None:
    """No headers are described as an unlimited account, not as an error."""
    assert "not limited" in parse_ratelimit_headers([]).describe()


# --- .dockerconfigjson -----------------------------------------------------------------------


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _config(key: str, entry: dict[str, str]) -> str:
    return json.dumps({"auths": {key: entry}})


@pytest.mark.parametrize(
    "key",
    [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "registry-1.docker.io",
        "https://registry-1.docker.io/v2/",
        "HTTPS://Index.Docker.IO/v1/",
    ],
)
def test_docker_config_any_hub_key(key: str) -> None:
    """Every key docker login or kubectl writes for Docker Hub is recognised."""
    creds = parse_docker_config(_config(key, {"auth": _auth("alice", SECRET)}))
    assert creds == DockerCredentials(username="alice", password=SECRET)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param(
            {"auth": _auth("alice", COLON_PASSWORD)},
            DockerCredentials("alice", password=COLON_PASSWORD),
            id="auth-password-with-colons",
        ),
        pytest.param(
            {"auth": _auth("alice", SECRET).rstrip("=")},
            DockerCredentials("alice", password=SECRET),
            id="auth-without-padding",
        ),
        pytest.param(
            {"username": "bob", "password": ACCESS_TOKEN},
            DockerCredentials("bob", password=ACCESS_TOKEN),
            id="username-password",
        ),
        pytest.param(
            {"username": "bob", "password": "wrong", "auth": _auth("carol", SECRET)},
            DockerCredentials("carol", password=SECRET),
            id="auth-overrides-username-password",
        ),
        pytest.param(
            {"auth": _auth("dave", ""), "identitytoken": IDENTITY_TOKEN},
            DockerCredentials("dave", identity_token=IDENTITY_TOKEN),
            id="identity-token",
        ),
        pytest.param(
            {"identitytoken": IDENTITY_TOKEN},
            DockerCredentials("", identity_token=IDENTITY_TOKEN),
            id="identity-token-alone",
        ),
    ],
)
def test_docker_config_entry_forms(entry: dict[str, str], expected: DockerCredentials) -> None:
    """auth, username/password and identitytoken entries each give the right credentials."""
    assert parse_docker_config(_config("https://index.docker.io/v1/", entry)) == expected


def test_docker_config_kubernetes_secret_shape() -> None:
    """The file kubectl create secret docker-registry mounts (all four fields) is read."""
    text = json.dumps(
        {
            "auths": {
                "https://index.docker.io/v1/": {
                    "username": "alice",
                    "password": SECRET,
                    "email": "a@example.com",
                    "auth": _auth("alice", SECRET),
                }
            }
        }
    )
    assert parse_docker_config(text) == DockerCredentials("alice", password=SECRET)


def test_docker_config_prefers_canonical_key() -> None:
    """With several Docker Hub keys, the docker CLI's canonical index.docker.io entry wins."""
    text = json.dumps(
        {
            "auths": {
                "registry-1.docker.io": {"auth": _auth("other", "x")},
                "https://index.docker.io/v1/": {"auth": _auth("alice", SECRET)},
            }
        }
    )
    creds = parse_docker_config(text)
    assert creds is not None
    assert creds.username == "alice"


def test_docker_config_legacy_dockercfg() -> None:
    """The older .dockercfg shape (no auths wrapper) is read too."""
    text = json.dumps({"https://index.docker.io/v1/": {"auth": _auth("alice", SECRET)}})
    assert parse_docker_config(text) == DockerCredentials("alice", password=SECRET)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"auths": {}}),
        json.dumps({"auths": {"ghcr.io": {"auth": _auth("alice", SECRET)}}}),
        json.dumps({"auths": {"https://docker.io.example.com/": {"auth": _auth("a", "b")}}}),
    ],
)
def test_docker_config_without_docker_hub(text: str) -> None:
    """A pull secret for other registries means anonymous only: None, not an error."""
    assert parse_docker_config(text) is None


INVALID_CONFIGS = [
    pytest.param('{"auths": {"docker.io": {"auth": "' + SECRET, "not JSON (line 1", id="not-json"),
    pytest.param(json.dumps([SECRET]), "the top level is not a JSON object", id="top-list"),
    pytest.param(json.dumps({"auths": [SECRET]}), "auths is not a JSON object", id="auths-list"),
    pytest.param(
        json.dumps({"auths": {"docker.io": SECRET}}),
        'auths["docker.io"] is not a JSON object',
        id="entry-string",
    ),
    pytest.param(
        _config("docker.io", {"auth": "!!" + SECRET + "!!"}),
        'auths["docker.io"].auth is not base64 of "user:password"',
        id="auth-not-base64",
    ),
    pytest.param(
        _config("docker.io", {"auth": base64.b64encode(SECRET.encode()).decode()}),
        'auths["docker.io"].auth has no ":" between user and password',
        id="auth-without-colon",
    ),
    pytest.param(
        _config("docker.io", {"auth": base64.b64encode(b"\xff\xfe:" + SECRET.encode()).decode()}),
        'auths["docker.io"].auth is not base64 of "user:password"',
        id="auth-not-utf8",
    ),
    pytest.param(
        json.dumps({"auths": {"docker.io": {"username": "alice", "password": 12345}}}),
        'auths["docker.io"].password is not a string',
        id="password-not-string",
    ),
    pytest.param(
        _config("docker.io", {"username": "alice"}),
        'auths["docker.io"] has neither auth, username and password, nor identitytoken',
        id="no-password",
    ),
    pytest.param(
        json.dumps({"auths": {}, "credHelpers": {"docker.io": "desktop"}}),
        "credential helper",
        id="cred-helper",
    ),
    pytest.param("[" * 100_000, "not JSON", id="deeply-nested"),
    pytest.param(
        json.dumps({"auths": {"https://index.docker.io/v1/": {}}, "credsStore": "desktop"}),
        "credential store (credsStore)",
        id="creds-store",
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID_CONFIGS)
def test_docker_config_errors_name_key_never_secret(text: str, message: str) -> None:
    """An unusable file raises DockerConfigError naming the key, without the secret or a cause."""
    with pytest.raises(DockerConfigError) as caught:
        parse_docker_config(text)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["auths", "auth", "username", "password", "identitytoken", "docker.io"])
            | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(json_values)
def test_docker_config_only_raises_its_own_error(document: object) -> None:
    """Any JSON gives credentials, None, or DockerConfigError; never another exception."""
    try:
        result = parse_docker_config(json.dumps(document))
    except DockerConfigError as error:
        assert error.__cause__ is None
    else:
        assert result is None or isinstance(result, DockerCredentials)


def test_credentials_repr_hides_secrets() -> None:
    """repr, str and f-strings of credentials and tokens never show a password or token."""
    for creds in (
        DockerCredentials("alice", password=SECRET),
        DockerCredentials("alice", identity_token=SECRET),
    ):
        for text in (repr(creds), str(creds), f"{creds}", f"{[creds]}"):
            assert SECRET not in text
            assert "alice" in text
    token = Token(value=SECRET, expires_at=5.0)
    assert SECRET not in repr(token)
    assert SECRET not in str(token)


# --- token endpoint --------------------------------------------------------------------------


def test_token_request_url_matches_docs() -> None:
    """The default URL is the one in Docker's rate-limit docs, byte for byte."""
    assert token_request_url() == (
        "https://auth.docker.io/token?service=registry.docker.io"
        "&scope=repository:ratelimitpreview/test:pull"
    )


def test_token_request_url_keeps_realm_query() -> None:
    """A realm that already has a query gets the parameters appended, not a second '?'."""
    url = token_request_url("https://auth.example/token?x=1", "svc", "repository:a/b:pull")
    assert parse_qs(urlsplit(url).query) == {
        "x": ["1"],
        "service": ["svc"],
        "scope": ["repository:a/b:pull"],
    }


def test_token_request_anonymous_has_no_authorization() -> None:
    """The anonymous token request is a plain GET."""
    request = token_request(None)
    assert request.method == "GET"
    assert request.headers == ()


def test_token_request_basic_auth() -> None:
    """With a password the token request carries Basic auth, and its repr hides it."""
    request = token_request(DockerCredentials("alice", password=SECRET))
    assert request.method == "GET"
    assert request.url == token_request_url()
    (name, value), *_ = request.headers
    assert name == "Authorization"
    assert base64.b64decode(value.removeprefix("Basic ")) == f"alice:{SECRET}".encode()
    assert SECRET not in repr(request)
    assert _auth("alice", SECRET) not in repr(request)


def test_token_request_identity_token_is_refresh_grant() -> None:
    """An identity token is exchanged in an OAuth2 refresh_token POST (distribution's docs)."""
    request = token_request(DockerCredentials("alice", identity_token=SECRET))
    assert request.method == "POST"
    assert request.url == "https://auth.docker.io/token"
    form = parse_qs(request.body.decode())
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == [SECRET]
    assert form["scope"] == ["repository:ratelimitpreview/test:pull"]
    assert form["service"] == ["registry.docker.io"]
    assert SECRET not in repr(request)


NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    ("body", "expires_at"),
    [
        pytest.param({"token": TOKEN_VALUE, "expires_in": 300}, NOW + 300, id="token"),
        pytest.param({"access_token": TOKEN_VALUE, "expires_in": 300}, NOW + 300, id="access"),
        pytest.param(
            {"token": TOKEN_VALUE, "access_token": TOKEN_VALUE, "expires_in": 300},
            NOW + 300,
            id="both",
        ),
        pytest.param({"token": TOKEN_VALUE}, NOW + 60, id="expires-in-absent-60s"),
        pytest.param({"token": TOKEN_VALUE, "expires_in": 10}, NOW + 60, id="short-raised-to-60"),
        pytest.param({"token": TOKEN_VALUE, "expires_in": "300"}, NOW + 60, id="string-ignored"),
        pytest.param({"token": TOKEN_VALUE, "expires_in": 1e300}, NOW + 86400, id="huge-capped"),
        pytest.param(
            {"token": TOKEN_VALUE, "expires_in": 300, "issued_at": "2025-06-15T15:06:30Z"},
            1_750_000_000.0 - 10 + 300,
            id="issued-at-counts",
        ),
        pytest.param(
            {
                "token": TOKEN_VALUE,
                "expires_in": 300,
                "issued_at": "2025-06-15T15:06:30.123456789Z",
            },
            1_750_000_000.0 - 10 + 0.123456 + 300,
            id="issued-at-nanoseconds",
        ),
        pytest.param(
            {"token": TOKEN_VALUE, "expires_in": 300, "issued_at": "2020-01-01T00:00:00Z"},
            NOW + 300,
            id="issued-at-skewed-ignored",
        ),
        pytest.param(
            {"token": TOKEN_VALUE, "expires_in": 300, "issued_at": "yesterday"},
            NOW + 300,
            id="issued-at-garbage-ignored",
        ),
    ],
)
def test_parse_token_response_ok(body: dict[str, object], expires_at: float) -> None:
    """A 200 gives the token and its expiry: expires_in (60 s floor), from issued_at if sane."""
    token = parse_token_response(200, json.dumps(body).encode(), NOW)
    assert isinstance(token, Token)
    assert token.value == TOKEN_VALUE
    assert token.expires_at == pytest.approx(expires_at)


TOOMANY = json.dumps(
    {
        "errors": [
            {
                "code": "TOOMANYREQUESTS",
                "message": "You have reached your pull rate limit. You may increase the limit "
                "by authenticating and upgrading: https://www.docker.com/increase-rate-limits",
            }
        ]
    }
).encode()


@pytest.mark.parametrize(
    ("status", "body", "reason", "detail"),
    [
        pytest.param(
            401,
            b'{"details":"incorrect username or password"}',
            Reason.AUTH_FAILED,
            "token service rejected the credentials (401): incorrect username or password",
            id="401-wrong-credentials",
        ),
        pytest.param(
            403,
            b"",
            Reason.AUTH_FAILED,
            "token service rejected the credentials (403)",
            id="403-empty",
        ),
        pytest.param(
            401,
            b'{"errors":[{"code":"UNAUTHORIZED",'
            b'"message":"access token has insufficient scopes"}]}',
            Reason.AUTH_FAILED,
            "(401): UNAUTHORIZED: access token has insufficient scopes",
            id="401-distribution-error",
        ),
        pytest.param(
            429,
            TOOMANY,
            Reason.RATE_LIMITED,
            "token service answered 429: TOOMANYREQUESTS: You have reached your pull rate limit",
            id="429-toomanyrequests",
        ),
        pytest.param(
            429, b"<html>", Reason.RATE_LIMITED, "answered 429: toomanyrequests", id="429-html"
        ),
        pytest.param(
            503,
            b"<html>busy</html>",
            Reason.HTTP_UNEXPECTED_STATUS,
            "token service answered 503",
            id="503",
        ),
        pytest.param(
            200,
            b"<html>captive portal</html>",
            Reason.NOT_A_REGISTRY,
            "without JSON",
            id="200-html",
        ),
        pytest.param(
            200, b'{"token": ""}', Reason.NOT_A_REGISTRY, "without a token", id="200-empty-token"
        ),
        pytest.param(
            200, b'{"token": 7}', Reason.NOT_A_REGISTRY, "without a token", id="200-number-token"
        ),
        pytest.param(200, b"[]", Reason.NOT_A_REGISTRY, "without JSON", id="200-json-list"),
        pytest.param(
            200,
            '{"token": "t\u00f8ken"}'.encode(),
            Reason.NOT_A_REGISTRY,
            "a token that cannot be sent in a header",
            id="200-non-ascii-token",
        ),
        pytest.param(
            200,
            b'{"token": "abc\\r\\nX-Injected: 1"}',
            Reason.NOT_A_REGISTRY,
            "a token that cannot be sent in a header",
            id="200-token-with-crlf",
        ),
        pytest.param(
            200,
            b'{"access_token": "two words"}',
            Reason.NOT_A_REGISTRY,
            "a token that cannot be sent in a header",
            id="200-token-with-space",
        ),
    ],
)
def test_parse_token_response_failures(
    status: int, body: bytes, reason: Reason, detail: str
) -> None:
    """Each failing answer of the token service maps to exactly one reason with a clear detail."""
    outcome = parse_token_response(status, body, NOW)
    assert isinstance(outcome, HubAnswer)
    assert outcome.reason is reason
    assert detail in outcome.detail


def test_parse_token_response_429_reads_limit_headers() -> None:
    """A 429 from the token endpoint still reports the limit headers and Retry-After it carries."""
    outcome = parse_token_response(
        429,
        TOOMANY,
        NOW,
        headers=[
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "0;w=21600"),
            ("Retry-After", "120"),
        ],
    )
    assert isinstance(outcome, HubAnswer)
    assert outcome.ratelimit is not None
    assert (outcome.ratelimit.limit, outcome.ratelimit.remaining) == (100, 0)
    assert outcome.retry_after_seconds == 120.0


def test_parse_token_response_never_echoes_token() -> None:
    """Failure details never contain a token the body carried, nor unbounded body text."""
    body = json.dumps({"token": TOKEN_VALUE, "details": "x" * 5000}).encode()
    for status in (401, 403, 429, 500):
        outcome = parse_token_response(status, body, NOW)
        assert isinstance(outcome, HubAnswer)
        assert TOKEN_VALUE not in outcome.detail
        assert len(outcome.detail) < 400
    bad = parse_token_response(200, json.dumps({"token": 5, "access": TOKEN_VALUE}).encode(), NOW)
    assert isinstance(bad, HubAnswer)
    assert TOKEN_VALUE not in bad.detail


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=300))
def test_parse_token_response_never_raises(status: int, body: bytes) -> None:
    """Any status and body give a Token or an HubAnswer with a reason, never an exception."""
    result = parse_token_response(status, body, NOW)
    assert isinstance(result, Token) or result.reason is not None


@given(
    st.dictionaries(
        st.sampled_from(["token", "access_token", "expires_in", "issued_at"]),
        st.one_of(
            st.text(),
            st.integers(),
            st.floats(),
            st.booleans(),
            st.none(),
            st.datetimes().map(lambda d: d.isoformat() + "Z"),
        ),
    )
)
def test_parse_token_response_fields_never_raise(fields: dict[str, object]) -> None:
    """Arbitrary values in the token fields never raise; a token is never already expired."""
    result = parse_token_response(200, json.dumps(fields).encode(), NOW)
    if isinstance(result, Token):
        assert NOW < result.expires_at <= NOW + 86400
        # What the HEAD sends: one ASCII header value, nothing a header parser would split.
        assert f"Bearer {result.value}".encode("ascii").isascii()
        assert not any(c in result.value for c in " \t\r\n")


# --- manifest HEAD ---------------------------------------------------------------------------


def test_manifest_request_is_head_with_index_accept() -> None:
    """The limit is read with a HEAD (a GET is a pull) accepting index and list types."""
    request = manifest_head_request(Token(TOKEN_VALUE, NOW + 300))
    assert request.method == "HEAD"
    assert request.url == "https://registry-1.docker.io/v2/ratelimitpreview/test/manifests/latest"
    headers = dict(request.headers)
    accepted = headers["Accept"].split(", ")
    assert "application/vnd.docker.distribution.manifest.list.v2+json" in accepted
    assert "application/vnd.oci.image.index.v1+json" in accepted
    assert tuple(accepted) == MANIFEST_ACCEPT
    assert headers["Authorization"] == f"Bearer {TOKEN_VALUE}"
    assert TOKEN_VALUE not in repr(request)


REGISTRY_HEADERS = [
    ("docker-distribution-api-version", "registry/2.0"),
    ("docker-content-digest", "sha256:" + "a" * 64),
]
LIMITS_100 = [
    ("ratelimit-limit", "100;w=21600"),
    ("ratelimit-remaining", "0;w=21600"),
    ("docker-ratelimit-source", "203.0.113.7"),
]


@pytest.mark.parametrize(
    ("status", "headers", "reason", "detail"),
    [
        pytest.param(
            200,
            [
                *REGISTRY_HEADERS,
                ("ratelimit-limit", "100;w=21600"),
                ("ratelimit-remaining", "76;w=21600"),
                ("docker-ratelimit-source", "203.0.113.7"),
            ],
            None,
            "76 of 100 pulls left per 21600 s window, counted against 203.0.113.7",
            id="200-limits",
        ),
        pytest.param(
            200,
            REGISTRY_HEADERS,
            None,
            "no rate-limit headers: pulls by this account are not limited",
            id="200-unlimited",
        ),
        pytest.param(
            200,
            [*REGISTRY_HEADERS, ("ratelimit-limit", "lots"), ("ratelimit-remaining", "3")],
            None,
            'ratelimit-limit "lots" is not a pull count',
            id="200-malformed-is-reported-not-failed",
        ),
        pytest.param(
            200,
            [("content-type", "text/html")],
            Reason.NOT_A_REGISTRY,
            "not a registry",
            id="200-portal",
        ),
        pytest.param(
            429,
            [*REGISTRY_HEADERS, *LIMITS_100],
            Reason.RATE_LIMITED,
            "toomanyrequests: pull rate limit reached; 0 of 100 pulls left per 21600 s window",
            id="429",
        ),
        pytest.param(
            429,
            REGISTRY_HEADERS,
            Reason.RATE_LIMITED,
            "toomanyrequests: pull rate limit reached",
            id="429-without-headers",
        ),
        pytest.param(
            401,
            [("www-authenticate", 'Bearer realm="https://auth.docker.io/token"')],
            Reason.AUTH_FAILED,
            "registry rejected the token",
            id="401",
        ),
        pytest.param(
            404, REGISTRY_HEADERS, Reason.HTTP_UNEXPECTED_STATUS, "answered 404", id="404"
        ),
        pytest.param(502, [], Reason.HTTP_UNEXPECTED_STATUS, "answered 502", id="502"),
    ],
)
def test_classify_manifest_head(
    status: int, headers: list[tuple[str, str]], reason: Reason | None, detail: str
) -> None:
    """Each registry answer to the HEAD maps to ok or exactly one reason, with the limit read."""
    outcome = classify_manifest_head(status, headers)
    assert outcome.reason is reason
    assert outcome.ok is (reason is None)
    assert detail in outcome.detail
    if not outcome.ok:
        assert "not limited" not in outcome.detail


def test_classify_manifest_head_429_keeps_limits() -> None:
    """A 429 still yields limit, remaining, window and source for the metrics."""
    outcome = classify_manifest_head(429, [*LIMITS_100, ("retry-after", "3600")])
    assert outcome.ratelimit == ParsedRateLimit(100, 0, 21600, "203.0.113.7", True, None)
    assert outcome.retry_after_seconds == 3600.0


@given(
    st.integers(min_value=100, max_value=599),
    st.lists(st.tuples(st.one_of(header_names, st.text()), header_values), max_size=6),
)
def test_classify_manifest_head_never_raises(status: int, headers: list[tuple[str, str]]) -> None:
    """Any status and headers classify without raising; ok only for a 200."""
    outcome = classify_manifest_head(status, headers)
    assert not outcome.ok or status == 200


# --- schedule --------------------------------------------------------------------------------


def test_gate_once_per_interval_per_account() -> None:
    """Each account asks at most once per interval, independently of the other."""
    gate = RateLimitGate(300)
    assert gate.try_acquire(Auth.ANONYMOUS, 0)
    assert not gate.try_acquire(Auth.ANONYMOUS, 0)  # a concurrent second check is refused
    assert gate.try_acquire(Auth.AUTHENTICATED, 1)
    gate.record_success(Auth.ANONYMOUS, 2)
    asked = [t for t in range(3, 3600) if gate.try_acquire(Auth.ANONYMOUS, t)]
    assert asked == list(range(302, 3600, 300))  # one per 300 s over the hour
    assert not gate.try_acquire(Auth.AUTHENTICATED, 300)
    assert gate.try_acquire(Auth.AUTHENTICATED, 301)


def test_gate_backs_off_after_429_capped_and_reset() -> None:
    """429s double the wait up to the cap; Retry-After is honoured; a success resets it."""
    gate = RateLimitGate(300, max_backoff=3600)
    delays = []
    now = 0.0
    for _ in range(6):
        assert gate.try_acquire(Auth.ANONYMOUS, now)
        delays.append(gate.record_rate_limited(Auth.ANONYMOUS, now))
        assert not gate.try_acquire(Auth.ANONYMOUS, now + delays[-1] - 1)
        now += delays[-1]
    assert delays == [600, 1200, 2400, 3600, 3600, 3600]
    assert gate.try_acquire(Auth.ANONYMOUS, now)
    gate.record_success(Auth.ANONYMOUS, now)
    assert gate.record_rate_limited(Auth.ANONYMOUS, now) == 600
    assert gate.record_rate_limited(Auth.ANONYMOUS, now, retry_after=1800) == 1800


def test_gate_other_failures_keep_interval() -> None:
    """A network or auth failure waits one interval and neither grows nor resets the backoff."""
    gate = RateLimitGate(60, max_backoff=10_000)
    gate.record_rate_limited(Auth.AUTHENTICATED, 0)
    gate.record_failure(Auth.AUTHENTICATED, 120)
    assert not gate.try_acquire(Auth.AUTHENTICATED, 179)
    assert gate.try_acquire(Auth.AUTHENTICATED, 180)
    assert gate.record_rate_limited(Auth.AUTHENTICATED, 180) == 240  # second 429: 60 * 2**2


def test_gate_interval_longer_than_cap() -> None:
    """A backoff never asks sooner than the configured interval."""
    gate = RateLimitGate(7200, max_backoff=3600)
    assert gate.record_rate_limited(Auth.ANONYMOUS, 0) == 7200


def test_gate_many_429s_do_not_overflow() -> None:
    """A long run of 429s stays at the cap without overflowing."""
    gate = RateLimitGate(300)
    for t in range(2000):
        delay = gate.record_rate_limited(Auth.ANONYMOUS, float(t))
    assert delay == 3600


def test_gate_rejects_nonpositive_interval() -> None:
    """A zero interval would let every probe ask Docker Hub: refused."""
    with pytest.raises(ValueError, match="positive"):
        RateLimitGate(0)


def test_token_cache_reuses_until_shortly_before_expiry() -> None:
    """A token is reused per account until the margin before it expires, then fetched again."""
    cache = TokenCache(refresh_margin=10)
    token = Token(TOKEN_VALUE, expires_at=NOW + 300)
    assert cache.get(Auth.ANONYMOUS, NOW) is None
    cache.put(Auth.ANONYMOUS, token)
    assert cache.get(Auth.ANONYMOUS, NOW + 289) is token
    assert cache.get(Auth.ANONYMOUS, NOW + 290) is None
    assert cache.get(Auth.AUTHENTICATED, NOW) is None
    cache.drop(Auth.ANONYMOUS)
    assert cache.get(Auth.ANONYMOUS, NOW) is None
