"""containerd's registry settings, read as containerd reads them (1.6/1.7 and 2.x).

Sources: containerd v1.6.20 and main (services/server/config/config.go, pkg/cri/config,
pkg/cri/server/image_pull.go, remotes/docker/config/hosts.go; internal/cri and core/remotes on
main), and docs/hosts.md. The rules, with their ids from tests/data/nodes/README.md:

- config.toml (`imports` merged first, I-IMPORTS): `version` absent is 1. Version 3, or a table
  named `io.containerd.cri.v1.images`, is containerd 2.x; anything else 1.x, whose version-1
  files name the CRI plugin `cri` (C1-V1NAMES) and version-2 files
  `io.containerd.grpc.v1.cri`.
- `registry.config_path` (a `:` list) set: those hosts directories (C1-SET). Unset: no hosts
  directory is read at all (C1-UNSET, C2-UNSET); the legacy `registry.mirrors` and
  `registry.configs.<endpoint host>.tls` (1.x only: 2.x ignores `configs.tls`, C2-NOTLS) apply
  (C1-LEGACY). containerd >= 2.2.2 defaults config_path to certs.d:docker/certs.d, but its CRI
  pulls go through the transfer service, which takes a list of directories as one path and finds
  nothing, unless a local-pull option is set (C2-DEFAULT, C2-TRANSFER).
- `mirrors` (or, in 1.x, `configs.*.tls`) together with `config_path`: the CRI plugin refuses to
  load, and kubelet cannot pull at all (C1-BOTH).
- A hosts directory for `host:port` is `<dir>/host_port_`, then `<dir>/host:port`, then
  `<dir>/_default`, the first of the first directory that has one (hosts.go HostDirFromRoot).
- hosts.toml: `[host."<url>"]` entries in file order, then the `server` entry (absent: the
  registry's default; written: taken literally, `https://` added when no scheme), each with `ca`
  (relative to the directory), `skip_verify`, `capabilities` (default pull, resolve, push) and
  `override_path` (H-ORDER). containerd 1.6 cannot decode a hosts.toml without a `[host]` table
  and falls back as without one (H-NOHOST16). Without a hosts.toml, the directory's `*.crt` files
  are CAs of the default server (H-CERTFILES).
- The sandbox (pause) image: 1.x `sandbox_image` (default registry.k8s.io/pause:3.6 in 1.6),
  2.x `pinned_images.sandbox` (default registry.k8s.io/pause:3.10).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import posixpath
from dataclasses import dataclass
from typing import Any

from probe.node.files import (
    Problems,
    boolean,
    dig,
    endpoint,
    load_toml,
    string_list,
    table,
)
from probe.node.hostfs import HostFS
from probe.node.registries import (
    ALL_CAPABILITIES,
    ANY_REGISTRY,
    PULL_CAPABILITIES,
    NodeRegistries,
    PullPlan,
    RegistryHost,
    default_host,
)

CONFIG = "/etc/containerd/config.toml"
DEFAULT_HOSTS_DIRS = ("/etc/containerd/certs.d", "/etc/docker/certs.d")
MAX_IMPORTS = 32  # files merged into config.toml; more is not a node's configuration
MAX_HOSTS_DIRECTORIES = 256  # registry directories read per hosts directory

_V1 = ("plugins", "cri")
_V2 = ("plugins", "io.containerd.grpc.v1.cri")
_IMAGES = ("plugins", "io.containerd.cri.v1.images")
_SANDBOX_DEFAULT = {1: "registry.k8s.io/pause:3.6", 2: "registry.k8s.io/pause:3.10"}
_STARTS_NOT = "containerd would not start with it"
_NO_CRI = "the CRI plugin does not load: kubelet cannot pull any image"


@dataclass(frozen=True)
class ContainerdConfig:
    """What config.toml (with its imports) says about registries."""

    major: int  # the containerd release line modelled: 1 (1.6/1.7) or 2
    version: int  # the config file's version
    config_path: tuple[str, ...] | None  # None: unset
    mirrors: dict[str, list[str]]  # legacy registry.mirrors: name -> endpoints
    tls: dict[str, tuple[tuple[str, ...], bool]]  # legacy configs: endpoint host -> (cas, skip)
    local_pull: bool  # 2.x: CRI pulls do not go through the transfer service
    sandbox_image: str
    sandbox_source: str
    files: tuple[str, ...]  # config.toml and the imports merged into it


def read_containerd(fs: HostFS, runtime: str = "containerd") -> NodeRegistries:
    """containerd's registries: its hosts directories or legacy settings, and the sandbox image."""
    problems = Problems(runtime)
    config = read_config(fs, problems)
    registries = _registries(fs, config, problems, runtime)
    return registries


def read_config(fs: HostFS, problems: Problems) -> ContainerdConfig:
    data, files = _merged(fs, problems)
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        problems.add(CONFIG, f"version {version!r} is not a number", _STARTS_NOT)
        version = 1
    plugins = table(data.get("plugins"), "plugins", CONFIG, problems)
    major = 2 if version >= 3 or _IMAGES[1] in plugins else 1
    if major == 2:
        cri = table(dig(data, _IMAGES), ".".join(_IMAGES), CONFIG, problems)
        old = table(dig(data, _V2), ".".join(_V2), CONFIG, problems)  # migrated by 2.x
        registry = table(cri.get("registry"), "registry", CONFIG, problems) or table(
            old.get("registry"), "registry", CONFIG, problems
        )
        sandbox = dig(cri, ("pinned_images", "sandbox")) or old.get("sandbox_image")
    else:
        keys = _V1 if version == 1 else _V2
        cri = table(dig(data, keys), ".".join(keys), CONFIG, problems)
        registry = table(cri.get("registry"), "registry", CONFIG, problems)
        sandbox = cri.get("sandbox_image")
    config_path = registry.get("config_path")
    paths: tuple[str, ...] | None = None
    if isinstance(config_path, str) and config_path.strip():
        paths = tuple(p for p in config_path.split(":") if p)
    elif config_path not in (None, ""):
        problems.add(CONFIG, "registry.config_path must be a string", _STARTS_NOT)
    mirrors = _legacy_mirrors(registry, problems)
    tls = _legacy_tls(registry, problems) if major == 1 else {}
    configs = registry.get("configs")
    if (
        major == 2
        and isinstance(configs, dict)
        and any(isinstance(c, dict) and "tls" in c for c in configs.values())
    ):
        problems.add(CONFIG, "registry.configs.<host>.tls is gone in containerd 2.x", "ignored")
    if paths is not None and (mirrors or tls):
        what = "registry.mirrors" if mirrors else "registry.configs.<host>.tls"
        problems.add(CONFIG, f"{what} cannot be set together with registry.config_path", _NO_CRI)
    local_pull = bool(mirrors) or bool(registry.get("configs")) or bool(registry.get("auths"))
    images = cri if major == 2 else {}
    local_pull = local_pull or images.get("discard_unpacked_layers") is True
    local_pull = local_pull or images.get("use_local_image_pull") is True
    local_pull = local_pull or images.get("image_pull_with_sync_fs") is True
    downloads = images.get("max_concurrent_downloads")
    local_pull = local_pull or (isinstance(downloads, int) and downloads != 3)
    local_pull = local_pull or images.get("disable_snapshot_annotations") is False
    sandbox_source = CONFIG if isinstance(sandbox, str) and sandbox else "default"
    if not isinstance(sandbox, str) or not sandbox:
        sandbox = _SANDBOX_DEFAULT[major]
    return ContainerdConfig(
        major, version, paths, mirrors, tls, local_pull, sandbox, sandbox_source, files
    )


def _merged(fs: HostFS, problems: Problems) -> tuple[dict[str, Any], tuple[str, ...]]:
    """config.toml with its `imports` merged in, breadth first, each file once."""
    text = fs.read_text(CONFIG)
    if text is None:
        return {}, ()
    root = load_toml(text, CONFIG, problems, _STARTS_NOT)
    if root is None:
        return {}, (CONFIG,)
    version = root.get("version", 1)
    whole_tables = not (isinstance(version, int) and version >= 3)  # 1.x replaces plugin tables
    merged: dict[str, Any] = dict(root)
    seen = [CONFIG]
    queue = [(CONFIG, root)]
    while queue and len(seen) <= MAX_IMPORTS:
        source, data = queue.pop(0)
        for path in _imports(fs, source, data, problems):
            if path in seen:
                continue  # containerd skips a file imported twice (and cycles)
            seen.append(path)
            imported_text = fs.read_text(path)
            if imported_text is None:
                problems.add(source, f"imports {path}, which cannot be read", _STARTS_NOT)
                continue
            imported = load_toml(imported_text, path, problems, _STARTS_NOT)
            if imported is None:
                continue
            _merge(merged, imported, whole_tables)
            queue.append((path, imported))
    if len(seen) > MAX_IMPORTS:
        problems.add(CONFIG, f"imports more than {MAX_IMPORTS} files", "the rest are not read")
    return merged, tuple(seen)


def _imports(fs: HostFS, source: str, data: dict[str, Any], problems: Problems) -> list[str]:
    found: list[str] = []
    for entry in string_list(data.get("imports"), "imports", source, problems):
        path = entry if entry.startswith("/") else posixpath.join(posixpath.dirname(source), entry)
        directory, name = posixpath.split(posixpath.normpath(path))
        if any(c in name for c in "*?["):
            found.extend(
                f"{directory}/{n}" for n in fs.list_dir(directory) if fnmatch.fnmatchcase(n, name)
            )
        elif fs.kind(path) is None:
            problems.add(source, f"imports {entry}, which does not exist", _STARTS_NOT)
        else:
            found.append(posixpath.normpath(path))
    return found


def _merge(into: dict[str, Any], data: dict[str, Any], whole_tables: bool) -> None:
    """containerd 1.x: each imported `plugins.<id>` table replaces the whole table, other keys
    are overwritten; 2.x merges key by key (config.go mergeConfig)."""
    for key, value in data.items():
        if key in ("imports", "version"):
            continue
        if key == "plugins" and isinstance(value, dict) and isinstance(into.get(key), dict):
            for plugin, settings in value.items():
                if whole_tables or not isinstance(into["plugins"].get(plugin), dict):
                    into["plugins"][plugin] = settings
                else:
                    _deep_merge(into["plugins"][plugin], settings)
        elif not whole_tables and isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _deep_merge(into: dict[str, Any], data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _legacy_mirrors(registry: dict[str, Any], problems: Problems) -> dict[str, list[str]]:
    mirrors: dict[str, list[str]] = {}
    for name, settings in table(registry.get("mirrors"), "mirrors", CONFIG, problems).items():
        where = f"registry.mirrors.{name!r}.endpoint"
        endpoints = string_list(dig(settings, ("endpoint",)), where, CONFIG, problems)
        mirrors[str(name)] = endpoints
    return mirrors


def _legacy_tls(
    registry: dict[str, Any], problems: Problems
) -> dict[str, tuple[tuple[str, ...], bool]]:
    """`configs.<endpoint host>.tls`: CA files (relative to containerd's working directory,
    which is / under systemd) and insecure_skip_verify, per endpoint host."""
    found: dict[str, tuple[tuple[str, ...], bool]] = {}
    for host, settings in table(registry.get("configs"), "configs", CONFIG, problems).items():
        tls = dig(settings, ("tls",))
        if tls is None:
            continue
        where = f"registry.configs.{host!r}.tls"
        tls = table(tls, where, CONFIG, problems)
        cas = string_list(tls.get("ca_file"), f"{where}.ca_file", CONFIG, problems)
        skip = boolean(
            tls.get("insecure_skip_verify"), f"{where}.insecure_skip_verify", CONFIG, problems
        )
        found[str(host).lower()] = (tuple(c if c.startswith("/") else f"/{c}" for c in cas), skip)
    return found


# --- where the hosts come from -------------------------------------------------------------


def _registries(
    fs: HostFS, config: ContainerdConfig, problems: Problems, runtime: str
) -> NodeRegistries:
    line = f"containerd {config.major}.x (config version {config.version})"
    plans: dict[str, PullPlan] = {}
    fallback: PullPlan | None = None
    dirs = config.config_path
    if not config.files:
        rule = (
            f"no {CONFIG}: containerd's defaults, no hosts directory is read "
            "(config_path unset), each registry reached directly"
        )
        dirs = ()
    elif dirs is None and config.major == 2 and config.local_pull and not config.mirrors:
        dirs = DEFAULT_HOSTS_DIRS
        rule = (
            f"{line}: config_path unset, containerd >= 2.2.2 reads {':'.join(dirs)} for pulls "
            "outside the transfer service"
        )
    elif dirs is None:
        rule = f"{line}: config_path unset, so no hosts directory is read (certs.d is ignored)"
        if config.mirrors:
            rule += "; the legacy registry.mirrors apply"
        for directory in DEFAULT_HOSTS_DIRS:
            ignored = [
                n for n in fs.directories(directory) if fs.kind(f"{directory}/{n}/hosts.toml")
            ]
            if ignored:
                problems.add(
                    directory,
                    f"holds hosts.toml files ({', '.join(ignored[:5])}) that containerd does not "
                    f"read: {CONFIG} sets no registry config_path",
                    "their mirrors and CAs are never used; set config_path to use them",
                )
        plans, fallback = _legacy_plans(config, runtime, rule, problems)
        dirs = ()
    elif config.major == 2 and len(dirs) > 1 and not config.local_pull:
        problems.add(
            CONFIG,
            f"config_path lists {len(dirs)} directories: containerd 2.1+ pulls through the "
            "transfer service, which takes the list as one path (containerd issue #12808)",
            "no hosts.toml is read: every registry is reached directly",
        )
        rule = (
            f"{line}: config_path {':'.join(dirs)}, taken as one path by the transfer service: "
            "no hosts directory is read"
        )
        dirs = ()
    else:
        rule = f"{line}: config_path {':'.join(dirs)}"
    if dirs:
        plans, fallback = _hosts_dir_plans(fs, dirs, config, runtime, rule, problems)
    return NodeRegistries(
        runtime,
        rule,
        plans,
        fallback,
        host_tls=dict(config.tls),
        sandbox_image=config.sandbox_image,
        sandbox_source=config.sandbox_source,
        problems=tuple(problems.found),
        hosts_dirs=dirs,
        localhost_plain=config.major == 1,
        # Without hosts directories the CRI plugin's legacy path builds the hosts (image_pull.go
        # registryEndpoints): pull and resolve only.
        default_capabilities=ALL_CAPABILITIES if dirs else PULL_CAPABILITIES,
    )


def _legacy_plans(
    config: ContainerdConfig, runtime: str, rule: str, problems: Problems
) -> tuple[dict[str, PullPlan], PullPlan | None]:
    """registry.mirrors: the name's endpoints (or `"*"`'s) in order, then the registry itself
    unless an endpoint is on its host; TLS from configs.<endpoint host>.tls (image_pull.go
    registryEndpoints, getTLSConfig)."""
    plans: dict[str, PullPlan] = {}
    fallback: PullPlan | None = None
    for name, endpoints in config.mirrors.items():
        hosts: list[RegistryHost] = []
        for index, url in enumerate(endpoints):
            where = f"registry.mirrors.{name!r}.endpoint[{index}]"
            found = endpoint(url, where, CONFIG, problems)
            if found is None:
                continue
            address, path = found
            cas, skip = config.tls.get(address.label, ((), False))
            hosts.append(
                RegistryHost(
                    address,
                    path or "/v2",
                    PULL_CAPABILITIES,
                    cas,
                    skip,
                    CONFIG,
                    upstream=name != ANY_REGISTRY and address.label == name,
                )
            )
        if name == ANY_REGISTRY:
            fallback = PullPlan(ANY_REGISTRY, tuple(hosts), runtime, rule, CONFIG)
            continue
        try:
            upstream = default_host(name, localhost_plain=config.major == 1)
        except ValueError as error:
            problems.add(CONFIG, f"registry.mirrors names {name!r}: {error}", "not used")
            continue
        if not any(h.address.label == name for h in hosts):
            cas, skip = config.tls.get(upstream.address.label, ((), False))
            hosts.append(
                RegistryHost(
                    upstream.address,
                    "/v2",
                    PULL_CAPABILITIES,
                    cas,
                    skip or upstream.skip_verify,
                    "default",
                    upstream=True,
                )
            )
        plans[name] = PullPlan(name, _unique(hosts), runtime, rule, CONFIG)
    return plans, fallback


def _hosts_dir_plans(
    fs: HostFS,
    dirs: tuple[str, ...],
    config: ContainerdConfig,
    runtime: str,
    rule: str,
    problems: Problems,
) -> tuple[dict[str, PullPlan], PullPlan | None]:
    names: list[str] = []
    for directory in dirs:
        listed = fs.directories(directory)
        if len(listed) > MAX_HOSTS_DIRECTORIES:
            problems.add(
                directory,
                f"has more than {MAX_HOSTS_DIRECTORIES} registry directories",
                "the rest are not read",
            )
            listed = listed[:MAX_HOSTS_DIRECTORIES]
        for entry in listed:
            name = _registry_name(entry)
            if name == "_default" or name in names:
                continue
            try:
                default_host(name)
            except ValueError as error:
                problems.add(
                    f"{directory}/{entry}", f"is not a registry's name: {error}", "never used"
                )
                continue
            names.append(name)
    plans: dict[str, PullPlan] = {}
    for name in names:
        found = host_directory(fs, dirs, name)
        if found is None or found.endswith("/_default"):
            continue  # an earlier directory's _default stands for it
        plan = _directory_plan(fs, found, name, config, runtime, rule, problems)
        if plan is not None:
            plans[name] = plan
    fallback = None
    default_dir = next((f"{d}/_default" for d in dirs if fs.is_dir(f"{d}/_default")), None)
    if default_dir is not None:
        fallback = _directory_plan(fs, default_dir, ANY_REGISTRY, config, runtime, rule, problems)
    return plans, fallback


def host_directory(fs: HostFS, dirs: tuple[str, ...], name: str) -> str | None:
    """The hosts directory containerd uses for `name` (hosts.go HostDirFromRoot): per directory
    of config_path, `host_port_`, then `host:port`, then `_default`."""
    host, colon, port = name.rpartition(":")
    candidates = [f"{host}_{port}_"] if colon and port.isdigit() else []
    candidates += [name, "_default"]
    for directory in dirs:
        for candidate in candidates:
            path = f"{directory}/{candidate}"
            if fs.kind(path) is not None:
                return path
    return None


def _registry_name(directory: str) -> str:
    """`host_5000_` (containerd's spelling for `host:5000`) → `host:5000`."""
    if directory.endswith("_") and directory.count("_") >= 2:
        host, _, port = directory[:-1].rpartition("_")
        if port.isdigit() and host:
            return f"{host}:{port}"
    return directory


def _directory_plan(
    fs: HostFS,
    directory: str,
    name: str,
    config: ContainerdConfig,
    runtime: str,
    rule: str,
    problems: Problems,
) -> PullPlan | None:
    """The hosts of one registry directory: its hosts.toml, or its certificate files."""
    source = f"{directory}/hosts.toml"
    text = fs.read_text(source)
    data = None
    if text is not None and text.strip():
        data = load_toml(
            text, source, problems, "containerd ignores it and uses the directory's *.crt files"
        )
        if data is not None and config.major == 1 and not isinstance(data.get("host"), dict):
            problems.add(
                source,
                'has no [host."..."] table, which containerd 1.6 cannot decode '
                '("invalid `host` tree", containerd issue #10027)',
                "containerd 1.6 ignores the file and uses the directory's *.crt files; "
                "add a [host] table to make it apply",
            )
            data = None
    if data is None:
        cas = tuple(fs.files(directory, "*.crt"))
        upstream = _default_upstream(name, config, cas, False, ALL_CAPABILITIES, "/v2", directory)
        return PullPlan(name, (upstream,), runtime, rule, directory)
    hosts: list[RegistryHost] = []
    for url, settings in table(data.get("host"), "host", source, problems).items():
        where = f"host.{url!r}"
        if not isinstance(settings, dict):
            problems.add(source, f"{where} must be a table", "ignored")
            continue
        found = _host_entry(fs, url, settings, where, directory, source, problems)
        if found is not None:
            hosts.append(found)
    capabilities = _capabilities(data, "capabilities", source, problems)
    cas = _cas(data.get("ca"), "ca", directory, source, problems)
    skip = boolean(data.get("skip_verify"), "skip_verify", source, problems)
    server = data.get("server")
    if server is not None and not isinstance(server, str):
        problems.add(source, "server must be a string", "the registry's default is used")
        server = None
    if server:
        # Written, the server is taken literally: `https://docker.io` is docker.io:443.
        found = _host_entry(fs, server, data, "server", directory, source, problems)
        if found is not None:
            hosts.append(
                RegistryHost(
                    found.address, found.path, capabilities, cas, skip, source, upstream=True
                )
            )
    else:
        hosts.append(_default_upstream(name, config, cas, skip, capabilities, "/v2", source))
    missing = [ca for host in hosts for ca in host.ca_files if fs.kind(ca) != "file"]
    problem = None
    if missing:
        problem = f"{source} names the CA file {missing[0]}, which containerd cannot read"
        problems.add(
            source,
            f"names the CA file {missing[0]}, which does not exist",
            "every pull of this registry fails before any host is tried",
        )
    return PullPlan(name, _unique(hosts), runtime, rule, source, problem)


def _default_upstream(
    name: str,
    config: ContainerdConfig,
    cas: tuple[str, ...],
    skip: bool,
    capabilities: frozenset[str],
    path: str,
    source: str,
) -> RegistryHost:
    """The registry's own server with the directory's settings; for `_default` a placeholder
    that `NodeRegistries.plan` replaces with each registry's default."""
    template = name == ANY_REGISTRY
    base = default_host("_default.invalid" if template else name, localhost_plain=config.major == 1)
    return RegistryHost(
        base.address,
        path,
        capabilities,
        cas,
        skip or base.skip_verify,
        source,
        upstream=True,
        template=template,
    )


def _host_entry(
    fs: HostFS,
    url: str,
    settings: dict[str, Any],
    where: str,
    directory: str,
    source: str,
    problems: Problems,
) -> RegistryHost | None:
    """One `[host."<url>"]` (or the server): `https://` added when there is no scheme
    (hosts.go parseHostConfig), `/v2` appended unless the path ends in it or override_path."""
    text = url if url.startswith(("http://", "https://")) else f"https://{url}"
    found = endpoint(text, where, source, problems)
    if found is None:
        return None
    address, path = found
    override = boolean(settings.get("override_path"), f"{where}.override_path", source, problems)
    if not override and not path.endswith("/v2"):
        path = f"{path}/v2"
    return RegistryHost(
        address,
        path or "/v2",
        _capabilities(settings, f"{where}.capabilities", source, problems),
        _cas(settings.get("ca"), f"{where}.ca", directory, source, problems),
        boolean(settings.get("skip_verify"), f"{where}.skip_verify", source, problems),
        source,
        override_path=override,
    )


def _capabilities(
    settings: dict[str, Any], where: str, source: str, problems: Problems
) -> frozenset[str]:
    if "capabilities" not in settings:
        return ALL_CAPABILITIES
    value = settings["capabilities"]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        # containerd decodes it into []string: a bare string fails the whole file
        problems.add(source, f"{where} must be a list of strings", "the registry cannot be pulled")
        return frozenset()
    unknown = sorted(set(value) - ALL_CAPABILITIES - {"referrers"})
    if unknown:
        problems.add(
            source,
            f"{where} has unknown {', '.join(map(repr, unknown))}",
            "the registry cannot be pulled",
        )
    return frozenset(value) & ALL_CAPABILITIES


def _cas(
    value: Any, where: str, directory: str, source: str, problems: Problems
) -> tuple[str, ...]:
    """CA files, relative to the hosts directory (hosts.go makeAbsPath)."""
    names = string_list(value, where, source, problems)
    return tuple(n if n.startswith("/") else f"{directory}/{n}" for n in names)


def _unique(hosts: list[RegistryHost]) -> tuple[RegistryHost, ...]:
    """Hosts in order, a host listed twice tried (and probed) once: the first entry's settings
    count, and it is the registry's own when either entry was."""
    found: dict[tuple[str, str], RegistryHost] = {}
    for host in hosts:
        key = (host.address.url, host.path)
        first = found.get(key)
        if first is None:
            found[key] = host
        elif host.upstream and not first.upstream:
            found[key] = dataclasses.replace(first, upstream=True)
    return tuple(found.values())
