"""Keeping secrets out of everything a person or Prometheus sees.

SPEC.md ("Configuration file"): passwords, tokens and proxy credentials never appear in logs,
metrics, `check` output or error messages; a proxy is shown as `http://user:***@proxy:3128`.

Rules of `redact_url`:
- `user:password@` keeps the user name and hides the password: `user:***@`.
- A userinfo without a colon (`http://token@host`) is hidden whole (`***@host`): for proxies and
  registries a lone userinfo is nearly always a token (GitHub-style `https://TOKEN@host`), and a
  user name alone is not worth the risk of showing one.
- An empty password (`user:@host`) has nothing to hide and is shown as it is.
- The userinfo ends at the last `@` of the authority, as Go's `url.Parse` reads it, so a password
  holding a raw `@` is still hidden whole. A string that is not a URL at all is searched the same
  way; when in doubt more is hidden, never less. It never raises.
"""

from __future__ import annotations

import re

MASK = "***"

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def _split_userinfo(url: str) -> tuple[str, str, str] | None:
    """(prefix up to the userinfo, userinfo, rest from the `@`) or None when there is none."""
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    after = url[start:]
    # Go ends the authority at the first "/" and the userinfo at the last "@" before it. A raw
    # "/" or "#" inside a password would end it earlier and show the password's tail, so take
    # the last "@" anywhere: over-redacting a path that holds an "@" is the safe mistake.
    at = after.rfind("@")
    if at < 0:
        return None
    return url[:start], after[:at], after[at:]


def redact_url(url: str) -> str:
    """`url` with its password (or lone token) replaced by `***`; the user name is kept."""
    parts = _split_userinfo(url)
    if parts is None:
        return url
    prefix, userinfo, rest = parts
    user, colon, password = userinfo.partition(":")
    if not colon:
        return f"{prefix}{MASK}{rest}"
    if not password:
        return url
    return f"{prefix}{user}:{MASK}{rest}"
