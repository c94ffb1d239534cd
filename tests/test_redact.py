"""Secrets never shown: proxy and registry URLs redacted, known secrets scrubbed from text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.redact import redact_url


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
