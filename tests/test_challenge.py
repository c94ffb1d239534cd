"""WWW-Authenticate parsing: the realm a pull fetches its token from."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.checks.challenge import Challenge, parse_challenges

CASES = [
    (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
        [
            Challenge(
                "bearer",
                {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"},
            )
        ],
    ),
    (
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull,push"',
        [
            Challenge(
                "bearer",
                {
                    "realm": "https://ghcr.io/token",
                    "service": "ghcr.io",
                    "scope": "repository:a/b:pull,push",
                },
            )
        ],
    ),
    ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    (
        'Basic realm="a", Bearer realm="b" , error=invalid_token',
        [
            Challenge("basic", {"realm": "a"}),
            Challenge("bearer", {"realm": "b", "error": "invalid_token"}),
        ],
    ),
    ('BEARER Realm = "x\\"y"', [Challenge("bearer", {"realm": 'x"y'})]),
    ("Basic", [Challenge("basic", {})]),
    ("", []),
    (",,,", []),
]


@pytest.mark.parametrize(("header", "expected"), CASES)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    """Each header parses into its challenges, quoted commas kept inside values."""
    assert parse_challenges(header) == expected


def test_realm_property() -> None:
    """A challenge's realm is its realm parameter, None without one."""
    assert parse_challenges('Bearer realm="r"')[0].realm == "r"
    assert parse_challenges("Bearer")[0].realm is None


@given(st.text(max_size=200))
def test_never_raises(header: str) -> None:
    """Any header text parses to a list, never an exception (it comes off the network)."""
    assert isinstance(parse_challenges(header), list)
