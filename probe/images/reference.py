"""Image references, read as containerd and the kubelet read them: `nginx` is
`docker.io/library/nginx:latest`.

The rules are those of github.com/distribution/reference (normalize.go, reference.go and
regexp.go at commit 0965666a6ade2e06035fe352e38344be1e68951a), which containerd's CRI plugin
(`reference/docker.ParseDockerRef`) and the kubelet (`parsers.ParseImageName`) both apply:

- `ParseNormalizedNamed`: a bare 64-hex string is refused ("cannot specify 64-byte hexadecimal
  strings"). The part before the first `/` is the registry when it is `localhost`, contains a
  `.` or a `:`, or is not lower case; `index.docker.io` is `docker.io`; anything else (no `/`
  at all, or a plain lower-case first element) is a Docker Hub repository. On `docker.io` a
  one-element path gets `library/` (`docker.io/nginx` is `docker.io/library/nginx`). The
  repository (up to the first `:`) must be lower case.
- `Parse`: the grammar `name[:tag][@digest]` of reference.go, anchored: a domain is DNS-like
  components (letters of either case, digits, inner `-`), or an IPv6 address in brackets, with
  an optional `:port`; a path component is `[a-z0-9]+` joined by `.`, `_`, `__` or any run of
  `-`; a tag is `[\\w][\\w.-]{0,127}`; a digest `algorithm:hex` with at least 32 hex digits.
  The path is at most 255 characters.
- The digest is then validated by go-digest v1.0.0 (commit ea51bea511f75cfa3ef6098cc253c5c3609b037a,
  what containerd 1.6 and the kubelet vendor): `sha256`, `sha384` and `sha512` only, in lower-case
  hex of exactly 64, 96 or 128 digits.
- `ParseDockerRef` then keeps the digest alone when both a tag and a digest are given, and adds
  `:latest` when there is neither.

Everything here is pure; errors are `InvalidReference` (a ValueError) with the library's words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# regexp.go, written out. Go's `\w` is ASCII and `[[:xdigit:]]` is [0-9A-Fa-f].
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_NAME_COMPONENT + r"(?:\." + _DOMAIN_NAME_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6_ADDRESS + r")"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

_REFERENCE = re.compile(r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII)
_ANCHORED_NAME = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")", re.ASCII)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}", re.ASCII)

# go-digest v1.0.0: the algorithms containerd 1.6 and the kubelet can verify, and their length.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_ANCHORED = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)

# Amazon ECR's private registries: <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn] (the
# pattern of the kubelet's ECR credential provider, cloud-provider-aws). Their pull secrets hold
# a token that expires after 12 hours.
_ECR_HOST = re.compile(
    r"[0-9]{12}\.dkr\.ecr(?:-fips)?\.[a-zA-Z0-9][a-zA-Z0-9_-]*\."
    r"(?:amazonaws\.com(?:\.cn)?|sc2s\.sgov\.gov|c2s\.ic\.gov)",
    re.ASCII,
)


class InvalidReference(ValueError):
    """A reference the runtime would refuse, in distribution/reference's words."""


@dataclass(frozen=True)
class ImageReference:
    """A reference as the runtime resolves it: `domain/path` and a tag or a digest (never both)."""

    domain: str  # "docker.io", "registry.example.com:5000", "[fc00::1]:5000", "localhost"
    path: str  # "library/nginx"
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`domain/path`: what the kubelet looks credentials up with."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What the runtime asks the registry for: the digest, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def is_docker_hub(self) -> bool:
        return self.domain == DEFAULT_DOMAIN

    @property
    def is_ecr(self) -> bool:
        """An Amazon ECR private registry, whose pull secrets expire after 12 hours."""
        return _ECR_HOST.fullmatch(self.domain.split(":", 1)[0]) is not None

    def __str__(self) -> str:
        if self.digest is not None:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or DEFAULT_TAG}"


def parse_reference(text: str) -> ImageReference:
    """containerd's `ParseDockerRef`: the normalized reference, with `:latest` when it names
    neither a tag nor a digest, and only the digest when it names both. Raises InvalidReference."""
    if _IDENTIFIER.fullmatch(text):
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(text)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReference(
            f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    domain, path, tag, digest = _parse(f"{domain}/{remainder}")
    if digest is not None:
        tag = None  # ParseDockerRef: tagged and digested is digested only
    elif tag is None:
        tag = DEFAULT_TAG  # TagNameOnly
    return ImageReference(domain, path, tag, digest)


def _split_docker_domain(name: str) -> tuple[str, str]:
    """normalize.go's splitDockerDomain."""
    maybe_domain, slash, maybe_remote = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == "localhost":
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, maybe_remote
    elif any(c in maybe_domain for c in ".:") or maybe_domain.lower() != maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def _parse(text: str) -> tuple[str, str, str | None, str | None]:
    """reference.go's Parse, for a name that has its domain: (domain, path, tag, digest)."""
    if not text:
        raise InvalidReference("repository name must have at least one component")
    match = _REFERENCE.fullmatch(text)
    if match is None:
        lower = text.lower()
        if lower != text and _REFERENCE.fullmatch(lower) is not None:
            raise InvalidReference("repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name, tag, digest = match.group(1), match.group(2), match.group(3)
    parts = _ANCHORED_NAME.fullmatch(name)
    if parts is None or parts.group(1) is None:  # cannot happen after splitDockerDomain
        raise InvalidReference("invalid reference format")
    domain, path = parts.group(1), parts.group(2)
    if len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest is not None:
        _validate_digest(digest)
    return domain, path, tag, digest


def _validate_digest(digest: str) -> None:
    """go-digest v1.0.0's Digest.Validate."""
    algorithm, colon, encoded = digest.partition(":")
    if not algorithm or not colon or not encoded:
        raise InvalidReference("invalid checksum digest format")
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        if _DIGEST_ANCHORED.fullmatch(digest) is None:
            raise InvalidReference("invalid checksum digest format")
        raise InvalidReference("unsupported digest algorithm")
    if len(encoded) != length:
        raise InvalidReference("invalid checksum digest length")
    if re.fullmatch(r"[a-f0-9]+", encoded, re.ASCII) is None:
        raise InvalidReference("invalid checksum digest format")
