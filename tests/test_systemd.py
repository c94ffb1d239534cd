"""systemd's environment rules: Environment= quoting, EnvironmentFile=, drop-ins, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.node.hostfs import HostFS
from probe.node.systemd import (
    Assignment,
    EnvironmentFileEntry,
    EnvironmentFileReset,
    EnvironmentReset,
    effective_environment,
    ini_entries,
    parse_environment_file,
    parse_environment_value,
    parse_unit_environment,
)

HOSTS = Path(__file__).parent / "data" / "hosts"


@pytest.mark.parametrize(
    ("rvalue", "pairs"),
    [
        ("A=1", [("A", "1")]),
        ("A=1 B=2\tC=3", [("A", "1"), ("B", "2"), ("C", "3")]),
        # systemd.exec(5)'s example: quotes around the whole assignment, or mid-word.
        (
            '"VAR1=word1 word2" VAR2=word3 "VAR3=$word 5 6"',
            [("VAR1", "word1 word2"), ("VAR2", "word3"), ("VAR3", "$word 5 6")],
        ),
        ('A="b c"d', [("A", "b cd")]),
        ("'A=it''s'", [("A", "its")]),
        ("A='x \"y\"'", [("A", 'x "y"')]),
        # C escapes, inside and outside quotes (EXTRACT_CUNESCAPE).
        (r"A=a\x41\n", [("A", "aA\n")]),
        (r'"A=a\"b\\c"', [("A", 'a"b\\c')]),
        (r"'A=\x41'", [("A", "A")]),
        (r"A=a\sb", [("A", "a b")]),
        # Specifiers: %% is a literal percent.
        (
            "HTTPS_PROXY=http://u:p%%40ss@proxy:3128",
            [("HTTPS_PROXY", "http://u:p%40ss@proxy:3128")],
        ),
        # Later assignments are kept in order; the caller lets the last win.
        ("A=1 A=2", [("A", "1"), ("A", "2")]),
        # Empty value is an assignment, not a reset.
        ("A=", [("A", "")]),
        ("", []),
    ],
)
def test_environment_value(rvalue: str, pairs: list[tuple[str, str]]) -> None:
    """Environment= values split into assignments as systemd's extract_first_word does."""
    assert parse_environment_value(rvalue) == (pairs, [])


@pytest.mark.parametrize(
    ("rvalue", "pairs", "problem"),
    [
        # A syntax error drops the rest of the line, but keeps what came before.
        ('A=1 "B=2', [("A", "1")], "unterminated quote"),
        (r"A=1 B=\d C=3", [("A", "1")], "unknown escape"),
        ("A=1 B=x\\", [("A", "1")], "backslash at end"),
        # An invalid assignment is dropped alone.
        ("1A=1 B=2", [("B", "2")], "invalid environment assignment '1A'"),
        ("JUSTAWORD B=2", [("B", "2")], "invalid environment assignment 'JUSTAWORD'"),
        ("A-B=1", [], "invalid environment assignment 'A-B'"),
        # %40 in a URL is an unknown specifier %4: systemd drops the assignment.
        ("HTTPS_PROXY=http://u:p%40ss@p:1 B=2", [("B", "2")], "unknown specifier %4"),
    ],
)
def test_environment_value_errors(rvalue: str, pairs: list[tuple[str, str]], problem: str) -> None:
    """Bad words are dropped with a problem saying why, as systemd logs and ignores them."""
    got, problems = parse_environment_value(rvalue)
    assert got == pairs
    assert len(problems) == 1
    assert problem in problems[0]


def test_specifiers_from_unit_name() -> None:
    """%n, %N, %p and %i come from the unit name; others stay as written."""
    pairs, problems = parse_environment_value(
        "A=%n B=%N C=%p D=%i E=%H", unit_name="getty@tty1.service"
    )
    assert problems == []
    assert pairs == [
        ("A", "getty@tty1.service"),
        ("B", "getty@tty1"),
        ("C", "getty"),
        ("D", "tty1"),
        ("E", "%H"),
    ]


def test_unit_sections_continuations_comments() -> None:
    """Only [Service] counts; a trailing backslash joins lines (as a space), skipping comments."""
    text = (
        "[Unit]\n"
        "Environment=IGNORED=1\n"
        "[Service]\n"
        "  Environment = A=1 \\\n"
        "# a comment inside the continuation\n"
        "; another\n"
        "    B=2\n"
        "Environment=\n"
        "Environment=C=3\n"
        "EnvironmentFile=-/etc/default/%N\n"
        "EnvironmentFile=\n"
        "EnvironmentFile=relative/path\n"
        "NoEquals\n"
    )
    settings = parse_unit_environment(text, "/x/foo.service", "foo.service")
    assert settings.directives == (
        Assignment("A", "1", 4),
        Assignment("B", "2", 4),
        EnvironmentReset(8),
        Assignment("C", "3", 9),
        EnvironmentFileEntry("/etc/default/foo", True, 10),
        EnvironmentFileReset(11),
    )
    assert any("not absolute" in p for p in settings.problems)
    assert any("missing '='" in p for p in settings.problems)


def test_escaped_backslash_does_not_continue() -> None:
    """A line ending in two backslashes ends there: the backslash is escaped."""
    entries, _ = ini_entries("[Service]\nEnvironment=A=x\\\\\nEnvironment=B=1\n")
    assert [e.value for e in entries] == ["A=x\\\\", "B=1"]


@pytest.mark.parametrize(
    ("text", "variables"),
    [
        ("A=1\nB=2\n", {"A": "1", "B": "2"}),
        ("# comment\n; comment\n\nA=1", {"A": "1"}),
        ("  A  =  spaced value  \n", {"A": "spaced value"}),
        ("A='single $x \\n'\n", {"A": "single $x \\n"}),
        ('A="double \\"q\\" \\$x \\n"\n', {"A": 'double "q" $x \\n'}),
        ("A=first\\\nsecond\n", {"A": "firstsecond"}),
        ('A="multi\nline"\n', {"A": "multi\nline"}),
        ("A=un'quoted'\n", {"A": "un'quoted'"}),
        ("A=a\\ b\\\\c\n", {"A": "a b\\c"}),
        ("A=1\nA=2\n", {"A": "2"}),
        ("NOEQUALS\nA=1\n", {"A": "1"}),
        ("A=\n", {"A": ""}),
        ("A=no newline at end", {"A": "no newline at end"}),
    ],
)
def test_environment_file(text: str, variables: dict[str, str]) -> None:
    """EnvironmentFile= contents parse as systemd's env-file.c does."""
    assert parse_environment_file(text) == (variables, [])


def test_environment_file_export_is_not_shell() -> None:
    """`export KEY=VALUE` is dropped with a problem: systemd reads "export KEY" as the name."""
    variables, problems = parse_environment_file("export HTTPS_PROXY=http://p:1\nB=2\n")
    assert variables == {"B": "2"}
    assert "export" in problems[0]


def test_unit_with_dropins_merged_by_name() -> None:
    """etc's drop-in replaces usr/lib's of the same name; drop-ins apply in name order."""
    env = effective_environment(HostFS(str(HOSTS / "containerd-1.7")), "containerd.service")
    assert env.found
    assert env.unit_path == "/lib/systemd/system/containerd.service"
    assert env.dropins == (
        "/lib/systemd/system/containerd.service.d/20-tuning.conf",
        "/etc/systemd/system/containerd.service.d/http-proxy.conf",
    )
    assert env.variables["HTTPS_PROXY"] == "http://user:s3cret@proxy.corp:3128"
    assert env.sources["HTTPS_PROXY"] == "/etc/systemd/system/containerd.service.d/http-proxy.conf"
    assert env.variables["LANG"] == "C.UTF-8"  # continuation line in the unit, then the drop-in
    assert env.variables["GOTRACEBACK"] == "crash"
    assert env.problems == ()


def test_environment_files_override_environment() -> None:
    """EnvironmentFile= wins over Environment=; "-" files may be missing; globs are read."""
    env = effective_environment(HostFS(str(HOSTS / "environment-file")), "containerd.service")
    assert env.variables["HTTPS_PROXY"] == "http://from-file:3128"
    assert env.sources["HTTPS_PROXY"] == "/etc/containerd/proxy.env"
    assert env.variables["NO_PROXY"] == ".internal,.corp,registry.local"
    assert env.sources["NO_PROXY"] == "/etc/containerd/env.d/50-noproxy.env"
    assert env.variables["no_proxy"] == ".internal,.corp"
    assert len(env.problems) == 1
    assert "export" in env.problems[0]


def test_missing_required_environment_file_is_a_problem() -> None:
    """Without the "-" prefix a missing file is named: systemd would not start the unit."""
    env = effective_environment(HostFS(str(HOSTS / "environment-file")), "crio.service")
    assert env.variables == {}
    assert env.problems == (
        "EnvironmentFile=/etc/sysconfig/crio-missing (in /etc/systemd/system/crio.service) "
        "does not exist: systemd would refuse to start crio.service",
    )


def test_default_environment_lowest_precedence() -> None:
    """DefaultEnvironment= from system.conf and its drop-ins sits under Environment=."""
    env = effective_environment(HostFS(str(HOSTS / "default-environment")), "containerd.service")
    assert env.variables == {
        "HTTP_PROXY": "http://unit-proxy:3128",
        "HTTPS_PROXY": "http://default-proxy:3128",
        "NO_PROXY": "localhost,.corp",
    }
    assert env.sources["HTTPS_PROXY"] == "/etc/systemd/system.conf"
    assert env.sources["NO_PROXY"] == "/etc/systemd/system.conf.d/50-vendor.conf"


def test_k3s_environment_files_with_specifier() -> None:
    """k3s's unit names /etc/default/%N: the specifier is the unit name without .service."""
    env = effective_environment(HostFS(str(HOSTS / "k3s")), "k3s.service")
    assert env.variables["HTTPS_PROXY"] == "http://k3s-proxy:3128"
    assert env.sources["HTTPS_PROXY"] == "/etc/default/k3s"
    assert env.variables["CONTAINERD_HTTPS_PROXY"] == "http://containerd-only:3128"


def test_malformed_unit_keeps_what_systemd_keeps() -> None:
    """A broken header, quote or specifier drops only what systemd drops, each named."""
    env = effective_environment(HostFS(str(HOSTS / "malformed")), "docker.service")
    assert env.variables == {"GOOD": "1"}
    assert len(env.problems) == 4
    assert not any("p%40ss" in p or "unterminated:3128" in p for p in env.problems)


def test_missing_unit(tmp_path: Path) -> None:
    """No unit file anywhere: not found, empty environment."""
    env = effective_environment(HostFS(str(tmp_path)), "containerd.service")
    assert not env.found
    assert env.variables == {}


def test_masked_unit(tmp_path: Path) -> None:
    """A unit linked to /dev/null (systemctl mask) is masked, its drop-ins unread."""
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/docker.service").symlink_to("/dev/null")
    (tmp_path / "lib/systemd/system/docker.service").write_text("[Service]\nEnvironment=A=1\n")
    env = effective_environment(HostFS(str(tmp_path)), "docker.service")
    assert env.masked
    assert not env.found
    assert env.variables == {}


def test_unit_alias_symlink_followed_inside_root(tmp_path: Path) -> None:
    """An absolute symlink in the node's unit dir is followed inside the host root."""
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt/containerd.service").write_text(
        "[Service]\nEnvironment=HTTPS_PROXY=http://p:1\n"
    )
    (tmp_path / "etc/systemd/system/containerd.service").symlink_to("/opt/containerd.service")
    env = effective_environment(HostFS(str(tmp_path)), "containerd.service")
    assert env.variables == {"HTTPS_PROXY": "http://p:1"}


def test_suggested_dropin() -> None:
    """The drop-in path advised for a unit is the one Docker's docs name."""
    env = effective_environment(HostFS(str(HOSTS / "docker-containerd")), "containerd.service")
    assert env.suggested_dropin == "/etc/systemd/system/containerd.service.d/http-proxy.conf"


@given(st.text())
def test_environment_value_never_crashes(rvalue: str) -> None:
    """Any Environment= value gives assignments and problems, never an exception."""
    pairs, _ = parse_environment_value(rvalue, unit_name="x.service")
    assert all("=" not in name for name, _ in pairs)


@given(st.text())
def test_unit_and_environment_file_never_crash(text: str) -> None:
    """Any unit text and any environment file parse without an exception."""
    parse_unit_environment("[Service]\n" + text, "/u", "u.service")
    parse_environment_file(text)


@given(
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
    value=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=30,
    ),
)
def test_double_quoted_assignment_round_trips(name: str, value: str) -> None:
    """Any value, written double-quoted with \\ and " escaped and % doubled, reads back as is."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    assert parse_environment_value(f'"{name}={escaped}"', unit_name="u.service") == (
        [(name, value)],
        [],
    )
