"""Which way each container runtime on the node goes to a registry, read from the node.

The runtimes' settings come from `probe.node.runtimes` (unit files, drop-ins, daemon.json, k3s
variables). Where the process is visible and trusted (`probe.node.processes`), its live
environment wins: it is what the runtime really uses until it restarts, and a difference from
the unit files is a restart pending. Each route names the process whose environment was read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from probe.config import RegistryAddress
from probe.node.dockerd import DAEMON_JSON
from probe.node.goproxy import ProxyConfigError, ProxyURL, decide
from probe.node.processes import ProcessTable, RuntimeProcess
from probe.node.runtimes import (
    PROXY_VARIABLE_NAMES,
    Route,
    RuntimeProxyConfig,
    deciding_runtime,
    explain_mismatch,
    restart_pending,
    route_for,
)
from probe.redact import redact_url


@dataclass(frozen=True)
class NodeRoutes:
    """The runtimes found on the node, as they run now."""

    configs: Mapping[str, RuntimeProxyConfig]  # effective: live environment where visible
    files: Mapping[str, RuntimeProxyConfig]  # as the unit files and daemon.json give them
    decider: str | None  # the CRI runtime whose route pulls take

    def routes(self, registry: RegistryAddress) -> tuple[Route, ...]:
        """Every runtime's route to `registry`."""
        return tuple(route_for(registry, config) for config in self.configs.values())

    def proxy_for(self, scheme: str, host: str, port: int) -> ProxyURL | None:
        """The proxy the CRI runtime uses for this URL (as Go decides per URL), or None."""
        if self.decider is None:
            return None
        try:
            decision = decide(self.configs[self.decider].proxy_env, scheme, host, port)
        except ProxyConfigError:
            return None
        return decision.proxy

    def mismatch(self, routes: tuple[Route, ...]) -> str | None:
        return explain_mismatch(routes, self.configs)

    def restart_pending(self) -> str | None:
        """Why the CRI runtime runs with other proxy settings than its files give, or None."""
        if self.decider is None:
            return None
        effective, files = self.configs[self.decider], self.files[self.decider]
        if not restart_pending(files.process_env, effective.process_env):
            return None
        where = files.unit or files.runtime
        live = effective.live_process
        who = f"{files.runtime}, {live}," if live else files.runtime
        return (
            f"{who} runs with proxy settings that differ from {where}'s files "
            f"(running: {_describe(effective)}; files: {_describe(files)}): "
            f"run `systemctl daemon-reload && systemctl restart {files.restart_name}`"
        )


def node_routes(files: Mapping[str, RuntimeProxyConfig], processes: ProcessTable) -> NodeRoutes:
    """The runtimes as they run now: each one's files, with its live environment on top where
    the process is visible and readable."""
    configs: dict[str, RuntimeProxyConfig] = {}
    for runtime, config in files.items():
        live = processes.live_process(config.process)
        configs[runtime] = config if live is None else _running(config, live)
    return NodeRoutes(
        MappingProxyType(configs), MappingProxyType(dict(files)), deciding_runtime(files)
    )


def _running(config: RuntimeProxyConfig, live: RuntimeProcess) -> RuntimeProxyConfig:
    """The config as the running process has it: its environment, then daemon.json on top."""
    assert live.environ is not None  # noqa: S101 - live_process gives readable ones only
    env = {k: v for k, v in live.environ.items() if k in PROXY_VARIABLE_NAMES}
    process_env = dict(env)
    sources = dict.fromkeys(env, f"the running {config.process} process, {live.described}")
    for name, value in config.environment.items():
        if config.sources.get(name) == DAEMON_JSON:
            env[name] = value
            sources[name] = DAEMON_JSON
    return dataclasses.replace(
        config,
        environment=MappingProxyType(env),
        process_env=MappingProxyType(process_env),
        sources=MappingProxyType(sources),
        live_process=live.described,
    )


def _describe(config: RuntimeProxyConfig) -> str:
    shown = [
        f"{k}={redact_url(v) if 'proxy' in k.lower() and k.lower() != 'no_proxy' else v}"
        for k, v in sorted(config.process_env.items())
    ]
    return ", ".join(shown) or "no proxy"
