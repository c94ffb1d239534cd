"""What one image check learned: the value every view (text, JSON, metrics) renders."""

from __future__ import annotations

from dataclasses import dataclass

from probe.config import HostPort
from probe.reasons import ROOT_CAUSE, Reason
from probe.result import CheckResult

CONFIGURED = "configured"  # named with --image or in the config's `images:`
SANDBOX = "sandbox"  # the node's sandbox (pause) image: no pod starts without it


@dataclass(frozen=True)
class ImageReport:
    """Whether the node's runtime would pull one image, and if not, the one reason why."""

    image: str  # as written (the `image` label)
    reference: str  # as the runtime resolves it: docker.io/library/nginx:latest
    role: str  # CONFIGURED or SANDBOX
    registry: str  # the registry's label, host[:port]
    reason: Reason | None  # None: pullable
    detail: str
    checks: tuple[CheckResult, ...]
    finished_at: float
    host: HostPort | None = None  # the host that serves it, or the one whose answer failed it
    digest: str | None = None
    media_type: str | None = None
    credentials: str | None = None  # who was offered, never the secret; None: anonymous
    platform: str | None = None  # the platform checked in the index, when it was
    repository: str = ""  # the repository path: library/nginx
    tag: str | None = None  # None for a digest reference
    docker_hub: bool = False
    ecr: bool = False  # an Amazon ECR registry (12-hour tokens)
    source: str = "config"  # "flag", "config", or the runtime file naming the sandbox image

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def root_cause(self) -> int | None:
        return None if self.reason is None else ROOT_CAUSE[self.reason]

    @property
    def failure(self) -> CheckResult | None:
        """The check whose failure is the image's reason (for its endpoint and advice)."""
        if self.reason is None:
            return None
        return next(
            (c for c in self.checks if c.reason == self.reason and c.endpoint == self.host),
            next((c for c in self.checks if c.reason == self.reason), None),
        )
