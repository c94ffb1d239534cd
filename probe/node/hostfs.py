"""The node's files, seen through `--host-root`: read as the node would, and never outside it.

The node's filesystem is mounted somewhere else (`/host` in the DaemonSet), and its symlinks are
absolute paths meaning the node's root
(`/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf`). They must be followed inside the
host root, never into the agent's own container, and nothing a node file says may lead a read
elsewhere. The rules (openat2(2)'s `RESOLVE_IN_ROOT`, done as a walk of `openat` calls, since
Python has no openat2):

- every component is opened relative to the directory before it with `O_NOFOLLOW`, so no
  symlink is ever followed by the kernel; a symlink is read and its target resolved by the walk,
  an absolute target starting again at the host root, and `..` never climbs above the root;
- more than 40 symlinks on one path (Linux's own bound) is a loop: the path does not read;
- a file is opened with `O_NONBLOCK` and read only when it is a regular file, and at most
  `MAX_FILE_BYTES` of it: a FIFO, a device (`/dev/zero`) or a huge file never hangs or grows the
  agent; a larger file is a problem, not a truncated read;
- a directory lists at most `MAX_DIRECTORY_ENTRIES` names.

A path that does not exist reads as None: that is normal. Anything else that stops a read (a
directory without search permission, a FIFO, a loop, a file too large) also reads as None, and is
recorded as a `NodeProblem` naming the path, so that a view shows it.

Every read is also recorded with a signature of what it read (`signature`): the node view keeps
what it built while the signatures of its reads stay the same (`changed`).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from probe.node.problems import NodeProblem

MAX_LINKS = 40  # as Linux's path resolution (MAXSYMLINKS)
MAX_FILE_BYTES = 4 << 20  # a CA bundle is a few hundred KiB; no node config file is near this
MAX_DIRECTORY_ENTRIES = 4096

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

# What one path looked like when it was read: the links on its way and the final object's
# identity (device, inode, size, mtime, ctime), or the deepest directory that exists when the
# path does not.
Signature = tuple[object, ...]


class _Refused(Exception):
    """A path that must not be read; the message says why, for a NodeProblem."""


@dataclass
class HostFS:
    """The node's files under `root`. Reads are confined to it, bounded, and recorded."""

    root: str
    reads: dict[str, Signature] = field(default_factory=dict)
    problems: list[NodeProblem] = field(default_factory=list)

    def fork(self) -> HostFS:
        """A reader of the same root with its own record of reads and problems."""
        return HostFS(self.root)

    # -- reading ------------------------------------------------------------------------------

    def read_bytes(self, path: str, limit: int = MAX_FILE_BYTES) -> bytes | None:
        """A regular file's content, or None (missing, or refused: then a problem is recorded)."""
        with self._resolved(path) as found:
            if found is None:
                return None
            parent, name, info = found
            if not stat.S_ISREG(info.st_mode):
                if stat.S_ISDIR(info.st_mode):
                    return None
                self._problem(path, f"is not a regular file ({_kind(info.st_mode)}): not read")
                return None
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=parent)
            except OSError as error:
                self._problem(path, f"cannot be read: {_why(error)}")
                return None
            try:
                opened = os.fstat(fd)
                if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                    self._problem(path, "changed while it was read: not read")
                    return None
                data = _read_at_most(fd, limit + 1)
            except OSError as error:
                self._problem(path, f"cannot be read: {_why(error)}")
                return None
            finally:
                os.close(fd)
        if len(data) > limit:
            self._problem(path, f"is larger than {limit} bytes: not read")
            return None
        return data

    def read_text(self, path: str, limit: int = MAX_FILE_BYTES) -> str | None:
        """A regular file as text (UTF-8, undecodable bytes replaced), or None."""
        data = self.read_bytes(path, limit)
        return None if data is None else data.decode("utf-8", errors="replace")

    def list_dir(self, path: str) -> tuple[str, ...]:
        """The names in a directory, sorted; empty when it is missing or not a directory."""
        with self._resolved(path) as found:
            if found is None:
                return ()
            parent, name, info = found
            if not stat.S_ISDIR(info.st_mode):
                return ()
            try:
                fd = os.open(
                    name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
                )
            except OSError as error:
                self._problem(path, f"cannot be listed: {_why(error)}")
                return ()
            try:
                names: list[str] = []
                with os.scandir(fd) as entries:
                    for entry in entries:
                        names.append(entry.name)
                        if len(names) > MAX_DIRECTORY_ENTRIES:
                            self._problem(
                                path, f"has more than {MAX_DIRECTORY_ENTRIES} entries: not read"
                            )
                            return ()
            except OSError as error:
                self._problem(path, f"cannot be listed: {_why(error)}")
                return ()
            finally:
                os.close(fd)
        return tuple(sorted(names))

    def kind(self, path: str) -> str | None:
        """ "file", "dir", "other", or None when the path does not exist (links followed)."""
        with self._resolved(path) as found:
            if found is None:
                return None
            mode = found[2].st_mode
            if stat.S_ISREG(mode):
                return "file"
            return "dir" if stat.S_ISDIR(mode) else "other"

    def is_dir(self, path: str) -> bool:
        return self.kind(path) == "dir"

    def is_file(self, path: str) -> bool:
        return self.kind(path) == "file"

    def size(self, path: str) -> int | None:
        with self._resolved(path) as found:
            return None if found is None else found[2].st_size

    def files(self, directory: str, pattern: str) -> list[str]:
        """Regular files of a directory matching a glob `pattern`, as the node names them."""
        names = [n for n in self.list_dir(directory) if fnmatch.fnmatchcase(n, pattern)]
        base = directory.rstrip("/")
        return [f"{base}/{n}" for n in names if self.is_file(f"{base}/{n}")]

    def directories(self, directory: str) -> list[str]:
        """The names of a directory's subdirectories (links to directories included)."""
        base = directory.rstrip("/")
        return [n for n in self.list_dir(directory) if self.is_dir(f"{base}/{n}")]

    def is_masked(self, path: str) -> bool:
        """Whether the path links to /dev/null (how `systemctl mask` hides a unit)."""
        trail: list[object] = []
        try:
            with self._walk(path, trail):
                pass
        except (_Refused, OSError):
            return False
        return any(isinstance(t, str) and os.path.normpath(t) == "/dev/null" for t in trail)

    # -- signatures ---------------------------------------------------------------------------

    def signature(self, path: str) -> Signature:
        """What `path` is now, to compare with a signature recorded when it was read."""
        trail: list[object] = []
        try:
            with self._walk(path, trail) as found:
                if found is None:
                    return ("missing", *trail)
                info = found[2]
                return (
                    *trail,
                    info.st_dev,
                    info.st_ino,
                    info.st_size,
                    info.st_mtime_ns,
                    info.st_ctime_ns,
                )
        except (_Refused, OSError) as error:
            return ("refused", str(error))

    def changed(self, reads: dict[str, Signature]) -> bool:
        """Whether any of these reads would now read something else."""
        return any(self.signature(path) != seen for path, seen in reads.items())

    # -- the walk -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _resolved(self, path: str) -> Iterator[tuple[int, str, os.stat_result] | None]:
        """(parent directory fd, final name, its stat) of `path`, or None; records the read."""
        trail: list[object] = []
        try:
            with self._walk(path, trail) as found:
                if found is None:
                    self.reads[path] = ("missing", *trail)
                else:
                    info = found[2]
                    self.reads[path] = (
                        *trail,
                        info.st_dev,
                        info.st_ino,
                        info.st_size,
                        info.st_mtime_ns,
                        info.st_ctime_ns,
                    )
                yield found
        except _Refused as refused:
            self.reads[path] = ("refused", str(refused))
            self._problem(path, str(refused))
            yield None
        except OSError as error:
            self.reads[path] = ("refused", _why(error))
            self._problem(path, f"cannot be read: {_why(error)}")
            yield None

    @contextlib.contextmanager
    def _walk(
        self, path: str, trail: list[object]
    ) -> Iterator[tuple[int, str, os.stat_result] | None]:
        """Resolve `path` inside the root; yields (parent fd, name, stat) or None if missing.

        Raises _Refused for a loop, and OSError (permission) for what cannot be walked.
        """
        root = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        stack = [root]  # directory fds from the root down; stack[-1] is the current directory
        try:
            parts = _components(path)
            links = 0
            if not parts:
                yield stack[-1], ".", os.stat(".", dir_fd=stack[-1], follow_symlinks=False)
                return
            while parts:
                part = parts.pop(0)
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                try:
                    info = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
                except FileNotFoundError:
                    trail.append(_dir_identity(stack[-1]))
                    yield None
                    return
                except NotADirectoryError:
                    yield None
                    return
                if stat.S_ISLNK(info.st_mode):
                    links += 1
                    if links > MAX_LINKS:
                        raise _Refused(
                            f"has more than {MAX_LINKS} symbolic links (a loop?): not read"
                        )
                    target = os.readlink(part, dir_fd=stack[-1])
                    trail.append(target)
                    if target.startswith("/"):
                        for fd in stack[1:]:
                            os.close(fd)
                        del stack[1:]
                    parts = _components(target) + parts
                    continue
                if not parts:
                    yield stack[-1], part, info
                    return
                if not stat.S_ISDIR(info.st_mode):
                    yield None
                    return
                stack.append(os.open(part, _PATH_FLAGS | os.O_DIRECTORY, dir_fd=stack[-1]))
            # The path ended on `..` or a link to a directory: the current directory itself.
            yield stack[-1], ".", os.stat(".", dir_fd=stack[-1], follow_symlinks=False)
        finally:
            for fd in stack:
                os.close(fd)

    def _problem(self, path: str, message: str) -> None:
        problem = NodeProblem(source=path, message=f"{path} {message}")
        if problem not in self.problems:
            self.problems.append(problem)


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _dir_identity(fd: int) -> tuple[int, int, int]:
    info = os.fstat(fd)
    return info.st_ino, info.st_mtime_ns, info.st_ctime_ns


def _read_at_most(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        try:
            chunk = os.read(fd, min(left, 1 << 16))
        except BlockingIOError:
            break  # only regular files are read; they never block
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _why(error: OSError) -> str:
    if error.errno == errno.EACCES or error.errno == errno.EPERM:
        return "permission denied"
    return (error.strerror or type(error).__name__).lower()
