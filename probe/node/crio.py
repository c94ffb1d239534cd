"""CRI-O's registry settings: containers-registries.conf(5) and crio.conf's pause image.

Sources: containers/image docs/containers-registries.conf.5.md and .d.5.md,
pkg/sysregistriesv2/system_registries_v2.go; cri-o docs/crio.conf.5.md and crio.conf.d.5.md.

- registries.conf (v2): `[[registry]]` tables by `prefix` (defaulting to `location`; the longest
  matching prefix applies), each with its `[[registry.mirror]]` tried in order and then the
  `location`; `insecure` allows plain HTTP and unverified TLS (R-V2); `blocked` refuses pulls.
  Version 1 files have `[registries.search|insecure|block] registries = [...]` and no mirrors
  (R-V1).
- registries.conf.d/*.conf (only `.conf`), in name order after registries.conf: a `[[registry]]`
  with the same prefix replaces the earlier one whole; `unqualified-search-registries` is
  replaced when set (R-DROPIN).
- `[crio.image] pause_image` in crio.conf, then crio.conf.d/*.conf in name order, the last wins.
- CAs: /etc/containers/certs.d/<host[:port]>/*.crt, then /etc/docker/certs.d.
"""

from __future__ import annotations

from typing import Any

from probe.node.files import Problems, boolean, dig, endpoint, load_toml, string_list, table
from probe.node.hostfs import HostFS
from probe.node.registries import (
    ALL_CAPABILITIES,
    NodeRegistries,
    PullPlan,
    RegistryHost,
)

REGISTRIES_CONF = "/etc/containers/registries.conf"
REGISTRIES_CONF_D = "/etc/containers/registries.conf.d"
CRIO_CONF = "/etc/crio/crio.conf"
CRIO_CONF_D = "/etc/crio/crio.conf.d"
CERTS_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
DEFAULT_PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # crio.conf(5), CRI-O 1.31-1.33
_IGNORED = "CRI-O ignores this file"


def read_crio(fs: HostFS, runtime: str = "crio") -> NodeRegistries:
    problems = Problems(runtime)
    tables: dict[str, tuple[dict[str, Any], str]] = {}  # prefix -> (table, file)
    insecure_v1: list[tuple[str, str]] = []
    blocked_v1: list[tuple[str, str]] = []
    read = []
    for path in [REGISTRIES_CONF, *fs.files(REGISTRIES_CONF_D, "*.conf")]:
        text = fs.read_text(path)
        if text is None:
            continue
        data = load_toml(text, path, problems, _IGNORED)
        if data is None:
            continue
        read.append(path)
        for entry in data.get("registry", []) if isinstance(data.get("registry"), list) else []:
            if not isinstance(entry, dict):
                problems.add(path, "each [[registry]] must be a table", "ignored")
                continue
            prefix = entry.get("prefix") or entry.get("location")
            if not isinstance(prefix, str) or not prefix:
                problems.add(path, "a [[registry]] has neither prefix nor location", "ignored")
                continue
            tables[prefix] = (entry, path)  # a later file's table replaces the whole one
        v1 = table(data.get("registries"), "registries", path, problems)
        insecure_v1 += [
            (r, path)
            for r in string_list(
                dig(v1, ("insecure", "registries")),
                "registries.insecure.registries",
                path,
                problems,
            )
        ]
        blocked_v1 += [
            (r, path)
            for r in string_list(
                dig(v1, ("block", "registries")), "registries.block.registries", path, problems
            )
        ]
    rule = (
        f"CRI-O: {', '.join(read)}: each registry's mirrors in order, then its location"
        if read
        else f"CRI-O: no {REGISTRIES_CONF}: each registry reached directly"
    )
    plans: dict[str, PullPlan] = {}
    for name, source in insecure_v1:
        plan = _plan(fs, name, [], name, True, source, rule, problems)
        if plan is not None:
            plans[name] = plan
    for name, source in blocked_v1:
        plans[name] = PullPlan(name, (), runtime, rule, source, f"{source} blocks {name}")
    for prefix, (entry, source) in tables.items():
        where = f"[[registry]] {prefix!r}"
        location = entry.get("location") or prefix
        if not isinstance(location, str) or prefix.startswith("*."):
            continue  # a wildcard prefix without a location names no host
        if boolean(entry.get("blocked"), f"{where}.blocked", source, problems):
            plans[_host_part(prefix)] = PullPlan(
                _host_part(prefix), (), runtime, rule, source, f"{source} blocks {prefix}"
            )
            continue
        mirrors = entry.get("mirror", [])
        if not isinstance(mirrors, list):
            problems.add(source, f"{where}: mirror must be an array of tables", "ignored")
            mirrors = []
        insecure = boolean(entry.get("insecure"), f"{where}.insecure", source, problems)
        found = _plan(fs, prefix, mirrors, location, insecure, source, rule, problems)
        if found is not None:
            plans[found.registry] = found
    image, image_source = _pause_image(fs, problems)
    return NodeRegistries(
        runtime,
        rule,
        plans,
        sandbox_image=image,
        sandbox_source=image_source,
        problems=tuple(problems.found),
        localhost_plain=False,
    )


def _host_part(location: str) -> str:
    return location.split("/", 1)[0].lower()


def _plan(
    fs: HostFS,
    prefix: str,
    mirrors: list[Any],
    location: str,
    insecure: bool,
    source: str,
    rule: str,
    problems: Problems,
) -> PullPlan | None:
    hosts: list[RegistryHost] = []
    for index, mirror in enumerate(mirrors):
        where = f"[[registry.mirror]] {index} of {prefix!r}"
        place = mirror.get("location") if isinstance(mirror, dict) else None
        if not isinstance(place, str) or not place:
            problems.add(source, f"{where} needs a location", "ignored")
            continue
        skip = boolean(mirror.get("insecure"), f"{where}.insecure", source, problems)
        host = _host(fs, place, skip, source, where, problems, upstream=False)
        if host is not None:
            hosts.append(host)
    own = _host(fs, location, insecure, source, f"{prefix!r}", problems, upstream=True)
    if own is None:
        return None
    hosts.append(own)
    return PullPlan(_host_part(prefix), tuple(hosts), "crio", rule, source)


def _host(
    fs: HostFS,
    location: str,
    insecure: bool,
    source: str,
    where: str,
    problems: Problems,
    *,
    upstream: bool,
) -> RegistryHost | None:
    found = endpoint(_host_part(location), where, source, problems)
    if found is None:
        return None
    address = found[0]
    cas = tuple(c for d in CERTS_DIRS for c in fs.files(f"{d}/{address.label}", "*.crt"))
    return RegistryHost(address, "/v2", ALL_CAPABILITIES, cas, insecure, source, upstream=upstream)


def _pause_image(fs: HostFS, problems: Problems) -> tuple[str, str]:
    image, source = DEFAULT_PAUSE_IMAGE, "default"
    for path in [CRIO_CONF, *fs.files(CRIO_CONF_D, "*.conf")]:
        text = fs.read_text(path)
        if text is None:
            continue
        data = load_toml(text, path, problems, _IGNORED)
        value = dig(data, ("crio", "image", "pause_image")) if data else None
        if isinstance(value, str) and value:
            image, source = value, path
    return image, source
