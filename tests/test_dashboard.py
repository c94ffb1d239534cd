"""grafana/registry-probe.json as Grafana and an operator take it: stable uid, a Prometheus data
source variable, node and registry variables, the panels issue 8 asks for, and queries that name
only metrics that exist. tests/test_prometheus_lab.py runs every query against a real Prometheus.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from probe.views.metrics import METRICS

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "grafana" / "registry-probe.json"
PROVISIONING = REPO / "grafana" / "provisioning" / "registry-probe.yaml"
RULES = REPO / "alerts" / "registry-probe.rules.yaml"
SPEC = REPO.parent / "shared" / "SPEC.md"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24
METRIC = re.compile(r"\b[a-z_]*:?registry_probe_[a-z0-9_]*(?::[a-z0-9_]+)?\b")
# Series that are not registry-probe's own: Prometheus' and client_python's.
OTHER_SERIES = {"up", "ALERTS", "process_resident_memory_bytes"}
# The panels issue 8 asks for, by title.
REQUIRED_PANELS = (
    "Registries failing per node",
    "Failures by reason",
    "Phase latency, slowest node",
    "DNS resolution time",
    "Certificate days left",
    "Remaining pulls per egress source",
    "Egress sources",
    "Proxy route per runtime",
    "Route mismatches and pending restarts",
    "Agents",
    "Last run age",
)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def known_series() -> set[str]:
    """The metrics the agent exports (probe.views.metrics, which docs/metrics.md and SPEC's
    table are held to) and the rule file's recorded series."""
    spec = {m.name for m in METRICS}
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    return spec | recorded


def test_uid_title_and_schema_are_stable() -> None:
    """uid "registry-probe" (links and provisioning keep working across imports)."""
    board = dashboard()
    assert (board["uid"], board["title"]) == ("registry-probe", "registry-probe")
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert "id" not in board or board["id"] is None  # an id would clash on import


def test_datasource_node_and_registry_variables() -> None:
    """A Prometheus data source variable; node and registry query it with label_values()."""
    found = variables()
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    for name, label in (("node", "node"), ("registry", "registry")):
        variable = found[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert re.fullmatch(rf"label_values\(\w+(\{{[^}}]*\}})?, {label}\)", variable["query"])
        assert (variable["multi"], variable["includeAll"], variable["allValue"]) == (
            True,
            True,
            ".*",
        )


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    """No panel or target names a fixed data source: the variable picks it."""
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and refs, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_panel_ids_are_unique_and_the_grid_has_no_overlap() -> None:
    """Every panel has its own id and a place on the 24-column grid no other panel takes."""
    everything = dashboard()["panels"]
    ids = [p["id"] for p in everything]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        cells = {
            (grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


def test_the_panels_the_issue_asks_for_are_there() -> None:
    """Failing per node, reasons over time, latencies, DNS, certificates, Docker Hub, proxy,
    agent health."""
    titles = [p["title"] for p in panels()]
    assert [t for t in REQUIRED_PANELS if t not in titles] == []
    assert len(titles) == len(set(titles))


def test_failing_table_names_reason_and_endpoint() -> None:
    """The per-node table groups by node, registry, endpoint, check and reason."""
    [table] = [p for p in panels() if p["title"] == "Registries failing per node"]
    assert table["type"] == "table"
    [target] = table["targets"]
    assert "by (node, registry, endpoint, check, reason)" in target["expr"]
    assert target["format"] == "table"


def test_queries_name_only_metrics_that_exist() -> None:
    """Every registry_probe series in a query is a SPEC metric or a recorded series."""
    known = known_series()
    exprs = [t["expr"] for p in panels() for t in p["targets"]]
    exprs += [v["query"] for v in variables().values() if v["type"] == "query"]
    named = {m for expr in exprs for m in METRIC.findall(expr)}
    assert named, "the parser found no metric"
    assert sorted(named - known) == []


def test_node_level_queries_follow_the_variables() -> None:
    """A query on the agents' own series filters by $node (and $registry where it has one)."""
    for panel in panels():
        for target in panel["targets"]:
            expr = target["expr"]
            raw = [m for m in METRIC.findall(expr) if ":" not in m] + [
                s for s in OTHER_SERIES - {"ALERTS"} if re.search(rf"\b{s}\{{", expr)
            ]
            if raw:
                assert 'node=~"$node"' in expr, (panel["title"], expr)


def test_provisioning_file_loads_the_dashboard_from_a_directory() -> None:
    """Grafana's file provider, apiVersion 1, reading a directory the README names."""
    provisioning = yaml.safe_load(PROVISIONING.read_text(encoding="utf-8"))
    assert provisioning["apiVersion"] == 1
    [provider] = provisioning["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path in (REPO / "README.md").read_text(encoding="utf-8")
