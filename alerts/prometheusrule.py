"""Writes monitoring.yaml's PrometheusRule from alerts/registry-probe.rules.yaml.

The rule file is the one source of the rules: Prometheus users load it as it is, and
prometheus-operator users get the same text as the `spec` of a PrometheusRule (whose `spec.groups`
has the rule file's shape, `groups:`). The file is copied line for line, indented under `spec:`,
so its comments travel with it and the two never differ by a reformatting. Everything in
monitoring.yaml above the marker line (the PodMonitor) is kept as written.

    python3 alerts/prometheusrule.py          # rewrite monitoring.yaml
    python3 alerts/prometheusrule.py --check  # exit 1 if monitoring.yaml is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "alerts" / "registry-probe.rules.yaml"
MONITORING = REPO / "monitoring.yaml"
MARKER = (
    "# ---- Generated from alerts/registry-probe.rules.yaml by alerts/prometheusrule.py: edit the\n"
    "# ---- rule file, then run `python3 alerts/prometheusrule.py`. Never edit below by hand.\n"
)
HEADER = """---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: registry-probe
  namespace: registry-probe
  labels:
    app.kubernetes.io/name: registry-probe
    app.kubernetes.io/component: alerting
    # kube-prometheus-stack's Prometheus selects rules by its Helm release's label (see README):
    # release: kube-prometheus-stack
spec:
"""


def render(rules_text: str, above_marker: str) -> str:
    """monitoring.yaml: what stands above the marker, the marker, then the PrometheusRule."""
    body = "".join(f"  {line}" if line.strip() else "\n" for line in rules_text.splitlines(True))
    return above_marker + MARKER + HEADER + body


def above_marker(monitoring_text: str) -> str:
    """The hand-written part of monitoring.yaml (the PodMonitor), up to the marker."""
    index = monitoring_text.find(MARKER)
    if index == -1:
        raise SystemExit(f"{MONITORING}: the marker line is missing:\n{MARKER}")
    return monitoring_text[:index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if monitoring.yaml differs")
    args = parser.parse_args(argv)
    current = MONITORING.read_text(encoding="utf-8")
    wanted = render(RULES.read_text(encoding="utf-8"), above_marker(current))
    if args.check:
        if current != wanted:
            print(f"{MONITORING.name} is out of date: run python3 alerts/prometheusrule.py")
            return 1
        return 0
    if current != wanted:
        MONITORING.write_text(wanted, encoding="utf-8")
        print(f"wrote {MONITORING.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
