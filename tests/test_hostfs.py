"""Node files under --host-root: links resolved inside the root, reads bounded, nothing hangs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from probe.node.hostfs import MAX_FILE_BYTES, MAX_LINKS, HostFS


def node(tmp_path: Path) -> tuple[Path, HostFS]:
    root = tmp_path / "node"
    (root / "etc").mkdir(parents=True)
    return root, HostFS(str(root))


def test_absolute_symlink_stays_in_root(tmp_path: Path) -> None:
    """/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf is read inside the root."""
    root, fs = node(tmp_path)
    (root / "run/systemd/resolve").mkdir(parents=True)
    (root / "run/systemd/resolve/stub-resolv.conf").write_text("nameserver 127.0.0.53\n")
    os.symlink("/run/systemd/resolve/stub-resolv.conf", root / "etc/resolv.conf")
    assert fs.read_text("/etc/resolv.conf") == "nameserver 127.0.0.53\n"


def test_relative_symlink_and_dotdot(tmp_path: Path) -> None:
    """Relative links and `..` resolve as the node resolves them, never above the root."""
    root, fs = node(tmp_path)
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ssl/bundle.pem").write_text("pem")
    os.symlink("../bundle.pem", root / "etc/ssl/certs/ca.pem")
    assert fs.read_text("/etc/ssl/certs/ca.pem") == "pem"
    assert fs.list_dir("/../../etc") == ("ssl",)


def test_links_never_leave_the_root(tmp_path: Path) -> None:
    """A link to `/../../secret`, to an absolute outside path or through `..` stays inside."""
    root, fs = node(tmp_path)
    (tmp_path / "secret").write_text("outside the host root")
    os.symlink("/../../secret", root / "etc/up")
    os.symlink(str(tmp_path / "secret"), root / "etc/absolute")
    os.symlink("../../secret", root / "etc/relative")
    for path in ("/etc/up", "/etc/absolute", "/etc/relative", "/../secret"):
        assert fs.read_text(path) is None, path


def test_a_chain_of_links_longer_than_linux_allows_is_refused(tmp_path: Path) -> None:
    """41 links in a row do not read, even when the last one points at a real file."""
    root, fs = node(tmp_path)
    (tmp_path / "secret").write_text("outside the host root")
    (root / "etc/real").write_text("inside")
    os.symlink("/etc/real", root / "etc/link0")
    for index in range(1, MAX_LINKS + 1):
        os.symlink(f"/etc/link{index - 1}", root / f"etc/link{index}")
    assert fs.read_text(f"/etc/link{MAX_LINKS - 1}") == "inside"
    assert fs.read_text(f"/etc/link{MAX_LINKS}") is None
    assert any("symbolic links" in p.message for p in fs.problems)


def test_symlink_loop_ends(tmp_path: Path) -> None:
    """A symlink loop ends with a path that does not read and a named problem, not a hang."""
    root, fs = node(tmp_path)
    os.symlink("/b", root / "a")
    os.symlink("/a", root / "b")
    assert fs.read_text("/a") is None
    assert [p.source for p in fs.problems] == ["/a"]


def test_missing_file_is_none_and_no_problem(tmp_path: Path) -> None:
    """A file the node does not have reads as None, and that is not a problem."""
    _, fs = node(tmp_path)
    assert fs.read_text("/etc/nothing") is None
    assert fs.problems == []


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO as /etc/hosts would block a read forever: it is refused, with a problem."""
    root, fs = node(tmp_path)
    os.mkfifo(root / "etc/hosts")
    assert fs.read_text("/etc/hosts") is None
    assert "FIFO" in fs.problems[0].message


def test_a_device_is_never_read(tmp_path: Path) -> None:
    """A link to /dev/zero (inside the root, a bind of the real one) is not a regular file."""
    root, fs = node(tmp_path)
    (root / "dev").mkdir()
    os.symlink("/dev/zero", root / "etc/zero")
    assert fs.read_text("/etc/zero") is None  # /dev/zero of the root does not exist
    done = subprocess.run(["mknod", str(root / "dev/zero"), "c", "1", "5"], check=False)
    if done.returncode != 0:
        pytest.skip("cannot make a device node here")
    assert fs.read_text("/etc/zero") is None
    assert "device" in fs.problems[-1].message


def test_a_file_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    """A huge node file is a problem, not a truncated read and not a memory spike."""
    root, fs = node(tmp_path)
    with (root / "etc/big").open("wb") as big:
        big.truncate(MAX_FILE_BYTES + 1)
    assert fs.read_bytes("/etc/big") is None
    assert "larger than" in fs.problems[0].message
    assert fs.read_bytes("/etc/big", limit=MAX_FILE_BYTES + 1) is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop the capability")
def test_an_untraversable_directory_is_a_problem_not_a_crash() -> None:
    """Without DAC override, a directory the agent cannot search is named, and the rest read."""
    base = Path(tempfile.mkdtemp(prefix="rp-hostfs-"))  # pytest's tmp dirs are 0700 to nobody
    try:
        base.chmod(0o755)
        _untraversable(base)
    finally:
        (base / "node/etc/locked").chmod(0o700)
        shutil.rmtree(base)


def _untraversable(tmp_path: Path) -> None:
    root, _ = node(tmp_path)
    (root / "etc/locked").mkdir()
    (root / "etc/locked/file").write_text("x")
    (root / "etc/open").write_text("y")
    (root / "etc/locked").chmod(0)
    script = (
        "import sys; from probe.node.hostfs import HostFS; fs = HostFS(sys.argv[1]); "
        "print(fs.read_text('/etc/locked/file'), fs.read_text('/etc/open'), "
        "[p.message for p in fs.problems])"
    )
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-c", script, str(root)],
        capture_output=True, text=True, timeout=30, check=False,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("None y ['/etc/locked/file cannot be read: permission denied']")


def test_signatures_see_a_change(tmp_path: Path) -> None:
    """What was read is recorded; a rewrite, a new file in a listed directory, or a retargeted
    link changes the signature."""
    root, fs = node(tmp_path)
    (root / "etc/a").write_text("1")
    (root / "etc/b").write_text("2")
    os.symlink("/etc/a", root / "etc/current")
    fs.read_text("/etc/current")
    fs.list_dir("/etc")
    reads = dict(fs.reads)
    assert not fs.changed(reads)
    os.unlink(root / "etc/current")
    os.symlink("/etc/b", root / "etc/current")
    assert fs.changed(reads)
    assert not fs.changed({"/etc/current": fs.signature("/etc/current")})
    reads = {"/etc/missing": fs.signature("/etc/missing")}
    (root / "etc/missing").write_text("now here")
    assert fs.changed(reads)
