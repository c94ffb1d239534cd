"""Paths on the node, seen through `--host-root`.

The node's filesystem is mounted somewhere else (`/host` in the DaemonSet), and its symlinks are
absolute paths meaning the node's root (`/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf`)
must be followed inside the host root, never into the agent's own container.
"""

from __future__ import annotations

import os
from pathlib import Path

_MAX_LINKS = 40  # as Linux's path resolution, so a symlink loop ends


def host_path(root: str | os.PathLike[str], path: str) -> Path:
    """Resolve `path` (as the node names it) to where it is visible under `root`.

    Symlinks are followed as the node would follow them, absolute targets staying inside `root`.
    The result may not exist; a loop leaves the path as it is.
    """
    base = Path(root)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = base.joinpath(*resolved, part)
        if candidate.is_symlink() and links < _MAX_LINKS:
            links += 1
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return base.joinpath(*resolved)


def read_host_text(root: str | os.PathLike[str], path: str) -> str | None:
    """The text of a node file, or None when it does not exist or cannot be read."""
    try:
        return host_path(root, path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
