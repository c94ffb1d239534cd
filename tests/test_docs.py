"""The docs keep up with the public names: every alert and reason has a runbook anchor, and the
README names every metric of SPEC.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from probe.reasons import ROOT_CAUSE, Reason

REPO = Path(__file__).resolve().parents[1]
RUNBOOKS = REPO / "docs" / "runbooks.md"
README = REPO / "README.md"
SPEC = REPO.parent / "shared" / "SPEC.md"

ANCHOR = re.compile(r'<a id="([^"]+)"></a>')
LINK = re.compile(r"\]\(#([^)]+)\)")
ALERT_NAME = re.compile(r"`([A-Z][a-z]+(?:[A-Z][A-Za-z]*)+)`")
METRIC_NAME = re.compile(r"\bregistry_probe_[a-z0-9_]*[a-z0-9]\b")
# A row of the "Reason → root cause → alert" table: | [`reason`](#reason) | check | cause | alert |
REASON_ROW = re.compile(
    r"^\| \[`([a-z_]+)`\]\(#\1\) \| [^|]+ \| ([1-5]) \| \[(\w+)\]\(#(\w+)\) \|$", re.M
)
# A row of the README's reason table: | `reason`[, `reason`] | check | meaning | cause |
README_REASON_ROW = re.compile(
    r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \| [^|]+ \| .+ \| ([1-5]) \|$", re.M
)
# Alerts an issue added that SPEC.md's Alerts section does not list yet.
ISSUE_ALERTS = ("RegistryImageNotPullable",)


def _spec() -> str:
    if not SPEC.is_file():
        pytest.skip(f"{SPEC} is absent (the shared specification sits beside the repository)")
    return SPEC.read_text(encoding="utf-8")


def _section(markdown: str, heading: str) -> str:
    """The text under a `## heading` up to the next `## ` heading."""
    start = markdown.index(f"\n## {heading}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else len(markdown)]


def _spec_alerts() -> list[str]:
    """SPEC.md's alerts, and those issues added since (their runbooks are held alike)."""
    names = ALERT_NAME.findall(_section(_spec(), "Alerts"))
    assert names, "SPEC.md's Alerts section names no alert: the parser no longer matches it"
    return [*names, *ISSUE_ALERTS]


def _anchors() -> list[str]:
    return ANCHOR.findall(RUNBOOKS.read_text(encoding="utf-8"))


def test_every_spec_alert_has_its_runbook_anchor() -> None:
    """Each alert of SPEC.md has `<a id="alertname-lower-cased">` in docs/runbooks.md."""
    anchors = set(_anchors())
    missing = [name for name in _spec_alerts() if name.lower() not in anchors]
    assert missing == []


def test_alert_anchor_sits_on_the_alerts_own_heading() -> None:
    """The anchor of each alert is followed by a `## <AlertName>` heading."""
    text = RUNBOOKS.read_text(encoding="utf-8")
    for name in _spec_alerts():
        assert f'<a id="{name.lower()}"></a>\n## {name}\n' in text, name


def test_every_reason_has_its_runbook_anchor() -> None:
    """Each `probe.reasons.Reason` value has `<a id="reason">` in docs/runbooks.md."""
    anchors = set(_anchors())
    assert [reason.value for reason in Reason if reason.value not in anchors] == []


def test_anchors_are_unique_and_links_resolve() -> None:
    """No anchor is defined twice, and every in-page link points at a defined anchor."""
    anchors = _anchors()
    assert len(anchors) == len(set(anchors))
    links = set(LINK.findall(RUNBOOKS.read_text(encoding="utf-8")))
    assert sorted(links - set(anchors)) == []


def test_reason_table_matches_root_causes_and_names_an_alert() -> None:
    """The reason table lists every reason once, with its root cause and a SPEC alert."""
    rows = REASON_ROW.findall(RUNBOOKS.read_text(encoding="utf-8"))
    assert sorted(row[0] for row in rows) == sorted(reason.value for reason in Reason)
    alerts = set(_spec_alerts())
    for reason, cause, alert, anchor in rows:
        assert int(cause) == ROOT_CAUSE[Reason(reason)], reason
        assert alert in alerts, reason
        assert anchor == alert.lower(), reason


def test_readme_reason_table_is_the_reason_enum() -> None:
    """The README's reason table lists every `probe.reasons.Reason` once, with its root cause."""
    readme = README.read_text(encoding="utf-8")
    listed: list[str] = []
    for reasons, cause in README_REASON_ROW.findall(readme):
        for reason in re.findall(r"`([a-z_]+)`", reasons):
            listed.append(reason)
            assert int(cause) == ROOT_CAUSE[Reason(reason)], reason
    assert sorted(listed) == sorted(reason.value for reason in Reason)


def test_readme_names_every_spec_metric() -> None:
    """Every `registry_probe_*` metric named in SPEC.md appears in README.md."""
    metrics = set(METRIC_NAME.findall(_spec()))
    assert metrics, "SPEC.md names no registry_probe_ metric: the parser no longer matches it"
    readme = README.read_text(encoding="utf-8")
    assert sorted(m for m in metrics if not re.search(rf"\b{m}\b", readme)) == []
