"""dockerd's /etc/docker/daemon.json: its proxies, its Docker Hub mirrors, its insecure registries.

Sources: docker/docs (config/daemon/proxy.md, registry mirror.md) and distribution's docs
(insecure.md). `proxies` ("http-proxy", "https-proxy", "no-proxy") override dockerd's
environment (Docker 23+, cmd/dockerd configureProxyEnv). `registry-mirrors` are for Docker Hub
only, tried in order before registry-1.docker.io (D-MIRRORS); `insecure-registries` are tried
over HTTPS without verification, then plain HTTP. dockerd never decides where kubelet pulls
from (it is not a CRI runtime since Kubernetes 1.24): its mirrors count only on a node without
containerd or CRI-O (cri-dockerd).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from probe.config import RegistryAddress
from probe.node.files import Problems, endpoint, load_json, string_list
from probe.node.hostfs import HostFS
from probe.node.registries import (
    ALL_CAPABILITIES,
    NodeRegistries,
    PullPlan,
    RegistryHost,
    default_host,
)

DAEMON_JSON = "/etc/docker/daemon.json"
_PROXY_KEYS = (
    ("http-proxy", "http_proxy"),
    ("https-proxy", "https_proxy"),
    ("no-proxy", "no_proxy"),
)
_NOT_STARTED = "dockerd would not start with it"


@dataclass(frozen=True)
class DaemonJson:
    """What daemon.json says: proxy settings by Go's names, mirrors, insecure registries."""

    proxies: dict[str, str] = field(default_factory=dict)  # "https_proxy" -> URL
    mirrors: tuple[str, ...] = ()
    insecure: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def read_daemon_json(fs: HostFS) -> DaemonJson:
    text = fs.read_text(DAEMON_JSON)
    if text is None:
        return DaemonJson()
    problems = Problems("dockerd")
    data: Any = load_json(text, DAEMON_JSON, problems, _NOT_STARTED)
    if data is not None and not isinstance(data, dict):
        problems.add(DAEMON_JSON, "is not a JSON object", _NOT_STARTED)
        data = None
    data = data or {}
    proxies: dict[str, str] = {}
    section = data.get("proxies")
    if section is not None and not isinstance(section, dict):
        problems.add(DAEMON_JSON, "'proxies' is not an object", _NOT_STARTED)
        section = None
    for key, setting in _PROXY_KEYS:
        value = (section or {}).get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            problems.add(DAEMON_JSON, f"proxies.{key} is not a string", _NOT_STARTED)
            continue
        proxies[setting] = value
    mirrors = string_list(data.get("registry-mirrors"), "registry-mirrors", DAEMON_JSON, problems)
    insecure = string_list(
        data.get("insecure-registries"), "insecure-registries", DAEMON_JSON, problems
    )
    return DaemonJson(
        proxies, tuple(mirrors), tuple(insecure), tuple(p.message for p in problems.found)
    )


def read_dockerd(fs: HostFS) -> NodeRegistries:
    """dockerd's plans: Docker Hub through its mirrors; insecure registries without TLS checks."""
    problems = Problems("dockerd")
    settings = read_daemon_json(fs)
    rule = f"dockerd: {DAEMON_JSON} registry-mirrors (Docker Hub only), then registry-1.docker.io"
    plans: dict[str, PullPlan] = {}
    mirrors: list[RegistryHost] = []
    for index, url in enumerate(settings.mirrors):
        found = endpoint(url, f"registry-mirrors[{index}]", DAEMON_JSON, problems)
        if found is not None:
            mirrors.append(
                RegistryHost(found[0], "/v2", frozenset({"pull"}), (), False, DAEMON_JSON)
            )
    if mirrors:
        plans["docker.io"] = PullPlan(
            "docker.io", (*mirrors, default_host("docker.io")), "dockerd", rule, DAEMON_JSON
        )
    for index, name in enumerate(settings.insecure):
        found = endpoint(name, f"insecure-registries[{index}]", DAEMON_JSON, problems)
        if found is None or "/" in name.split("://")[-1]:
            continue  # a CIDR names no registry to probe
        address = found[0]
        # HTTPS without verification first, then plain HTTP (distribution's insecure.md).
        secure = RegistryHost(
            address, "/v2", ALL_CAPABILITIES, (), True, DAEMON_JSON, upstream=True
        )
        plain = RegistryHost(
            RegistryAddress("http", address.host, address.port),
            "/v2",
            ALL_CAPABILITIES,
            (),
            False,
            DAEMON_JSON,
        )
        plans[address.label] = PullPlan(
            address.label, (secure, plain), "dockerd", rule, DAEMON_JSON
        )
    return NodeRegistries(
        "dockerd", rule, plans, problems=tuple(problems.found), localhost_plain=False
    )
