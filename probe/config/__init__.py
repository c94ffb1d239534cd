"""The configuration: addresses parsed once, frozen values, and the strict YAML loader.

`address` (registry, listen and host:port values) → `model` (Config and its parts) → `loader`
(YAML with every problem named by file, line and key path). The command line adds its flags on
top in `probe.cli`; every other layer receives the finished `Config`.
"""

from probe.config.address import (
    DOCKER_HUB,
    DOCKER_HUB_ALIASES,
    DOCKER_HUB_BLOB_HOSTS,
    HostPort,
    RegistryAddress,
    is_ip_address,
    parse_host_port,
    parse_listen,
)
from probe.config.loader import (
    TOP_LEVEL_KEYS,
    ConfigError,
    load_config,
    parse_registry_arg,
    validate_file,
)
from probe.config.model import (
    DOCKER_HUB_REGISTRY,
    RUNTIMES,
    Config,
    DockerHubConfig,
    RegistryConfig,
)

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_ALIASES",
    "DOCKER_HUB_BLOB_HOSTS",
    "DOCKER_HUB_REGISTRY",
    "RUNTIMES",
    "TOP_LEVEL_KEYS",
    "Config",
    "ConfigError",
    "DockerHubConfig",
    "HostPort",
    "RegistryAddress",
    "RegistryConfig",
    "is_ip_address",
    "load_config",
    "parse_host_port",
    "parse_listen",
    "parse_registry_arg",
    "validate_file",
]
