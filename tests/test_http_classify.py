"""How a `GET /v2/` answer is read: a registry, a registry in trouble, or something else."""

from __future__ import annotations

import pytest

from probe.checks.http import classify
from probe.reasons import Reason

REGISTRY = [("Docker-Distribution-Api-Version", "registry/2.0")]
HTML = [("Content-Type", "text/html; charset=utf-8")]
BEARER = [
    (
        "WWW-Authenticate",
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
    )
]
OCI_401 = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'

CASES = [
    # (status, headers, body, ok, reason)
    (200, REGISTRY, b"{}", True, None),
    (200, [], b"{}", True, None),  # OCI spec: 200 and a JSON body, no header required
    (401, BEARER, OCI_401, True, None),
    (401, [("WWW-Authenticate", 'Basic realm="r"')], b"", True, None),
    (401, REGISTRY, b"", True, None),
    (200, HTML, b"<html><title>Hotel WiFi</title></html>", False, Reason.NOT_A_REGISTRY),
    (302, [("Location", "http://portal.example/login")], b"", False, Reason.NOT_A_REGISTRY),
    (404, HTML, b"not found", False, Reason.NOT_A_REGISTRY),
    (403, HTML, b"<title>Access denied by policy</title>", False, Reason.NOT_A_REGISTRY),
    (401, [], b"login", False, Reason.NOT_A_REGISTRY),
    (503, [], b"", False, Reason.HTTP_UNEXPECTED_STATUS),
    (500, REGISTRY, b"", False, Reason.HTTP_UNEXPECTED_STATUS),
    (404, REGISTRY, b'{"errors":[{"code":"NOT_FOUND"}]}', False, Reason.HTTP_UNEXPECTED_STATUS),
    (429, REGISTRY, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}', False, Reason.RATE_LIMITED),
    (407, [], b"", False, Reason.PROXY_AUTH_REQUIRED),
]


@pytest.mark.parametrize(("status", "headers", "body", "ok", "reason"), CASES)
def test_classify(
    status: int, headers: list[tuple[str, str]], body: bytes, ok: bool, reason: Reason | None
) -> None:
    """Each answer maps to its verdict and reason."""
    verdict = classify(status, headers, body)
    assert (verdict.ok, verdict.reason) == (ok, reason), verdict.detail


def test_bearer_realm_is_kept() -> None:
    """A Bearer challenge's realm comes back, so its host becomes an endpoint."""
    assert classify(401, BEARER, OCI_401).realm == "https://auth.docker.io/token"


def test_portal_detail_names_page_and_redirect() -> None:
    """A portal's detail names its title and where it redirects, clipped and printable."""
    verdict = classify(200, HTML, b"<title>\n Hotel\x07 WiFi </title>")
    assert "'Hotel\x07 WiFi'" not in verdict.detail
    assert "Hotel" in verdict.detail
    moved = classify(302, [("Location", "http://portal.example/login")], b"")
    assert "redirects to http://portal.example/login" in moved.detail


BLOB = "x" * 50_000


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (401, [("WWW-Authenticate", f'Bearer realm="https://auth.example/{BLOB}"')]),
        (401, [("WWW-Authenticate", f'Bearer realm="https://{BLOB}.example/token"')]),
        (401, [("WWW-Authenticate", f'Bearer realm="{BLOB}"')]),
        (200, [("Docker-Distribution-Api-Version", f"registry/2.0 {BLOB}")]),
        (404, [("Content-Type", f"text/{BLOB}")]),
        (302, [("Location", f"http://portal.example/{BLOB}")]),
    ],
    ids=[
        "long-realm-path",
        "long-realm-host",
        "realm-not-a-url",
        "api-version",
        "type",
        "location",
    ],
)
def test_outside_text_is_bounded_in_the_detail(status: int, headers: list[tuple[str, str]]) -> None:
    """50 KB of a server's text in any header gives a detail of a few hundred characters."""
    outcome = classify(status, headers, b"")
    assert len(outcome.detail) < 600, len(outcome.detail)


@pytest.mark.parametrize(
    ("realm", "usable"),
    [
        ("https://auth.docker.io/token", True),
        ("http://198.18.1.10:5001/auth", True),
        ("https://[2001:2::1]:8443/token", True),
        (f"https://auth.example/{'x' * 3000}", False),  # longer than any realm a registry means
        (f"https://{'x' * 64}.example/token", False),  # a DNS label is at most 63
        (f"https://{'a.' * 130}example/token", False),  # a DNS name is at most 253
        ("https://auth.example:99999/token", False),
        ("ftp://auth.example/token", False),
        ("/token", False),
        ("https://auth\u00e9.example/token", False),
        ("https://auth.example/to\nken", False),
    ],
    ids=[
        "docker-hub",
        "ipv4-port",
        "ipv6",
        "too-long",
        "long-label",
        "long-name",
        "bad-port",
        "ftp",
        "relative",
        "non-ascii",
        "newline",
    ],
)
def test_only_a_usable_realm_is_kept(realm: str, usable: bool) -> None:
    """A realm is probed (kept on the outcome) only when a client could ask it."""
    header = [("WWW-Authenticate", f'Bearer realm="{realm}",service="s"')]
    outcome = classify(401, header, b"")
    assert outcome.ok
    assert (outcome.realm == realm) is usable, outcome
    assert (outcome.realm is None) is not usable, outcome
