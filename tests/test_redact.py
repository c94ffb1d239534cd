"""Secrets never shown: proxy and registry URLs redacted, known secrets scrubbed from text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.redact import redact_text, redact_url, url_secrets


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pass@proxy:3128", "http://user:***@proxy:3128"),
        ("http://proxy:3128", "http://proxy:3128"),
        # A lone userinfo is taken for a token and hidden whole.
        ("https://ghp_token@proxy:3128", "https://***@proxy:3128"),
        # An empty password hides nothing.
        ("http://user:@proxy:3128", "http://user:@proxy:3128"),
        # A raw "@" or "/" in the password: everything up to the last "@" is hidden.
        ("http://user:p@ss@proxy:3128", "http://user:***@proxy:3128"),
        ("http://user:p/ss@proxy:3128/", "http://user:***@proxy:3128/"),
        # Without a scheme, as proxies are often written.
        ("user:pass@proxy:3128", "user:***@proxy:3128"),
        ("proxy:3128", "proxy:3128"),
        ("", ""),
        ("http://u%40corp:p%3Aw@[2001:db8::1]:3128", "http://u%40corp:***@[2001:db8::1]:3128"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    """Passwords and lone tokens become ***, user names and hosts stay."""
    assert redact_url(url) == shown


@given(user=st.text(alphabet="abcXYZ019-_.", min_size=1), secret=st.text(min_size=1))
def test_redacted_url_never_holds_the_password(user: str, secret: str) -> None:
    """Whatever the password holds (including @, / and :), it is not in the shown URL."""
    shown = redact_url(f"http://{user}:{secret}@proxy.example:3128")
    assert shown == f"http://{user}:***@proxy.example:3128"


@given(st.text())
def test_redact_url_never_raises(text: str) -> None:
    """Any string gives a string back."""
    assert isinstance(redact_url(text), str)


def test_url_secrets() -> None:
    """The password (raw and decoded), or a lone token, is what a URL holds secret."""
    assert url_secrets("http://u:p%40ss@proxy:3128") == ("p%40ss", "p@ss")
    assert url_secrets("http://tok@proxy") == ("tok",)
    assert url_secrets("http://proxy:3128") == ()


def test_redact_text_scrubs_known_secrets() -> None:
    """Known secret values, raw or percent-encoded, are replaced in free text."""
    text = "proxyconnect tcp: dial http://u:p@ss@proxy failed; sent p%40ss"
    assert (
        redact_text(text, ["p@ss"]) == "proxyconnect tcp: dial http://u:***@proxy failed; sent ***"
    )


def test_redact_text_longest_first_and_empty_ignored() -> None:
    """A secret containing another is hidden whole; empty secrets change nothing."""
    assert redact_text("token abc123 and abc", ["abc", "abc123", ""]) == "token *** and ***"
