"""Node paths under --host-root: the node's absolute symlinks stay inside the root."""

from __future__ import annotations

import os
from pathlib import Path

from probe.node.hostfs import host_path, read_host_text


def test_absolute_symlink_stays_in_root(tmp_path: Path) -> None:
    """/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf is read inside the root."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "run/systemd/resolve").mkdir(parents=True)
    (tmp_path / "run/systemd/resolve/stub-resolv.conf").write_text("nameserver 127.0.0.53\n")
    os.symlink("/run/systemd/resolve/stub-resolv.conf", tmp_path / "etc/resolv.conf")
    assert host_path(tmp_path, "/etc/resolv.conf") == (
        tmp_path / "run/systemd/resolve/stub-resolv.conf"
    )
    assert read_host_text(tmp_path, "/etc/resolv.conf") == "nameserver 127.0.0.53\n"


def test_relative_symlink_and_dotdot(tmp_path: Path) -> None:
    """Relative links and `..` resolve as the node resolves them, never above the root."""
    (tmp_path / "etc/ssl/certs").mkdir(parents=True)
    (tmp_path / "etc/ssl/bundle.pem").write_text("pem")
    os.symlink("../bundle.pem", tmp_path / "etc/ssl/certs/ca.pem")
    assert read_host_text(tmp_path, "/etc/ssl/certs/ca.pem") == "pem"
    assert host_path(tmp_path, "/../../etc") == tmp_path / "etc"


def test_symlink_loop_ends(tmp_path: Path) -> None:
    """A symlink loop ends with a path that does not read, not a hang."""
    os.symlink("/b", tmp_path / "a")
    os.symlink("/a", tmp_path / "b")
    assert read_host_text(tmp_path, "/a") is None


def test_missing_file_is_none(tmp_path: Path) -> None:
    """A file the node does not have reads as None."""
    assert read_host_text(tmp_path, "/etc/nothing") is None
