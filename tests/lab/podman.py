"""Podman for the image test: its own storage, a Debian base made here, builds and runs.

No image registry is reachable from the lab machines, so the base image is made locally: a
`debootstrap --variant=minbase` of the host's Debian release from the mirror apt already uses,
with Debian's python3, imported with `podman import`. It stands in for both pinned bases of the
Dockerfile (Debian 12 with /usr/bin/python3). Making it takes about a minute, so it is kept in
podman's storage under CACHE_DIR, tagged with a hash of what went into it (release, mirror,
packages, this recipe), and made again only when one of those changes.

Podman here runs with its own storage root (CACHE_DIR/storage) and run root, so it never touches
another user's images, and with CONTAINERS_CONF pointing at a file that sets no default ulimits
(this machine forbids raising rlimits) and the runc runtime (crun refuses hybrid cgroups).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("REGISTRY_PROBE_TEST_CACHE", "/var/cache/registry-probe-tests"))
RUN_ROOT = Path("/run/registry-probe-tests/containers")
BASE_REPOSITORY = "localhost/registry-probe-test-base"
BASE_PACKAGES = ("python3",)
# Bump when the recipe below changes, so cached bases are made again.
BASE_RECIPE = "1: minbase + python3, apt lists, docs, man pages and locales removed"
# What a slim base leaves out (as Debian's -slim images do); apt recreates its lists when asked.
SLIMMED = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
)
APT_DIRS = ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial")
REQUIRED_TOOLS = ("podman", "debootstrap", "runc", "apt-get")
CONTAINERS_CONF = """\
# Written by tests/lab/podman.py. This machine forbids raising rlimits, so containers get none
# by default; crun refuses the host's hybrid cgroup layout, runc does not.
[containers]
default_ulimits = []
[engine]
runtime = "runc"
"""


def missing_requirements() -> str | None:
    """Why podman images cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "building images needs root (podman storage, debootstrap)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"the image test needs {', '.join(missing)} (Debian: podman, debootstrap, runc)"
    return None


def debian_release() -> tuple[str, str]:
    """The host's Debian codename and the mirror apt takes its main component from."""
    fields = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines()
        if "=" in line
    )
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    targets = subprocess.run(
        ["apt-get", "indextargets", "--format", "$(TARGET_OF) $(RELEASE) $(COMPONENT) $(REPO_URI)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split("\n")
    for line in targets:
        parts = line.split()
        if len(parts) == 4 and parts[:3] == ["deb", codename, "main"]:
            return codename, parts[3]
    raise RuntimeError(f"apt has no deb source for {codename!r} main: {targets}")


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode} after {self.seconds:.1f}s\n"
            f"stdout:\n{self.stdout[-6000:]}\nstderr:\n{self.stderr[-6000:]}"
        )


class Podman:
    """podman with this test's storage and configuration."""

    def __init__(self, cache_dir: Path = CACHE_DIR) -> None:
        self.cache_dir = cache_dir
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        self.conf = self.cache_dir / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF, encoding="utf-8")

    def argv(self, *args: str) -> list[str]:
        return [
            "podman", "--root", str(self.cache_dir / "storage"), "--runroot", str(RUN_ROOT),
            "--cgroup-manager", "cgroupfs", *args,
        ]  # fmt: skip

    def run(self, *args: str, timeout: float, stdin: bytes | None = None) -> Completed:
        """Run podman ARGS; never raises on a non-zero exit (the caller judges it)."""
        argv = self.argv(*args)
        env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        env = {k: v for k, v in env.items() if "proxy" not in k.lower()}
        started = time.monotonic()
        done = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=timeout, env=env, check=False
        )
        return Completed(
            argv,
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
            time.monotonic() - started,
        )

    def image_exists(self, reference: str) -> bool:
        return self.run("image", "exists", reference, timeout=60).returncode == 0

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One base is made at a time, whichever test run asks for it."""
        with (self.cache_dir / "base.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def debian_base(self) -> str:
        """The local Debian + python3 base image, made (about a minute) only if not cached."""
        codename, mirror = debian_release()
        key = hashlib.sha256(
            "\n".join([codename, mirror, *BASE_PACKAGES, BASE_RECIPE]).encode()
        ).hexdigest()[:16]
        reference = f"{BASE_REPOSITORY}:{codename}-{key}"
        with self._lock():
            if self.image_exists(reference):
                return reference
            with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix="rootfs-") as tmp:
                rootfs = Path(tmp) / "rootfs"
                debootstrap = [
                    "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                    codename, str(rootfs), mirror,
                ]  # fmt: skip
                done = subprocess.run(
                    debootstrap, capture_output=True, text=True, timeout=900, check=False
                )
                if done.returncode != 0:
                    raise RuntimeError(f"debootstrap failed:\n{done.stdout[-4000:]}{done.stderr}")
                for relative in SLIMMED:
                    shutil.rmtree(rootfs / relative, ignore_errors=True)
                for relative in APT_DIRS:
                    (rootfs / relative).mkdir(parents=True)
                tar = subprocess.run(
                    ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                    capture_output=True,
                    timeout=300,
                    check=True,
                )
                imported = self.run("import", "-", reference, stdin=tar.stdout, timeout=300)
                if imported.returncode != 0:
                    raise RuntimeError(imported.describe())
            # Older bases of this repository (another release or recipe) go.
            listed = self.run("images", "--format", "{{.Repository}}:{{.Tag}}", timeout=60)
            for image in listed.stdout.split():
                if image.startswith(f"{BASE_REPOSITORY}:") and image != reference:
                    self.run("rmi", image, timeout=120)
        return reference
