"""How long what is kept per endpoint outlives the endpoint's last report.

A registry's endpoints are partly the outside world's choice: its token realm host is whatever
the registry's `WWW-Authenticate` challenge names, and a registry (or whatever answers in its
name) may name a new one on every request. What the agent keeps per endpoint across probes,
the `registry_probe_failures_total` counters and the log's last known state of each check,
would then grow without end (issue 11: 3,360 series in 11 minutes against a registry rotating
its realm). Everything else is rendered from the latest report alone and needs no such rule.

The rule: an endpoint is remembered while it appears in one of its registry's last
`FORGET_AFTER_REPORTS` reports, and of the endpoints absent from the latest report at most
`MAX_ABSENT_ENDPOINTS` per registry are remembered, the most recently seen first. A realm that
vanishes while its registry is down (no `/v2/` answer, so no challenge) keeps its counters for
an hour at the default interval; a registry rotating its realm costs at most that many stale
endpoints. A counter that is forgotten and comes back starts again from its first failure,
which Prometheus' `increase()` and `rate()` treat as a new series.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from probe.result import RegistryReport

FORGET_AFTER_REPORTS = 60  # an hour at the default 60 s interval
MAX_ABSENT_ENDPOINTS = 4  # a registry has one realm host; mirrors come and go with the node


@dataclass
class _Sightings:
    reports: int = 0  # reports of the registry seen so far
    last_seen: dict[str, int] = field(default_factory=dict)  # endpoint label -> report number


class EndpointRetention:
    """Which endpoints of each registry are still remembered, fed one report at a time."""

    def __init__(
        self,
        *,
        forget_after_reports: int = FORGET_AFTER_REPORTS,
        max_absent: int = MAX_ABSENT_ENDPOINTS,
    ) -> None:
        if forget_after_reports < 1 or max_absent < 0:
            raise ValueError("forget_after_reports must be at least 1, max_absent at least 0")
        self._forget_after = forget_after_reports
        self._max_absent = max_absent
        self._registries: dict[str, _Sightings] = {}

    def observe(self, report: RegistryReport) -> frozenset[str]:
        """Note the endpoints of the registry's latest report; returns the endpoint labels
        to forget now (absent too long, or beyond the most recent absent ones)."""
        seen = self._registries.setdefault(report.registry, _Sightings())
        seen.reports += 1
        for endpoint in report.endpoints():
            seen.last_seen[endpoint.label] = seen.reports
        absent = sorted(
            ((number, label) for label, number in seen.last_seen.items() if number < seen.reports),
            reverse=True,
        )
        kept = {
            label
            for number, label in absent[: self._max_absent]
            if seen.reports - number < self._forget_after
        }
        forgotten = frozenset(label for _, label in absent if label not in kept)
        for label in forgotten:
            del seen.last_seen[label]
        return forgotten

    def remembered(self, registry: str) -> frozenset[str]:
        """The endpoint labels of `registry` still remembered."""
        seen = self._registries.get(registry)
        return frozenset(seen.last_seen) if seen is not None else frozenset()

    def retain(self, registries: Iterable[str]) -> None:
        """Forget the registries that left the config."""
        keep = frozenset(registries)
        self._registries = {r: s for r, s in self._registries.items() if r in keep}
