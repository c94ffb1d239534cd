"""Credentials offered as the kubelet offers them (probe.images.keyring), held against the
kubelet's own test tables, and the .dockerconfigjson reader behind them.

Cases marked "upstream" come from kubernetes pkg/credentialprovider/keyring_test.go
(TestURLsMatch, TestDockerKeyringForGlob, TestKeyringMiss, TestDockerKeyringLookup,
TestIssue3797, TestIsDefaultRegistryMatch), read at the kubernetes fork aramase/kubernetes
commit 6e757771d7650bdd92641613cef7abc846a63c02 (master's keyring.go).
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.dockerhub.rules import (
    ConfigEntry,
    DockerConfigError,
    DockerCredentials,
    parse_docker_config_entries,
)
from probe.images.keyring import (
    Keyring,
    go_glob_match,
    is_default_registry_match,
    keyring_key,
    lookup,
    urls_match,
)

SECRET = "s3cret-pw"  # noqa: S105 - a test account's password, searched for in output


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def keyring(*keys: tuple[str, str], source: str = "secret") -> Keyring:
    """A keyring with one account per key: (key, username)."""
    entries = tuple(
        ConfigEntry(key, DockerCredentials(user, password=SECRET)) for key, user in keys
    )
    return Keyring.of(source, entries)


def users(ring: Keyring, repository: str) -> list[str]:
    return [o.credentials.username for o in ring.lookup(repository) if o.credentials]


# upstream TestURLsMatch: (glob, target, match)
URLS_MATCH = [
    ("*.kubernetes.io", "prefix.kubernetes.io", True),
    ("prefix.*.io", "prefix.kubernetes.io", True),
    ("prefix.kubernetes.*", "prefix.kubernetes.io", True),
    ("*-good.kubernetes.io", "prefix-good.kubernetes.io", True),
    ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", True),
    ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", True),
    ("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", True),
    ("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", True),
    ("*.kubernetes.io", "kubernetes.io", False),
    ("*.*.kubernetes.io", "prefix.kubernetes.io", False),
    ("*.*.kubernetes.io", "kubernetes.io", False),
    ("*kubernetes.io", "a.kubernetes.io", False),
    ("*kubernetes.io", "kubernetes.io", True),
    ("*.*.*.kubernetes.io", "a.b.c.kubernetes.io", True),
    ("kubernetes.io", "kubernetes.com", False),
    ("k*.io", "quay.io", False),
    ("*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", False),
    ("prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", False),
]

# upstream TestDockerKeyringForGlob: a key, and a target that finds it (with /foo/bar added)
GLOB_HITS = [
    ("https://hello.kubernetes.io", "hello.kubernetes.io"),
    ("https://*.docker.io", "prefix.docker.io"),
    ("https://prefix.*.io", "prefix.docker.io"),
    ("https://prefix.docker.*", "prefix.docker.io"),
    ("https://*.docker.io/path", "prefix.docker.io/path"),
    ("https://prefix.*.io/path", "prefix.docker.io/path/subpath"),
    ("https://prefix.docker.*/path", "prefix.docker.io/path"),
    ("https://*.docker.io:8888", "prefix.docker.io:8888"),
    ("https://prefix.*.io:8888", "prefix.docker.io:8888"),
    ("https://prefix.docker.*:8888", "prefix.docker.io:8888"),
    ("https://*.docker.io/path:1111", "prefix.docker.io/path:1111"),
    ("https://*.docker.io/v1/", "prefix.docker.io/path:1111"),
    ("https://*.docker.io/v2/", "prefix.docker.io/path:1111"),
    ("https://prefix.docker.*/path:1111", "prefix.docker.io/path:1111"),
    ("prefix.docker.io:1111", "prefix.docker.io:1111/path"),
    ("*.docker.io:1111", "prefix.docker.io:1111/path"),
]

# upstream TestKeyringMiss: a key, and a target that does not find it (with /foo/bar added)
GLOB_MISSES = [
    ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
    ("https://*.docker.com", "prefix.docker.io"),
    ("https://suffix.*.io", "prefix.docker.io"),
    ("https://prefix.docker.c*", "prefix.docker.io"),
    ("https://prefix.*.io/path:1111", "prefix.docker.io/path/subpath:1111"),
    ("suffix.*.io", "prefix.docker.io"),
]


@pytest.mark.parametrize(("glob", "target", "match"), URLS_MATCH)
def test_urls_match_as_the_kubelet(glob: str, target: str, match: bool) -> None:
    """URLsMatchStr: as many host parts, each a glob, equal ports, the key's path a prefix."""
    assert urls_match(glob, target) is match


@pytest.mark.parametrize(("key", "target"), GLOB_HITS)
def test_keys_found_for_their_images(key: str, target: str) -> None:
    """A key (scheme, /v1/ or /v2/, glob, port) finds the images under it."""
    assert users(keyring((key, "foo")), f"{target}/foo/bar") == ["foo"]


@pytest.mark.parametrize(("key", "target"), GLOB_MISSES)
def test_keys_not_found_for_other_images(key: str, target: str) -> None:
    """A key never finds an image of another host, glob or path."""
    assert users(keyring((key, "foo")), f"{target}/foo/bar") == []


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("bar.example.com", ["ada"]),
        ("bar.example.com/pong", ["grace", "ada"]),
        ("bar.example.com/ping", ["ada"]),
        ("bar.example.com/pongz", ["grace", "ada"]),
        ("bar.example.com/pong/pang", ["grace", "ada"]),
        ("example.com", []),
        ("foo.example.com", []),
    ],
)
def test_more_specific_keys_first(image: str, expected: list[str]) -> None:
    """upstream TestDockerKeyringLookup: every matching key, the longest path first."""
    ring = keyring(("bar.example.com/pong", "grace"), ("bar.example.com", "ada"))
    assert users(ring, image) == expected


@pytest.mark.parametrize("image", ["quay.io", "quay.io/foo", "quay.io/foo/bar"])
def test_a_v1_url_key_is_its_host(image: str) -> None:
    """upstream TestIssue3797: `https://quay.io/v1/` is the key `quay.io`."""
    assert users(keyring(("https://quay.io/v1/", "rex")), image) == ["rex"]


@pytest.mark.parametrize(
    ("image", "hub"),
    [
        ("foo/bar", True),
        ("docker.io/foo/bar", True),
        ("index.docker.io/foo/bar", True),
        ("foo", True),
        ("", False),
        ("registry.tld/foo/bar", False),
        ("registry:5000/foo/bar", False),
        ("myhostdocker.io/foo/bar", False),
    ],
)
def test_default_registry_match(image: str, hub: bool) -> None:
    """upstream TestIsDefaultRegistryMatch: which names pull from Docker Hub."""
    assert is_default_registry_match(image) is hub


def test_docker_hub_images_get_the_index_docker_io_key() -> None:
    """`https://index.docker.io/v1/` (kubectl's --docker-server default) serves docker.io/...,
    by the default-registry rule (its key has three host parts, docker.io two)."""
    ring = keyring(("https://index.docker.io/v1/", "hub"))
    assert users(ring, "docker.io/library/nginx") == ["hub"]
    assert users(ring, "docker.io/team/app") == ["hub"]
    assert users(ring, "quay.io/team/app") == []


def test_registry_1_docker_io_key_is_not_docker_hubs() -> None:
    """A key `registry-1.docker.io` matches no docker.io image: the kubelet compares names, it
    does not know that registry-1.docker.io serves docker.io."""
    assert users(keyring(("registry-1.docker.io", "r1")), "docker.io/library/nginx") == []
    assert users(keyring(("docker.io", "d")), "docker.io/library/nginx") == ["d"]


def test_keys_that_do_not_parse_are_skipped() -> None:
    """A key Go's url.Parse refuses (a port that is not a number, a space) is ignored."""
    assert keyring_key("registry:port") is None
    assert keyring_key("bad host") is None
    assert keyring_key("https://[::1") is None
    assert keyring_key("https://registry.example.com/v2/") == "registry.example.com"
    assert keyring_key("quay.io/v2/team") == "quay.io/team"


def test_pull_secrets_before_the_nodes_credentials() -> None:
    """The union: the pod's secrets first, then the node's, each described without its secret."""
    pod = keyring(("registry.example.com", "pod-user"), source="--pull-secret s.json")
    node = keyring(("registry.example.com", "node-user"), source="credentials_file n.json")
    offers = lookup((pod, node), "registry.example.com/team/app")
    assert [o.describe() for o in offers] == [
        "user pod-user from --pull-secret s.json (key registry.example.com)",
        "user node-user from credentials_file n.json (key registry.example.com)",
    ]
    assert all(SECRET not in repr(o) for o in offers)


@pytest.mark.parametrize(
    ("pattern", "name", "match"),
    [
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        ("[^a-c]x", "dx", True),
        ("a?c", "abc", True),
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
        ("[]", "a", False),  # Go: a bad pattern matches nothing
        ("[a-", "a", False),
        ("a\\", "a", False),
    ],
)
def test_go_glob(pattern: str, name: str, match: bool) -> None:
    """Go's filepath.Match on a host part: classes, ranges, escapes; bad patterns never match."""
    assert go_glob_match(pattern, name) is match


def test_config_entries_as_the_kubelet_reads_them() -> None:
    """Every key in file order; `auth` over username/password; an identitytoken alone, or an
    empty entry, reaches the runtime as no credentials."""
    document = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": _auth("hub", SECRET), "username": "x"},
            "quay.io": {"username": "q", "password": SECRET},
            "ghcr.io": {"identitytoken": "refresh-token-value"},
            "empty.example.com": {},
        }
    }
    entries = parse_docker_config_entries(json.dumps(document))
    assert [e.key for e in entries] == list(document["auths"])
    assert entries[0].credentials == DockerCredentials("hub", password=SECRET)
    assert entries[1].credentials == DockerCredentials("q", password=SECRET)
    assert entries[2].credentials is None and "identitytoken" in (entries[2].note or "")
    assert entries[3].credentials is None
    assert "refresh-token-value" not in repr(entries) and SECRET not in repr(entries)


def test_dockercfg_shape_without_auths() -> None:
    """The older .dockercfg (registries at the top level) is read too."""
    text = json.dumps({"registry.example.com": {"auth": _auth("old", SECRET)}})
    [entry] = parse_docker_config_entries(text)
    assert entry.credentials == DockerCredentials("old", password=SECRET)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not JSON (line 1, column 2)"),
        ("[]", "the top level is not a JSON object"),
        ('{"auths": {"r": []}}', 'auths["r"] is not a JSON object'),
        ('{"auths": {"r": {"auth": "%%%"}}}', 'auths["r"].auth is not base64 of "user:password"'),
    ],
)
def test_unusable_config_files_are_errors(text: str, words: str) -> None:
    """A file the kubelet cannot read fails every pull: a DockerConfigError naming the key."""
    with pytest.raises(DockerConfigError) as caught:
        parse_docker_config_entries(text)
    assert str(caught.value) == words


@given(
    st.recursive(
        st.none() | st.text(max_size=8) | st.integers(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=12,
    )
)
def test_any_json_gives_entries_or_an_error(document: object) -> None:
    """Whatever JSON a secret holds: entries or DockerConfigError, never another exception."""
    try:
        entries = parse_docker_config_entries(json.dumps(document))
    except DockerConfigError:
        return
    assert all(isinstance(e, ConfigEntry) for e in entries)
