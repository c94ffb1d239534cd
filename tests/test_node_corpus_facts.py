"""The node reader against real node configurations (tests/data/nodes): the facts each case's
expected.yaml states, from the formats' documentation and the runtimes' source, are what the
reader finds: which runtime decides, which hosts directories it reads, each registry's hosts in
the order a pull tries them with their trust, the sandbox image, the proxies, the problems.

containerd's facts depend on its release line; the reader models it from config.toml (version 3,
or the 2.x plugin names: 2.x; else 1.x) and is held to the facts of that line: the case's own,
or its `other_versions` entry for that line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fakeprocs import FakeProcesses

from probe.config import RUNTIMES
from probe.node.registries import ANY_REGISTRY, RegistryHost
from probe.node.view import NodeReader, NodeView

CORPUS = Path(__file__).parent / "data" / "nodes"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
SAMPLE = "example.test"  # the registry that stands for "<name>" in a `"*"` entry


def view_of(case: str) -> NodeView:
    return NodeReader(str(CORPUS / case), RUNTIMES, processes=FakeProcesses([])).view()


def expected(case: str, view: NodeView) -> dict[str, Any]:
    """The case's facts for the release line the reader modelled."""
    facts: dict[str, Any] = yaml.safe_load((CORPUS / case / "expected.yaml").read_text())
    line = _line(view)
    if line is None or facts["versions"].startswith(line):
        return facts
    for versions, differences in (facts.get("other_versions") or {}).items():
        if versions.startswith(line):
            return {**facts, **differences}
    pytest.fail(f"{case}: no facts for {line} (the reader's model): {facts['versions']}")


def _line(view: NodeView) -> str | None:
    registries = view.registries
    if registries.runtime != "containerd":
        return None
    return "containerd 1" if registries.localhost_plain else "containerd 2"


def shown(host: RegistryHost) -> dict[str, Any]:
    return {
        "url": f"{host.address.url}{host.path}",
        "capabilities": sorted(host.capabilities),
        "ca": list(host.ca_files),
        "skip_verify": host.skip_verify,
    }


def wanted(entry: dict[str, Any], runtime: str) -> dict[str, Any]:
    """An expected host in the reader's terms: CRI-O's `location`/`insecure` as a URL and
    skip_verify; `referrers` (2.x only) left out of the capabilities the probe uses."""
    if "location" in entry:
        host = entry["location"].split("/", 1)[0]
        return {"url": f"https://{host}/v2", "skip_verify": entry["insecure"]}
    url = entry["url"].replace("<name>", SAMPLE)
    if runtime == "dockerd" and not url.endswith("/v2"):
        url += "/v2"
    return {
        "url": url,
        "capabilities": sorted(set(entry["capabilities"]) - {"referrers"}),
        "ca": entry["ca"],
        "skip_verify": entry["skip_verify"],
    }


def unique(hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A host listed twice is tried once (the reader probes it once): the first entry counts."""
    seen: set[str] = set()
    return [h for h in hosts if not (h["url"] in seen or seen.add(h["url"]))]  # type: ignore[func-returns-value]


@pytest.mark.parametrize("case", CASES)
def test_the_deciding_runtime(case: str) -> None:
    """The runtime whose settings decide pulls is the one the case is about."""
    view = view_of(case)
    facts = expected(case, view)
    assert view.registries.runtime == facts["runtime"], view.registries.rule


@pytest.mark.parametrize("case", CASES)
def test_hosts_directories(case: str) -> None:
    """containerd reads exactly the hosts directories its version's rules give."""
    view = view_of(case)
    facts = expected(case, view)
    if facts["runtime"] != "containerd":
        return
    assert list(view.registries.hosts_dirs) == facts["hosts_dirs"], view.registries.rule


@pytest.mark.parametrize("case", CASES)
def test_each_registry_has_its_hosts_in_pull_order(case: str) -> None:
    """Every registry the case names: the hosts a pull tries, in order, with their trust."""
    view = view_of(case)
    facts = expected(case, view)
    runtime = facts["runtime"]
    for name, spec in (facts.get("registries") or {}).items():
        key = SAMPLE if name == ANY_REGISTRY else name.split("/", 1)[0]
        plan = view.registries.plan(key)
        if spec.get("blocked"):
            assert plan.hosts == () and plan.problem, (name, plan)
            continue
        want = unique([wanted(h, runtime) for h in spec["hosts"]])
        got = [{k: shown(h)[k] for k in w} for h, w in zip(plan.hosts, want, strict=False)]
        assert (len(plan.hosts), got) == (len(want), want), f"{name}: {view.registries.rule}"


@pytest.mark.parametrize("case", CASES)
def test_sandbox_image(case: str) -> None:
    """The pause image every pod needs, where the case's runtime names one."""
    view = view_of(case)
    facts = expected(case, view)
    sandbox = facts.get("sandbox_image")
    if sandbox is None:
        return
    assert view.registries.sandbox_image == sandbox["image"]
    assert view.registries.sandbox_source == sandbox["from"]


@pytest.mark.parametrize("case", CASES)
def test_problems_are_found_in_the_files_the_case_names(case: str) -> None:
    """Each problem a runtime would trip on is reported, for the file that holds it."""
    view = view_of(case)
    facts = expected(case, view)
    sources = [p.source for p in view.problems]
    for problem in facts.get("problems") or []:
        file = problem["file"]
        assert any(file.startswith(s) or s.startswith(file) for s in sources), (file, sources)


@pytest.mark.parametrize("case", CASES)
def test_proxies_as_each_runtime_sees_them(case: str) -> None:
    """The proxy variables each runtime's Go code sees, and the file that set each."""
    view = view_of(case)
    facts = expected(case, view)
    for runtime, variables in (facts.get("proxy") or {}).items():
        if runtime not in ("containerd", "dockerd", "crio", "k3s", "rke2"):
            continue  # another service of the node (kubelet): not a runtime the probe reads
        config = view.routes.configs.get("containerd" if runtime in ("k3s", "rke2") else runtime)
        assert config is not None, f"{runtime} not found: {list(view.routes.configs)}"
        for name, value in (variables or {}).items():
            if not isinstance(value, dict):
                continue
            assert config.environment.get(name) == value["value"], (runtime, name)
            if value.get("from"):
                assert config.sources.get(name, "").startswith(value["from"]), (runtime, name)
