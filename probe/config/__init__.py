"""The configuration: frozen values, the strict YAML loader, and registry addresses."""

from probe.config.loader import (
    DOCKER_HUB,
    DOCKER_HUB_ALIASES,
    DOCKER_HUB_BLOB_HOSTS,
    RUNTIMES,
    TOP_LEVEL_KEYS,
    Config,
    ConfigError,
    DockerHubConfig,
    RegistryConfig,
    load_config,
    parse_registry_arg,
    validate_file,
)

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_ALIASES",
    "DOCKER_HUB_BLOB_HOSTS",
    "RUNTIMES",
    "TOP_LEVEL_KEYS",
    "Config",
    "ConfigError",
    "DockerHubConfig",
    "RegistryConfig",
    "load_config",
    "parse_registry_arg",
    "validate_file",
]
