"""`WWW-Authenticate` challenges (RFC 7235), parsed without I/O.

A registry that wants a token answers `GET /v2/` with
`Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`; the realm's host is
an endpoint a pull needs. Quoted values may contain commas (scopes such as
`repository:a/b:pull,push`), so the header is tokenised, never split on commas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-cased: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)  # names lower-cased

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in one header value; malformed parts are skipped, never raised."""
    challenges: list[Challenge] = []
    pos, n = 0, len(header)

    def skip(chars: str) -> None:
        nonlocal pos
        while pos < n and header[pos] in chars:
            pos += 1

    def token() -> str:
        nonlocal pos
        start = pos
        while pos < n and header[pos] in _TOKEN_CHARS:
            pos += 1
        return header[start:pos]

    while pos < n:
        skip(" \t,")
        scheme = token()
        if not scheme:
            pos += 1  # not a token character: skip it
            continue
        params: dict[str, str] = {}
        while pos < n:
            skip(" \t")
            mark = pos
            name = token()
            skip(" \t")
            if not name or pos >= n or header[pos] != "=":
                pos = mark  # the next challenge's scheme starts here
                break
            pos += 1  # '='
            skip(" \t")
            if pos < n and header[pos] == '"':
                pos += 1
                value: list[str] = []
                while pos < n and header[pos] != '"':
                    if header[pos] == "\\" and pos + 1 < n:
                        pos += 1
                    value.append(header[pos])
                    pos += 1
                pos += 1  # closing quote
                params[name.lower()] = "".join(value)
            else:
                params[name.lower()] = token()
            skip(" \t")
            if pos < n and header[pos] == ",":
                pos += 1
        challenges.append(Challenge(scheme=scheme.lower(), params=params))
    return challenges
