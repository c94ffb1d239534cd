"""Reading the runtimes' configuration files defensively: whatever a node file holds, the reader
gets values or named problems, never an exception.

A node file is outside input: TOML nested thousands deep, a port `abc`, a string where a list
belongs. Each parser here turns that into a `NodeProblem` naming the file (and the key), says
what the runtime does with it (`effect`), and lets the rest of the node be read.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

import yaml

from probe.config import RegistryAddress, parse_host_port
from probe.display import describe_input
from probe.node.hostfs import HostFS
from probe.node.problems import NodeProblem


@dataclass
class Problems:
    """Problems found in the files of one runtime, in the order they were found."""

    runtime: str
    found: list[NodeProblem] = field(default_factory=list)

    def add(self, source: str, message: str, effect: str = "", line: int | None = None) -> None:
        problem = NodeProblem(source, f"{source}: {message}", line, effect, self.runtime)
        if problem not in self.found:
            self.found.append(problem)


def load_toml(text: str, source: str, problems: Problems, effect: str) -> dict[str, Any] | None:
    """A TOML document, or None with a problem (`effect`: what the runtime does then)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        problems.add(source, f"not valid TOML: {error}", effect)
    except RecursionError:
        problems.add(source, "not valid TOML: nested too deeply", effect)
    return None


# Entries PyYAML may copy for merge keys (`<<: *base`): it copies a merged mapping's entries
# into every mapping that merges it, so anchors merging each other nine times over are 9^8
# entries of a 700-byte file (a merge-key bomb: minutes and gigabytes).
MAX_MERGED_ENTRIES = 100_000


class _MergeBomb(yaml.YAMLError):
    problem = f"its merge keys (<<) copy more than {MAX_MERGED_ENTRIES} entries"


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting the entries its merge keys copy."""

    merged = 0

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        merges = any(key.tag == "tag:yaml.org,2002:merge" for key, _ in node.value)
        super().flatten_mapping(node)
        if merges:
            self.merged += len(node.value)
            if self.merged > MAX_MERGED_ENTRIES:
                raise _MergeBomb


def load_yaml(text: str, source: str, problems: Problems, effect: str) -> Any:
    """A YAML document (safe loader), or None with a problem. The message is only the problem
    and its line: PyYAML's own quotes the line, which may hold a registry password. A merge-key
    bomb is refused before it costs more than a fraction of a second."""
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506  # a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(error, "problem", None) or "syntax error"
        problems.add(source, f"not valid YAML: {what}", effect, line)
    except RecursionError:
        problems.add(source, "not valid YAML: nested too deeply", effect)
    return None


def load_json(text: str, source: str, problems: Problems, effect: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        problems.add(source, f"not valid JSON ({error.msg})", effect, error.lineno)
    except RecursionError:
        problems.add(source, "not valid JSON: nested too deeply", effect)
    return None


def dig(data: Any, keys: tuple[str, ...]) -> Any:
    """`data[k1][k2]...`, or None when a level is missing or not a table."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def string_list(value: Any, where: str, source: str, problems: Problems) -> list[str]:
    """A string or a list of strings (TOML and YAML let either stand); else a problem."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    problems.add(source, f"{where} must be a string or a list of strings", "ignored")
    return []


def boolean(value: Any, where: str, source: str, problems: Problems) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    problems.add(source, f"{where} must be true or false, not {describe_input(value)}", "ignored")
    return False


def table(value: Any, where: str, source: str, problems: Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    problems.add(source, f"{where} must be a table", "ignored")
    return {}


def endpoint(
    url: str, where: str, source: str, problems: Problems, *, default_scheme: str = "https"
) -> tuple[RegistryAddress, str] | None:
    """(address, path) of an endpoint URL as a runtime writes it (`https://host[:port][/path]`,
    or a bare `host[:port]`); None with a problem when the runtime could not use it."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = default_scheme, text
    host, slash, path = rest.partition("/")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        problems.add(
            source, f"{where}: {describe_input(url)} has the scheme {scheme!r}", "unusable"
        )
        return None
    if not host:
        problems.add(source, f"{where}: {describe_input(url)} names no host", "unusable")
        return None
    try:
        named = parse_host_port(host)
    except ValueError as error:
        problems.add(source, f"{where}: {error}", "this host is not used")
        return None
    return RegistryAddress(scheme, named.host, named.port), (slash + path).rstrip("/")


def unreadable_cas(
    fs: HostFS, cas: tuple[str, ...], source: str, problems: Problems, runtime: str
) -> str | None:
    """The first CA file a registry's hosts name that the node does not have, as a problem
    (the runtime fails every pull of that registry before trying any host), or None."""
    missing = next((ca for ca in cas if fs.kind(ca) != "file"), None)
    if missing is None:
        return None
    problems.add(
        source,
        f"names the CA file {missing}, which does not exist",
        "every pull of this registry fails before any host is tried",
    )
    return f"{source} names the CA file {missing}, which {runtime} cannot read"
