"""Registries and mirrors found in containerd, k3s and CRI-O configuration under the host root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from probe.node.discovery import (
    DiscoveredRegistry,
    Findings,
    RegistriesConf,
    containerd_config_from_data,
    discover,
    hosts_toml_from_data,
    k3s_registries_from_data,
    parse_containerd_config,
    parse_hosts_toml,
    parse_k3s_registries,
    parse_registries_conf,
    registries_conf_merge,
    registries_from_conf,
)
from probe.node.hostfs import HostFS

HOSTS = Path(__file__).parent / "data" / "hosts"


def discover_registries(root: Path) -> list[DiscoveredRegistry]:
    return list(discover(HostFS(str(root))).registries)


def _brief(registries: list[DiscoveredRegistry]) -> list[tuple[str, str, str | None]]:
    return [(r.scheme, r.host, r.mirror_of) for r in registries]


def test_containerd_17_config_path() -> None:
    """containerd 1.7 (config version 2, config_path): hosts.toml upstreams, mirrors, CAs."""
    found = discover(HostFS(str(HOSTS / "containerd-1.7")))
    assert found.problems == ()
    assert _brief(list(found.registries)) == [
        ("https", "registry-1.docker.io", None),
        ("https", "mirror.example.com:5000", "registry-1.docker.io"),
        ("http", "198.18.200.5:5000", "registry-1.docker.io"),
        ("https", "quay.io", None),
        ("https", "registry.example.com:5000", None),
        ("https", "cache.example.com", "registry.example.com:5000"),
    ]
    by_host = {r.host: r for r in found.registries}
    assert by_host["mirror.example.com:5000"].capabilities == ("pull", "resolve")
    assert by_host["mirror.example.com:5000"].ca_files == (
        "/etc/containerd/certs.d/docker.io/mirror-ca.crt",
    )
    assert by_host["198.18.200.5:5000"].skip_verify
    # Relative ca paths are relative to the hosts directory; absolute ones stay.
    assert by_host["registry.example.com:5000"].ca_files == (
        "/etc/containerd/certs.d/registry.example.com:5000/ca.crt",
        "/etc/pki/extra.crt",
    )
    assert by_host["cache.example.com"].override_path
    assert by_host["cache.example.com"].path == "/v2/proxy"
    # A directory without hosts.toml: its *.crt files are CAs for the directory's name.
    assert by_host["quay.io"].ca_files == ("/etc/containerd/certs.d/quay.io/ca.crt",)
    assert by_host["quay.io"].source == "/etc/containerd/certs.d/quay.io"


def test_containerd_2_layout() -> None:
    """containerd 2.x (version 3, images plugin): several hosts dirs, _default mirrors all."""
    registries = discover_registries(HOSTS / "containerd-2")
    assert _brief(registries) == [
        ("https", "pull-through.example.com", "*"),
        ("https", "ghcr.io", None),
        ("https", "ghcr-mirror.example.com", "ghcr.io"),
    ]
    assert registries[1].source == "/etc/docker/certs.d/ghcr.io/hosts.toml"
    assert {r.mirror_of for r in registries if r.is_mirror} == {"*", "ghcr.io"}


def test_legacy_mirrors_version_2() -> None:
    """registry.mirrors endpoints are mirrors; the upstream is kept; configs.tls applies."""
    registries = discover_registries(HOSTS / "legacy-mirrors")
    assert _brief(registries) == [
        ("https", "mirror.gcr.io", "registry-1.docker.io"),
        ("https", "registry-1.docker.io", None),
        ("http", "registry.internal:5000", None),
    ]
    assert registries[0].ca_files == ("/etc/ssl/mirror-ca.pem",)
    assert registries[0].skip_verify


def test_legacy_mirrors_version_1() -> None:
    """A config without version is version 1: plugins.cri.registry.mirrors."""
    assert _brief(discover_registries(HOSTS / "legacy-mirrors-v1")) == [
        ("https", "dockerhub-cache.example.com", "registry-1.docker.io"),
        ("https", "registry-1.docker.io", None),
    ]


def test_crio_registries_conf_and_dropins() -> None:
    """Search registries, [[registry]] and [[registry.mirror]] from registries.conf and .d."""
    registries = discover_registries(HOSTS / "crio")
    assert _brief(registries) == [
        ("https", "registry-1.docker.io", None),
        ("https", "quay.io", None),
        ("https", "mirror.example.com:5000", "registry-1.docker.io"),
        ("https", "registry.example.com", None),
        ("https", "quay-mirror.example.com", "quay.io"),
    ]
    by_host = {r.host: r for r in registries}
    assert by_host["registry.example.com"].skip_verify  # insecure = true
    assert by_host["registry.example.com"].ca_files == (
        "/etc/containers/certs.d/registry.example.com/ca.crt",
    )
    assert by_host["quay-mirror.example.com"].source == (
        "/etc/containers/registries.conf.d/10-quay-mirror.conf"
    )
    assert all(r.runtime == "crio" for r in registries)


def test_k3s_registries_yaml() -> None:
    """k3s's registries.yaml mirrors and their TLS settings."""
    registries = discover_registries(HOSTS / "k3s")
    assert _brief(registries) == [
        ("https", "k3s-mirror.example.com:5000", "registry-1.docker.io"),
        ("https", "registry-1.docker.io", None),
    ]
    assert registries[0].ca_files == ("/etc/ssl/k3s-mirror.crt",)


def test_malformed_files_are_named_problems() -> None:
    """Broken TOML and wrong types give one problem each, naming the file; others still read."""
    found = discover(HostFS(str(HOSTS / "malformed")))
    problems = {
        (p.source, "not valid TOML" if p.message.startswith("not valid TOML") else p.message)
        for p in found.problems
    }
    assert problems == {
        ("/etc/containerd/config.toml", "not valid TOML"),
        ("/etc/containerd/certs.d/docker.io/hosts.toml", "not valid TOML"),
        ("/etc/containerd/certs.d/bad-types.example/hosts.toml", "server must be a string"),
        (
            "/etc/containerd/certs.d/bad-types.example/hosts.toml",
            "host.'https://ok-mirror.example'.capabilities must be a list of strings",
        ),
        (
            "/etc/containerd/certs.d/bad-types.example/hosts.toml",
            "host.'https://ok-mirror.example'.skip_verify must be true or false",
        ),
        (
            "/etc/containers/registries.conf",
            "unqualified-search-registries must be a list of strings",
        ),
        ("/etc/containers/registries.conf", "[[registry]] location and prefix must be strings"),
        ("/etc/containers/registries.conf.d/99-broken.conf", "not valid TOML"),
    }
    assert "ok-mirror.example" in {r.host for r in found.registries}


def test_nothing_configured(tmp_path: Path) -> None:
    """An empty host root: nothing found, no problem."""
    assert discover(HostFS(str(tmp_path))).registries == ()
    assert discover(HostFS(str(tmp_path))).problems == ()


def test_config_path_unset_uses_containerd_2_default() -> None:
    """Without config_path (and without legacy mirrors) the 2.x default directories are read."""
    config, problems = parse_containerd_config("version = 3\n")
    assert problems == []
    assert config.config_path == ("/etc/containerd/certs.d", "/etc/docker/certs.d")


def test_hosts_toml_docker_io_default_server() -> None:
    """The docker.io directory without server means registry-1.docker.io."""
    registries, problems = parse_hosts_toml(
        '[host."https://m.example"]\n', "docker.io", "/etc/containerd/certs.d/docker.io"
    )
    assert problems == []
    assert _brief(registries) == [
        ("https", "registry-1.docker.io", None),
        ("https", "m.example", "registry-1.docker.io"),
    ]
    assert registries[1].capabilities == ("pull", "resolve", "push")


def test_k3s_yaml_error_does_not_quote_the_file() -> None:
    """A YAML error names line and problem but never quotes the line (it may hold a password)."""
    text = 'configs:\n  r.io:\n    auth: {password: "hunter2" : x}\n'
    registries, problems = parse_k3s_registries(text)
    assert registries == []
    assert len(problems) == 1
    assert "hunter2" not in problems[0].message
    assert "line 3" in problems[0].message


@given(st.text())
def test_random_text_never_crashes(text: str) -> None:
    """Any text as config.toml, hosts.toml, registries.conf or registries.yaml: no exception."""
    parse_containerd_config(text)
    parse_hosts_toml(text, "docker.io", "/etc/containerd/certs.d/docker.io")
    parse_registries_conf(text)
    parse_k3s_registries(text)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "plugins",
                    "io.containerd.grpc.v1.cri",
                    "io.containerd.cri.v1.images",
                    "cri",
                    "registry",
                    "config_path",
                    "mirrors",
                    "configs",
                    "endpoint",
                    "tls",
                    "ca_file",
                    "insecure_skip_verify",
                    "server",
                    "ca",
                    "skip_verify",
                    "host",
                    "capabilities",
                    "override_path",
                    "https://m",
                    "docker.io",
                    "*",
                    "location",
                    "prefix",
                    "mirror",
                    "insecure",
                    "blocked",
                    "unqualified-search-registries",
                    "registries",
                    "search",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(_values)
def test_any_shape_never_crashes(data: Any) -> None:
    """Valid TOML/YAML of the wrong shape gives problems, never an exception."""
    found = Findings()
    containerd_config_from_data(data, "c", found)
    hosts_toml_from_data(data, "_default", "/d", "h", found)
    k3s_registries_from_data(data, "k", found)
    conf = RegistriesConf()
    registries_conf_merge(conf, data, "r", found)
    registries_from_conf(conf, found)
