"""Registries and mirrors the node's runtimes are configured for, read under the host root.

Sources (SPEC.md, "How a node is read"; each a pure parser of text, tested with fake trees):
- containerd etc/containerd/config.toml: the hosts directory `config_path` (config version 2:
  `plugins."io.containerd.grpc.v1.cri".registry`, version 3 (containerd 2.x):
  `plugins."io.containerd.cri.v1.images".registry`, version 1: `plugins.cri.registry`), a list
  separated by ":"; unset, containerd 2.x reads /etc/containerd/certs.d:/etc/docker/certs.d. The
  legacy (1.x) `registry.mirrors."<name>".endpoint` lists and `registry.configs."<host>".tls`.
- `<config_path>/<name>/hosts.toml` (containerd docs/hosts.md): `server` (default
  https://<name>; the `docker.io` directory means registry-1.docker.io, `_default` applies to
  every registry without its own directory), `ca` (string or list, relative to the directory),
  `skip_verify`, and `[host."<url>"]` mirrors with `capabilities`, `ca`, `skip_verify`,
  `override_path`. Without hosts.toml, the directory's `*.crt` files are CAs for `<name>`.
- k3s etc/rancher/k3s/registries.yaml: `mirrors."<name>".endpoint` and `configs."<host>".tls`
  (k3s writes containerd's hosts.toml from it under /var/lib, which the agent does not mount).
- CRI-O etc/containers/registries.conf then registries.conf.d/*.conf in name order
  (containers-registries.conf(5), v2 TOML: `unqualified-search-registries`, `[[registry]]`
  `location`/`prefix`/`insecure`/`blocked`, `[[registry.mirror]]`; a drop-in's `[[registry]]`
  replaces one with the same prefix); v1 `[registries.search]` too. CAs from
  etc/containers/certs.d/<host>/*.crt.

Mirrors are returned as their own entries, so the probe checks them as endpoints: a dead mirror
hidden by fallback to the upstream becomes visible. A malformed file gives a `DiscoveryProblem`
naming the file and what is wrong; nothing here raises on file contents.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

import yaml

from probe.config import DOCKER_HUB, DOCKER_HUB_ALIASES
from probe.node.hostfs import HostFS

CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CONTAINERD_DEFAULT_CONFIG_PATH = "/etc/containerd/certs.d:/etc/docker/certs.d"
K3S_REGISTRIES = "/etc/rancher/k3s/registries.yaml"
REGISTRIES_CONF = "/etc/containers/registries.conf"
REGISTRIES_CONF_D = "/etc/containers/registries.conf.d"
CONTAINERS_CERTS_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")

_CRI_V2 = ("plugins", "io.containerd.grpc.v1.cri", "registry")
_CRI_V3 = ("plugins", "io.containerd.cri.v1.images", "registry")
_CRI_V1 = ("plugins", "cri", "registry")
_ALL_CAPABILITIES = ("pull", "resolve", "push")


@dataclass(frozen=True)
class DiscoveredRegistry:
    """A registry or mirror a runtime on the node pulls from."""

    host: str  # host[:port] as probed
    scheme: str = "https"  # "http" for a plain-HTTP endpoint
    is_mirror: bool = False
    mirror_of: str | None = None  # the upstream host[:port]; "*" for a mirror of every registry
    ca_files: tuple[str, ...] = ()  # as the node names them
    skip_verify: bool = False
    source: str = ""  # the file it was found in, as the node names it
    runtime: str = ""  # "containerd", "k3s" or "crio"
    capabilities: tuple[str, ...] = ()
    path: str = ""  # a mirror's path prefix ("/v2/proxy"), with override_path
    override_path: bool = False


@dataclass(frozen=True)
class DiscoveryProblem:
    """A file that could not be read as its runtime reads it."""

    source: str
    message: str


@dataclass(frozen=True)
class Discovery:
    registries: tuple[DiscoveredRegistry, ...] = ()
    problems: tuple[DiscoveryProblem, ...] = ()


@dataclass
class Findings:
    """Registries and problems gathered while reading; the parsers add to it."""

    registries: list[DiscoveredRegistry] = field(default_factory=list)
    problems: list[DiscoveryProblem] = field(default_factory=list)

    def problem(self, source: str, message: str) -> None:
        self.problems.append(DiscoveryProblem(source, message))


def canonical_host(name: str) -> str:
    """Docker Hub's aliases as the host pulls go to; anything else as written, lower-cased."""
    name = name.strip().lower()
    return DOCKER_HUB if name in DOCKER_HUB_ALIASES else name


def _endpoint(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path) of an endpoint URL; no scheme means https."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "https", url.strip()
    host, slash, path = rest.partition("/")
    return scheme.lower(), canonical_host(host), (slash + path).rstrip("/")


def _dig(data: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _string_list(value: Any, where: str, source: str, found: Findings) -> list[str]:
    """A string or a list of strings (TOML lets either stand); anything else is a problem."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    found.problem(source, f"{where} must be a string or a list of strings")
    return []


def _bool(value: Any, where: str, source: str, found: Findings) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    found.problem(source, f"{where} must be true or false")
    return False


def _load_toml(text: str, source: str, found: Findings) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found.problem(source, f"not valid TOML: {exc}")
        return None


# --- containerd -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerdRegistryConfig:
    """What config.toml says about registries."""

    config_path: tuple[str, ...]  # hosts directories, as the node names them
    legacy: tuple[DiscoveredRegistry, ...] = ()


def containerd_config_from_data(
    data: Any, source: str, found: Findings
) -> ContainerdRegistryConfig:
    """The registry part of a parsed config.toml (any shape: wrong types are problems)."""
    if not isinstance(data, dict):
        found.problem(source, "not a TOML table")
        return ContainerdRegistryConfig(())
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        found.problem(source, "version must be an integer")
        version = 1
    keys = {1: _CRI_V1, 2: _CRI_V2}.get(version, _CRI_V3)
    registry = _dig(data, keys)
    if registry is not None and not isinstance(registry, dict):
        found.problem(source, f"{'.'.join(keys)} must be a table")
        registry = None
    registry = registry or {}
    config_path = registry.get("config_path")
    legacy = _legacy_mirrors(registry, source, found) if version < 3 else []
    if config_path is None or config_path == "":
        dirs = () if legacy else tuple(CONTAINERD_DEFAULT_CONFIG_PATH.split(":"))
    elif isinstance(config_path, str):
        dirs = tuple(d for d in config_path.split(":") if d)
    else:
        found.problem(source, "registry.config_path must be a string")
        dirs = ()
    return ContainerdRegistryConfig(dirs, tuple(legacy))


def _legacy_mirrors(
    registry: dict[str, Any], source: str, found: Findings
) -> list[DiscoveredRegistry]:
    """containerd 1.x `registry.mirrors` and `registry.configs.<host>.tls`."""
    return _mirrors_and_configs(registry, "registry.", source, found, "containerd")


def _mirrors_and_configs(
    table: dict[str, Any], prefix: str, source: str, found: Findings, runtime: str
) -> list[DiscoveredRegistry]:
    """`mirrors.<name>.endpoint` lists and `configs.<host>.tls` settings, as containerd 1.x's
    CRI config and k3s's registries.yaml both write them: each mirror endpoint in order, then
    the registry's own endpoint, which CRI appends after its mirrors."""
    mirrors = table.get("mirrors") or {}
    configs = table.get("configs") or {}
    if not isinstance(mirrors, dict) or not isinstance(configs, dict):
        found.problem(source, f"{prefix}mirrors and {prefix}configs must be tables")
        return []
    tls: dict[str, tuple[tuple[str, ...], bool]] = {}
    for host, config in configs.items():
        settings = _dig(config, ("tls",))
        if settings is None:
            continue
        where = f"{prefix}configs.{host!r}.tls"
        if not isinstance(settings, dict):
            found.problem(source, f"{where} must be a table")
            continue
        ca_list = _string_list(settings.get("ca_file"), f"{where}.ca_file", source, found)
        skip = _bool(
            settings.get("insecure_skip_verify"), f"{where}.insecure_skip_verify", source, found
        )
        tls[canonical_host(str(host))] = (tuple(ca_list), skip)

    result: list[DiscoveredRegistry] = []
    for name, mirror in mirrors.items():
        upstream = "*" if name == "*" else canonical_host(str(name))
        where = f"{prefix}mirrors.{name!r}.endpoint"
        for url in _string_list(_dig(mirror, ("endpoint",)), where, source, found):
            scheme, host, path = _endpoint(url)
            cas, skip = tls.get(host, ((), False))
            result.append(
                DiscoveredRegistry(
                    host,
                    scheme,
                    is_mirror=host != upstream,
                    mirror_of=None if host == upstream else upstream,
                    ca_files=cas,
                    skip_verify=skip,
                    source=source,
                    runtime=runtime,
                    path=path,
                )
            )
        if upstream != "*" and upstream not in {r.host for r in result}:
            cas, skip = tls.get(upstream, ((), False))
            result.append(
                DiscoveredRegistry(
                    upstream, ca_files=cas, skip_verify=skip, source=source, runtime=runtime
                )
            )
    return result


def parse_containerd_config(
    text: str, source: str = CONTAINERD_CONFIG
) -> tuple[ContainerdRegistryConfig, list[DiscoveryProblem]]:
    """config.toml's registry settings and problems."""
    found = Findings()
    data = _load_toml(text, source, found)
    if data is None:
        return ContainerdRegistryConfig(()), found.problems
    return containerd_config_from_data(data, source, found), found.problems


def _ca_paths(values: list[str], hosts_dir: str) -> tuple[str, ...]:
    return tuple(v if v.startswith("/") else f"{hosts_dir}/{v}" for v in values)


def hosts_toml_from_data(
    data: Any, name: str, hosts_dir: str, source: str, found: Findings
) -> list[DiscoveredRegistry]:
    """The registries of one parsed hosts.toml in directory `name` (any shape)."""
    if not isinstance(data, dict):
        found.problem(source, "not a TOML table")
        return []
    result: list[DiscoveredRegistry] = []
    default_upstream = "*" if name == "_default" else canonical_host(name)
    server = data.get("server")
    upstream = default_upstream
    if server is not None and not isinstance(server, str):
        found.problem(source, "server must be a string")
        server = None
    if server or name != "_default":
        scheme, host, _ = _endpoint(server or f"https://{default_upstream}")
        upstream = host
        result.append(
            DiscoveredRegistry(
                host,
                scheme,
                ca_files=_ca_paths(_string_list(data.get("ca"), "ca", source, found), hosts_dir),
                skip_verify=_bool(data.get("skip_verify"), "skip_verify", source, found),
                source=source,
                runtime="containerd",
            )
        )
    hosts = data.get("host") or {}
    if not isinstance(hosts, dict):
        found.problem(source, 'host must be a table of [host."<url>"] tables')
        hosts = {}
    for url, settings in hosts.items():
        where = f"host.{url!r}"
        if not isinstance(settings, dict):
            found.problem(source, f"{where} must be a table")
            continue
        scheme, host, path = _endpoint(url)
        if not host:
            found.problem(source, f"{where} names no host")
            continue
        capabilities: list[str] = []
        if "capabilities" in settings:
            value = settings["capabilities"]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                capabilities = value
            else:  # containerd decodes it into []string: a bare string is an error there
                found.problem(source, f"{where}.capabilities must be a list of strings")
        result.append(
            DiscoveredRegistry(
                host,
                scheme,
                is_mirror=host != upstream,
                mirror_of=None if host == upstream else upstream,
                ca_files=_ca_paths(
                    _string_list(settings.get("ca"), f"{where}.ca", source, found), hosts_dir
                ),
                skip_verify=_bool(
                    settings.get("skip_verify"), f"{where}.skip_verify", source, found
                ),
                source=source,
                runtime="containerd",
                capabilities=tuple(capabilities)
                if "capabilities" in settings
                else _ALL_CAPABILITIES,
                path=path,
                override_path=_bool(
                    settings.get("override_path"), f"{where}.override_path", source, found
                ),
            )
        )
    return result


def parse_hosts_toml(
    text: str, name: str, hosts_dir: str, source: str = ""
) -> tuple[list[DiscoveredRegistry], list[DiscoveryProblem]]:
    """One `<config_path>/<name>/hosts.toml`: its registries, and problems."""
    found = Findings()
    source = source or f"{hosts_dir}/hosts.toml"
    data = _load_toml(text, source, found)
    registries = [] if data is None else hosts_toml_from_data(data, name, hosts_dir, source, found)
    return registries, found.problems


def _containerd(fs: HostFS, found: Findings) -> None:
    text = fs.read_text(CONTAINERD_CONFIG)
    if text is None:
        config = ContainerdRegistryConfig(tuple(CONTAINERD_DEFAULT_CONFIG_PATH.split(":")))
    else:
        data = _load_toml(text, CONTAINERD_CONFIG, found)
        if data is None:
            # containerd would not start with it; the hosts directories most likely meant are
            # still read, so their own problems show too.
            data = {"version": 3}
        config = containerd_config_from_data(data, CONTAINERD_CONFIG, found)
    found.registries.extend(config.legacy)
    seen: set[str] = set()
    for directory in config.config_path:
        for name in fs.directories(directory):
            if name in seen:
                continue  # the first directory of config_path that has the name wins
            seen.add(name)
            hosts_dir = f"{directory}/{name}"
            hosts_text = fs.read_text(f"{hosts_dir}/hosts.toml")
            if hosts_text is None:
                cas = tuple(fs.files(hosts_dir, "*.crt"))
                if name != "_default":
                    found.registries.append(
                        DiscoveredRegistry(
                            canonical_host(name),
                            ca_files=cas,
                            source=hosts_dir,
                            runtime="containerd",
                        )
                    )
                continue
            source = f"{hosts_dir}/hosts.toml"
            data = _load_toml(hosts_text, source, found)
            if data is not None:
                found.registries.extend(hosts_toml_from_data(data, name, hosts_dir, source, found))


# --- k3s ------------------------------------------------------------------------------------------


def k3s_registries_from_data(data: Any, source: str, found: Findings) -> list[DiscoveredRegistry]:
    """k3s registries.yaml `mirrors` and `configs` (any shape)."""
    if data is None:
        return []
    if not isinstance(data, dict):
        found.problem(source, "not a YAML mapping")
        return []
    return _mirrors_and_configs(data, "", source, found, "k3s")


def parse_k3s_registries(
    text: str, source: str = K3S_REGISTRIES
) -> tuple[list[DiscoveredRegistry], list[DiscoveryProblem]]:
    """k3s's registries.yaml: its registries and mirrors, and problems."""
    found = Findings()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Only the problem and its line: PyYAML's full message quotes the line, which may hold
        # a registry password (configs.<host>.auth).
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        found.problem(source, f"not valid YAML: {getattr(exc, 'problem', None) or 'syntax'}{where}")
        return [], found.problems
    return k3s_registries_from_data(data, source, found), found.problems


# --- CRI-O / containers-registries.conf -----------------------------------------------------------


@dataclass
class RegistriesConf:
    """registries.conf after its drop-ins: search registries and [[registry]] tables by prefix."""

    search: list[str] | None = None
    entries: dict[str, tuple[dict[str, Any], str]] = field(
        default_factory=dict
    )  # prefix -> (table, file)


def registries_conf_merge(conf: RegistriesConf, data: Any, source: str, found: Findings) -> None:
    """Merge one parsed registries.conf (or drop-in) into `conf`, as containers/image does."""
    if not isinstance(data, dict):
        found.problem(source, "not a TOML table")
        return
    if "unqualified-search-registries" in data:
        search = data["unqualified-search-registries"]
        if isinstance(search, list) and all(isinstance(s, str) for s in search):
            conf.search = list(search)
        else:
            found.problem(source, "unqualified-search-registries must be a list of strings")
    v1 = _dig(data, ("registries", "search", "registries"))
    if v1 is not None:
        conf.search = _string_list(v1, "registries.search.registries", source, found)
    tables = data.get("registry", [])
    if not isinstance(tables, list):
        found.problem(source, "registry must be an array of [[registry]] tables")
        return
    for table in tables:
        if not isinstance(table, dict):
            found.problem(source, "each [[registry]] must be a table")
            continue
        location, prefix = table.get("location", ""), table.get("prefix", "")
        if not isinstance(location, str) or not isinstance(prefix, str):
            found.problem(source, "[[registry]] location and prefix must be strings")
            continue
        if not (prefix or location):
            found.problem(source, "a [[registry]] has neither location nor prefix")
            continue
        conf.entries[prefix or location] = (table, source)


def registries_from_conf(
    conf: RegistriesConf, found: Findings, source: str = REGISTRIES_CONF
) -> list[DiscoveredRegistry]:
    """The registries and mirrors a merged registries.conf makes CRI-O pull from."""
    result: list[DiscoveredRegistry] = []
    for name in conf.search or []:
        result.append(
            DiscoveredRegistry(canonical_host(name.split("/")[0]), source=source, runtime="crio")
        )
    for table, table_source in conf.entries.values():
        if _bool(table.get("blocked"), "[[registry]].blocked", table_source, found):
            continue  # pulls from it are refused: nothing to probe
        location = table.get("location") or table.get("prefix") or ""
        if location.startswith("*."):
            continue  # a wildcard prefix without a location names no endpoint
        upstream = canonical_host(location.split("/")[0])
        insecure = _bool(table.get("insecure"), "[[registry]].insecure", table_source, found)
        result.append(
            DiscoveredRegistry(upstream, skip_verify=insecure, source=table_source, runtime="crio")
        )
        mirrors = table.get("mirror", [])
        if not isinstance(mirrors, list):
            found.problem(
                table_source, f"[[registry.mirror]] of {location!r} must be an array of tables"
            )
            continue
        for mirror in mirrors:
            where = f"[[registry.mirror]] of {location!r}"
            mirror_location = mirror.get("location") if isinstance(mirror, dict) else None
            if not isinstance(mirror_location, str) or not mirror_location:
                found.problem(table_source, f"{where} needs a location string")
                continue
            assert isinstance(mirror, dict)  # noqa: S101 - checked with the location above
            result.append(
                DiscoveredRegistry(
                    canonical_host(mirror_location.split("/")[0]),
                    is_mirror=True,
                    mirror_of=upstream,
                    skip_verify=_bool(
                        mirror.get("insecure"), f"{where}.insecure", table_source, found
                    ),
                    source=table_source,
                    runtime="crio",
                )
            )
    return result


def parse_registries_conf(
    text: str, source: str = REGISTRIES_CONF
) -> tuple[list[DiscoveredRegistry], list[DiscoveryProblem]]:
    """One registries.conf on its own: registries, mirrors and problems."""
    found = Findings()
    conf = RegistriesConf()
    data = _load_toml(text, source, found)
    if data is not None:
        registries_conf_merge(conf, data, source, found)
    return registries_from_conf(conf, found, source), found.problems


def _crio(fs: HostFS, found: Findings) -> None:
    files = [REGISTRIES_CONF, *fs.files(REGISTRIES_CONF_D, "*.conf")]
    conf = RegistriesConf()
    read_any = False
    for path in files:
        text = fs.read_text(path)
        if text is None:
            continue
        read_any = True
        data = _load_toml(text, path, found)
        if data is not None:
            registries_conf_merge(conf, data, path, found)
    if not read_any:
        return
    for registry in registries_from_conf(conf, found):
        cas = tuple(
            c for d in CONTAINERS_CERTS_DIRS for c in fs.files(f"{d}/{registry.host}", "*.crt")
        )
        found.registries.append(
            registry if not cas else DiscoveredRegistry(**{**registry.__dict__, "ca_files": cas})
        )


# --- all ------------------------------------------------------------------------------------------


def _unique(registries: list[DiscoveredRegistry]) -> tuple[DiscoveredRegistry, ...]:
    """One entry per (host, scheme, mirror_of, runtime): the first found."""
    seen: dict[tuple[str, str, str | None, str], DiscoveredRegistry] = {}
    for registry in registries:
        seen.setdefault(
            (registry.host, registry.scheme, registry.mirror_of, registry.runtime), registry
        )
    return tuple(seen.values())


def discover(fs: HostFS) -> Discovery:
    """Every registry and mirror the node's containerd, k3s and CRI-O are configured for."""
    found = Findings()
    _containerd(fs, found)
    k3s_text = fs.read_text(K3S_REGISTRIES)
    if k3s_text is not None:
        registries, problems = parse_k3s_registries(k3s_text)
        found.registries.extend(registries)
        found.problems.extend(problems)
    _crio(fs, found)
    return Discovery(_unique(found.registries), tuple(found.problems))
