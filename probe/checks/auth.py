"""Authorization header values, written in one place: HTTP Basic (RFC 7617).

Used for a proxy's `Proxy-Authorization` (Go sends the proxy URL's user info this way) and a
token service's `Authorization`. The value carries a secret: it is sent, never shown.
"""

from __future__ import annotations

import base64


def basic_authorization(username: str, password: str) -> str:
    """`Basic base64(user:password)`, UTF-8 as Go and the docker CLI encode it."""
    secret = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(secret).decode("ascii")
