"""daemonset.yaml, live-environment.patch.yaml and monitoring.yaml, as a cluster would take them.

daemonset.yaml is validated with kubernetes-validate's strict schemas (an unknown field is an
error, as `kubectl apply --validate=strict` makes it) for the current Kubernetes release and for
1.30, the oldest with `securityContext.appArmorProfile`, which the opt-in patch sets. The patch is
applied as the RFC 6902 JSON patch `kubectl patch --type json` applies. monitoring.yaml's
PodMonitor and PrometheusRule are validated against prometheus-operator's own CRD schemas
(tests/data/crds, source recorded in SOURCE.md) made strict the way the API server prunes: every
object schema that lists its properties and does not preserve unknown fields rejects any other.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonpatch
import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

from probe import __version__

REPO = Path(__file__).resolve().parents[1]
DAEMONSET = REPO / "daemonset.yaml"
MONITORING = REPO / "monitoring.yaml"
PATCH = REPO / "live-environment.patch.yaml"
RULES = REPO / "alerts" / "registry-probe.rules.yaml"
CRDS = Path(__file__).resolve().parent / "data" / "crds"
CURRENT = kubernetes_validate.utils.latest_version()
OLDEST = "1.30"  # securityContext.appArmorProfile (live-environment patch) is GA from 1.30
NAMESPACE = "registry-probe"
METRICS_PORT = 9741


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def by_kind(path: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for doc in documents(path):
        assert doc["kind"] not in found, f"two {doc['kind']}s in {path.name}"
        found[doc["kind"]] = doc
    return found


def daemonset() -> dict[str, Any]:
    return by_kind(DAEMONSET)["DaemonSet"]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = daemonset()["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    [only] = pod_spec()["containers"]
    return dict(only)


def patched_daemonset() -> dict[str, Any]:
    patch = jsonpatch.JsonPatch(yaml.safe_load(PATCH.read_text(encoding="utf-8")))
    result: dict[str, Any] = patch.apply(daemonset())
    return result


# ----- daemonset.yaml: schemas -----------------------------------------------------------------


@pytest.mark.parametrize("version", [CURRENT, OLDEST])
def test_every_daemonset_yaml_object_is_valid_under_strict_schemas(version: str) -> None:
    """Each object of daemonset.yaml passes kubernetes-validate --strict for 1.30 and current."""
    kinds = []
    for doc in documents(DAEMONSET):
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.append(doc["kind"])
    assert sorted(kinds) == sorted(
        ["Namespace", "ServiceAccount", "ResourceQuota", "ConfigMap", "DaemonSet", "Service"]
    )


def test_strict_validation_rejects_a_misspelt_field() -> None:
    """The validator is strict: a misspelt securityContext key in the DaemonSet is an error."""
    broken = daemonset()
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFS"):
        kubernetes_validate.validate(broken, CURRENT, strict=True)


def test_the_command_line_validator_passes_daemonset_yaml() -> None:
    """`kubernetes-validate --strict daemonset.yaml`, the README's command, exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", str(DAEMONSET)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == len(documents(DAEMONSET)), done.stdout


# ----- daemonset.yaml: what SPEC's Deployment section asks of the pod --------------------------


def test_everything_lives_in_the_registry_probe_namespace() -> None:
    """Namespace first, then every namespaced object in it."""
    docs = documents(DAEMONSET)
    assert (docs[0]["kind"], docs[0]["metadata"]["name"]) == ("Namespace", NAMESPACE)
    assert all(doc["metadata"]["namespace"] == NAMESPACE for doc in docs[1:])


def test_service_account_has_no_api_access() -> None:
    """No token is mounted (ServiceAccount and pod) and no Role or binding is shipped."""
    kinds = by_kind(DAEMONSET)
    assert kinds["ServiceAccount"]["automountServiceAccountToken"] is False
    assert pod_spec()["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"]
    assert pod_spec()["automountServiceAccountToken"] is False
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & kinds.keys()


def test_pod_uses_the_nodes_network_and_resolvers() -> None:
    """hostNetwork, dnsPolicy Default (never ClusterFirstWithHostNet), every taint tolerated."""
    spec = pod_spec()
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "Default"
    assert spec["tolerations"] == [{"operator": "Exists"}]


def test_node_files_are_mounted_read_only_under_host() -> None:
    """/etc, /usr/lib/systemd and /run/systemd/resolve are hostPath volumes, read-only in /host."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    for node_path in ("/etc", "/usr/lib/systemd", "/run/systemd/resolve"):
        mount = mounts[f"/host{node_path}"]
        assert mount["readOnly"] is True, mount
        assert volumes[mount["name"]]["hostPath"]["path"] == node_path
    host_paths = [v for v in volumes.values() if "hostPath" in v]
    assert len(host_paths) == 3, host_paths
    assert all(m["readOnly"] for m in mounts.values()), mounts


def test_container_runs_locked_down() -> None:
    """Non-root numeric uid, read-only root fs, no escalation, no capabilities, RuntimeDefault."""
    pod_security = pod_spec()["securityContext"]
    security = container()["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert isinstance(pod_security["runAsUser"], int) and pod_security["runAsUser"] > 0
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "hostPID" not in pod_spec()


def test_resources_probes_and_node_name() -> None:
    """Requests and a memory limit, /healthz and /readyz on the metrics port, NODE_NAME."""
    c = container()
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    assert set(c["resources"]["limits"]) == {"memory"}  # no CPU limit: throttling skews timings
    [port] = c["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", METRICS_PORT)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    [env] = c["env"]
    assert env == {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}


def test_priority_class_is_admitted_by_the_namespace_quota() -> None:
    """system-node-critical, with the ResourceQuota scoped to it that GKE needs to admit it."""
    assert pod_spec()["priorityClassName"] == "system-node-critical"
    quota = by_kind(DAEMONSET)["ResourceQuota"]["spec"]
    [scope] = quota["scopeSelector"]["matchExpressions"]
    assert scope == {
        "operator": "In",
        "scopeName": "PriorityClass",
        "values": ["system-node-critical"],
    }
    assert int(quota["hard"]["pods"]) >= 100_000  # a pod per node, on any cluster


def test_rolling_update_suits_thousands_of_nodes() -> None:
    """maxUnavailable is a percentage (not one node at a time); no surge on hostNetwork."""
    rolling = daemonset()["spec"]["updateStrategy"]["rollingUpdate"]
    percent = str(rolling["maxUnavailable"])
    assert percent.endswith("%") and 1 <= int(percent[:-1]) <= 25, rolling
    assert rolling["maxSurge"] == 0


def test_image_is_not_pulled_from_docker_hub_and_is_this_version() -> None:
    """The image names a registry that is not Docker Hub, and its tag is probe.__version__."""
    image = container()["image"]
    host, _, rest = image.partition("/")
    assert "." in host and host not in ("docker.io", "index.docker.io", "registry-1.docker.io")
    assert rest.endswith(f":{__version__}"), image


def test_configmap_config_is_valid_for_the_agent(tmp_path: Path) -> None:
    """The ConfigMap's config.yaml passes `registry-probe validate`; the agent runs with it."""
    config = by_kind(DAEMONSET)["ConfigMap"]["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "probe", "validate", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    settings = yaml.safe_load(config)
    assert settings["host_root"] == "/host"
    assert settings["listen"] == f"0.0.0.0:{METRICS_PORT}"
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    args = container()["args"]
    assert args[:2] == ["run", "--config"]
    assert args[2] == f"{mounts['config']}/config.yaml"
    # The commented credentials_file is where the optional pull secret is mounted.
    assert f"# credentials_file: {mounts['dockerhub-pull']}/.dockerconfigjson" in config


def test_dockerhub_pull_secret_is_optional() -> None:
    """The Docker Hub secret volume is optional: the pod starts without it."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    secret = volumes["dockerhub-pull"]["secret"]
    assert secret["optional"] is True
    assert secret["items"] == [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}]


def test_service_selects_the_pods_on_the_metrics_port() -> None:
    """The headless Service selects the DaemonSet's pods and targets the metrics port."""
    service = by_kind(DAEMONSET)["Service"]["spec"]
    labels = daemonset()["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"] == [
        {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}
    ]


# ----- the opt-in live-environment patch -------------------------------------------------------


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every scalar of a JSON document by its JSON pointer."""
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in _leaves(item, f"{path}/{key}").items()
        }
    if isinstance(value, list):
        return {
            k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{path}/{i}").items()
        }
    return {path: value}


@pytest.mark.parametrize("version", [CURRENT, OLDEST])
def test_live_environment_patch_applies_and_stays_valid(version: str) -> None:
    """The RFC 6902 patch applies to the DaemonSet and the result passes strict validation."""
    kubernetes_validate.validate(patched_daemonset(), version, strict=True)


def test_live_environment_patch_changes_exactly_what_it_says() -> None:
    """hostPID, uid/gid 0, SYS_PTRACE and AppArmor Unconfined; every other field as before."""
    before, after = _leaves(daemonset()), _leaves(patched_daemonset())
    pod = "/spec/template/spec"
    security = f"{pod}/containers/0/securityContext"
    changed = {p: v for p, v in after.items() if before.get(p, object()) != v}
    assert changed == {
        f"{pod}/hostPID": True,
        f"{pod}/securityContext/runAsNonRoot": False,
        f"{pod}/securityContext/runAsUser": 0,
        f"{pod}/securityContext/runAsGroup": 0,
        f"{security}/capabilities/add/0": "SYS_PTRACE",
        f"{security}/appArmorProfile/type": "Unconfined",
    }
    assert before.keys() <= after.keys()  # nothing removed: still read-only, no escalation
    assert after[f"{security}/readOnlyRootFilesystem"] is True
    assert after[f"{security}/allowPrivilegeEscalation"] is False
    assert after[f"{security}/capabilities/drop/0"] == "ALL"


def test_live_environment_patch_refuses_another_container_layout() -> None:
    """Its `test` op makes the patch fail, not misapply, when container 0 is not the agent."""
    other = daemonset()
    other["spec"]["template"]["spec"]["containers"].insert(0, {"name": "sidecar", "image": "x"})
    patch = jsonpatch.JsonPatch(yaml.safe_load(PATCH.read_text(encoding="utf-8")))
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        patch.apply(other)


def test_readme_documents_the_patch_command() -> None:
    """The README's kubectl command applies this file as a JSON patch to the DaemonSet."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert (
        "kubectl -n registry-probe patch daemonset registry-probe --type json \\\n"
        "  --patch-file live-environment.patch.yaml"
    ) in readme


# ----- monitoring.yaml against prometheus-operator's CRDs --------------------------------------


def _strict(schema: Any) -> Any:
    """The CRD schema as the API server applies it: unknown fields of a typed object rejected."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    pattern = strict.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^(?i)"):
        # Go's RE2 takes a flag group anywhere; Python's re only at the start of the pattern.
        strict["pattern"] = "(?i)^" + pattern.removeprefix("^(?i)")
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@cache
def _kubernetes_definitions() -> referencing.Registry[Any]:
    """kubernetes-validate's strict definitions (ObjectMeta for the CRs' metadata)."""
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = root / f"v{CURRENT}-local-strict" / "_definitions.json"
    contents = json.loads(path.read_text(encoding="utf-8"))
    return referencing.Resource.from_contents(contents) @ referencing.Registry()


def validate_custom_resource(resource: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless `resource` fits its CRD (strict) and ObjectMeta."""
    group, _, version = resource["apiVersion"].partition("/")
    kind = resource["kind"]
    crd = yaml.safe_load((CRDS / f"{group}_{kind.lower()}s.yaml").read_text(encoding="utf-8"))
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, kind)
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = _strict(served["schema"]["openAPIV3Schema"])
    jsonschema.validate(resource, schema, cls=jsonschema.Draft7Validator)
    meta = {"$ref": "https://kubernetes.io/api/_definitions.json#/$defs/"
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}  # fmt: skip
    jsonschema.Draft202012Validator(meta, registry=_kubernetes_definitions()).validate(
        resource["metadata"]
    )


def test_monitoring_yaml_fits_prometheus_operators_crds() -> None:
    """The PodMonitor and the PrometheusRule validate against the operator's strict CRD schemas."""
    kinds = by_kind(MONITORING)
    assert sorted(kinds) == ["PodMonitor", "PrometheusRule"]
    for resource in kinds.values():
        validate_custom_resource(resource)
        assert resource["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize(
    ("kind", "path", "key"),
    [
        ("PodMonitor", ("spec", "podMetricsEndpoints", 0), "honorLabel"),
        ("PodMonitor", ("spec",), "podMetricEndpoints"),
        ("PrometheusRule", ("spec", "groups", 0, "rules", 0), "expression"),
    ],
)
def test_crd_validation_rejects_a_misspelt_field(
    kind: str, path: tuple[str | int, ...], key: str
) -> None:
    """The strict CRD schemas catch a misspelt key, as `kubectl apply --validate=strict` would."""
    resource = copy.deepcopy(by_kind(MONITORING)[kind])
    node: Any = resource
    for step in path:
        node = node[step]
    node[key] = node.get(key, "x")
    with pytest.raises(jsonschema.ValidationError, match=key):
        validate_custom_resource(resource)


def test_crd_validation_rejects_bad_metadata() -> None:
    """metadata is checked as Kubernetes' ObjectMeta: a label value must be a string."""
    resource = copy.deepcopy(by_kind(MONITORING)["PodMonitor"])
    resource["metadata"]["labels"]["release"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(resource)


def test_podmonitor_scrapes_the_agents_and_adds_the_node_label() -> None:
    """It selects the DaemonSet's pods by a label they carry, on the metrics port, keeps the
    metrics' own `endpoint` label (honorLabels), names the job, and relabels the node."""
    monitor = by_kind(MONITORING)["PodMonitor"]["spec"]
    template = daemonset()["spec"]["template"]
    assert monitor["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert template["metadata"]["labels"][monitor["jobLabel"]] == "registry-probe"
    [endpoint] = monitor["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in container()["ports"]}
    assert endpoint["honorLabels"] is True
    assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"} in (
        endpoint["relabelings"]
    )


def test_prometheusrule_carries_exactly_the_rule_file() -> None:
    """Its spec is alerts/registry-probe.rules.yaml, and the generator finds nothing to change."""
    rule = by_kind(MONITORING)["PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))
    done = subprocess.run(
        [sys.executable, str(REPO / "alerts" / "prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generator_notices_a_rule_file_change(tmp_path: Path) -> None:
    """Regenerating from a changed rule file gives another monitoring.yaml (the check can fail)."""
    sys.path.insert(0, str(REPO / "alerts"))
    try:
        import prometheusrule  # a script beside the rule file, not a package
    finally:
        sys.path.pop(0)
    current = MONITORING.read_text(encoding="utf-8")
    rules = RULES.read_text(encoding="utf-8")
    above = prometheusrule.above_marker(current)
    assert prometheusrule.render(rules, above) == current
    changed = rules.replace("for: 3m", "for: 4m", 1)
    assert prometheusrule.render(changed, above) != current
    *_, rule = yaml.safe_load_all(prometheusrule.render(changed, above))
    assert rule["spec"] == yaml.safe_load(changed)
