"""Docker Hub in the lab: tests/dockerhub_standin.py behind Docker Hub's names, lab CA's TLS.

The stand-in answers for `registry-1.docker.io`, `auth.docker.io` and
`production.cloudfront.docker.com` on port 443 of one lab address in the "net" namespace; only the
lab's DNS server resolves those names to it. It has one account (`USER`, `password`). It writes
what it received to a state file after every request; it cannot reset its counts, so tests take
`counts()` before and after and subtract. `mode()` switches its behaviour for a `with` block
through its mode file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .netns import Namespace
from .pki import CertificateAuthority

STANDIN = Path(__file__).resolve().parents[1] / "dockerhub_standin.py"
NAMES = ("registry-1.docker.io", "auth.docker.io", "production.cloudfront.docker.com")
MODES = ("normal", "ratelimited", "noheaders", "token-ratelimited")
USER = "labuser"
WINDOW_SECONDS = 21600
ANONYMOUS_LIMIT = 100
AUTHENTICATED_LIMIT = 200
MANIFEST_PATH = "/v2/ratelimitpreview/test/manifests/latest"


@dataclass(frozen=True)
class RequestCounts:
    """What the stand-in received; subtract an earlier snapshot to get what happened since."""

    requests: Counter[str] = field(default_factory=Counter)  # "METHOD /path" -> count
    token_requests: Counter[str] = field(default_factory=Counter)  # account or "anonymous"
    token_rejected: Counter[str] = field(default_factory=Counter)
    manifest_gets: int = 0

    @classmethod
    def of(cls, state: dict[str, Any]) -> RequestCounts:
        return cls(
            Counter(state.get("requests", {})),
            Counter(state.get("token_requests", {})),
            Counter(state.get("token_rejected", {})),
            int(state.get("manifest_gets", 0)),
        )

    def __sub__(self, earlier: RequestCounts) -> RequestCounts:
        return RequestCounts(
            self.requests - earlier.requests,
            self.token_requests - earlier.token_requests,
            self.token_rejected - earlier.token_rejected,
            self.manifest_gets - earlier.manifest_gets,
        )

    @property
    def manifest_heads(self) -> int:
        return self.requests[f"HEAD {MANIFEST_PATH}"]

    @property
    def v2_probes(self) -> int:
        """`GET /v2/` (the http check), with or without the trailing slash."""
        return self.requests["GET /v2/"] + self.requests["GET /v2"]


class DockerHubStandin:
    """The running stand-in: its account, state file and mode switch."""

    def __init__(self, workdir: Path, address: str) -> None:
        self.workdir = workdir
        self.address = address
        self.user = USER
        # Random, so a test can search every output for it.
        self.password = f"lab-pw-{secrets.token_hex(8)}"
        self.state_file = workdir / "dockerhub-state.json"
        self.mode_file = workdir / "dockerhub-mode"
        self._configs = 0

    def start(self, net: Namespace, ca: CertificateAuthority) -> None:
        """Start it in `net` without waiting; the lab waits until it listens."""
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        files = ca.issue(certs, "dockerhub", list(NAMES))
        argv = [
            sys.executable, str(STANDIN),
            "--listen", f"{self.address}:443",
            "--cert", str(files.cert), "--key", str(files.key),
            "--state-file", str(self.state_file),
            "--mode-file", str(self.mode_file),
            "--user", self.user, "--password", self.password,
            "--window", str(WINDOW_SECONDS),
            "--anonymous-limit", str(ANONYMOUS_LIMIT),
            "--authenticated-limit", str(AUTHENTICATED_LIMIT),
        ]  # fmt: skip
        net.spawn(
            "dockerhub",
            argv,
            self.workdir / "dockerhub.log",
            listens=[("tcp", self.address, 443)],
            wait=False,
        )

    # ----- reading and switching ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The stand-in's state file as it is now (written before each answer is sent)."""
        result: dict[str, Any] = json.loads(self.state_file.read_text(encoding="utf-8"))
        return result

    def counts(self) -> RequestCounts:
        return RequestCounts.of(self.state())

    @contextlib.contextmanager
    def mode(self, mode: str) -> Iterator[None]:
        """Answer in `mode` for the duration of a `with` block, then as before."""
        assert mode in MODES, mode
        before = self.mode_file.read_text() if self.mode_file.exists() else None
        self._write_mode(mode)
        try:
            yield
        finally:
            if before is None:
                self.mode_file.unlink(missing_ok=True)
            else:
                self._write_mode(before)

    def _write_mode(self, mode: str) -> None:
        # Renamed into place: the stand-in reads the file on every request.
        tmp = self.mode_file.with_suffix(".tmp")
        tmp.write_text(mode, encoding="utf-8")
        tmp.replace(self.mode_file)

    # ----- files a test hands to the probe -------------------------------------------------

    def write_credentials(self, directory: Path, password: str | None = None) -> Path:
        """A Kubernetes-style `.dockerconfigjson` for the account; `password` for a wrong one."""
        secret = self.password if password is None else password
        auth = base64.b64encode(f"{self.user}:{secret}".encode()).decode()
        path = directory / ".dockerconfigjson"
        path.write_text(
            json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth}}}),
            encoding="utf-8",
        )
        path.chmod(0o600)
        return path

    def write_config(
        self,
        *,
        authenticated: bool = True,
        password: str | None = None,
        ratelimit_interval: str = "5m",
        extra_yaml: str = "",
    ) -> Path:
        """A fresh directory with a probe config (and, if `authenticated`, its credentials file).

        The config is `dockerhub: {ratelimit_interval: ..., credentials_file: ...}` plus
        `extra_yaml` (more top-level keys). Returns the config file's path.
        """
        self._configs += 1
        directory = self.workdir / f"dockerhub-config-{self._configs}"
        directory.mkdir()
        lines = ["dockerhub:", f"  ratelimit_interval: {ratelimit_interval}"]
        if authenticated:
            credentials = self.write_credentials(directory, password)
            lines.append(f"  credentials_file: {credentials}")
        path = directory / "config.yaml"
        path.write_text("\n".join(lines) + "\n" + extra_yaml, encoding="utf-8")
        return path
