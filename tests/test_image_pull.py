"""What a registry's answers say about one image (probe.images.pull): tables of answers in,
steps and reasons out; platforms as containerd normalizes and matches them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.dockerhub.rules import Token
from probe.images.pull import (
    DOCKER_LIST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    Answer,
    Platform,
    Step,
    classify_manifest,
    classify_token,
    compatible_platforms,
    index_platforms,
    node_platform,
    parse_platform,
    platform_answer,
)
from probe.reasons import Reason

DIGEST = "sha256:" + "a" * 64
API = ("Docker-Distribution-Api-Version", "registry/2.0")
BEARER = (
    "WWW-Authenticate",
    'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
    'scope="repository:team/app:pull"',
)
BEARER_DENIED = (
    "WWW-Authenticate",
    'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
    'scope="repository:team/app:pull",error="insufficient_scope"',
)
BASIC = ("WWW-Authenticate", 'Basic realm="Registry Realm"')
SERVED = [("Content-Type", OCI_INDEX), ("Docker-Content-Digest", DIGEST), API]

# (status, headers, authorization sent, credentials offered) -> (step, reason)
MANIFEST_CASES = [
    (200, SERVED, None, False, Step.SERVED, None),
    (200, [("Content-Type", OCI_MANIFEST)], None, False, Step.SERVED, None),  # no digest: GET
    (200, [("Content-Type", "text/html")], None, False, Step.FAILED, Reason.NOT_A_REGISTRY),
    (200, [("Docker-Content-Digest", "md5:abc")], None, False, Step.FAILED, Reason.NOT_A_REGISTRY),
    (404, [API], None, False, Step.NOT_FOUND, None),
    (404, [API], "bearer", True, Step.NOT_FOUND, None),
    (401, [API, BEARER], None, False, Step.CHALLENGED, None),
    (401, [API, BASIC], None, True, Step.CHALLENGED, None),
    (401, [API, BEARER_DENIED], "bearer", False, Step.FAILED, Reason.IMAGE_AUTH_MISSING),
    (401, [API, BEARER_DENIED], "bearer", True, Step.FAILED, Reason.IMAGE_ACCESS_DENIED),
    (401, [API, BASIC], "basic", True, Step.FAILED, Reason.AUTH_FAILED),
    (401, [API], None, False, Step.FAILED, Reason.IMAGE_AUTH_MISSING),  # no challenge
    (401, [API], None, True, Step.FAILED, Reason.AUTH_FAILED),
    (403, [API], None, False, Step.FAILED, Reason.IMAGE_AUTH_MISSING),
    (403, [API], "bearer", True, Step.FAILED, Reason.IMAGE_ACCESS_DENIED),
    (429, [API, ("ratelimit-remaining", "0;w=21600")], "bearer", False, Step.FAILED,
     Reason.RATE_LIMITED),
    (407, [], None, False, Step.FAILED, Reason.PROXY_AUTH_REQUIRED),
    (503, [], None, False, Step.FAILED, Reason.HTTP_UNEXPECTED_STATUS),
    (302, [("Location", "https://cdn.example.com/x")], None, False, Step.FAILED,
     Reason.HTTP_UNEXPECTED_STATUS),
    (400, [API], None, False, Step.FAILED, Reason.HTTP_UNEXPECTED_STATUS),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "headers", "authorization", "offered", "step", "reason"), MANIFEST_CASES
)
def test_manifest_answers(
    status: int,
    headers: list[tuple[str, str]],
    authorization: str | None,
    offered: bool,
    step: Step,
    reason: Reason | None,
) -> None:
    """Each answer to a manifest HEAD is one step of the walk and at most one reason."""
    answer = classify_manifest(
        status, headers, authorization=authorization, credentials_offered=offered
    )
    assert (answer.step, answer.reason) == (step, reason), answer.detail


def test_served_answer_carries_digest_and_media_type() -> None:
    """A 200 gives the digest and the media type (parameters dropped), as containerd reads them."""
    headers = [("content-type", f"{DOCKER_LIST}; charset=utf-8"), ("docker-content-digest", DIGEST)]
    answer = classify_manifest(200, headers, authorization=None, credentials_offered=False)
    assert (answer.digest, answer.media_type) == (DIGEST, DOCKER_LIST)


def test_challenges_in_header_order() -> None:
    """A 401 names the challenges the runtime knows, in the header's order."""
    answer = classify_manifest(401, [BASIC, BEARER], authorization=None, credentials_offered=False)
    assert [c.scheme for c in answer.challenges] == ["basic", "bearer"]
    assert answer.bearer is not None and answer.bearer.realm == "https://auth.example.com/token"


def test_accept_header_is_containerds() -> None:
    """The HEAD asks for what containerd 1.6 asks for, in its order, then anything."""
    assert MANIFEST_ACCEPT == (
        "application/vnd.docker.distribution.manifest.v2+json, "
        "application/vnd.docker.distribution.manifest.list.v2+json, "
        "application/vnd.oci.image.manifest.v1+json, "
        "application/vnd.oci.image.index.v1+json, */*"
    )


TOKEN = json.dumps({"token": "t0ken", "expires_in": 300}).encode()
# (status, body, credentials offered) -> reason (None: a token)
TOKEN_CASES = [
    (200, TOKEN, False, None),
    (200, TOKEN, True, None),
    (401, b'{"details":"incorrect username or password"}', True, Reason.AUTH_FAILED),
    (403, b"{}", True, Reason.AUTH_FAILED),
    (401, b"{}", False, Reason.IMAGE_AUTH_MISSING),
    (200, b"{}", False, Reason.IMAGE_AUTH_MISSING),  # containerd: "did not include a token"
    (200, b"{}", True, Reason.AUTH_FAILED),
    (200, b"<html>portal</html>", False, Reason.NOT_A_REGISTRY),
    (429, b"{}", False, Reason.RATE_LIMITED),
    (500, b"", True, Reason.HTTP_UNEXPECTED_STATUS),
]


@pytest.mark.parametrize(("status", "body", "offered", "reason"), TOKEN_CASES)
def test_token_answers(status: int, body: bytes, offered: bool, reason: Reason | None) -> None:
    """The token service's answer: a token, or a refusal read by whether credentials were
    offered (none: the repository is not public, cause 2; some: they are wrong, cause 3)."""
    issued = classify_token(status, body, [], 1_700_000_000.0, credentials_offered=offered)
    if reason is None:
        assert isinstance(issued, Token)
    else:
        assert isinstance(issued, Answer) and issued.reason == reason, issued


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64"),
        ("armv7l", "linux/arm/v7"),
        ("armv6l", "linux/arm/v6"),
        ("i686", "linux/386"),
        ("ppc64le", "linux/ppc64le"),
        ("s390x", "linux/s390x"),
        ("riscv64", "linux/riscv64"),
    ],
)
def test_node_platform_as_go_names_it(machine: str, expected: str) -> None:
    """uname's machine names become GOARCH names (containerd's default platform)."""
    assert str(node_platform(machine)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("Linux/x86_64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/armhf", "linux/arm/v7"),
        ("windows/amd64", "windows/amd64"),
    ],
)
def test_parse_platform_normalizes(text: str, expected: str) -> None:
    """--platform is normalized as containerd/platforms normalizes (aliases, default variants)."""
    assert str(parse_platform(text)) == expected


@pytest.mark.parametrize("text", ["amd64", "linux/", "linux/amd64/v1/x", "linux/am d64", ""])
def test_parse_platform_refuses_what_is_not_os_arch(text: str) -> None:
    """Anything but os/arch[/variant] is a ValueError."""
    with pytest.raises(ValueError, match="os/arch"):
        parse_platform(text)


def test_compatible_platforms_follow_containerds_vector() -> None:
    """amd64 also runs 386; arm/v7 runs v6 and v5; arm64 runs arm/v8 down to arm/v5."""
    assert [str(p) for p in compatible_platforms(parse_platform("linux/amd64"))] == [
        "linux/amd64",
        "linux/386",
    ]
    assert [str(p) for p in compatible_platforms(parse_platform("linux/arm/v7"))] == [
        "linux/arm/v7",
        "linux/arm/v6",
        "linux/arm/v5",
    ]
    assert "linux/arm/v8" in [str(p) for p in compatible_platforms(parse_platform("linux/arm64"))]


def index(*platforms: dict[str, str]) -> bytes:
    manifests = [
        {"mediaType": OCI_MANIFEST, "digest": DIGEST, "size": 1, "platform": p} for p in platforms
    ]
    manifests.append({"mediaType": OCI_MANIFEST, "digest": DIGEST, "size": 1})  # an attestation
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()


def test_platform_listed_or_missing() -> None:
    """The index lists the node's platform (or one it runs): served; else image_platform_missing
    naming what it does list."""
    multi = index(
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    )
    assert platform_answer(multi, parse_platform("linux/arm64")).reason is None
    only_386 = index({"os": "linux", "architecture": "386"})
    assert platform_answer(only_386, parse_platform("linux/amd64")).reason is None
    missing = platform_answer(multi, parse_platform("linux/s390x"))
    assert missing.reason == Reason.IMAGE_PLATFORM_MISSING
    assert "linux/amd64, linux/arm64" in missing.detail


def test_unreadable_index_checks_nothing() -> None:
    """A body that is not an index (or was cut off) passes, saying the platform was not checked."""
    answer = platform_answer(b'{"manifests": [', Platform("linux", "amd64"))
    assert answer.reason is None and "not checked" in answer.detail
    assert index_platforms(b"[]") is None


@given(st.binary(max_size=300))
def test_any_index_body_is_read_without_raising(body: bytes) -> None:
    """Whatever a registry sends as an index, the verdict is an answer, never an exception."""
    assert platform_answer(body, Platform("linux", "amd64")).step in (Step.SERVED, Step.FAILED)


@given(
    st.integers(100, 599),
    st.lists(st.tuples(st.sampled_from(["WWW-Authenticate", "Content-Type", "Location",
                                        "Docker-Content-Digest"]), st.text(max_size=60)),
             max_size=4),
    st.sampled_from([None, "bearer", "basic"]),
    st.booleans(),
)  # fmt: skip
def test_any_manifest_answer_is_classified(
    status: int, headers: list[tuple[str, str]], authorization: str | None, offered: bool
) -> None:
    """Whatever status and headers come back: one step, and a reason exactly when it failed."""
    answer = classify_manifest(
        status, headers, authorization=authorization, credentials_offered=offered
    )
    assert (answer.reason is not None) == (answer.step == Step.FAILED)
