"""Which credentials the kubelet offers for an image: its keyring, as pure functions.

The kubelet builds a keyring from the pod's `imagePullSecrets` (then the node's own credentials)
and looks the image's repository up in it (kubernetes pkg/credentialprovider/keyring.go,
`BasicDockerKeyring`, and pkg/kubelet/images: the lookup key is `parsers.ParseImageName`'s
repository, `docker.io/library/nginx` for `nginx`):

- Each key of a `.dockerconfigjson` gets `https://` when it has no scheme and is parsed as a URL
  (a key that does not parse is skipped); a path starting `/v1/` or `/v2/` counts from its third
  character, so `https://index.docker.io/v1/` is the key `index.docker.io`, and
  `quay.io/v2/team` is `quay.io/team`. Keys are deduplicated and sorted in reverse, so more
  specific paths come first (`quay.io/team` before `quay.io`).
- A key matches a repository when the host has as many dot-separated parts, each part matches
  as a glob (Go's `filepath.Match`: `*.example.com` matches `a.example.com`, not
  `a.b.example.com`), the ports are equal (none on both, or the same) and the key's path is a
  prefix of the repository's path.
- When no key matched and the image is on Docker Hub (`docker.io/...`, `index.docker.io/...`,
  or a first element without `.` or `:`), the credentials of `index.docker.io` are used.
- The pod's secrets come first, then the node's; the kubelet tries each match in that order
  until one pull works, and pulls without credentials when nothing matched.

Secrets never leave here except as `DockerCredentials`, whose repr masks them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from probe.dockerhub.rules import ConfigEntry, DockerCredentials

DEFAULT_REGISTRY_HOST = "index.docker.io"
_PORT = re.compile(r":[0-9]*", re.ASCII)  # Go's validOptionalPort


@dataclass(frozen=True)
class OfferedCredentials:
    """One account the kubelet would offer for an image, and where it comes from."""

    source: str  # "--pull-secret /path" or "credentials_file /path"
    key: str  # the key of the file that matched, as written
    credentials: DockerCredentials | None  # None: the entry reaches the runtime empty
    note: str | None = None

    def describe(self) -> str:
        """Who and from where, never the secret: `user alice from --pull-secret s.json (key
        https://index.docker.io/v1/)`."""
        where = f"{self.source} (key {self.key})"
        if self.credentials is None:
            return f"no usable account from {where}: {self.note or 'empty'}"
        return f"user {self.credentials.username or '(token)'} from {where}"


@dataclass(frozen=True)
class Keyring:
    """One source of credentials (a pull secret, or the node's credentials file)."""

    source: str
    index: tuple[tuple[str, tuple[ConfigEntry, ...]], ...]  # key -> entries, reverse-sorted

    @classmethod
    def of(cls, source: str, entries: tuple[ConfigEntry, ...]) -> Keyring:
        found: dict[str, list[ConfigEntry]] = {}
        for entry in entries:
            key = keyring_key(entry.key)
            if key is not None:
                found.setdefault(key, []).append(entry)
        ordered = sorted(found, reverse=True)
        return cls(source, tuple((key, tuple(found[key])) for key in ordered))

    def lookup(self, repository: str) -> tuple[OfferedCredentials, ...]:
        """What the kubelet offers for `repository` (`docker.io/library/nginx`), in order."""
        matched = [
            entry for key, entries in self.index if urls_match(key, repository) for entry in entries
        ]
        if not matched and is_default_registry_match(repository):
            matched = [e for key, es in self.index if key == DEFAULT_REGISTRY_HOST for e in es]
        return tuple(OfferedCredentials(self.source, e.key, e.credentials, e.note) for e in matched)


def lookup(keyrings: tuple[Keyring, ...], repository: str) -> tuple[OfferedCredentials, ...]:
    """The union of the keyrings' matches, in their order (the pod's secrets, then the node's)."""
    return tuple(offer for keyring in keyrings for offer in keyring.lookup(repository))


def keyring_key(location: str) -> str | None:
    """`BasicDockerKeyring.Add`'s key for one location of a config file, None when it does not
    parse as a URL."""
    value = location
    if not value.startswith(("https://", "http://")):
        value = "https://" + value
    parsed = _go_url(value)
    if parsed is None:
        return None
    path = parsed.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    if path and path != "/":
        return parsed.netloc + path
    return parsed.netloc


def urls_match(glob: str, target: str) -> bool:
    """`URLsMatchStr`: the key `glob` (host parts may be globs) against a repository."""
    glob_url = _go_url("https://" + glob)
    target_url = _go_url("https://" + target)
    if glob_url is None or target_url is None:
        return False
    glob_parts, glob_port = _split_host(glob_url.netloc)
    target_parts, target_port = _split_host(target_url.netloc)
    if glob_port != target_port or len(glob_parts) != len(target_parts):
        return False
    if not target_url.path.startswith(glob_url.path):
        return False
    return all(go_glob_match(g, t) for g, t in zip(glob_parts, target_parts, strict=True))


def is_default_registry_match(image: str) -> bool:
    """`isDefaultRegistryMatch`: whether the image pulls from Docker Hub, by its name alone."""
    first, slash, _ = image.partition("/")
    if not first:
        return False
    if not slash:
        return True
    if first in ("docker.io", "index.docker.io"):
        return True
    return not any(c in first for c in ".:")


def _go_url(value: str) -> SplitResult | None:
    """`url.Parse` for the URLs here, None where Go's parser fails: a control character or a
    space, an unclosed `[`, or a port that is not digits."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return None
    try:
        parsed = urlsplit(value)
    except ValueError:  # an unbalanced "[" in the host
        return None
    authority = parsed.netloc.rpartition("@")[2]
    if authority.startswith("["):
        end = authority.find("]")
        if end == -1:
            return None
        port_part = authority[end + 1 :]
        if port_part and not _PORT.fullmatch(port_part):
            return None
    elif ":" in authority and not _PORT.fullmatch(authority[authority.rfind(":") :]):
        return None
    return parsed


def _split_host(netloc: str) -> tuple[list[str], str]:
    """`SplitURL`: the host's dot-separated parts and the port (Go's `net.SplitHostPort`; a
    host without a port keeps any brackets and has the port "")."""
    host, port = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end != -1 and netloc[end + 1 : end + 2] == ":":
            host, port = netloc[1:end], netloc[end + 2 :]
    elif netloc.count(":") == 1:
        host, port = netloc.split(":")
    return host.split("."), port


def go_glob_match(pattern: str, name: str) -> bool:
    """Go's `filepath.Match` on one host part (no separators there): `*` any run, `?` one
    character, `[...]` a class (`^` negates, `a-z` ranges, `\\` escapes). A malformed pattern
    matches nothing, as Go's error does."""
    regex = _glob_regex(pattern)
    return regex is not None and regex.fullmatch(name) is not None


def _glob_regex(pattern: str) -> re.Pattern[str] | None:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i + 1 >= n:
                return None
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end, klass = _glob_class(pattern, i + 1)
            if end is None:
                return None
            out.append(klass)
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _glob_class(pattern: str, start: int) -> tuple[int | None, str]:
    """A `[...]` class from `start` (after the `[`): (index of its `]`, a regex class); None
    for what Go calls a bad pattern (an empty or unterminated class, a bad range)."""
    i, n = start, len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    ranges: list[str] = []
    while i < n and pattern[i] != "]":
        low, i = _class_char(pattern, i)
        if low is None:
            return None, ""
        high: str | None = low
        if i < n and pattern[i] == "-":
            high, i = _class_char(pattern, i + 1)
        if high is None or high < low:
            return None, ""
        ranges.append(f"{re.escape(low)}-{re.escape(high)}")
    if i >= n or not ranges:
        return None, ""
    return i, f"[{'^' if negate else ''}{''.join(ranges)}]"


def _class_char(pattern: str, i: int) -> tuple[str | None, int]:
    """One character of a class, `\\` escapes included: (the character, the index after it)."""
    if i >= len(pattern) or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            return None, i
    return pattern[i], i + 1
