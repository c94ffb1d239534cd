"""Image references read as containerd reads them (probe.images.reference), held against the
test tables of github.com/distribution/reference itself.

The cases marked "upstream" are copied from distribution/reference at commit
0965666a6ade2e06035fe352e38344be1e68951a: normalize_test.go (TestValidateReferenceName,
TestValidateRemoteName, TestParseRepositoryInfo, TestParseDockerRef) and reference_test.go
(TestReferenceParse); the digest rules from opencontainers/go-digest v1.0.0
(ea51bea511f75cfa3ef6098cc253c5c3609b037a).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.images.reference import ImageReference, InvalidReference, parse_reference

DIGEST = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"

# upstream TestParseDockerRef: input -> ParseDockerRef(input).String()
DOCKER_REF = [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:latest", "docker.io/library/busybox:latest"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox:latest", "docker.io/library/busybox:latest"),
    ("library/busybox:latest", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
    ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
    (f"gcr.io/library/busybox:latest@{DIGEST}", f"gcr.io/library/busybox@{DIGEST}"),
]

# upstream TestParseRepositoryInfo: (familiar or ambiguous name, full name, domain, path)
REPOSITORY_INFO = [
    ("localhost/fooo", "localhost/fooo", "localhost", "fooo"),
    ("localhost/fooo/bar", "localhost/fooo/bar", "localhost", "fooo/bar"),
    ("LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN", "fooo"),
    ("fooo/bar", "docker.io/fooo/bar", "docker.io", "fooo/bar"),
    ("index.docker.io/fooo/bar", "docker.io/fooo/bar", "docker.io", "fooo/bar"),
    ("ubuntu", "docker.io/library/ubuntu", "docker.io", "library/ubuntu"),
    ("library/ubuntu", "docker.io/library/ubuntu", "docker.io", "library/ubuntu"),
    ("nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "docker.io", "nonlibrary/ubuntu"),
    ("other/library", "docker.io/other/library", "docker.io", "other/library"),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000",
     "private/moonbase"),
    ("example.com/privatebase", "example.com/privatebase", "example.com", "privatebase"),
    ("example.com:8000/private/moonbase", "example.com:8000/private/moonbase",
     "example.com:8000", "private/moonbase"),
    ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base", "docker.io",
     "library/ubuntu-12.04-base"),
    ("docker.io/foo", "docker.io/library/foo", "docker.io", "library/foo"),
    ("library/foo/bar", "docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
    ("store/foo/bar", "docker.io/store/foo/bar", "docker.io", "store/foo/bar"),
    ("Foo/bar", "Foo/bar", "Foo", "bar"),
    ("FOO/bar", "FOO/bar", "FOO", "bar"),
]  # fmt: skip

# upstream TestValidateReferenceName and TestValidateRemoteName
VALID_NAMES = [
    "docker/docker", "library/debian", "debian", "localhost/library/debian", "localhost/debian",
    "LOCALDOMAIN/library/debian", "LOCALDOMAIN/debian", "docker.io/docker/docker",
    "docker.io/library/debian", "docker.io/debian", "index.docker.io/docker/docker",
    "index.docker.io/library/debian", "index.docker.io/debian", "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian", "127.0.0.1:5000/debian", "192.168.0.1", "192.168.0.1:80",
    "192.168.0.1:8/debian", "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker", "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker", "DOCKER/docker", "docker-rules/docker", "docker---rules/docker",
    "doc/docker", "d/docker", "jess/t", "dock__er/docker",
]  # fmt: skip
INVALID_NAMES = [
    "https://github.com/docker/docker", "docker/Docker", "-docker", "-docker/docker",
    "-docker.io/docker/docker", "docker///docker", "docker.io/docker/Docker",
    "docker.io/docker///docker", "[fc00::1]", "[fc00::1]:5000", "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian", "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "docker-/docker", "-docker-/docker", "____/____", "_docker/_docker", "dock..er/docker",
    "dock_.er/docker", "dock-.er/docker", "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4 + "/docker",
]  # fmt: skip

# upstream TestReferenceParse: input -> (domain, path, tag, digest) after normalization
PARSED = [
    ("test_com", ("docker.io", "library/test_com", "latest", None)),
    ("test.com:tag", ("docker.io", "library/test.com", "tag", None)),
    ("test.com:5000", ("docker.io", "library/test.com", "5000", None)),
    ("test.com/repo:tag", ("test.com", "repo", "tag", None)),
    ("test:5000/repo", ("test:5000", "repo", "latest", None)),
    ("test:5000/repo:tag", ("test:5000", "repo", "tag", None)),
    (f"test:5000/repo@{DIGEST}", ("test:5000", "repo", None, DIGEST)),
    (f"test:5000/repo:tag@{DIGEST}", ("test:5000", "repo", None, DIGEST)),
    ("lowercase:Uppercase", ("docker.io", "library/lowercase", "Uppercase", None)),
    ("sub-dom1.foo.com/bar/baz/quux", ("sub-dom1.foo.com", "bar/baz/quux", "latest", None)),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag",
     ("sub-dom1.foo.com", "bar/baz/quux", "some-long-tag", None)),
    ("b.gcr.io/test.example.com/my-app:test.example.com",
     ("b.gcr.io", "test.example.com/my-app", "test.example.com", None)),
    ("xn--n3h.com/myimage:xn--n3h.com", ("xn--n3h.com", "myimage", "xn--n3h.com", None)),
    ("foo_bar.com:8080", ("docker.io", "library/foo_bar.com", "8080", None)),
    ("foo/foo_bar.com:8080", ("docker.io", "foo/foo_bar.com", "8080", None)),
    ("192.168.1.1/foo", ("192.168.1.1", "foo", "latest", None)),
    ("192.168.1.1:5/foo", ("192.168.1.1:5", "foo", "latest", None)),
    ("[2001:db8::1]/foo", ("[2001:db8::1]", "foo", "latest", None)),
    ("[2001:db8::1]:5000/foo", ("[2001:db8::1]:5000", "foo", "latest", None)),
    ("[2001:db8::]:5000/foo", ("[2001:db8::]:5000", "foo", "latest", None)),
    ("[::1]:5000/foo", ("[::1]:5000", "foo", "latest", None)),
    ("localhost:5000/foo:latest", ("localhost:5000", "foo", "latest", None)),
]  # fmt: skip

# (input, the library's words) for references it refuses
REFUSED = [
    ("", "invalid reference format"),
    (":justtag", "invalid reference format"),
    ("@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
     "invalid reference format"),
    ("repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", None),
    ("validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
     "unsupported digest algorithm"),
    ("Uppercase:tag", "invalid reference format: repository name (library/Uppercase) must be "
     "lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "invalid reference format: repository name "
     "(Uppercase/lowercase) must be lowercase"),
    ("Example.com/A:tag", "invalid reference format: repository name (A) must be lowercase"),
    ("aa/asdf$$^/aa", "invalid reference format"),
    ("[fe80::1%eth0]:5000/foo", "invalid reference format"),
    ("a@sha256:abc", "invalid reference format"),
    ("a@sha256:" + "F" * 64, "invalid checksum digest format"),
    ("a@sha256:" + "f" * 63 + "ff", "invalid checksum digest length"),
    ("a@sha512:" + "f" * 64, "invalid checksum digest length"),
    ("a/" + "b" * 256, "repository name must not be more than 255 characters"),
    ("g" * 64, None),  # not hex: a name
    ("abcdef0123456789" * 4, "invalid repository name (" + "abcdef0123456789" * 4 + "), cannot "
     "specify 64-byte hexadecimal strings"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), DOCKER_REF)
def test_parse_docker_ref_as_distribution_does(text: str, expected: str) -> None:
    """ParseDockerRef: familiar names in full, `:latest` added, a tag beside a digest dropped."""
    assert str(parse_reference(text)) == expected


@pytest.mark.parametrize(("text", "full", "domain", "path"), REPOSITORY_INFO)
def test_domain_and_path_as_distribution_splits_them(
    text: str, full: str, domain: str, path: str
) -> None:
    """splitDockerDomain: localhost, a dot, a colon or upper case makes a registry; else Hub."""
    reference = parse_reference(text)
    assert (reference.name, reference.domain, reference.path) == (full, domain, path)
    assert parse_reference(full).name == full  # the full name reads the same


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names_parse(name: str) -> None:
    """Every name the upstream tests call valid is read."""
    assert isinstance(parse_reference(name), ImageReference)


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names_are_refused(name: str) -> None:
    """Every name the upstream tests call invalid is an InvalidReference (a ValueError)."""
    with pytest.raises(InvalidReference):
        parse_reference(name)


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_reference_parts(text: str, expected: tuple[str, str, str | None, str | None]) -> None:
    """Domain, path, tag and digest of each upstream TestReferenceParse case, normalized."""
    reference = parse_reference(text)
    assert (reference.domain, reference.path, reference.tag, reference.digest) == expected


@pytest.mark.parametrize(("text", "words"), REFUSED)
def test_refusals_in_the_librarys_words(text: str, words: str | None) -> None:
    """A refused reference says why as distribution/reference and go-digest do; None: valid."""
    if words is None:
        parse_reference(text)
        return
    with pytest.raises(InvalidReference) as caught:
        parse_reference(text)
    assert str(caught.value) == words


def test_object_is_the_digest_else_the_tag() -> None:
    """What the runtime asks a registry for: the digest of a digest reference, else the tag."""
    assert parse_reference("nginx").object == "latest"
    assert parse_reference("nginx:1.27").object == "1.27"
    assert parse_reference(f"nginx:1.27@{DIGEST}").object == DIGEST


@pytest.mark.parametrize(
    ("text", "ecr"),
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1", True),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app", True),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app", True),
        ("public.ecr.aws/nginx/nginx", False),
        ("12345.dkr.ecr.us-east-1.amazonaws.com/app", False),
        ("nginx", False),
    ],
)
def test_ecr_registries_are_recognised(text: str, ecr: bool) -> None:
    """Amazon ECR's private registry hosts (12-hour tokens) are told from the rest."""
    assert parse_reference(text).is_ecr is ecr


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused(text: str) -> None:
    """Whatever is written, the result is a reference or an InvalidReference, nothing else."""
    try:
        reference = parse_reference(text)
    except InvalidReference:
        return
    assert parse_reference(str(reference)) == reference  # the normalized form reads the same
