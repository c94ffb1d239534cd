"""End to end in the lab: a real Prometheus scrapes a running agent, with the README's scrape
config, the shipped rules, and every query of the dashboard.

In the lab's node namespace (never the host's network) run: the agent (`python -m probe run`)
probing the healthy registry, the black-holed one and Docker Hub's stand-in, on a node whose
dockerd goes through squid for Docker Hub while containerd goes direct (a proxy mismatch); and
Debian's Prometheus with the README's plain-Prometheus job and alerts/registry-probe.rules.yaml as
shipped. Debian builds Prometheus without Kubernetes service discovery, so the job's
`kubernetes_sd_configs` is replaced by a file_sd target list carrying the labels the `role: pod`
discovery gives a pod (`__meta_kubernetes_pod_*`, taken from daemonset.yaml's pod template), plus
two decoys it must drop; the README's relabel_configs run unchanged on them. The tests then read
what an operator would: the target's `node` label, the rules' health, the alerts (the black-holed
registry's pending or firing, none for the healthy one), the fleet recording rules, the
dashboard's variables and every dashboard query. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from lab import NODE_ADDRESS, Lab

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "alerts" / "registry-probe.rules.yaml"
DASHBOARD = REPO / "grafana" / "registry-probe.json"
README = REPO / "README.md"
NODE_NAME = "lab-node-1"  # the pod's spec.nodeName: what the scrape config relabels into `node`
AGENT_PORT, PROMETHEUS_PORT = 29741, 29090
DAEMONSET = REPO / "daemonset.yaml"
HEALTHY = "registry.lab.test"
BLACK_HOLED = "firewall-drop.lab.test"
HUB = "registry-1.docker.io"
DEADLINE = 60.0  # no wait below takes longer
MOST = 0.75  # "most dashboard queries return data"
README_SCRAPE_BLOCK = re.compile(r"```yaml\n(# prometheus\.yml.*?)```", re.S)

# GETs against Prometheus' HTTP API from inside the namespace (stock urllib, no proxies): the
# requests come as JSON [[path, {param: value}], ...], the answers go out as a JSON list.
API_CLIENT = """
import json, sys, urllib.error, urllib.parse, urllib.request
base, requests = sys.argv[1], json.loads(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

def parsed(status, body):
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {"text": body.decode(errors="replace")}
    return answer | {"http_status": status}

answers = []
for path, params in requests:
    url = base + path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
    try:
        with opener.open(url, timeout=10) as response:
            answers.append(parsed(response.status, response.read()))
    except urllib.error.HTTPError as error:
        with error:
            answers.append(parsed(error.code, error.read()))
    except OSError as error:
        answers.append({"status": "unreachable", "error": str(error), "http_status": 0})
print(json.dumps(answers))
"""


def readme_scrape_config() -> dict[str, Any]:
    """The README's prometheus.yml block (the plain-Prometheus path)."""
    match = README_SCRAPE_BLOCK.search(README.read_text(encoding="utf-8"))
    assert match, "README.md has no ```yaml block starting with `# prometheus.yml`"
    config: dict[str, Any] = yaml.safe_load(match.group(1))
    return config


@dataclass
class Stack:
    lab: Lab
    url: str
    logs: dict[str, Path]

    def api(self, *requests: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Prometheus API answers, fetched from inside the node namespace."""
        done = self.lab.run_in(
            [sys.executable, "-c", API_CLIENT, self.url, json.dumps(requests)], timeout=60
        )
        assert done.returncode == 0, done.stderr
        answers: list[dict[str, Any]] = json.loads(done.stdout)
        return answers

    def query(self, expr: str) -> list[dict[str, Any]]:
        [answer] = self.api(("/api/v1/query", {"query": expr}))
        assert answer["status"] == "success", (expr, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        [answer] = self.api(("/api/v1/alerts", {}))
        assert answer["status"] == "success", answer
        alerts: list[dict[str, Any]] = answer["data"]["alerts"]
        return alerts

    def describe(self) -> str:
        return "\n".join(
            f"--- {name} (last 3000 chars)\n{path.read_text(errors='replace')[-3000:]}"
            for name, path in self.logs.items()
            if path.exists()
        )

    def wait_for(self, what: str, found: Callable[[], Any]) -> Any:
        """Poll `found()` until it returns something truthy; fail after DEADLINE seconds."""
        deadline = time.monotonic() + DEADLINE
        last: Any = None
        while time.monotonic() < deadline:
            last = found()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(
            f"never saw {what} within {DEADLINE}s (last: {last})\n{self.describe()}"
        )


def _meta_label(name: str) -> str:
    """A Kubernetes label as Prometheus' discovery names it (anything but [a-zA-Z0-9_] is _)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _discovered_targets() -> list[dict[str, Any]]:
    """What `role: pod` discovery gives for the agent's pod on NODE_NAME (one target per
    container port: podIP:port, the pod's IP being the node's with hostNetwork), from
    daemonset.yaml's pod template; then a pod of another app and a port of another name on the
    same node, which the README's relabeling must drop."""
    [daemonset] = [
        d
        for d in yaml.safe_load_all(DAEMONSET.read_text(encoding="utf-8"))
        if d["kind"] == "DaemonSet"
    ]
    template = daemonset["spec"]["template"]
    [container] = template["spec"]["containers"]
    [port] = container["ports"]
    pod = {
        "__meta_kubernetes_namespace": daemonset["metadata"]["namespace"],
        "__meta_kubernetes_pod_name": "registry-probe-lab01",
        "__meta_kubernetes_pod_node_name": NODE_NAME,
        "__meta_kubernetes_pod_ip": NODE_ADDRESS,
        "__meta_kubernetes_pod_host_ip": NODE_ADDRESS,
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_container_name": container["name"],
        "__meta_kubernetes_pod_container_port_name": port["name"],
        "__meta_kubernetes_pod_container_port_number": str(AGENT_PORT),
        "__meta_kubernetes_pod_container_port_protocol": port["protocol"],
    } | {
        f"__meta_kubernetes_pod_label_{_meta_label(k)}": v
        for k, v in template["metadata"]["labels"].items()
    }
    other_app = pod | {
        "__meta_kubernetes_pod_name": "node-exporter-lab01",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "node-exporter",
    }
    other_port = pod | {"__meta_kubernetes_pod_container_port_name": "debug"}
    return [
        {"targets": [f"{NODE_ADDRESS}:{AGENT_PORT}"], "labels": pod},
        {"targets": [f"{NODE_ADDRESS}:{AGENT_PORT + 1}"], "labels": other_app},
        {"targets": [f"{NODE_ADDRESS}:{AGENT_PORT + 2}"], "labels": other_port},
    ]


def _node_files(lab: Lab) -> dict[str, str]:
    """containerd goes direct everywhere; dockerd goes through squid except for the lab's own
    registries: Docker Hub's route is a mismatch, the others agree."""
    unit = "[Unit]\nDescription={0}\n[Service]\nExecStart=/usr/bin/{0}\n"
    return {
        "lib/systemd/system/containerd.service": unit.format("containerd"),
        "lib/systemd/system/docker.service": unit.format("dockerd"),
        "etc/systemd/system/docker.service.d/http-proxy.conf": (
            f'[Service]\nEnvironment="HTTPS_PROXY={lab.squid.url}"\n'
            f'Environment="NO_PROXY={HEALTHY},{BLACK_HOLED}"\n'
        ),
    }


@pytest.fixture(scope="module")
def stack(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Agent, Kubernetes API and Prometheus in the node namespace; stopped afterwards."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed (Debian: prometheus)")
    work = tmp_path_factory.mktemp("prometheus-lab")
    node = lab.namespace("node")
    started = []
    try:
        # The agent, as the DaemonSet runs it (NODE_NAME from the downward API), probing fast.
        config = lab.dockerhub.write_config(ratelimit_interval="2s")
        unset = [arg for k in os.environ if "proxy" in k.lower() for arg in ("-u", k)]
        agent_argv = [
            "env", "-C", str(REPO), *unset, f"NODE_NAME={NODE_NAME}",
            sys.executable, "-m", "probe", "run", "--no-discover", "--config", str(config),
            "--host-root", str(lab.host_root(files=_node_files(lab))),
            "--listen", f"{NODE_ADDRESS}:{AGENT_PORT}", "--interval", "1", "--timeout", "1",
            "--registry", HEALTHY, "--registry", BLACK_HOLED, "--registry", HUB,
        ]  # fmt: skip
        started.append(
            node.spawn(
                "e2e-agent",
                agent_argv,
                work / "agent.log",
                listens=[("tcp", NODE_ADDRESS, AGENT_PORT)],
            )
        )
        # The README's job, its discovery replaced by the targets the pod discovery would give
        # (see the module docstring), scraped every second.
        targets = work / "targets.json"
        targets.write_text(json.dumps(_discovered_targets()), encoding="utf-8")
        readme = readme_scrape_config()
        [job] = readme["scrape_configs"]
        assert [sd["role"] for sd in job.pop("kubernetes_sd_configs")] == ["pod"]
        job["file_sd_configs"] = [{"files": [str(targets)]}]
        job["scrape_interval"] = "1s"
        job["scrape_timeout"] = "1s"
        prometheus_config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [job],
        }
        config_file = work / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(prometheus_config), encoding="utf-8")
        prometheus_argv = [
            prometheus, f"--config.file={config_file}", f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            "--storage.tsdb.retention.time=1h", "--log.level=warn",
        ]  # fmt: skip
        started.append(
            node.spawn(
                "e2e-prometheus",
                prometheus_argv,
                work / "prometheus.log",
                listens=[("tcp", "127.0.0.1", PROMETHEUS_PORT)],
                deadline_seconds=30,
            )
        )
        running = Stack(
            lab,
            f"http://127.0.0.1:{PROMETHEUS_PORT}",
            {"agent": work / "agent.log", "prometheus": work / "prometheus.log"},
        )
        running.wait_for(
            "Prometheus ready",
            lambda: running.api(("/-/ready", {}))[0]["http_status"] == 200,
        )
        yield running
    finally:
        for process in reversed(started):
            process.stop()


def test_target_is_kept_scraped_and_labelled_with_its_node(stack: Stack) -> None:
    """The README's relabeling keeps the agent's metrics port only, scrapes it (up 1) and copies
    the pod's node name into `node`."""
    up = stack.wait_for(
        "up == 1 for the agent", lambda: stack.query('up{job="registry-probe"} == 1')
    )
    [series] = up
    assert series["metric"]["node"] == NODE_NAME, series
    assert series["metric"]["instance"] == f"{NODE_ADDRESS}:{AGENT_PORT}", series
    [answer] = stack.api(("/api/v1/targets", {"state": "active"}))
    active = [t["labels"]["instance"] for t in answer["data"]["activeTargets"]]
    assert active == [f"{NODE_ADDRESS}:{AGENT_PORT}"], answer  # the decoys were dropped


def test_metrics_keep_their_own_endpoint_label(stack: Stack) -> None:
    """The healthy registry's http check is 1 with endpoint host:port, not exported_endpoint."""
    found = stack.wait_for(
        "the healthy registry's http success",
        lambda: stack.query(f'registry_probe_success{{registry="{HEALTHY}", check="http"}} == 1'),
    )
    [series] = found
    assert series["metric"]["endpoint"] == f"{HEALTHY}:443", series
    assert "exported_endpoint" not in series["metric"], series


def test_every_rule_evaluates_without_error(stack: Stack) -> None:
    """/api/v1/rules: both groups loaded, every rule's health "ok" (no many-to-many, no typo)."""

    def evaluated() -> list[dict[str, Any]]:
        [answer] = stack.api(("/api/v1/rules", {}))
        rules = [r for g in answer["data"]["groups"] for r in g["rules"]]
        return (
            rules
            if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules)
            else []
        )

    rules = stack.wait_for("every rule evaluated once", evaluated)
    shipped = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert len(rules) == sum(len(g["rules"]) for g in shipped["groups"])
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert broken == {}


def _alerts_for(stack: Stack, registry: str) -> list[dict[str, Any]]:
    return [a for a in stack.alerts() if a["labels"].get("registry") == registry]


def test_black_holed_registry_raises_its_alert(stack: Stack) -> None:
    """RegistryNetworkUnreachable goes pending (or firing) for the black-holed registry, with the
    node, endpoint and reason as labels and its annotations rendered."""
    alerts = stack.wait_for(
        "RegistryNetworkUnreachable for the black-holed registry",
        lambda: [
            a
            for a in _alerts_for(stack, BLACK_HOLED)
            if a["labels"]["alertname"] == "RegistryNetworkUnreachable"
        ],
    )
    [alert] = alerts
    assert alert["state"] in ("pending", "firing"), alert
    assert {k: alert["labels"][k] for k in ("node", "endpoint", "check", "reason", "severity")} == {
        "node": NODE_NAME,
        "endpoint": f"{BLACK_HOLED}:443",
        "check": "tcp",
        "reason": "tcp_timeout",
        "severity": "warning",
    }
    assert alert["annotations"]["summary"] == (
        f"Node {NODE_NAME} cannot reach {BLACK_HOLED}:443: tcp_timeout"
    )
    assert alert["annotations"]["runbook_url"].endswith("#registrynetworkunreachable")


def test_proxy_mismatch_raises_the_proxy_alert(stack: Stack) -> None:
    """dockerd through squid, containerd direct: RegistryProxyMisconfigured for Docker Hub."""
    alerts = stack.wait_for(
        "RegistryProxyMisconfigured for Docker Hub",
        lambda: [
            a
            for a in _alerts_for(stack, HUB)
            if a["labels"]["alertname"] == "RegistryProxyMisconfigured"
        ],
    )
    assert {a["labels"]["reason"] for a in alerts} == {"proxy_mismatch"}, alerts


def test_healthy_registry_raises_no_alert(stack: Stack) -> None:
    """Once the faults alert, the healthy registry has no alert at all, pending or firing."""
    stack.wait_for("the black-holed registry's alert", lambda: _alerts_for(stack, BLACK_HOLED))
    everything = stack.alerts()
    print("\nalerts: " + "; ".join(
        sorted(f"{a['labels']['alertname']} {a['labels'].get('registry', '-')} "
               f"{a['labels'].get('reason', '-')} {a['state']}" for a in everything)
    ))  # fmt: skip
    assert [a for a in everything if a["labels"].get("registry") == HEALTHY] == []


def test_fleet_recording_rules_see_the_node(stack: Stack) -> None:
    """Share of nodes failing: 1 for the black-holed registry, 0 (not absent) for the healthy."""
    ratio = stack.wait_for(
        "registry:registry_probe_nodes_failing:ratio for both lab registries",
        lambda: (
            found
            if len(found := stack.query("registry:registry_probe_nodes_failing:ratio")) >= 2
            else None
        ),
    )
    by_registry = {s["metric"]["registry"]: float(s["value"][1]) for s in ratio}
    assert (by_registry[BLACK_HOLED], by_registry[HEALTHY]) == (1.0, 0.0), by_registry
    remaining = stack.query("registry_auth_source:registry_probe_dockerhub_ratelimit_remaining:min")
    assert {s["metric"]["auth"] for s in remaining} == {"anonymous", "authenticated"}, remaining


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def test_dashboard_variables_have_values(stack: Stack) -> None:
    """node and registry: their label_values() queries return the lab's node and registries."""
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"] if v["type"] == "query"}
    values = {}
    for name, variable in variables.items():
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match, variable["query"]
        selector = match.group(1).replace("$node", ".*")
        [answer] = stack.api((f"/api/v1/label/{match.group(2)}/values", {"match[]": selector}))
        assert answer["status"] == "success", answer
        values[name] = set(answer["data"])
    assert values["node"] == {NODE_NAME}, values
    assert values["registry"] >= {HEALTHY, BLACK_HOLED, HUB}, values


def test_every_dashboard_query_runs_and_most_return_data(stack: Stack) -> None:
    """Each panel query, with the variables at All, succeeds as an instant query (and as a range
    query for time series); at least three quarters of them return data."""
    stack.wait_for(  # the fleet rules have run and the faults are visible
        "the recorded share of failing nodes",
        lambda: stack.query("registry:registry_probe_nodes_failing:ratio > 0"),
    )
    now = time.time()
    queries = []
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$node", ".*").replace("$registry", ".*")
            queries.append((panel["title"], target["refId"], panel["type"], expr))
    requests: list[tuple[str, dict[str, Any]]] = []
    for _, _, kind, expr in queries:
        requests.append(("/api/v1/query", {"query": expr}))
        if kind == "timeseries":
            requests.append(
                ("/api/v1/query_range", {"query": expr, "start": now - 60, "end": now, "step": 5})
            )
    answers = iter(stack.api(*requests))
    failed, empty = [], []
    for title, ref, kind, expr in queries:
        instant = next(answers)
        ranged = next(answers) if kind == "timeseries" else instant
        for answer in (instant, ranged):
            if answer.get("status") != "success":
                failed.append((title, ref, expr, answer))
        if not instant.get("data", {}).get("result"):
            empty.append((title, ref))
    assert failed == []
    with_data = 1 - len(empty) / len(queries)
    print(f"\n{len(queries)} dashboard queries, {len(queries) - len(empty)} with data: {empty=}")
    assert with_data >= MOST, empty
