"""The package's layers point one way: config → node → checks → views → agent, never back.

Each module of probe/ belongs to a layer by where it sits in the tree; it may import only from
its own layer or the layers below. Node reading never imports the checks, the checks never
import the engine that runs them, and no two modules import each other, however indirectly.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "probe"

# Lowest first. A module's layer is the first entry its dotted name starts with.
# probe.images spans two layers: its pure parts (the reference grammar, which the config's loader
# uses to validate `images:`, lowest; the keyring, the answers' rules and the token flow, which
# the engine's registry check uses, below the engine), and the walk over the engine's pull plan
# (`probe.images.check`), above it.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "probe",
        "probe.reasons",
        "probe.display",
        "probe.redact",
        "probe.duration",
        "probe.images.reference",
    ),
    ("probe.config",),
    ("probe.result",),
    ("probe.node",),
    ("probe.checks",),
    ("probe.dockerhub",),
    ("probe.images",),
    ("probe.engine",),
    ("probe.images.check",),
    ("probe.views",),
    ("probe.agent",),
    ("probe.cli", "probe.__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best = -1, -1  # (layer, length of the matching prefix): the longest prefix decides
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best[1]:
                best = index, len(name)
    assert best[0] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def imports() -> dict[str, set[str]]:
    """Every probe module and the probe modules it imports (at any depth of its code)."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                names += [f"{node.module}.{alias.name}" for alias in node.names]
                targets.update(n for n in names if n.startswith("probe"))
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("probe"))
        found[module] = targets
    modules = set(found)
    # `from probe.checks import dns` names a module; `from probe.checks import Endpoint` names
    # an attribute of probe.checks: keep only what is a module.
    return {m: {t for t in ts if t in modules} - {m} for m, ts in found.items()}


def test_every_module_is_in_a_layer() -> None:
    """A new module is placed in a layer on purpose, not by accident."""
    for module in imports():
        layer_of(module)


def test_imports_never_point_up() -> None:
    """A module imports only from its own layer or below (node never imports checks...)."""
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in imports().items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    """No module reaches itself through its imports."""
    graph = imports()
    # A package imports its own modules (its face re-exports them); that is not a cycle.
    edges = {
        m: {t for t in ts if not (m.startswith("probe.") and t.startswith(m + "."))}
        for m, ts in graph.items()
    }
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_layers_table_knows_each_package() -> None:
    """Every sub-package of probe/ is named in LAYERS, so the tree shows the pipeline."""
    packages = {module_name(p.parent / "__init__.py") for p in PACKAGE.glob("*/__init__.py")}
    named = {name for names in LAYERS for name in names}
    assert packages <= named
