"""Reading a /metrics scrape the way a user's query would: by name and label subset."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text scrape, keyed by name and label set."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample `name` whose labels include `labels`, None when absent."""
    for (found, found_labels), value in samples(text).items():
        if found == name and set(labels.items()) <= found_labels:
            return value
    return None
