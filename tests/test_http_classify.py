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
