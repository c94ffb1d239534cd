"""Problems found while reading the node: a file a runtime cannot use as written.

A problem names the file (as the node names it), the line when there is one, what is wrong, and
what the runtime does instead, so that a person can fix the file. Problems are part of the node
view and reach every view of it: the `check` report, the JSON, the agent's log and a metric.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeProblem:
    """One thing on the node that a runtime cannot use as written."""

    source: str  # the file, as the node names it
    message: str  # what is wrong, in words that name the file
    line: int | None = None
    effect: str = ""  # what the runtime does instead ("containerd ignores this line")
    runtime: str = "system"  # containerd, dockerd, crio, k3s, rke2; system: read by every one

    @property
    def where(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"

    def describe(self) -> str:
        effect = f" ({self.effect})" if self.effect else ""
        return f"{self.message}{effect}"
