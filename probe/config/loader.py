"""The configuration: frozen values, and the strict YAML loader that builds them.

Contract: SPEC.md, "Configuration file (YAML)".

The loader walks the YAML node tree (`yaml.compose`, SafeLoader) rather than loaded Python values,
so every problem carries the line it is on, and it collects every problem before giving up: a user
fixing a ConfigMap should see the whole list at once, each as `PATH:LINE: KEY.PATH: what is wrong
(what is expected)`. Relative file paths in the file (`ca_file`, `credentials_file`, `host_root`)
are taken relative to the file's own directory, as Prometheus does for the files its config names.

Anchors, aliases and merge keys (`<<: *defaults`) are read as YAML defines them, but an alias
does not copy anything in the node tree: a mapping merged nine times, each merging the one before
nine times, is 9^8 mappings for a walker in a 700-byte file (a "merge-key bomb", YAML's billion
laughs). So the walk counts the entries it reads again through an alias or a merge, and a file
whose repetition passes `MAX_REPEATED_ENTRIES` is refused at once, at the line of the merge or
alias that took it there, before the walk costs more than a fraction of a second.

Exceptions: ConfigError (a file that cannot be used, with `problems`); ValueError from
parse_registry_arg (a bad `--registry`). Nothing else escapes, whatever the input.
"""

from __future__ import annotations

import difflib
import os
import re
import stat

import yaml

from probe.config.address import (
    HOST_PORT_FORMS,
    LISTEN_FORMS,
    REGISTRY_FORMS,
    HostPort,
    RegistryAddress,
    parse_host_port,
    parse_listen,
)
from probe.config.model import RUNTIMES, Config, DockerHubConfig, RegistryConfig
from probe.display import describe_input, escape
from probe.duration import ACCEPTED as DURATION_FORMS
from probe.duration import format_duration, parse_duration
from probe.images.reference import parse_reference

# ---------------------------------------------------------------------------------------------
# Loading

TOP_LEVEL_KEYS = (
    "interval",
    "timeout",
    "host_root",
    "listen",
    "discover",
    "registries",
    "dockerhub",
    "runtimes",
    "images",
    "sandbox_image",
)
REGISTRY_KEYS = ("host", "ca_file", "insecure_skip_verify", "credentials_file", "blob_hosts")
DOCKERHUB_KEYS = ("ratelimit_interval", "credentials_file")

IMAGE_FORMS = "nginx:1.27 or registry.example.com:5000/team/app@sha256:..."
_FILE_FORMS = "a readable file on the agent's own filesystem, not under host_root"
_MAX_CONFIG_BYTES = 1 << 20  # a ConfigMap holds at most 1 MiB; more is not a config file
# Entries (mapping keys and list items) read a second time or more through an alias or a merge
# key. A config that gives 2,000 registries `<<: *defaults` of 5 keys reads 10,000 again; a
# merge-key bomb passes this within a tenth of a second of walking.
MAX_REPEATED_ENTRIES = 100_000

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"
_UNQUOTED_IPV6 = re.compile(r"(?:^|[:\s-])\s*\[[0-9A-Fa-f:.%]*\]:")
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class ConfigError(Exception):
    """A configuration file that cannot be used. `problems` holds every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[str]]]:
        return (type(self), (self.problems,))


def parse_registry_arg(value: str) -> RegistryConfig:
    """A registry from `--registry HOST[:PORT]`, `http://HOST:PORT` or `https://HOST[:PORT]`.

    Raises ValueError saying what is wrong; the same rules as `host:` in the file.
    """
    return RegistryConfig(RegistryAddress.parse(value), source="flag")


def load_config(path: str) -> Config:
    """Read and check a YAML configuration file. An empty file is the default Config.

    Raises ConfigError listing every problem found, each with its line and key path.
    """
    root = _compose(path, _read_text(path))
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL):
        return Config()
    reader = _Reader(path)
    config = reader.config(root)
    if reader.problems or config is None:
        raise ConfigError(reader.sorted_problems())
    return config


def validate_file(path: str) -> tuple[bool, str]:
    """What `registry-probe validate CONFIG` prints: (valid, a summary or every problem)."""
    try:
        config = load_config(path)
    except ConfigError as error:
        count = len(error.problems)
        header = f"{path}: invalid, {count} problem{'' if count == 1 else 's'}:"
        return False, "\n".join([header, *error.problems])
    if config.registries:
        names = ", ".join(r.address.shown for r in config.registries)
        registries = f"registries {names}"
    else:
        registries = "no registries named (Docker Hub by default)"
    if config.discover:
        registries += ", plus those found in the node's runtime config"
    return True, (
        f"{path}: valid: {registries}; interval {format_duration(config.interval)}, "
        f"timeout {format_duration(config.timeout)}"
    )


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the file: {error.strerror or error}"]) from None
    except ValueError:  # a NUL in the path
        raise ConfigError([f"{path}: cannot read the file: the path contains a NUL"]) from None
    if len(data) > _MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than 1 MiB (expected a configuration file)"])
    try:
        return data.decode("utf-8-sig")  # a UTF-8 byte order mark is allowed and dropped
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start]
        raise ConfigError(
            [f"{path}:{line}: not UTF-8 text: byte 0x{byte:02x} (expected a UTF-8 YAML file)"]
        ) from None


def _compose(path: str, text: str) -> yaml.Node | None:
    """The YAML node tree; syntax errors become a ConfigError with their line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        what = ", ".join(part for part in (error.context, error.problem) if part) or "syntax error"
        what = escape(" ".join(what.split()))  # a problem is one line of plain text
        where = f"{path}:{mark.line + 1}" if mark else path
        column = f" (at column {mark.column + 1})" if mark else ""
        lines = text.splitlines()
        if mark and mark.line < len(lines) and _UNQUOTED_IPV6.search(lines[mark.line]):
            # `listen: [::]:9741` is a YAML list followed by `:9741`: the classic IPv6 pitfall.
            column += ' (an address in brackets must be quoted: "[::]:9741")'
        raise ConfigError([f"{where}: invalid YAML: {what}{column}"]) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        code = ord(error.character) if isinstance(error.character, str) else error.character
        raise ConfigError(
            [f"{path}:{line}: invalid YAML: character #x{code:04x} is not allowed in YAML text"]
        ) from None
    except yaml.YAMLError as error:  # no other kind is raised by compose today; kept total
        what = escape(" ".join(str(error).split()))
        raise ConfigError([f"{path}: invalid YAML: {what}"]) from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level: `[[[[...` thousands deep.
        raise ConfigError([f"{path}: invalid YAML: nested too deeply"]) from None


def _key_path(parent: str, name: str) -> str:
    shown = name if _SIMPLE_KEY.fullmatch(name) else describe_input(name)
    return f"{parent}.{shown}" if parent else shown


def _got(node: yaml.Node) -> str:
    """What a node is, for a wrong-type message: `got a list`, `got "abc"`, `has no value`."""
    if isinstance(node, yaml.MappingNode):
        return "got a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "got a list"
    if node.tag == _NULL:
        return "has no value"
    return f"got {describe_input(node.value)}"


def _text(node: yaml.Node) -> str | None:
    """A scalar's text as written: `host: 10.0.0.1` and `listen: 9741` are read the same way."""
    if isinstance(node, yaml.ScalarNode) and node.tag != _NULL:
        return str(node.value)
    return None


class _Reader:
    """Walks the node tree once, building values and collecting problems with their lines.

    A node reached again through an alias or a merge is walked again (its key path differs);
    those repeated entries are counted, and past MAX_REPEATED_ENTRIES the walk stops with a
    ConfigError naming the outermost merge or alias that led there, and nothing else: what the
    walk found before is not the whole story.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.base = os.path.dirname(path)
        self.problems: list[tuple[int, str]] = []
        self._walked: set[int] = set()  # ids of the mappings and lists walked so far
        self._repeated = 0
        # What a walk that repeats too much is blamed on: a merge key or a repeated node.
        self._culprit: tuple[yaml.Node, str] | None = None

    def _walk(self, node: yaml.MappingNode | yaml.SequenceNode, key: str) -> None:
        """Count `node`'s entries when it is walked again; stop a walk that repeats too much."""
        if id(node) not in self._walked:
            self._walked.add(id(node))
            return
        self._repeated += len(node.value)
        if self._repeated > MAX_REPEATED_ENTRIES:
            culprit, where = self._culprit or (node, key or "(top level)")
            line = culprit.start_mark.line + 1
            raise ConfigError(
                [
                    f"{self.path}:{line}: {where}: aliases and merge keys repeat more than "
                    f"{MAX_REPEATED_ENTRIES} entries (expected a configuration, not a merge-key "
                    "bomb)"
                ]
            )

    def problem(self, node: yaml.Node, key: str, message: str) -> None:
        line = node.start_mark.line + 1
        where = f"{self.path}:{line}: {key}: " if key else f"{self.path}:{line}: "
        self.problems.append((line, where + message))

    def sorted_problems(self) -> list[str]:
        return [message for _, message in sorted(self.problems, key=lambda p: p[0])]

    # -- structure ---------------------------------------------------------------------------

    def mapping(
        self, node: yaml.Node, key: str, allowed: tuple[str, ...], expected: str
    ) -> dict[str, yaml.Node] | None:
        """A mapping's values by key, `<<` merges applied; unknown and repeated keys reported."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, key, f"{_got(node)} (expected {expected})")
            return None
        values: dict[str, yaml.Node] = {}
        # Blamed when the walk repeats too much: this mapping when an alias repeats it whole,
        # else the first merge key in it (set by _entries).
        self._culprit = (node, key or "(top level)") if id(node) in self._walked else None
        try:
            entries = self._entries(node, key, frozenset())
        finally:
            self._culprit = None
        for name, (key_node, value) in entries.items():
            if name in allowed:
                values[name] = value
                continue
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = (
                f"did you mean {close[0]}?" if close else f"expected one of: {', '.join(allowed)}"
            )
            self.problem(key_node, _key_path(key, name), f"unknown key ({hint})")
        return values

    def _entries(
        self, node: yaml.MappingNode, key: str, merging: frozenset[int]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        own: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        merged: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        self._walk(node, key)
        merging = merging | {id(node)}
        for key_node, value in node.value:
            if key_node.tag == _MERGE:
                if self._culprit is None:
                    self._culprit = (key_node, f"{key}.<<" if key else "<<")
                # YAML's merge key (`<<: *defaults`): keys written here win, then earlier sources.
                if isinstance(value, yaml.SequenceNode):
                    self._walk(value, key)
                    sources = list(value.value)
                else:
                    sources = [value]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        merge_key = f"{key}.<<" if key else "<<"
                        self.problem(source, merge_key, f"{_got(source)} (expected a mapping)")
                    elif id(source) not in merging:  # a mapping merged into itself adds nothing
                        for name, entry in self._entries(source, key, merging).items():
                            merged.setdefault(name, entry)
                continue
            key_name = _text(key_node)
            if key_name is None:
                what = "a mapping" if isinstance(key_node, yaml.MappingNode) else "a list"
                if isinstance(key_node, yaml.ScalarNode):
                    what = "an empty key"
                self.problem(key_node, key or "(top level)", f"{what} as a key (expected a name)")
                continue
            if key_name in own:
                first = own[key_name][0].start_mark.line + 1
                self.problem(
                    key_node,
                    _key_path(key, key_name),
                    f"set twice, first at line {first} (expected each key once)",
                )
                continue
            own[key_name] = (key_node, value)
        return {**merged, **own}

    def sequence(self, node: yaml.Node, key: str, expected: str) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, key, f"{_got(node)} (expected {expected})")
            return None
        self._walk(node, key)
        return list(node.value)

    # -- scalars ------------------------------------------------------------------------------

    def string(self, node: yaml.Node, key: str, expected: str) -> str | None:
        text = _text(node)
        if text is None:
            self.problem(node, key, f"{_got(node)} (expected {expected})")
        elif not text:
            self.problem(node, key, f"is empty (expected {expected})")
            return None
        return text

    def boolean(self, node: yaml.Node, key: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            value = yaml.SafeLoader.bool_values.get(str(node.value).lower())
            if value is not None:
                return value
        self.problem(node, key, f"{_got(node)} (expected true or false)")
        return None

    def duration(self, node: yaml.Node, key: str) -> float | None:
        """A duration greater than zero."""
        text = _text(node)
        if text is None:
            self.problem(node, key, f"{_got(node)} (expected {DURATION_FORMS})")
            return None
        try:
            seconds = parse_duration(text)
        except ValueError as error:
            self.problem(node, key, str(error))
            return None
        if seconds == 0:
            self.problem(
                node, key, f"{describe_input(text)} is zero (expected a duration greater than 0)"
            )
            return None
        return seconds

    def file_path(self, node: yaml.Node, key: str, expected: str) -> str | None:
        text = self.string(node, key, expected)
        return None if text is None else os.path.join(self.base, text)

    def readable_file(self, node: yaml.Node, key: str) -> str | None:
        """A path that opens for reading; it is not read (it may hold secrets)."""
        path = self.file_path(node, key, _FILE_FORMS)
        if path is None:
            return None
        shown = describe_input(path)
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                self.problem(node, key, f"{shown} is not a regular file (expected {_FILE_FORMS})")
                return None
            os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK))
        except OSError as error:
            reason = error.strerror or type(error).__name__
            self.problem(node, key, f"cannot read {shown}: {reason} (expected {_FILE_FORMS})")
            return None
        except ValueError:  # a NUL in the path, or text the filesystem cannot encode
            self.problem(node, key, f"{shown} is not a usable path (expected {_FILE_FORMS})")
            return None
        return path

    # -- the sections -------------------------------------------------------------------------

    def config(self, root: yaml.Node) -> Config | None:
        values = self.mapping(
            root, "", TOP_LEVEL_KEYS, f"a mapping of settings: {', '.join(TOP_LEVEL_KEYS)}"
        )
        if values is None:
            return None
        default = Config()
        interval = default.interval
        timeout = default.timeout
        host_root = default.host_root
        listen = default.listen
        discover = default.discover
        registries = default.registries
        dockerhub = default.dockerhub
        runtimes = default.runtimes
        images = default.images
        sandbox_image = default.sandbox_image
        timing_ok = True

        if "interval" in values:
            parsed = self.duration(values["interval"], "interval")
            timing_ok = parsed is not None
            interval = parsed if parsed is not None else interval
        if "timeout" in values:
            parsed = self.duration(values["timeout"], "timeout")
            timing_ok = timing_ok and parsed is not None
            timeout = parsed if parsed is not None else timeout
        if timing_ok and timeout >= interval:
            if "timeout" in values:
                self.problem(
                    values["timeout"],
                    "timeout",
                    f"{format_duration(timeout)} is not shorter than the interval "
                    f"{format_duration(interval)} (expected a timeout less than the interval)",
                )
            else:
                self.problem(
                    values["interval"],
                    "interval",
                    f"{format_duration(interval)} is not longer than the default timeout "
                    f"{format_duration(timeout)} (expected an interval greater than the timeout)",
                )
        if "host_root" in values:
            host_root = self.file_path(values["host_root"], "host_root", "a directory") or host_root
        if "listen" in values:
            listen = self.listen(values["listen"], "listen") or listen
        if "discover" in values:
            found = self.boolean(values["discover"], "discover")
            discover = discover if found is None else found
        if "registries" in values:
            registries = self.registries(values["registries"], "registries")
        if "dockerhub" in values:
            dockerhub = self.dockerhub(values["dockerhub"], "dockerhub")
        if "runtimes" in values:
            runtimes = self.runtimes(values["runtimes"], "runtimes")
        if "images" in values:
            images = self.images(values["images"], "images")
        if "sandbox_image" in values:
            found = self.boolean(values["sandbox_image"], "sandbox_image")
            sandbox_image = sandbox_image if found is None else found
        return Config(
            interval=interval,
            timeout=timeout,
            host_root=host_root,
            listen=listen,
            discover=discover,
            registries=registries,
            dockerhub=dockerhub,
            runtimes=runtimes,
            images=images,
            sandbox_image=sandbox_image,
        )

    def listen(self, node: yaml.Node, key: str) -> HostPort | None:
        text = self.string(node, key, LISTEN_FORMS)
        if text is None:
            return None
        try:
            return parse_listen(text)
        except ValueError as error:
            self.problem(node, key, str(error))
            return None

    def registries(self, node: yaml.Node, key: str) -> tuple[RegistryConfig, ...]:
        items = self.sequence(node, key, "a list of registries, each a mapping with a host")
        found: list[RegistryConfig] = []
        # Which entry named each registry endpoint, so that a second name for it is reported.
        seen: dict[tuple[str, int], tuple[str, int]] = {}
        for index, item in enumerate(items or []):
            registry = self.registry(item, f"{key}[{index}]", seen)
            if registry is not None:
                found.append(registry)
        return tuple(found)

    def registry(
        self, node: yaml.Node, key: str, seen: dict[tuple[str, int], tuple[str, int]]
    ) -> RegistryConfig | None:
        values = self.mapping(
            node, key, REGISTRY_KEYS, "a mapping such as {host: registry.example.com}"
        )
        if values is None:
            return None
        address = None
        if "host" not in values:
            self.problem(node, f"{key}.host", f"missing (expected {REGISTRY_FORMS})")
        else:
            address = self.registry_host(values["host"], f"{key}.host", seen)
        ca_file = credentials_file = None
        insecure = False
        blob_hosts = None
        if "ca_file" in values:
            ca_file = self.readable_file(values["ca_file"], f"{key}.ca_file")
        if "insecure_skip_verify" in values:
            insecure = bool(
                self.boolean(values["insecure_skip_verify"], f"{key}.insecure_skip_verify")
            )
        if "credentials_file" in values:
            credentials_file = self.readable_file(
                values["credentials_file"], f"{key}.credentials_file"
            )
        if "blob_hosts" in values:
            blob_hosts = self.blob_hosts(values["blob_hosts"], f"{key}.blob_hosts")
        if address is None:
            return None
        return RegistryConfig(
            address,
            ca_file=ca_file,
            insecure_skip_verify=insecure,
            credentials_file=credentials_file,
            blob_hosts=blob_hosts,
        )

    def registry_host(
        self, node: yaml.Node, key: str, seen: dict[tuple[str, int], tuple[str, int]]
    ) -> RegistryAddress | None:
        text = self.string(node, key, REGISTRY_FORMS)
        if text is None:
            return None
        try:
            address = RegistryAddress.parse(text)
        except ValueError as error:
            self.problem(node, key, str(error))
            return None
        # Two names for one endpoint would be probed twice and collide in the `registry` label
        # (it carries no scheme); every Docker Hub name is one registry.
        endpoint = address.identity
        if endpoint in seen:
            first, line = seen[endpoint]
            same = (
                "already listed"
                if first == address.label
                else f"the same registry as {describe_input(first)}"
            )
            self.problem(
                node,
                key,
                f"{describe_input(text)} is {same} at line {line} (expected each registry once)",
            )
            return None
        seen[endpoint] = (address.label, node.start_mark.line + 1)
        return address

    def blob_hosts(self, node: yaml.Node, key: str) -> tuple[HostPort, ...] | None:
        expected = "a list of host names, such as [storage.example.com]"
        items = self.sequence(node, key, expected)
        if items is None:
            return None
        hosts: list[HostPort] = []
        for index, item in enumerate(items):
            item_key = f"{key}[{index}]"
            text = self.string(item, item_key, HOST_PORT_FORMS)
            if text is None:
                continue
            try:
                label = parse_host_port(text)
            except ValueError as error:
                self.problem(item, item_key, str(error))
                continue
            if label in hosts:
                self.problem(
                    item, item_key, f"{describe_input(text)} is listed twice (expected each once)"
                )
                continue
            hosts.append(label)
        return tuple(hosts)

    def dockerhub(self, node: yaml.Node, key: str) -> DockerHubConfig:
        default = DockerHubConfig()
        values = self.mapping(
            node, key, DOCKERHUB_KEYS, "a mapping such as {ratelimit_interval: 5m}"
        )
        if values is None:
            return default
        interval = default.ratelimit_interval
        credentials_file = default.credentials_file
        if "ratelimit_interval" in values:
            parsed = self.duration(values["ratelimit_interval"], f"{key}.ratelimit_interval")
            interval = interval if parsed is None else parsed
        if "credentials_file" in values:
            credentials_file = self.readable_file(
                values["credentials_file"], f"{key}.credentials_file"
            )
        return DockerHubConfig(ratelimit_interval=interval, credentials_file=credentials_file)

    def images(self, node: yaml.Node, key: str) -> tuple[str, ...]:
        """Image references, each parsed as the runtime parses it and listed once."""
        items = self.sequence(node, key, "a list of image references, such as [nginx:1.27]")
        found: list[str] = []
        seen: dict[str, tuple[str, int]] = {}
        for index, item in enumerate(items or []):
            item_key = f"{key}[{index}]"
            text = self.string(item, item_key, f"an image reference, such as {IMAGE_FORMS}")
            if text is None:
                continue
            shown = describe_input(text)
            try:
                parsed = parse_reference(text)
                RegistryAddress.parse(parsed.domain)
            except ValueError as error:
                # The library's words quote the input: escaped, so a problem stays one line.
                self.problem(
                    item, item_key, f"{shown} is not an image reference: {escape(str(error))}"
                )
                continue
            reference = str(parsed)
            if reference in seen:
                first, line = seen[reference]
                same = "listed" if first == text else f"the same image as {describe_input(first)}"
                self.problem(
                    item, item_key, f"{shown} is {same} at line {line} (expected each image once)"
                )
                continue
            seen[reference] = (text, item.start_mark.line + 1)
            found.append(text)
        return tuple(found)

    def runtimes(self, node: yaml.Node, key: str) -> tuple[str, ...]:
        names = ", ".join(RUNTIMES[:-1]) + f" or {RUNTIMES[-1]}"
        items = self.sequence(node, key, f"a list of runtimes: {names}")
        found: list[str] = []
        for index, item in enumerate(items or []):
            item_key = f"{key}[{index}]"
            text = self.string(item, item_key, names)
            if text is None:
                continue
            shown = describe_input(text)
            if text in found:
                self.problem(item, item_key, f"{shown} is listed twice (expected each once)")
            elif text in RUNTIMES:
                found.append(text)
            elif text.lower() in ("k3s", "rke2"):
                self.problem(
                    item,
                    item_key,
                    f"{shown} is not a runtime (expected {names}; "
                    "k3s and RKE2 run containerd, so write containerd)",
                )
            else:
                close = difflib.get_close_matches(text, RUNTIMES, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                self.problem(item, item_key, f"{shown} is not a runtime (expected {names}{hint})")
        return tuple(found)
