"""The lab's Go client (gopull/main.go): Go's resolver, dialer and HTTP transport as containerd
sets them up, run in a lab node so the probe's verdict can be held against Go's own.

`build_gopull(workdir)` compiles it with the machine's Go toolchain (Debian's golang-go, installed
by tests/run-all.sh; about a second: the program uses Go's standard library alone, nothing is
fetched) and returns the binary, which lives in `workdir` only. `go_pull(lab, binary, name)`
runs it in the lab's node and returns what it saw (`GoPull`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lab import DNS_ADDRESS, LAB_DIR, Lab

SOURCE = LAB_DIR / "gopull" / "main.go"
BUILD_SECONDS = 120


@dataclass(frozen=True)
class Attempt:
    """One address Go's dialer tried: seconds from the request's start, and its error."""

    address: str  # "198.18.1.70:443" or "[2001:2:0:1::70]:443"
    start: float
    done: float
    error: str

    @property
    def family(self) -> int:
        return 6 if self.address.startswith("[") else 4


@dataclass(frozen=True)
class GoPull:
    """What one `GET https://NAME/v2/` through Go's transport did."""

    attempts: tuple[Attempt, ...]
    connected: str  # the address the request went over ("" when none)
    status: int  # 0 when the request failed
    error: str
    elapsed: float
    raw: str

    @property
    def ok(self) -> bool:
        """The registry answered as a pull needs it: 200, or 401 asking for a token."""
        return self.status in (200, 401)

    @property
    def connected_family(self) -> int | None:
        return None if not self.connected else 6 if self.connected.startswith("[") else 4

    @classmethod
    def parse(cls, text: str) -> GoPull:
        document: dict[str, Any] = json.loads(text)
        attempts = tuple(
            Attempt(a["address"], a["start"], a.get("done", 0.0), a.get("error", ""))
            for a in document.get("attempts") or []
        )
        return cls(
            attempts,
            document.get("connected", ""),
            document.get("status", 0),
            document.get("error", ""),
            document["elapsed"],
            text,
        )


def go_toolchain() -> str | None:
    """The `go` command, or None when the machine has none."""
    return shutil.which("go")


def build_gopull(workdir: Path) -> Path:
    """Compile gopull/main.go into `workdir`, with its build cache there too."""
    go = go_toolchain()
    assert go is not None, "no go toolchain (Debian: golang-go)"
    binary = workdir / "gopull"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env |= {
        "GOCACHE": str(workdir / "gocache"),
        "GOPATH": str(workdir / "gopath"),
        "GOPROXY": "off",  # the standard library only: nothing to fetch
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    done = subprocess.run(
        [go, "build", "-o", str(binary), str(SOURCE)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"go build {SOURCE}: {done.stderr.strip()}")
    return binary


def go_pull(lab: Lab, binary: Path, name: str, *, timeout: float = 10.0) -> GoPull:
    """Run the Go client in the lab's node against `name`, trusting the lab's CA."""
    ca_file = lab.workdir / "lab-ca.pem"
    if not ca_file.exists():
        ca_file.write_bytes(lab.ca.pem)
    argv = [str(binary), name, f"{DNS_ADDRESS}:53", str(ca_file), f"{timeout:g}s"]
    done = lab.run_in(argv, timeout=timeout + 10)
    if done.returncode != 0:
        raise RuntimeError(f"{argv}: exit {done.returncode}: {done.stderr.strip()}")
    return GoPull.parse(done.stdout)
