"""What a registry's answers say about one image: the sans-IO core of `check --image`.

The runtime resolves a reference with a `HEAD` on `/v2/<name>/manifests/<tag or digest>`
(containerd 1.6 remotes/docker/resolver.go, `Resolve`), first without credentials; a 401 names
how to authorize (`WWW-Authenticate`: a Bearer token from a realm, or Basic), and the `HEAD` is
sent again with it (`dockerAuthorizer.AddResponses`, `doWithRetries`). Per host:

- 2xx: the host serves the image; `Docker-Content-Digest` and `Content-Type` describe it.
- 404: not here, the next host is tried and this answer is not the pull's error.
- anything else >= 400, and any transport error: the next host is tried; the first such error
  is the pull's error when no host serves (`firstErr`).

How the registry's answer becomes a reason (SPEC.md, "Images"):

| answer | no credentials offered | credentials offered |
|---|---|---|
| 404 on every host | `image_not_found` (1) | `image_not_found` (1) |
| 401 after an anonymous token; the token service refuses one | `image_auth_missing` (2) | - |
| the token service refuses them; 401 to Basic | - | `auth_failed` (3) |
| 401 or 403 with a token issued for them | - | `image_access_denied` (3) |
| 429 (the registry or its token service) | `rate_limited` (4) | `rate_limited` (4) |
| 5xx, an unexpected 4xx, a redirect | `http_unexpected_status` (5) | the same |

Docker Hub answers 401 for a repository that does not exist as for a private one, so there
`image_auth_missing` also means "no such repository" (its advice says so).

Never a `GET` of a manifest here unless the platform is checked: on Docker Hub a `GET` is a
pull and counts against the limit, a `HEAD` does not (Docker's "Docker Hub usage and limits").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from probe.checks.challenge import Challenge, parse_challenges
from probe.checks.http import json_object
from probe.config import HostPort
from probe.display import clip
from probe.dockerhub.rules import Token, parse_ratelimit_headers, parse_token_response
from probe.reasons import Reason

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# The Accept header containerd 1.6 sends when it resolves a reference (remotes/docker/
# resolver.go, NewResolver's resolveHeader): schema 2 manifest and list, OCI manifest and index,
# then anything. tests/test_containerd_differential.py holds it against the header a real
# containerd 1.6.20 sends.
MANIFEST_ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"))
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST, *INDEX_TYPES})
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}", re.ASCII)


class Step(StrEnum):
    """Where one answer leaves the walk over a host."""

    SERVED = "served"  # the host has the image
    NOT_FOUND = "not_found"  # 404: the next host, without keeping an error
    CHALLENGED = "challenged"  # 401 with a challenge: authorize, then ask again
    FAILED = "failed"  # the next host, keeping this as the pull's error if none serves


@dataclass(frozen=True)
class Answer:
    """One answer of a registry or its token service, read."""

    step: Step
    reason: Reason | None
    detail: str
    digest: str | None = None
    media_type: str | None = None
    challenges: tuple[Challenge, ...] = ()
    endpoint: HostPort | None = None  # where the answer came from, when not the host asked

    @property
    def bearer(self) -> Challenge | None:
        return next((c for c in self.challenges if c.scheme == "bearer"), None)

    @property
    def basic(self) -> Challenge | None:
        return next((c for c in self.challenges if c.scheme == "basic"), None)


def _fields(headers: Iterable[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    first: dict[str, str] = {}
    challenges: list[str] = []
    for name, value in headers:
        key = name.strip().lower()
        if key == "www-authenticate":
            challenges.append(value)
        first.setdefault(key, value)
    return first, challenges


def media_type_of(value: str | None) -> str | None:
    """`Content-Type` without its parameters, or None."""
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def classify_manifest(
    status: int,
    headers: Iterable[tuple[str, str]],
    *,
    authorization: str | None,
    credentials_offered: bool,
) -> Answer:
    """A `HEAD` (or `GET`) on a manifest, sent with `authorization` ("bearer", "basic", or None
    for the first, anonymous request)."""
    fields, challenge_texts = _fields(headers)
    what = f"{status}"
    if 200 <= status < 300:
        digest = fields.get("docker-content-digest", "").strip() or None
        media_type = media_type_of(fields.get("content-type"))
        if digest is not None and _DIGEST.fullmatch(digest) is None:
            return Answer(
                Step.FAILED,
                Reason.NOT_A_REGISTRY,
                f"{what} with a Docker-Content-Digest that is not a digest "
                f"({clip(digest)}): the runtime refuses it",
            )
        if digest is None and media_type not in MANIFEST_TYPES:
            return Answer(
                Step.FAILED,
                Reason.NOT_A_REGISTRY,
                f"{what} {media_type or 'without a content type'}, no Docker-Content-Digest: "
                "not a registry's manifest (a captive portal or a proxy's page?)",
            )
        served = f"{what}, {media_type or 'no content type'}"
        return Answer(Step.SERVED, None, served, digest=digest, media_type=media_type)
    if status == 404:
        return Answer(Step.NOT_FOUND, None, f"{what}: not here (MANIFEST_UNKNOWN or NAME_UNKNOWN)")
    if status == 429:
        limits = parse_ratelimit_headers(fields.items())
        said = f"; {limits.describe()}" if limits.headers_present else ""
        return Answer(Step.FAILED, Reason.RATE_LIMITED, f"{what} toomanyrequests{said}")
    if status == 407:
        return Answer(Step.FAILED, Reason.PROXY_AUTH_REQUIRED, f"{what} from a proxy on the path")
    if status == 401:
        challenges = tuple(c for text in challenge_texts for c in parse_challenges(text))
        known = tuple(c for c in challenges if c.scheme in ("bearer", "basic"))
        if authorization is None and known:
            schemes = " and ".join(sorted({c.scheme.capitalize() for c in known}))
            return Answer(Step.CHALLENGED, None, f"{what} {schemes} challenge", challenges=known)
        error = next((c.params.get("error") for c in challenges if c.params.get("error")), None)
        said = f" ({clip(error)})" if error else ""
        if authorization == "basic":
            return Answer(
                Step.FAILED,
                Reason.AUTH_FAILED,
                f"{what}{said}: the registry rejects the username and password (Basic)",
            )
        if authorization == "bearer":
            if credentials_offered:
                return Answer(
                    Step.FAILED,
                    Reason.IMAGE_ACCESS_DENIED,
                    f"{what}{said}: the token issued for these credentials does not allow "
                    "pulling this repository",
                )
            return Answer(
                Step.FAILED,
                Reason.IMAGE_AUTH_MISSING,
                f"{what}{said}: an anonymous token does not allow pulling this repository "
                "(private, or it does not exist)",
            )
        # 401 with no challenge a runtime can answer (containerd: "failed to find supported
        # auth scheme").
        reason = Reason.AUTH_FAILED if credentials_offered else Reason.IMAGE_AUTH_MISSING
        return Answer(Step.FAILED, reason, f"{what} without a Bearer or Basic challenge{said}")
    if status == 403:
        if credentials_offered:
            return Answer(
                Step.FAILED,
                Reason.IMAGE_ACCESS_DENIED,
                f"{what} DENIED: the credentials are valid, not for this repository",
            )
        return Answer(
            Step.FAILED,
            Reason.IMAGE_AUTH_MISSING,
            f"{what} DENIED without credentials: the repository is not public",
        )
    if 300 <= status < 400:
        location = fields.get("location")
        where = f" to {clip(location)}" if location else ""
        return Answer(
            Step.FAILED,
            Reason.HTTP_UNEXPECTED_STATUS,
            f"{what} redirect{where}: not followed (credentials never follow a redirect)",
        )
    return Answer(
        Step.FAILED, Reason.HTTP_UNEXPECTED_STATUS, f"{what}: not what a registry answers here"
    )


def classify_token(
    status: int,
    body: bytes,
    headers: Iterable[tuple[str, str]],
    now: float,
    *,
    credentials_offered: bool,
) -> Token | Answer:
    """The token service's answer: a token, or the reason the pull stops there. Without
    credentials a refusal means the repository is not public (`image_auth_missing`); with them,
    that they are wrong or expired (`auth_failed`)."""
    headers = list(headers)
    issued = parse_token_response(status, body, now, headers)
    if isinstance(issued, Token):
        return issued
    refused = issued.reason == Reason.AUTH_FAILED or (
        status == 200 and json_object(body) is not None  # JSON, but no token in it
    )
    if refused:
        detail = issued.detail
        if credentials_offered:
            return Answer(Step.FAILED, Reason.AUTH_FAILED, detail)
        if issued.reason == Reason.AUTH_FAILED:
            detail = f"token service refused an anonymous token ({status})"
        return Answer(Step.FAILED, Reason.IMAGE_AUTH_MISSING, f"{detail}: anonymous pulls refused")
    assert issued.reason is not None  # noqa: S101 - parse_token_response: a token or a reason
    return Answer(Step.FAILED, issued.reason, issued.detail)


def repository_scope(path: str) -> str:
    """The scope a pull asks a token for (containerd's ContextWithRepositoryScope)."""
    return f"repository:{path}:pull"


# --- platforms --------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Platform:
    """An OCI platform, normalized as containerd normalizes it (containerd/platforms,
    database.go `normalizeArch`)."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        tail = f"/{self.variant}" if self.variant else ""
        return f"{self.os}/{self.architecture}{tail}"


# uname's machine names as Go's GOARCH names them (what containerd's default platform is).
_GOARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "loongarch64": ("loong64", ""),
    "mips64": ("mips64", ""),
}


def normalize_platform(os_name: str, architecture: str, variant: str = "") -> Platform:
    """containerd/platforms `Normalize`: lower case, and the architecture's aliases."""
    arch, var = architecture.lower(), variant.lower()
    if arch == "i386":
        arch, var = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch = "amd64"
        var = "" if var == "v1" else var
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        var = {"8": "", "v8": "", "v8.0": "", "9": "v9", "9.0": "v9", "v9.0": "v9"}.get(var, var)
    elif arch == "armhf":
        arch, var = "arm", "v7"
    elif arch == "armel":
        arch, var = "arm", "v6"
    elif arch == "arm":
        var = {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"}.get(var, var)
    return Platform(os_name.lower(), arch, var)


def node_platform(machine: str, os_name: str = "linux") -> Platform:
    """The node's platform from `uname -m` (the agent shares the node's kernel)."""
    arch, variant = _GOARCH.get(machine.lower(), (machine.lower(), ""))
    return normalize_platform(os_name, arch, variant)


def parse_platform(text: str) -> Platform:
    """`os/arch[/variant]`, as `--platform` and containerd write it. Raises ValueError."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(re.fullmatch(r"[A-Za-z0-9_.-]+", p) for p in parts):
        raise ValueError(f"{text!r} is not os/arch[/variant] (such as linux/amd64, linux/arm/v7)")
    return normalize_platform(*parts)


def compatible_platforms(platform: Platform) -> tuple[Platform, ...]:
    """What the runtime accepts for `platform`, best first (containerd/platforms compare.go,
    `platformVector`): amd64 also runs 386; arm/vN runs arm/vN-1 down to v5; arm64 runs
    arm64 and arm/v8 down to arm/v5."""
    os_name, arch, variant = platform.os, platform.architecture, platform.variant
    vector = [platform]
    if arch == "amd64":
        vector.append(Platform(os_name, "386"))
    elif arch == "arm":
        version = int(variant[1:]) if re.fullmatch(r"v[0-9]+", variant) else 0
        vector += [Platform(os_name, "arm", f"v{v}") for v in range(version - 1, 4, -1)]
    elif arch == "arm64":
        vector += [Platform(os_name, "arm", f"v{v}") for v in range(8, 4, -1)]
    return tuple(vector)


def index_platforms(body: bytes) -> tuple[Platform, ...] | None:
    """The platforms an image index (or Docker manifest list) lists; None when the body is not
    one (not JSON, no `manifests` list, or cut off by the body limit)."""
    document = json_object(body)
    manifests = document.get("manifests") if document is not None else None
    if not isinstance(manifests, list):
        return None
    found: list[Platform] = []
    for entry in manifests:
        platform = entry.get("platform") if isinstance(entry, Mapping) else None
        if not isinstance(platform, Mapping):
            continue  # attestations and other artifacts carry no platform, or "unknown"
        os_name, arch = platform.get("os"), platform.get("architecture")
        variant = platform.get("variant", "")
        if isinstance(os_name, str) and isinstance(arch, str) and isinstance(variant, str):
            found.append(normalize_platform(os_name, arch, variant))
    return tuple(found)


def platform_answer(body: bytes, platform: Platform) -> Answer:
    """Whether the index lists a platform the runtime would take for `platform`."""
    listed = index_platforms(body)
    if listed is None:
        return Answer(
            Step.SERVED,
            None,
            "the index could not be read (not JSON, or over the 64 KiB read limit): "
            f"{platform} not checked",
        )
    wanted = compatible_platforms(platform)
    shown = ", ".join(dict.fromkeys(str(p) for p in listed if p.os != "unknown")) or "none"
    if any(p in wanted for p in listed):
        return Answer(Step.SERVED, None, f"the index lists {platform} (of {shown})")
    return Answer(
        Step.FAILED,
        Reason.IMAGE_PLATFORM_MISSING,
        f"the index lists no image for {platform}, only: {shown}",
    )
