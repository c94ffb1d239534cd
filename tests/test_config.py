"""The configuration loader: every problem found, each with its line, key path and exact words.

The fixtures in tests/data/config are loaded from that directory (relative file names), so the
messages below are exactly what `registry-probe validate invalid-....yaml` prints there.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.config import (
    TOP_LEVEL_KEYS,
    Config,
    ConfigError,
    DockerHubConfig,
    HostPort,
    RegistryAddress,
    RegistryConfig,
    load_config,
    parse_listen,
    parse_registry_arg,
    validate_file,
)
from probe.duration import ACCEPTED as DURATION

DATA = Path(__file__).parent / "data" / "config"
HOST_FORMS = "HOST[:PORT], http://HOST:PORT or https://HOST[:PORT]"
FILE_FORMS = "a readable file on the agent's own filesystem, not under host_root"
UNITS = "ns, us, ms, s, m, h"
IMAGE_FORMS = "nginx:1.27 or registry.example.com:5000/team/app@sha256:..."

INVALID: dict[str, list[str]] = {
    "invalid-unknown-top-level-key.yaml": [
        "invalid-unknown-top-level-key.yaml:2: intervall: unknown key (did you mean interval?)",
        "invalid-unknown-top-level-key.yaml:3: registry: unknown key (did you mean registries?)",
    ],
    "invalid-unknown-registry-key.yaml": [
        "invalid-unknown-registry-key.yaml:3: registries[0].cafile: unknown key"
        " (did you mean ca_file?)",
        "invalid-unknown-registry-key.yaml:4: registries[0].mirror: unknown key (expected one of:"
        " host, ca_file, insecure_skip_verify, credentials_file, blob_hosts)",
    ],
    "invalid-wrong-type.yaml": [
        'invalid-wrong-type.yaml:1: discover: got "yes" (expected true or false)',
        'invalid-wrong-type.yaml:2: registries: got "registry.example.com"'
        " (expected a list of registries, each a mapping with a host)",
        "invalid-wrong-type.yaml:3: dockerhub: got a list"
        " (expected a mapping such as {ratelimit_interval: 5m})",
        'invalid-wrong-type.yaml:4: runtimes: got "containerd"'
        " (expected a list of runtimes: containerd, dockerd or crio)",
    ],
    "invalid-negative-duration.yaml": [
        f'invalid-negative-duration.yaml:1: interval: "-5s" is negative (expected {DURATION})',
        "invalid-negative-duration.yaml:3: dockerhub.ratelimit_interval:"
        f' "-300" is negative (expected {DURATION})',
    ],
    "invalid-unparsable-duration.yaml": [
        'invalid-unparsable-duration.yaml:1: interval: "1m 30s" has an unknown unit "m "'
        f" (expected {DURATION}; units: {UNITS})",
        'invalid-unparsable-duration.yaml:2: timeout: "10x" has an unknown unit "x"'
        f" (expected {DURATION}; units: {UNITS})",
        "invalid-unparsable-duration.yaml:4: dockerhub.ratelimit_interval:"
        f' "yes" is not a duration (expected {DURATION})',
    ],
    "invalid-zero-duration.yaml": [
        'invalid-zero-duration.yaml:1: timeout: "0s" is zero (expected a duration greater than 0)',
    ],
    "invalid-timeout-not-less-than-interval.yaml": [
        "invalid-timeout-not-less-than-interval.yaml:2: timeout: 1m is not shorter than the"
        " interval 30s (expected a timeout less than the interval)",
    ],
    "invalid-missing-host.yaml": [
        f"invalid-missing-host.yaml:2: registries[0].host: missing (expected {HOST_FORMS})",
        'invalid-missing-host.yaml:3: registries[1]: got "registry.example.com"'
        " (expected a mapping such as {host: registry.example.com})",
    ],
    "invalid-bad-listen.yaml": [
        'invalid-bad-listen.yaml:1: listen: "localhost" has no port'
        " (expected HOST:PORT, such as 0.0.0.0:9741 or [::]:9741)",
    ],
    "invalid-bad-registry-host.yaml": [
        "invalid-bad-registry-host.yaml:2: registries[0].host:"
        f' "registry.example.com/library" has a path "/library" (expected {HOST_FORMS})',
        "invalid-bad-registry-host.yaml:3: registries[1].host:"
        ' "https://robot:***@registry.example.com" contains credentials'
        f" (expected {HOST_FORMS}; no user or password)",
        "invalid-bad-registry-host.yaml:4: registries[2].host:"
        ' "http://registry.example.com" has no port: a plain-HTTP registry needs one'
        f" (expected {HOST_FORMS})",
        "invalid-bad-registry-host.yaml:5: registries[3].host:"
        f' "ftp://registry.example.com" has the scheme "ftp" (expected {HOST_FORMS})',
        "invalid-bad-registry-host.yaml:6: registries[4].host:"
        ' "registry.example.com:70000" has the port "70000", not one from 1 to 65535'
        f" (expected {HOST_FORMS})",
        "invalid-bad-registry-host.yaml:7: registries[5].host:"
        ' "2001:db8::1" has more than one colon: an IPv6 address goes in brackets,'
        f" as [::1]:5000 (expected {HOST_FORMS})",
    ],
    "invalid-duplicate-registry.yaml": [
        "invalid-duplicate-registry.yaml:4: registries[2].host:"
        ' "http://registry.example.com:5000" is already listed at line 2'
        " (expected each registry once)",
        "invalid-duplicate-registry.yaml:5: registries[3].host:"
        ' "registry-1.docker.io" is the same registry as "docker.io" at line 3'
        " (expected each registry once)",
    ],
    "invalid-unreadable-ca-file.yaml": [
        "invalid-unreadable-ca-file.yaml:3: registries[0].ca_file:"
        f' cannot read "ca/missing.crt": No such file or directory (expected {FILE_FORMS})',
        "invalid-unreadable-ca-file.yaml:4: registries[0].credentials_file:"
        f' "creds" is not a regular file (expected {FILE_FORMS})',
    ],
    "invalid-runtime.yaml": [
        'invalid-runtime.yaml:1: runtimes[1]: "docker" is not a runtime'
        " (expected containerd, dockerd or crio; did you mean dockerd?)",
        'invalid-runtime.yaml:1: runtimes[2]: "k3s" is not a runtime'
        " (expected containerd, dockerd or crio; k3s and RKE2 run containerd, so write containerd)",
        'invalid-runtime.yaml:1: runtimes[3]: "containerd" is listed twice (expected each once)',
    ],
    "invalid-duplicate-key.yaml": [
        "invalid-duplicate-key.yaml:3: interval: set twice, first at line 1"
        " (expected each key once)",
    ],
    "invalid-merge-key-bomb.yaml": [
        "invalid-merge-key-bomb.yaml:13: dockerhub.<<: aliases and merge keys repeat more than"
        " 100000 entries (expected a configuration, not a merge-key bomb)",
    ],
    "invalid-not-a-mapping.yaml": [
        "invalid-not-a-mapping.yaml:1: got a list (expected a mapping of settings:"
        " interval, timeout, host_root, listen, discover, registries, dockerhub, runtimes,"
        " images, sandbox_image)",
    ],
    "invalid-images.yaml": [
        'invalid-images.yaml:3: images[1]: "docker.io/library/nginx:1.27" is the same image as'
        ' "nginx:1.27" at line 2 (expected each image once)',
        'invalid-images.yaml:4: images[2]: "Registry.Example.com/Team/app:1" is not an image'
        " reference: invalid reference format: repository name (Team/app) must be lowercase",
        'invalid-images.yaml:5: images[3]: "registry.example.com:99999/app" is not an image'
        ' reference: "registry.example.com:99999" has the port "99999", not one from 1 to 65535'
        f" (expected {HOST_FORMS})",
        'invalid-images.yaml:6: images[4]: "nginx@sha256:abc" is not an image reference:'
        " invalid reference format",
        f"invalid-images.yaml:7: images[5]: got a list (expected an image reference, such as"
        f" {IMAGE_FORMS})",
        f"invalid-images.yaml:8: images[6]: is empty (expected an image reference, such as"
        f" {IMAGE_FORMS})",
        'invalid-images.yaml:9: sandbox_image: got "sometimes" (expected true or false)',
    ],
    "invalid-images-not-a-list.yaml": [
        'invalid-images-not-a-list.yaml:1: images: got "nginx" (expected a list of image'
        " references, such as [nginx:1.27])",
    ],
    "invalid-yaml-syntax.yaml": [
        "invalid-yaml-syntax.yaml:4: invalid YAML: while parsing a block collection,"
        " expected <block end>, but found '<block mapping start>' (at column 4)",
    ],
    "invalid-several-problems.yaml": [
        'invalid-several-problems.yaml:1: interval: "0" is zero'
        " (expected a duration greater than 0)",
        'invalid-several-problems.yaml:3: listen: "0.0.0.0" has no port'
        " (expected HOST:PORT, such as 0.0.0.0:9741 or [::]:9741)",
        'invalid-several-problems.yaml:4: discover: got "maybe" (expected true or false)',
        'invalid-several-problems.yaml:8: registries[0].blob_hosts: got "storage.example.com"'
        " (expected a list of host names, such as [storage.example.com])",
        "invalid-several-problems.yaml:9: registries[1].hots: unknown key (did you mean host?)",
        f"invalid-several-problems.yaml:9: registries[1].host: missing (expected {HOST_FORMS})",
        "invalid-several-problems.yaml:11: dockerhub.ratelimit_intervall: unknown key"
        " (did you mean ratelimit_interval?)",
        'invalid-several-problems.yaml:12: runtimes[1]: "cri-o" is not a runtime'
        " (expected containerd, dockerd or crio; did you mean crio?)",
    ],
}


@pytest.fixture(name="in_data")
def in_data_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run from tests/data/config, so fixtures are named as a user in that directory names them."""
    monkeypatch.chdir(DATA)
    yield


def write(directory: Path, text: str, name: str = "config.yaml") -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


def problems_of(path: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


# --- the fixtures ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INVALID))
@pytest.mark.usefixtures("in_data")
def test_invalid_fixture(name: str) -> None:
    """Each invalid fixture gives exactly its messages, in line order, all of them at once."""
    with pytest.raises(ConfigError) as caught:
        load_config(name)
    assert caught.value.problems == INVALID[name]
    assert str(caught.value) == "\n".join(INVALID[name])


def test_every_invalid_fixture_is_mapped() -> None:
    """A new invalid-*.yaml cannot be added without its expected messages."""
    assert sorted(p.name for p in DATA.glob("invalid-*.yaml")) == sorted(INVALID)


@pytest.mark.usefixtures("in_data")
def test_valid_full() -> None:
    """SPEC's example loads with every field as written; relative files resolve beside it."""
    assert load_config("valid-full.yaml") == Config(
        interval=60.0,
        timeout=10.0,
        host_root="/host",
        listen=HostPort("0.0.0.0", 9741),
        discover=True,
        registries=(
            RegistryConfig(RegistryAddress.parse("registry-1.docker.io")),
            RegistryConfig(
                RegistryAddress.parse("registry.example.com:5000"),
                ca_file="ca/example.crt",
                insecure_skip_verify=False,
                credentials_file="creds/.dockerconfigjson",
                blob_hosts=(HostPort("storage.example.com"),),
                source="config",
            ),
            RegistryConfig(RegistryAddress.parse("http://mirror.internal:5000")),
        ),
        dockerhub=DockerHubConfig(
            ratelimit_interval=300.0, credentials_file="dockerhub/.dockerconfigjson"
        ),
        runtimes=("containerd", "dockerd", "crio"),
    )


@pytest.mark.usefixtures("in_data")
def test_valid_images() -> None:
    """`images:` keeps each reference as written (the metrics' label); `sandbox_image: false`
    turns the sandbox image's check off; both default to none and on."""
    config = load_config("valid-images.yaml")
    assert config.images == (
        "nginx:1.27",
        "registry.example.com:5000/team/app@sha256:"
        "e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v3",
    )
    assert config.sandbox_image is False
    assert (Config().images, Config().sandbox_image) == ((), True)


def test_relative_files_resolve_against_the_config_directory() -> None:
    """Loaded from elsewhere, `ca_file: ca/example.crt` means the file beside the config."""
    config = load_config(str(DATA / "valid-full.yaml"))
    assert config.registries[1].ca_file == str(DATA / "ca/example.crt")
    assert config.registries[1].credentials_file == str(DATA / "creds/.dockerconfigjson")
    assert config.dockerhub.credentials_file == str(DATA / "dockerhub/.dockerconfigjson")
    assert config.host_root == "/host"  # absolute paths stay as written


@pytest.mark.usefixtures("in_data")
def test_anchors_aliases_and_merge_keys() -> None:
    """`&anchor`, `*alias` and `<<:` merges work; keys written beside a merge win."""
    registries = load_config("valid-anchors.yaml").registries
    assert [r.label for r in registries] == [
        "registry.example.com:5000",
        "mirror.example.com:5000",
        "other.example.com",
    ]
    assert registries[1].ca_file == "ca/example.crt"
    assert registries[1].credentials_file == "creds/.dockerconfigjson"
    assert registries[1].blob_hosts == (HostPort("storage.example.com"),)
    assert registries[2].blob_hosts == (HostPort("storage.example.com"),)
    assert registries[2].ca_file is None


@pytest.mark.parametrize("name", ["valid-empty.yaml", "valid-comments-only.yaml"])
@pytest.mark.usefixtures("in_data")
def test_empty_file_is_the_default(name: str) -> None:
    """An empty or comments-only file is the default configuration."""
    assert load_config(name) == Config()


# --- the file itself ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is one problem naming the path and the OS reason."""
    path = str(tmp_path / "nope.yaml")
    assert problems_of(path) == [f"{path}: cannot read the file: No such file or directory"]


def test_directory_as_file(tmp_path: Path) -> None:
    """A directory given as the config is refused with the OS reason."""
    assert problems_of(str(tmp_path)) == [f"{tmp_path}: cannot read the file: Is a directory"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_unreadable_file(tmp_path: Path) -> None:
    """A file without read permission is refused with `Permission denied`."""
    path = write(tmp_path, "interval: 60s\n")
    os.chmod(path, 0)
    assert problems_of(path) == [f"{path}: cannot read the file: Permission denied"]


def test_not_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported with their line, not as a traceback."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b"interval: 60s\nlisten: \xff\n")
    assert problems_of(str(path)) == [
        f"{path}:2: not UTF-8 text: byte 0xff (expected a UTF-8 YAML file)"
    ]


def test_utf8_byte_order_mark(tmp_path: Path) -> None:
    """A UTF-8 byte order mark (as some Windows editors write) is accepted."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbfinterval: 30s\n")
    assert load_config(str(path)).interval == 30.0


def test_control_character(tmp_path: Path) -> None:
    """A character YAML forbids is reported with its line."""
    path = write(tmp_path, "interval: 60s\nlisten: \x07\n")
    assert problems_of(path) == [
        f"{path}:2: invalid YAML: character #x0007 is not allowed in YAML text"
    ]


def test_two_documents(tmp_path: Path) -> None:
    """A second `---` document is a syntax problem at its line."""
    path = write(tmp_path, "interval: 60s\n---\ntimeout: 5s\n")
    assert problems_of(path) == [
        f"{path}:2: invalid YAML: expected a single document in the stream,"
        " but found another document (at column 1)"
    ]


def test_deep_nesting(tmp_path: Path) -> None:
    """Thousands of nested brackets end in a ConfigError, not a RecursionError."""
    path = write(tmp_path, "[" * 20000)
    assert problems_of(path) == [f"{path}: invalid YAML: nested too deeply"]


def test_too_large(tmp_path: Path) -> None:
    """A file over 1 MiB is not read whole; it is not a configuration."""
    path = write(tmp_path, "#" * (1 << 20) + "\n")
    assert problems_of(path) == [f"{path}: larger than 1 MiB (expected a configuration file)"]


@pytest.mark.parametrize("text", ["~\n", "null\n", "---\n", "--- # nothing\n...\n"])
def test_null_document_is_the_default(tmp_path: Path, text: str) -> None:
    """A document that is only null is as empty as an empty file."""
    assert load_config(write(tmp_path, text)) == Config()


@pytest.mark.parametrize(
    ("text", "got"),
    [("just a string\n", '"just a string"'), ("42\n", '"42"'), ("[a, b]\n", "a list")],
)
def test_document_not_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    """A scalar or list document says what it is and that a mapping is expected."""
    path = write(tmp_path, text)
    assert problems_of(path) == [
        f"{path}:1: got {got} (expected a mapping of settings: {', '.join(TOP_LEVEL_KEYS)})"
    ]


# --- keys and values ---------------------------------------------------------------------------


def test_unknown_key_without_close_match(tmp_path: Path) -> None:
    """An unknown key with nothing close lists the keys that exist."""
    path = write(tmp_path, "colour: blue\n")
    assert problems_of(path) == [
        f"{path}:1: colour: unknown key (expected one of: {', '.join(TOP_LEVEL_KEYS)})"
    ]


def test_odd_keys(tmp_path: Path) -> None:
    """Keys that are not names are quoted, or reported as not being keys at all."""
    path = write(tmp_path, '"time out": 5s\n? [a]\n: b\n')
    assert problems_of(path) == [
        f'{path}:1: "time out": unknown key (did you mean timeout?)',
        f"{path}:2: (top level): a list as a key (expected a name)",
    ]


def test_null_values(tmp_path: Path) -> None:
    """A key given with no value is reported; leaving the key out is how to get the default."""
    path = write(tmp_path, "interval:\ndockerhub:\nregistries:\n  - host:\n")
    assert problems_of(path) == [
        f"{path}:1: interval: has no value (expected {DURATION})",
        f"{path}:2: dockerhub: has no value"
        " (expected a mapping such as {ratelimit_interval: 5m})",
        f"{path}:4: registries[0].host: has no value (expected {HOST_FORMS})",
    ]


@pytest.mark.parametrize(
    ("text", "interval", "timeout"),
    [
        ("interval: 1m30s\n", 90.0, 10.0),
        ("interval: 500ms\ntimeout: 100ms\n", 0.5, 0.1),
        ("interval: 120\ntimeout: 2.5\n", 120.0, 2.5),
        ('interval: "2h"\ntimeout: 1h59m\n', 7200.0, 7140.0),
    ],
)
def test_durations(tmp_path: Path, text: str, interval: float, timeout: float) -> None:
    """Go durations and plain seconds (int, float) are read as seconds."""
    config = load_config(write(tmp_path, text))
    assert (config.interval, config.timeout) == (interval, timeout)


def test_interval_shorter_than_default_timeout(tmp_path: Path) -> None:
    """An interval not longer than the default timeout is reported on the interval."""
    path = write(tmp_path, "interval: 5s\n")
    assert problems_of(path) == [
        f"{path}:1: interval: 5s is not longer than the default timeout 10s"
        " (expected an interval greater than the timeout)"
    ]


def test_bad_interval_skips_timeout_comparison(tmp_path: Path) -> None:
    """With an unusable interval, the timeout is not also blamed for being too long."""
    path = write(tmp_path, "interval: soon\ntimeout: 2h\n")
    assert problems_of(path) == [
        f'{path}:1: interval: "soon" is not a duration (expected {DURATION})'
    ]


def test_booleans(tmp_path: Path) -> None:
    """YAML's true/false (and yes/no, on/off) set the boolean keys."""
    text = "discover: no\nregistries:\n  - host: r.example.com\n    insecure_skip_verify: on\n"
    config = load_config(write(tmp_path, text))
    assert config.discover is False
    assert config.registries[0].insecure_skip_verify is True


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("0.0.0.0:9741", HostPort("0.0.0.0", 9741)),
        ("127.0.0.1:1", HostPort("127.0.0.1", 1)),
        ('"[::]:9741"', HostPort("::", 9741)),
        ("'[::1]:65535'", HostPort("::1", 65535)),
        ("localhost:9741", HostPort("localhost", 9741)),
        ('":9741"', HostPort("0.0.0.0", 9741)),
        ("127.0.0.1:0", HostPort("127.0.0.1", 0)),
    ],
)
def test_listen(tmp_path: Path, listen: str, expected: HostPort) -> None:
    """`listen` is HOST:PORT, [V6]:PORT or :PORT (every interface); port 0 lets the kernel pick."""
    assert load_config(write(tmp_path, f"listen: {listen}\n")).listen == expected
    assert parse_listen(listen.strip("'\"")) == expected  # --listen: the same parser


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("0.0.0.0", '"0.0.0.0" has no port'),
        ("0.0.0.0:65536", '"0.0.0.0:65536" has the port "65536"'),
        ("0.0.0.0:http", '"0.0.0.0:http" has the port "http"'),
        ("'::9741'", '"::9741" has more than one colon: an IPv6 address goes in brackets,'),
        ("'[::1]'", '"[::1]" has no port'),
        ("'[zz]:1'", '"[zz]:1" has no valid IPv6 address in brackets'),
        ("256.1.1.1:80", '"256.1.1.1:80" is not a valid IPv4 address'),
        ("9741", '"9741" is not a valid IPv4 address'),
        ("'host:'", '"host:" has the port ""'),
    ],
)
def test_listen_rejects(tmp_path: Path, listen: str, problem: str) -> None:
    """A listen address without a usable host or port is named, in the file and as a flag."""
    path = write(tmp_path, f"listen: {listen}\n")
    (message,) = problems_of(path)
    assert message.startswith(f"{path}:1: listen: {problem}")
    assert message.endswith("(expected HOST:PORT, such as 0.0.0.0:9741 or [::]:9741)")
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_listen(listen.strip("'\""))


@pytest.mark.parametrize("text", ["listen: [::]:9741\n", "registries:\n  - host: [::1]:5000\n"])
def test_unquoted_ipv6_hint(tmp_path: Path, text: str) -> None:
    """An unquoted `[::]:9741` is a YAML syntax error; the message says to quote it."""
    (message,) = problems_of(write(tmp_path, text))
    assert message.endswith('(an address in brackets must be quoted: "[::]:9741")')


def test_blob_hosts(tmp_path: Path) -> None:
    """blob_hosts are host[:port] names, lower-cased; an empty list means none."""
    text = (
        "registries:\n"
        "  - host: a.example.com\n    blob_hosts: [Storage.Example.com, 'cdn.example.com:8443']\n"
        "  - host: b.example.com\n    blob_hosts: []\n"
        "  - host: c.example.com\n    blob_hosts: ['https://cdn', 'x/y']\n"
    )
    path = write(tmp_path, text)
    assert problems_of(path) == [
        f'{path}:7: registries[2].blob_hosts[0]: "https://cdn" has a scheme (expected HOST[:PORT])',
        f'{path}:7: registries[2].blob_hosts[1]: "x/y" has a path "/y" (expected HOST[:PORT])',
    ]
    path = write(tmp_path, text.rsplit("  - host: c", 1)[0])
    first, second = load_config(path).registries
    assert first.blob_hosts == (HostPort("storage.example.com"), HostPort("cdn.example.com", 8443))
    assert second.blob_hosts == ()
    assert second.effective_blob_hosts == ()


def test_host_root_relative_to_config(tmp_path: Path) -> None:
    """A relative host_root is taken from the config file's directory."""
    config = load_config(write(tmp_path, "host_root: node\n"))
    assert config.host_root == str(tmp_path / "node")


def test_empty_strings(tmp_path: Path) -> None:
    """An empty string is reported as empty, with what was expected."""
    path = write(tmp_path, "host_root: ''\nregistries:\n  - host: ''\n    ca_file: ''\n")
    assert problems_of(path) == [
        f"{path}:1: host_root: is empty (expected a directory)",
        f"{path}:3: registries[0].host: is empty (expected {HOST_FORMS})",
        f"{path}:4: registries[0].ca_file: is empty (expected {FILE_FORMS})",
    ]


def test_config_error_pickles() -> None:
    """A ConfigError keeps its problem list through pickling (as across processes)."""
    error = ConfigError(["a.yaml:1: x: one", "a.yaml:2: y: two"])
    # S301: the bytes are our own, just pickled here; nothing untrusted is loaded.
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301
    assert copy.problems == error.problems
    assert str(copy) == "a.yaml:1: x: one\na.yaml:2: y: two"


def test_recursive_merge_terminates(tmp_path: Path) -> None:
    """A mapping that merges itself neither hangs nor crashes."""
    path = write(tmp_path, "dockerhub: &d\n  <<: *d\n  ratelimit_interval: 1m\n")
    assert load_config(path).dockerhub.ratelimit_interval == 60.0


def test_bad_merge_source(tmp_path: Path) -> None:
    """Merging something that is not a mapping is reported at the merge."""
    path = write(tmp_path, "dockerhub:\n  <<: [5m]\n")
    assert problems_of(path) == [f'{path}:2: dockerhub.<<: got "5m" (expected a mapping)']


def test_alias_bomb_is_cheap(tmp_path: Path) -> None:
    """Aliases are not expanded where no key reads them: a billion-laughs file fails fast."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert len(problems_of(path)) == 10


def bomb_levels(levels: int, fanout: int = 9) -> list[str]:
    """Anchors a0..a<levels>, each merging the one before `fanout` times."""
    lines = ["a0: &a0 {ratelimit_interval: 5m}"]
    for i in range(1, levels + 1):
        sources = ", ".join([f"*a{i - 1}"] * fanout)
        lines.append(f"a{i}: &a{i} {{<<: [{sources}]}}")
    return lines


@pytest.mark.usefixtures("in_data")
def test_merge_key_bomb_is_refused_at_once() -> None:
    """A 700-byte merge-key bomb (9^8 mappings) is refused, naming its merge, within a second."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config("invalid-merge-key-bomb.yaml")
    assert time.monotonic() - started < 1.0
    assert caught.value.problems == INVALID["invalid-merge-key-bomb.yaml"]


def test_merge_key_bomb_at_the_top_level(tmp_path: Path) -> None:
    """A bomb merged into the top level is refused at that `<<`, before its other problems."""
    path = write(tmp_path, "\n".join([*bomb_levels(7), "<<: *a7", ""]))
    started = time.monotonic()
    assert problems_of(path) == [
        f"{path}:9: <<: aliases and merge keys repeat more than 100000 entries"
        " (expected a configuration, not a merge-key bomb)"
    ]
    assert time.monotonic() - started < 1.0


def test_repeated_alias_of_a_large_mapping_is_refused(tmp_path: Path) -> None:
    """A list repeating one big mapping by alias is refused at that mapping, not walked whole."""
    keys = ", ".join(f"k{i}: x" for i in range(500))
    items = ", ".join(["*big"] * 1000)
    path = write(tmp_path, f"x: &big {{{keys}}}\nregistries: [{items}]\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: registries[")
    assert problem.endswith(
        ": aliases and merge keys repeat more than 100000 entries"
        " (expected a configuration, not a merge-key bomb)"
    )


def test_defaults_merged_into_many_registries_load(tmp_path: Path) -> None:
    """`<<: *defaults` in 2,000 registries is ordinary reuse, not a bomb: it loads."""
    lines = ["registries:", "  - &defaults", "    host: r0.example.com"]
    lines += ["    blob_hosts: [b.example.com]"]
    for i in range(1, 2000):
        lines += ["  - <<: *defaults", f"    host: r{i}.example.com"]
    registries = load_config(write(tmp_path, "\n".join(lines) + "\n")).registries
    assert len(registries) == 2000
    assert registries[-1].blob_hosts == (HostPort("b.example.com"),)


# --- secrets -----------------------------------------------------------------------------------


def test_credentials_never_in_messages(tmp_path: Path) -> None:
    """A password in a host URL is masked; a credentials file's content is never read."""
    secret_file = tmp_path / "creds.json"
    secret_file.write_text('{"auths": {"r": {"auth": "c3VwZXItc2VjcmV0"}}}')
    text = (
        f"registries:\n  - host: https://robot:super-secret@r.example.com\n"
        f"    credentials_file: {secret_file}\n"
        f"  - host: https://r2.example.com?token=super-secret\n"
        f"    credentials_file: {tmp_path}\n"
    )
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert problems == [
        f'{path}:2: registries[0].host: "https://robot:***@r.example.com" contains credentials'
        f" (expected {HOST_FORMS}; no user or password)",
        f'{path}:4: registries[1].host: "https://r2.example.com?***" has a query'
        f" (expected {HOST_FORMS})",
        f'{path}:5: registries[1].credentials_file: "{tmp_path}" is not a regular file'
        f" (expected {FILE_FORMS})",
    ]
    assert "super-secret" not in "\n".join(problems)
    assert "c3VwZXItc2VjcmV0" not in "\n".join(problems)


# --- --registry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host", "scheme"),
    [
        ("registry.example.com", "registry.example.com", "https"),
        ("registry.example.com:5000", "registry.example.com:5000", "https"),
        ("Registry.Example.COM", "registry.example.com", "https"),
        ("http://198.18.200.5:5000", "198.18.200.5:5000", "http"),
        ("HTTP://localhost:5000/", "localhost:5000", "http"),
        ("https://registry.example.com/", "registry.example.com", "https"),
        ("https://registry.example.com:8443", "registry.example.com:8443", "https"),
        ("[::1]:5000", "[::1]:5000", "https"),
        ("http://[FD00::1]:5000", "[fd00::1]:5000", "http"),
        ("docker.io", "docker.io", "https"),
        ("my_registry.internal", "my_registry.internal", "https"),
    ],
)
def test_registry_arg(value: str, host: str, scheme: str) -> None:
    """`--registry` takes host[:port] and http(s) URLs; the label is lower case, no scheme."""
    registry = parse_registry_arg(value)
    assert (registry.label, registry.address.scheme, registry.source) == (host, scheme, "flag")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", '"" has no host'),
        ("registry.example.com/v2/", '"registry.example.com/v2/" has a path "/v2/"'),
        ("https://registry.example.com/v2", '"https://registry.example.com/v2" has a path "/v2"'),
        ("http://registry.example.com", '"http://registry.example.com" has no port:'),
        ("ftp://r.example.com", '"ftp://r.example.com" has the scheme "ftp"'),
        ("https://u:pw@r.example.com", '"https://u:***@r.example.com" contains credentials'),
        ("https://token@r.example.com", '"https://***@r.example.com" contains credentials'),
        ("r.example.com:0", '"r.example.com:0" has the port "0"'),
        ("r.example.com:", '"r.example.com:" has the port ""'),
        ("r.example.com:99999999", '"r.example.com:99999999" has the port "99999999"'),
        ("r.example.com:5000:1", '"r.example.com:5000:1" has more than one colon'),
        ("::1", '"::1" has more than one colon'),
        ("[::1", '"[::1" has no valid IPv6 address in brackets'),
        ("[::1]x", '"[::1]x" has text after the address'),
        ("[10.0.0.1]:5000", '"[10.0.0.1]:5000" has no valid IPv6 address in brackets'),
        ("999.1.1.1", '"999.1.1.1" is not a valid IPv4 address'),
        ("10.0.0.01", '"10.0.0.01" is not a valid IPv4 address'),
        ("-bad.example.com", '"-bad.example.com" is not a valid host name or IP address'),
        ("reg istry", '"reg istry" is not a valid host name or IP address'),
        ("a..b", '"a..b" is not a valid host name or IP address'),
        ("r.example.com#x", '"r.example.com#x" has a fragment "#x"'),
        ("b\u00fccher.example", '"b\u00fccher.example" is not a valid host name or IP address'),
        ("a" * 64 + ".com", "is not a valid host name or IP address"),
    ],
)
def test_registry_arg_refused(value: str, problem: str) -> None:
    """A bad `--registry` is a ValueError saying what is wrong and the accepted forms."""
    with pytest.raises(ValueError) as caught:
        parse_registry_arg(value)
    message = str(caught.value)
    assert problem in message
    assert message.endswith(f"(expected {HOST_FORMS})") or "expected " + HOST_FORMS in message


def test_registry_arg_same_rules_as_file(tmp_path: Path) -> None:
    """The file's `host:` and `--registry` refuse a value with the same words."""
    with pytest.raises(ValueError) as caught:
        parse_registry_arg("registry.example.com/library")
    path = write(tmp_path, "registries:\n  - host: registry.example.com/library\n")
    assert problems_of(path) == [f"{path}:2: registries[0].host: {caught.value}"]


# --- validate ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("in_data")
def test_validate_ok() -> None:
    """`validate` on a good file names the registries, the interval and the timeout."""
    assert validate_file("valid-full.yaml") == (
        True,
        "valid-full.yaml: valid: registries registry-1.docker.io, registry.example.com:5000,"
        " http://mirror.internal:5000, plus those found in the node's runtime config;"
        " interval 1m, timeout 10s",
    )


def test_validate_ok_without_registries(tmp_path: Path) -> None:
    """With no registries named, `validate` says Docker Hub is the default."""
    path = write(tmp_path, "discover: false\ninterval: 90s\n")
    assert validate_file(path) == (
        True,
        f"{path}: valid: no registries named (Docker Hub by default); interval 1m30s, timeout 10s",
    )


@pytest.mark.usefixtures("in_data")
def test_validate_lists_every_problem() -> None:
    """`validate` on a bad file counts the problems and lists each on its own line."""
    ok, text = validate_file("invalid-several-problems.yaml")
    assert not ok
    problems = INVALID["invalid-several-problems.yaml"]
    assert text == "\n".join(["invalid-several-problems.yaml: invalid, 8 problems:", *problems])
    ok, text = validate_file("invalid-bad-listen.yaml")
    assert (ok, text.splitlines()[0]) == (False, "invalid-bad-listen.yaml: invalid, 1 problem:")


# --- never a traceback -------------------------------------------------------------------------


@pytest.fixture(scope="module", name="scratch")
def scratch_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every generated example (module scope: hypothesis reuses it)."""
    return tmp_path_factory.mktemp("generated")


def _load_only_config_error(scratch: Path, data: bytes) -> None:
    path = str(scratch / "config.yaml")
    Path(path).write_bytes(data)
    try:
        config = load_config(path)
    except ConfigError as error:
        assert error.problems
        assert all(p.startswith(path) and p.isprintable() for p in error.problems)
    else:
        assert isinstance(config, Config)


@settings(max_examples=300)
@given(data=st.binary(max_size=400))
def test_random_bytes(scratch: Path, data: bytes) -> None:
    """Any bytes give a Config or a ConfigError of printable one-line problems, nothing else."""
    _load_only_config_error(scratch, data)


@settings(max_examples=300)
@given(text=st.text(max_size=400))
def test_random_text(scratch: Path, text: str) -> None:
    """Any text gives a Config or a ConfigError of printable one-line problems, nothing else."""
    _load_only_config_error(scratch, text.encode("utf-8", "surrogatepass"))


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(
        ["60s", "-1s", "0", "0.0.0.0:9741", "[::]:1", "http://r:5000", "ca/example.crt", "crio"]
    ),
)
_KEYS = st.sampled_from(
    [
        *TOP_LEVEL_KEYS,
        "host",
        "ca_file",
        "insecure_skip_verify",
        "credentials_file",
        "blob_hosts",
        "ratelimit_interval",
        "<<",
        "x",
    ]
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300)
@given(document=st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_random_structures(scratch: Path, document: dict[str, object]) -> None:
    """Well-formed YAML with the real keys and any shapes of value never crashes the walker."""
    _load_only_config_error(scratch, yaml.safe_dump(document).encode())


_YAML_PIECES = st.sampled_from(
    [*"abh: -[]{}&*!\n\"'0.:/@?#", *TOP_LEVEL_KEYS, "host", "<<", "ca_file", "  ", "\n  - "]
)


@settings(max_examples=300)
@given(text=st.lists(_YAML_PIECES, max_size=40).map("".join))
def test_config_like_text(scratch: Path, text: str) -> None:
    """Text made of YAML punctuation and the real keys (anchors, merges, flow) never crashes."""
    _load_only_config_error(scratch, text.encode())
