"""The node-configuration corpus (tests/data/nodes) stays complete and sourced.

Checks the corpus itself, not registry-probe: every case has SOURCE.md naming each file's origin
(a 40-hex commit, or a Debian package with its sha256) and an expected.yaml with the keys that
tests/data/nodes/README.md documents.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

CORPUS = Path(__file__).parent / "data" / "nodes"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())
REQUIRED_KEYS = {
    "case",
    "runtime",
    "versions",
    "rules",
    "hosts_dirs",
    "registries",
    "sandbox_image",
    "proxy",
    "problems",
    "other_versions",
    "unsure",
}
OPTIONAL_KEYS = {"unqualified_search_registries"}
RUNTIMES = {"containerd", "crio", "dockerd", "k3s", "rke2"}
COMMIT = re.compile(r"^- commit: ([0-9a-f]{40})$", re.MULTILINE)
SHA256 = re.compile(r"^- sha256: [0-9a-f]{64}$", re.MULTILINE)


def _rule_ids() -> set[str]:
    readme = (CORPUS / "README.md").read_text()
    return set(re.findall(r"^\| ([A-Z0-9-]+) \|", readme, re.MULTILINE)) - {"id"}


def _sections(source: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", source, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _node_files(case: Path) -> set[str]:
    return {
        str(p.relative_to(case))
        for p in case.rglob("*")
        if p.is_file() and p.name not in ("SOURCE.md", "expected.yaml")
    }


def test_corpus_has_enough_cases() -> None:
    """The corpus holds at least 15 node cases."""
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_every_file_has_a_source(case: Path) -> None:
    """SOURCE.md has one section per node file, each with a commit or a package checksum."""
    sections = _sections((case / "SOURCE.md").read_text())
    assert set(sections) == _node_files(case)
    for name, body in sections.items():
        if "- invented: yes" in body:
            continue
        assert COMMIT.search(body) or SHA256.search(body), f"{case.name}: {name} has no origin"
        assert "- url: " in body and "- edits: " in body, f"{case.name}: {name}"


def _check_hosts(where: str, registry: Any) -> None:
    assert isinstance(registry, dict), where
    hosts = registry.get("hosts")
    assert isinstance(hosts, list), where
    for host in hosts:
        assert "url" in host or "location" in host, where
        assert "from" in host, where


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_expected_facts_have_the_documented_shape(case: Path) -> None:
    """expected.yaml parses, has the README's keys, known rule ids and files that exist."""
    data = yaml.safe_load((case / "expected.yaml").read_text())
    assert isinstance(data, dict)
    assert REQUIRED_KEYS <= set(data) <= REQUIRED_KEYS | OPTIONAL_KEYS
    assert data["case"] == case.name
    assert data["runtime"] in RUNTIMES
    assert set(data["rules"]) <= _rule_ids(), data["rules"]
    for name, registry in data["registries"].items():
        _check_hosts(f"{case.name}: {name}", registry)
    node_files = {f"/{f}" for f in _node_files(case)}
    for problem in data["problems"]:
        assert {"file", "problem", "effect"} <= set(problem)
        assert problem["file"] in node_files, problem["file"]
    for variables in data["proxy"].values():
        for setting in variables.values():
            assert setting["from"] in node_files, setting["from"]
    for version, overrides in data["other_versions"].items():
        assert set(overrides) <= REQUIRED_KEYS, version
        assert set(overrides.get("rules", [])) <= _rule_ids(), version
    assert all(isinstance(u, str) for u in data["unsure"])
