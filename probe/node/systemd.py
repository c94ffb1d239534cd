"""The environment systemd gives a service, read from unit files under the host root.

Rules, from systemd.syntax(7), systemd.exec(5), systemd.unit(5) and systemd-system.conf(5), and
where the man pages are silent from systemd's src/basic/extract-word.c, src/basic/env-file.c and
src/shared/conf-parser.c:

- Unit files: `[Section]` headers, `Key=Value` with whitespace around `=` ignored; lines starting
  with `#` or `;` are comments; a line ending in an (unescaped) backslash continues on the next,
  the backslash becoming a space, and comment lines inside a continuation are skipped.
- `Environment=` (in `[Service]`): space-separated assignments, each may be quoted with `"` or `'`
  (quotes may start mid-word: `A="b c"`), C escapes (`\\n`, `\\x41`, `\\\\`, ...) inside and outside
  quotes; specifiers (`%%` -> `%`, `%n` the unit name...) expanded; `$` means nothing. An invalid
  assignment is dropped alone; a syntax error (an unterminated quote, an unknown escape) drops the
  rest of the line. An empty `Environment=` resets the list. Later assignments win.
- `EnvironmentFile=`: a path (glob allowed), `-` prefix meaning "ignore if missing"; a missing
  file without `-` makes the unit fail to start. Empty resets the list. Values from the files
  override `Environment=` whatever the order, and later files override earlier ones.
- Environment files: `KEY=VALUE` lines, `#`/`;` comments, shell-like quoting (single quotes
  verbatim, double quotes with `\\"`, `\\\\`, `\\``, `\\$` escapes), backslash-newline continuation,
  whitespace around key and unquoted value trimmed. `export KEY=VALUE` is not shell: systemd
  reads the key as "export KEY", an invalid name, and drops the line.
- Where the unit comes from: the first of the unit search path that has `<unit>` (etc, run, then
  usr/lib, lib); drop-ins `<unit>.d/*.conf` (and `service.d/*.conf`, which apply to every
  service) from every directory of the path, one per file name (the earlier directory wins),
  applied in the lexical order of their names after the unit file.
- `DefaultEnvironment=` in `[Manager]` of etc/systemd/system.conf and system.conf.d drop-ins: the
  lowest precedence, under `Environment=`.
- `PassEnvironment=` (systemd.exec(5)): space-separated names whose values come from the service
  manager's own environment (what PID 1 was started with, or `systemctl set-environment`), not
  from any file; an empty `PassEnvironment=` resets the list. Such a value sits above
  `DefaultEnvironment=` and under `Environment=` and `EnvironmentFile=` (src/core/execute.c
  builds the environment in that order). The node's files cannot say it: it is reported, and
  read only from the live process.
- `ExecStart=` (systemd.service(5)): the command's first word is the executable, after the
  prefixes `@`, `-`, `:`, `+`, `!`, `!!`; an empty `ExecStart=` resets the list (a drop-in that
  replaces the command). A name without a `/` is looked up in /usr/local/sbin, /usr/local/bin,
  /usr/sbin, /usr/bin (the fixed search path of systemd >= 239). It tells which executable a
  process of the unit runs (`probe.node.processes`).
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from probe.node.hostfs import HostFS

# systemd's unit search path for the system manager (systemd.unit(5), "Unit File Load Path"),
# highest priority first, as the node names them.
UNIT_SEARCH_PATH: tuple[str, ...] = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
SYSTEM_CONF = "/etc/systemd/system.conf"
SYSTEM_CONF_DROPIN_DIRS: tuple[str, ...] = (
    "/etc/systemd/system.conf.d",
    "/run/systemd/system.conf.d",
    "/usr/local/lib/systemd/system.conf.d",
    "/usr/lib/systemd/system.conf.d",
)

_WHITESPACE = " \t\n\r"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # env_name_is_valid: bash's rules
# Specifiers systemd knows (systemd.unit(5)); a `%` followed by anything else is an error.
_KNOWN_SPECIFIERS = frozenset("aAbBCdEfgGhHiIjJlLmMnNopPqsStTuUvVwWyY%")


# --- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """`NAME=value` from `Environment=` (or `DefaultEnvironment=`)."""

    name: str
    value: str
    line: int


@dataclass(frozen=True)
class EnvironmentReset:
    """An empty `Environment=`: every earlier assignment is forgotten."""

    line: int


@dataclass(frozen=True)
class EnvironmentFileEntry:
    """`EnvironmentFile=[-]path` (specifiers expanded)."""

    path: str
    optional: bool  # the "-" prefix: a missing file is ignored
    line: int


@dataclass(frozen=True)
class EnvironmentFileReset:
    """An empty `EnvironmentFile=`: earlier files are not read."""

    line: int


@dataclass(frozen=True)
class PassedVariable:
    """`PassEnvironment=NAME`: the value comes from the service manager's environment."""

    name: str
    line: int


@dataclass(frozen=True)
class PassReset:
    """An empty `PassEnvironment=`: earlier names are not passed."""

    line: int


@dataclass(frozen=True)
class ExecStart:
    """`ExecStart=`: the executable of one command (None: an empty `ExecStart=`, a reset)."""

    executable: str | None
    arguments: tuple[str, ...]
    line: int


Directive = (
    Assignment
    | EnvironmentReset
    | EnvironmentFileEntry
    | EnvironmentFileReset
    | PassedVariable
    | PassReset
    | ExecStart
)

# systemd's fixed search path for an ExecStart= executable given without a `/` (systemd 239+).
EXEC_SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin")
_EXEC_PREFIXES = "@-:+!"


@dataclass(frozen=True)
class UnitFileSettings:
    """The environment directives of one unit file or drop-in, in file order."""

    source: str  # the file, as the node names it
    directives: tuple[Directive, ...]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnitEnvironment:
    """The environment systemd starts a unit's process with, and where each variable came from."""

    unit: str
    found: bool  # a unit file exists (and is not masked)
    unit_path: str | None  # as the node names it
    dropins: tuple[str, ...]
    variables: Mapping[str, str]
    sources: Mapping[str, str]  # variable -> the file that set it, as the node names it
    problems: tuple[str, ...] = ()
    masked: bool = False
    # PassEnvironment= names not set by Environment= or EnvironmentFile=: name -> the file
    # that passes it. Their values are the service manager's, unknown here.
    passed: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    exec_start: ExecStart | None = None  # the first command of the last ExecStart= list

    @property
    def suggested_dropin(self) -> str:
        """Where an administrator adds proxy settings (Docker's and containerd's docs' name)."""
        return f"/etc/systemd/system/{self.unit}.d/http-proxy.conf"


# --- Environment= ---------------------------------------------------------------------------------


class _SyntaxError(ValueError):
    pass


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "s": " ",
}


def _cunescape_one(text: str, i: int) -> tuple[str, int]:
    """systemd's `cunescape_one`: the character escaped at text[i:], and how many it used."""
    if i >= len(text):
        raise _SyntaxError("backslash at end of value")
    c = text[i]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], 1
    widths = {"x": 2, "u": 4, "U": 8}
    if c in widths:
        digits = text[i + 1 : i + 1 + widths[c]]
        if len(digits) != widths[c] or any(d not in "0123456789abcdefABCDEF" for d in digits):
            raise _SyntaxError(f"bad \\{c} escape")
        code = int(digits, 16)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _SyntaxError(f"bad \\{c} escape")
        return chr(code), 1 + widths[c]
    if c in "01234567":
        digits = text[i : i + 3]
        if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) == 0:
            raise _SyntaxError("bad octal escape")
        if int(digits, 8) > 0xFF:
            raise _SyntaxError("bad octal escape")
        return chr(int(digits, 8)), 3
    raise _SyntaxError(f"unknown escape \\{c}")


def _words(rvalue: str) -> Iterator[str]:
    """systemd's `extract_first_word(EXTRACT_CUNESCAPE|EXTRACT_UNQUOTE)`, word by word.

    Raises `_SyntaxError` where systemd gives up on the rest of the line.
    """
    i, n = 0, len(rvalue)
    while True:
        while i < n and rvalue[i] in _WHITESPACE:
            i += 1
        if i >= n:
            return
        word: list[str] = []
        quote = ""
        while i < n:
            c = rvalue[i]
            if c == "\\":
                char, used = _cunescape_one(rvalue, i + 1)
                word.append(char)
                i += 1 + used
                continue
            if quote:
                if c == quote:
                    quote = ""
                else:
                    word.append(c)
            elif c in "'\"":
                quote = c
            elif c in _WHITESPACE:
                break
            else:
                word.append(c)
            i += 1
        if quote:
            raise _SyntaxError("unterminated quote")
        yield "".join(word)


def _expand_specifiers(text: str, unit_name: str) -> str:
    """Unit specifiers; those this reader cannot know are kept as written.

    Raises `_SyntaxError` for a `%` systemd does not know (a password with `%40` must be
    written `%%40` in a unit file).
    """
    stem, _, _ = unit_name.rpartition(".")
    prefix, at, instance = stem.partition("@")
    known = {"%": "%", "n": unit_name, "N": stem, "p": prefix, "i": instance if at else ""}
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        spec = text[i + 1 : i + 2]
        if spec not in _KNOWN_SPECIFIERS or not spec:
            raise _SyntaxError(f"unknown specifier %{spec}")
        out.append(known.get(spec, "%" + spec) if unit_name or spec == "%" else "%" + spec)
        i += 2
    return "".join(out)


def parse_environment_value(
    rvalue: str, unit_name: str = "", specifiers: bool = True
) -> tuple[list[tuple[str, str]], list[str]]:
    """One `Environment=` value: its (name, value) assignments in order, and problems found.

    An empty list and no problem for an empty value means "reset" to the caller.
    """
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    try:
        for word in _words(rvalue):
            if specifiers:
                try:
                    word = _expand_specifiers(word, unit_name)
                except _SyntaxError as exc:
                    problems.append(f"{exc} (a literal % is written %%): assignment ignored")
                    continue
            name, eq, value = word.partition("=")
            if not eq or not _NAME.match(name):
                problems.append(f"invalid environment assignment {name!r} ignored")
                continue
            pairs.append((name, value))
    except _SyntaxError as exc:
        problems.append(f"invalid syntax ({exc}): rest of the line ignored")
    return pairs, problems


# --- unit files -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IniEntry:
    """One `Key=Value` of a systemd-style INI file, with its section and first line."""

    section: str
    key: str
    value: str
    line: int


def _ends_escaped(line: str) -> bool:
    """Whether the line ends in a backslash that is not itself escaped (conf-parser.c)."""
    escaped = False
    for c in line:
        escaped = not escaped if c == "\\" else False
    return escaped


def ini_entries(text: str) -> tuple[list[IniEntry], list[str]]:
    """systemd's config_parse: (section, key, value) entries and problems, continuations joined."""
    entries: list[IniEntry] = []
    problems: list[str] = []
    section = ""
    continuation: str | None = None
    start = 0
    lines = text.splitlines()
    for number, raw in enumerate(lines, start=1):
        stripped = raw.lstrip(_WHITESPACE)
        if stripped[:1] in ("#", ";"):
            continue  # also inside a continuation: the comment block is skipped
        if continuation is None:
            start = number
            line = raw
        else:
            line = continuation + raw
        if _ends_escaped(line):
            continuation = line[:-1] + " "
            if number < len(lines):
                continue
            line = continuation
        continuation = None
        line = line.strip(_WHITESPACE)
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                problems.append(f"line {start}: invalid section header {line!r}")
                section = ""
                continue
            section = line[1:-1]
            continue
        key, eq, value = line.partition("=")
        if not eq:
            problems.append(f"line {start}: missing '=', line ignored")
            continue
        entries.append(IniEntry(section, key.strip(_WHITESPACE), value.strip(_WHITESPACE), start))
    return entries, problems


def parse_exec_start(value: str, unit_name: str = "") -> tuple[str, tuple[str, ...]] | None:
    """The executable and arguments of an `ExecStart=` command, or None when it has none."""
    command = value.lstrip(_EXEC_PREFIXES)
    try:
        words = [_expand_specifiers(w, unit_name) for w in _words(command)]
    except _SyntaxError:
        return None
    if not words or not words[0]:
        return None
    return words[0], tuple(words[1:])


def parse_unit_environment(text: str, source: str = "", unit_name: str = "") -> UnitFileSettings:
    """The `Environment=`, `EnvironmentFile=`, `PassEnvironment=` and `ExecStart=` directives of
    a unit file's `[Service]`."""
    entries, problems = ini_entries(text)
    directives: list[Directive] = []
    for entry in entries:
        if entry.section != "Service":
            continue
        if entry.key == "ExecStart":
            if not entry.value:
                directives.append(ExecStart(None, (), entry.line))
                continue
            command = parse_exec_start(entry.value, unit_name)
            if command is None:
                problems.append(f"line {entry.line}: ExecStart= has no command, ignored")
                continue
            directives.append(ExecStart(command[0], command[1], entry.line))
        elif entry.key == "PassEnvironment":
            if not entry.value:
                directives.append(PassReset(entry.line))
                continue
            names, bad = parse_environment_names(entry.value)
            directives.extend(PassedVariable(n, entry.line) for n in names)
            problems.extend(f"line {entry.line}: PassEnvironment= {p}" for p in bad)
        elif entry.key == "Environment":
            if not entry.value:
                directives.append(EnvironmentReset(entry.line))
                continue
            pairs, found = parse_environment_value(entry.value, unit_name)
            directives.extend(Assignment(k, v, entry.line) for k, v in pairs)
            problems.extend(f"line {entry.line}: {p}" for p in found)
        elif entry.key == "EnvironmentFile":
            if not entry.value:
                directives.append(EnvironmentFileReset(entry.line))
                continue
            try:
                value = _expand_specifiers(entry.value, unit_name)
            except _SyntaxError as exc:
                problems.append(f"line {entry.line}: EnvironmentFile= {exc}, ignored")
                continue
            optional = value.startswith("-")
            path = value[1:] if optional else value
            if not path.startswith("/"):
                problems.append(f"line {entry.line}: EnvironmentFile={value} is not absolute")
                continue
            directives.append(EnvironmentFileEntry(path, optional, entry.line))
    return UnitFileSettings(source, tuple(directives), tuple(problems))


def parse_environment_names(rvalue: str) -> tuple[list[str], list[str]]:
    """`PassEnvironment=` names (unquoted, C escapes); invalid names dropped with a problem."""
    names: list[str] = []
    problems: list[str] = []
    try:
        for word in _words(rvalue):
            if _NAME.match(word):
                names.append(word)
            else:
                problems.append(f"invalid variable name {word!r} ignored")
    except _SyntaxError as exc:
        problems.append(f"invalid syntax ({exc}): rest of the line ignored")
    return names, problems


# --- environment files ----------------------------------------------------------------------------


def parse_environment_file(text: str) -> tuple[dict[str, str], list[str]]:
    """An `EnvironmentFile=`: variables (later lines win) and problems (env-file.c's parser)."""
    assignments: list[tuple[str, str]] = []
    key: list[str] = []
    value: list[str] = []
    trailing = 0  # unquoted whitespace at the end of value, trimmed when the line ends
    state = "pre_key"

    def push() -> None:
        assignments.append(
            ("".join(key).rstrip(_WHITESPACE), "".join(value[: len(value) - trailing]))
        )

    for c in text:
        if state == "pre_key":
            if c in "#;":
                state = "comment"
            elif c not in _WHITESPACE:
                state, key, value, trailing = "key", [c], [], 0
        elif state == "key":
            if c == "\n":
                state = "pre_key"  # no "=": ignored
            elif c == "=":
                state = "pre_value"
            else:
                key.append(c)
        elif state == "pre_value":
            if c == "\n":
                push()
                state = "pre_key"
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "\\":
                state = "value_escape"
            elif c not in _WHITESPACE:
                state, trailing = "value", 0
                value.append(c)
        elif state == "value":
            if c == "\n":
                push()
                state = "pre_key"
            elif c == "\\":
                state, trailing = "value_escape", 0
            else:
                value.append(c)
                trailing = trailing + 1 if c in _WHITESPACE else 0
        elif state == "value_escape":
            state = "value"
            if c != "\n":  # backslash-newline continues the line
                value.append(c)
                trailing = 0
        elif state == "single":
            if c == "'":
                state, trailing = "pre_value", 0
            else:
                value.append(c)
        elif state == "double":
            if c == '"':
                state, trailing = "pre_value", 0
            elif c == "\\":
                state = "double_escape"
            else:
                value.append(c)
        elif state == "double_escape":
            state = "double"
            if c in '"\\`$':
                value.append(c)
            elif c != "\n":
                value.extend(("\\", c))
        elif state == "comment":
            if c == "\\":
                state = "comment_escape"
            elif c == "\n":
                state = "pre_key"
        elif state == "comment_escape":
            state = "comment"  # the escaped character (usually the newline) is swallowed
    if state in ("pre_value", "value", "value_escape", "single", "double", "double_escape"):
        push()

    variables: dict[str, str] = {}
    problems: list[str] = []
    for name, val in assignments:
        if not _NAME.match(name):
            hint = " (systemd does not understand 'export')" if name.startswith("export ") else ""
            problems.append(f"invalid variable name {name!r} ignored{hint}")
            continue
        variables[name] = val
    return variables, problems


# --- the unit as systemd loads it -----------------------------------------------------------------


@dataclass
class _Accumulator:
    """Environment= and EnvironmentFile= state while files are applied in order."""

    assignments: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> value, file
    files: list[tuple[EnvironmentFileEntry, str]] = field(default_factory=list)
    passed: dict[str, str] = field(default_factory=dict)  # name -> file
    commands: list[ExecStart] = field(default_factory=list)

    def apply(self, settings: UnitFileSettings) -> None:
        for directive in settings.directives:
            if isinstance(directive, Assignment):
                self.assignments[directive.name] = (directive.value, settings.source)
            elif isinstance(directive, EnvironmentReset):
                self.assignments.clear()
            elif isinstance(directive, EnvironmentFileEntry):
                self.files.append((directive, settings.source))
            elif isinstance(directive, EnvironmentFileReset):
                self.files.clear()
            elif isinstance(directive, PassedVariable):
                self.passed.setdefault(directive.name, settings.source)
            elif isinstance(directive, PassReset):
                self.passed.clear()
            elif directive.executable is None:
                self.commands.clear()
            else:
                self.commands.append(directive)


def dropin_files(fs: HostFS, dirs: tuple[str, ...], names: tuple[str, ...]) -> list[str]:
    """`*.conf` files of `<dir>/<name>` over all dirs, one per file name (earlier dir wins),
    in the lexical order of their names (systemd's conf_files_list)."""
    chosen: dict[str, str] = {}
    for directory in dirs:
        for name in names:
            where = f"{directory}/{name}" if name else directory
            for path in fs.files(where, "*.conf"):
                chosen.setdefault(path.rpartition("/")[2], path)
    return [chosen[name] for name in sorted(chosen)]


def default_environment(
    fs: HostFS,
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """`DefaultEnvironment=` of the system manager: name -> (value, file), and problems."""
    result: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    files = [SYSTEM_CONF, *dropin_files(fs, SYSTEM_CONF_DROPIN_DIRS, ("",))]
    for path in files:
        text = fs.read_text(path)
        if text is None:
            continue
        entries, found = ini_entries(text)
        problems.extend(f"{path}: {p}" for p in found)
        for entry in entries:
            if entry.section != "Manager" or entry.key != "DefaultEnvironment":
                continue
            if not entry.value:
                result.clear()
                continue
            pairs, bad = parse_environment_value(entry.value, specifiers=False)
            problems.extend(f"{path}: line {entry.line}: {p}" for p in bad)
            result.update((k, (v, path)) for k, v in pairs)
    return result, problems


def _read_environment_files(
    fs: HostFS, files: list[tuple[EnvironmentFileEntry, str]], unit: str
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    result: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    for entry, named_in in files:
        matches = [entry.path]
        if glob.has_magic(entry.path):
            directory, _, pattern = entry.path.rpartition("/")
            matches = fs.files(directory or "/", pattern)
        texts = [(p, fs.read_text(p)) for p in matches]
        readable = [(p, t) for p, t in texts if t is not None]
        if not readable:
            if not entry.optional:
                problems.append(
                    f"EnvironmentFile={entry.path} (in {named_in}) does not exist: "
                    f"systemd would refuse to start {unit}"
                )
            continue
        for path, text in readable:
            variables, bad = parse_environment_file(text)
            problems.extend(f"{path}: {p}" for p in bad)
            result.update((k, (v, path)) for k, v in variables.items())
    return result, problems


def effective_environment(fs: HostFS, unit: str, assumed: str | None = None) -> UnitEnvironment:
    """The environment systemd gives `unit` (e.g. "containerd.service"), read from the node.

    DefaultEnvironment= < Environment= (unit file, then drop-ins by name) < EnvironmentFile=.
    `assumed` stands for the unit file when it is not under the host root (a runtime known to
    run, whose unit lives where the agent does not look): its drop-ins and DefaultEnvironment=
    still apply.
    """
    unit_path: str | None = None
    for directory in UNIT_SEARCH_PATH:
        candidate = f"{directory}/{unit}"
        if fs.is_masked(candidate) or (fs.is_file(candidate) and fs.size(candidate) == 0):
            # Linked to /dev/null, or empty: masked (systemctl mask), it never starts.
            problem = f"{unit} is masked ({candidate})"
            return UnitEnvironment(unit, False, candidate, (), {}, {}, (problem,), masked=True)
        if fs.is_file(candidate):
            unit_path = candidate
            break
    kind = unit.rpartition(".")[2]
    dropins = tuple(dropin_files(fs, UNIT_SEARCH_PATH, (f"{unit}.d", f"{kind}.d")))
    state = _Accumulator()
    problems: list[str] = []
    texts: list[tuple[str, str]] = []
    if unit_path is not None:
        texts.append((unit_path, fs.read_text(unit_path) or ""))
    elif assumed is not None:
        texts.append((f"{unit} (as its installer writes it)", assumed))
    texts += [(path, fs.read_text(path) or "") for path in dropins]
    for path, text in texts:
        settings = parse_unit_environment(text, path, unit)
        problems.extend(f"{path}: {p}" for p in settings.problems)
        state.apply(settings)

    merged, default_problems = default_environment(fs)
    problems.extend(default_problems)
    merged.update(state.assignments)
    from_files, file_problems = _read_environment_files(fs, state.files, unit)
    problems.extend(file_problems)
    merged.update(from_files)
    # PassEnvironment= sits under Environment= and EnvironmentFile=: only the names they do not
    # set keep the manager's (unknown) value.
    passed = {
        name: source
        for name, source in state.passed.items()
        if name not in state.assignments and name not in from_files
    }
    return UnitEnvironment(
        unit=unit,
        found=unit_path is not None,
        unit_path=unit_path,
        dropins=dropins,
        variables=MappingProxyType({k: v for k, (v, _) in merged.items()}),
        sources=MappingProxyType({k: src for k, (_, src) in merged.items()}),
        problems=tuple(problems),
        passed=MappingProxyType(passed),
        exec_start=state.commands[0] if state.commands else None,
    )


def executable_paths(command: ExecStart | None) -> tuple[str, ...]:
    """Where the executable of an `ExecStart=` command is, as the node names it: the path, or
    each directory of systemd's search path for a bare name."""
    if command is None or command.executable is None:
        return ()
    if "/" in command.executable:
        return (command.executable,) if command.executable.startswith("/") else ()
    return tuple(f"{directory}/{command.executable}" for directory in EXEC_SEARCH_PATH)
