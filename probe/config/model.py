"""The configuration as frozen values (SPEC.md, "Configuration file (YAML)").

Built once, by the loader (`probe.config.loader`) and the command line's flags on top
(`probe.cli`), then handed down: nothing below re-reads or re-parses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probe.config.address import (
    DOCKER_HUB,
    DOCKER_HUB_BLOB_HOSTS,
    HostPort,
    RegistryAddress,
    parse_listen,
)

RUNTIMES: tuple[str, ...] = ("containerd", "dockerd", "crio")


@dataclass(frozen=True)
class RegistryConfig:
    """One registry to probe, and what the configuration says about reaching it."""

    address: RegistryAddress
    ca_file: str | None = None  # on the agent's own filesystem, trusted beside the node's store
    insecure_skip_verify: bool = False
    credentials_file: str | None = None
    blob_hosts: tuple[HostPort, ...] | None = None  # None: the default (Docker Hub's CDN for it)
    source: str = "config"  # config, flag, default, or the runtime file it was discovered in
    node_ca_files: tuple[str, ...] = ()  # CAs named by the node's runtime config (under host_root)

    @property
    def label(self) -> str:
        """The `registry` label: host[:port] as configured."""
        return self.address.label

    @property
    def is_docker_hub(self) -> bool:
        return self.address.is_docker_hub

    @property
    def effective_blob_hosts(self) -> tuple[HostPort, ...]:
        if self.blob_hosts is not None:
            return self.blob_hosts
        if self.is_docker_hub:
            return tuple(HostPort(host) for host in DOCKER_HUB_BLOB_HOSTS)
        return ()


DOCKER_HUB_REGISTRY = RegistryConfig(RegistryAddress("https", DOCKER_HUB), source="default")


@dataclass(frozen=True)
class DockerHubConfig:
    ratelimit_interval: float = 300.0  # seconds
    credentials_file: str | None = None


@dataclass(frozen=True)
class Config:
    interval: float = 60.0  # seconds
    timeout: float = 10.0  # seconds
    host_root: str = "/"
    listen: HostPort = field(default_factory=lambda: parse_listen("0.0.0.0:9741"))
    discover: bool = True
    registries: tuple[RegistryConfig, ...] = ()
    dockerhub: DockerHubConfig = field(default_factory=DockerHubConfig)
    runtimes: tuple[str, ...] = RUNTIMES
    # Image references whose pull the agent checks (SPEC.md, "Images"), as written; validated
    # by the loader with the runtime's own parsing rules.
    images: tuple[str, ...] = ()
    # Whether the agent also checks the node's sandbox (pause) image: no pod starts without it.
    sandbox_image: bool = True
