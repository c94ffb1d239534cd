"""The configuration: frozen values, and the strict YAML loader that builds them.

Contract: SPEC.md, "Configuration file (YAML)".
"""

from __future__ import annotations

from dataclasses import dataclass, field

DOCKER_HUB = "registry-1.docker.io"
# Names that mean Docker Hub; containerd rewrites docker.io to registry-1.docker.io.
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_BLOB_HOSTS: tuple[str, ...] = ("production.cloudfront.docker.com",)


@dataclass(frozen=True)
class RegistryConfig:
    host: str  # host[:port] as configured: the `registry` label
    scheme: str = "https"  # "http" for a plain-HTTP registry (`--registry http://HOST:PORT`)
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    credentials_file: str | None = None
    blob_hosts: tuple[str, ...] | None = None  # None: the default (Docker Hub's CDN for Docker Hub)
    source: str = "config"  # config, flag, default, or the runtime file it was discovered in

    @property
    def is_docker_hub(self) -> bool:
        return self.host in DOCKER_HUB_ALIASES

    @property
    def api_host(self) -> str:
        """The host[:port] contacted: every Docker Hub alias goes to registry-1.docker.io."""
        return DOCKER_HUB if self.is_docker_hub else self.host

    @property
    def effective_blob_hosts(self) -> tuple[str, ...]:
        if self.blob_hosts is not None:
            return self.blob_hosts
        return DOCKER_HUB_BLOB_HOSTS if self.is_docker_hub else ()


@dataclass(frozen=True)
class DockerHubConfig:
    ratelimit_interval: float = 300.0  # seconds
    credentials_file: str | None = None


@dataclass(frozen=True)
class Config:
    interval: float = 60.0  # seconds
    timeout: float = 10.0  # seconds
    host_root: str = "/"
    listen: str = "0.0.0.0:9741"  # every interface: Prometheus scrapes the node's IP
    discover: bool = True
    registries: tuple[RegistryConfig, ...] = ()
    dockerhub: DockerHubConfig = field(default_factory=DockerHubConfig)
    runtimes: tuple[str, ...] = ("containerd", "dockerd", "crio")
