"""The Dockerfile built for real with podman, and the image run as the DaemonSet runs it.

No image registry is reachable here, so both pinned bases are replaced (`--build-arg`) by a local
Debian + python3 base (tests/lab/podman.py, cached between runs), and pip installs from wheels
built on this host (pip inside the build cannot verify PyPI through this machine's TLS-inspecting
egress): `--build-arg PIP_NO_INDEX=1 PIP_FIND_LINKS=/src/wheelhouse`, as the Dockerfile documents
for offline builds. The build context is a copy of the repository's files, so the real
.dockerignore decides what reaches the build.

The image then runs read-only (no tmpfs either), as uid 65534, in the lab's node namespace with a
lab host root mounted at /host: `registry-probe check` names a healthy and a black-holed lab
registry correctly, and the agent completes a cycle. Slow (a build, and the base's first making
takes a minute more): marked `slow`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lab import Lab
from lab.podman import Podman, missing_requirements
from metricsamples import sample

pytestmark = [pytest.mark.lab, pytest.mark.image]

REPO = Path(__file__).resolve().parents[1]
TAG = "localhost/registry-probe:test"
HEALTHY = "registry.lab.test"
BLACK_HOLED = "firewall-drop.lab.test"
RUN_AS = "65534"  # nobody: not the image's own 65532, as a cluster's policy may choose
VENV_BUDGET_BYTES = 60 * 1024 * 1024  # what the image adds to its base: the agent's virtualenv


@dataclass(frozen=True)
class Image:
    podman: Podman
    reference: str
    base: str
    size: int
    base_size: int
    build_seconds: float
    base_seconds: float


def _size(podman: Podman, reference: str) -> int:
    done = podman.run("image", "inspect", "--format", "{{.Size}}", reference, timeout=60)
    assert done.returncode == 0, done.describe()
    return int(done.stdout.strip())


def _context(directory: Path) -> Path:
    """The repository's files (tracked and new, not ignored), plus a wheelhouse for pip."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = REPO / name
        if source.is_file():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, directory / name)
    pip_wheel = [
        sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
        "--wheel-dir", str(directory / "wheelhouse"), str(directory), "setuptools>=77",
    ]  # fmt: skip
    wheels = subprocess.run(pip_wheel, capture_output=True, text=True, timeout=600, check=False)
    assert wheels.returncode == 0, wheels.stdout + wheels.stderr
    return directory


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The image built from the repository's Dockerfile on the local base."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    podman = Podman()
    started = time.monotonic()
    base = podman.debian_base()
    base_seconds = time.monotonic() - started
    context = _context(tmp_path_factory.mktemp("context"))
    # Older untagged builds go after a day; today's layers stay as the build cache.
    podman.run("image", "prune", "--force", "--filter", "until=24h", timeout=300)
    started = time.monotonic()
    built = podman.run(
        "build", "--network", "host", "--pull=never",
        "--build-arg", f"BUILDER_IMAGE={base}", "--build-arg", f"BASE_IMAGE={base}",
        "--build-arg", "PIP_NO_INDEX=1", "--build-arg", "PIP_FIND_LINKS=/src/wheelhouse",
        "--tag", TAG, str(context),
        timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.describe()
    return Image(
        podman,
        TAG,
        base,
        _size(podman, TAG),
        _size(podman, base),
        time.monotonic() - started,
        base_seconds,
    )


def run_image(image: Image, *args: str, network: str = "none", timeout: float = 120) -> Any:
    """`podman run` the image read-only (no tmpfs), as RUN_AS, with no capabilities."""
    return image.podman.run(
        "run", "--rm", "--read-only", "--read-only-tmpfs=false", "--user", RUN_AS,
        "--cap-drop", "all", "--security-opt", "no-new-privileges", "--network", network,
        *args,
        timeout=timeout,
    )  # fmt: skip


def test_image_size_and_build_time(image: Image, record_property: Any) -> None:
    """The image adds only the agent's virtualenv to its base; size and times are reported."""
    added = image.size - image.base_size
    facts = {
        "image_bytes": image.size,
        "base_bytes": image.base_size,
        "added_bytes": added,
        "build_seconds": round(image.build_seconds, 1),
        "base_seconds": round(image.base_seconds, 1),
    }
    record_property("image", json.dumps(facts))
    print(f"\nimage {image.reference}: {json.dumps(facts)}")
    assert 0 < added < VENV_BUDGET_BYTES, facts


def test_image_config_is_non_root_with_the_cli_entrypoint(image: Image) -> None:
    """USER is numeric and not root; ENTRYPOINT is ["registry-probe"]; no shell form."""
    done = image.podman.run("image", "inspect", image.reference, timeout=60)
    assert done.returncode == 0, done.describe()
    [config] = json.loads(done.stdout)
    user = config["Config"]["User"]
    assert user.split(":")[0].isdigit() and not user.startswith("0"), user
    assert config["Config"]["Entrypoint"] == ["registry-probe"]
    assert "/opt/registry-probe/bin" in next(
        v for v in config["Config"]["Env"] if v.startswith("PATH=")
    )


# A look inside, with the image's own python: what must be there and what must not.
INSPECT = """
import importlib.util, json, os, shutil
print(json.dumps({
    "modules": {m: importlib.util.find_spec(m) is not None
                for m in ("probe", "h11", "httpx", "pip", "setuptools")},
    "paths": {p: os.path.exists(p)
              for p in ("/root/.cache", "/src", "/opt/registry-probe/bin/pip")},
    "tools": {t: shutil.which(t) for t in ("registry-probe", "gcc", "cc", "pip", "pip3")},
    "uid": os.getuid(),
}))
"""


def test_final_image_has_no_pip_cache_or_build_tools(image: Image) -> None:
    """The agent imports; pip, setuptools, the source, a compiler and pip's cache are absent."""
    done = run_image(image, "--entrypoint", "/opt/registry-probe/bin/python", image.reference,
                     "-c", INSPECT)  # fmt: skip
    assert done.returncode == 0, done.describe()
    found = json.loads(done.stdout)
    assert found["modules"] == {
        "probe": True,
        "h11": True,  # the runtime speaks HTTP/1.1 through it
        "httpx": False,  # a test dependency only
        "pip": False,
        "setuptools": False,
    }
    assert not any(found["paths"].values()), found
    assert found["tools"]["registry-probe"] == "/opt/registry-probe/bin/registry-probe"
    assert [t for t, path in found["tools"].items() if path and t != "registry-probe"] == []
    assert found["uid"] == int(RUN_AS)


def _check_in_lab(image: Image, lab: Lab, registry: str) -> tuple[int, dict[str, Any], str]:
    """`registry-probe check --output json` in the image, in the lab's node namespace."""
    root = lab.host_root()
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's user
    node = lab.namespace("node")
    done = run_image(
        image, "--volume", f"{root}:/host:ro", image.reference,
        "check", "--host-root", "/host", "--no-discover", "--timeout", "2",
        "--output", "json", "--registry", registry,
        network=f"ns:/run/netns/{node.name}",
    )  # fmt: skip
    assert done.stdout.strip(), done.describe()
    return done.returncode, json.loads(done.stdout), done.describe()


def test_check_in_the_image_passes_a_healthy_lab_registry(image: Image, lab: Lab) -> None:
    """Read-only, as uid 65534, in the node namespace: the healthy registry passes, exit 0."""
    code, report, described = _check_in_lab(image, lab, HEALTHY)
    [entry] = report["registries"]
    assert (code, entry["registry"], entry["ok"]) == (0, HEALTHY, True), described
    assert {c["check"] for c in entry["checks"]} >= {"dns", "tcp", "tls", "http"}, described


def test_check_in_the_image_names_a_black_holed_registry(image: Image, lab: Lab) -> None:
    """The black-holed registry fails with tcp_timeout, root cause 5, exit 1."""
    code, report, described = _check_in_lab(image, lab, BLACK_HOLED)
    [entry] = report["registries"]
    assert (code, entry["ok"], entry["root_cause"]) == (1, False, 5), described
    assert [c["reason"] for c in entry["checks"] if not c["ok"]] == ["tcp_timeout"], described


def test_agent_in_the_image_completes_a_cycle(image: Image, lab: Lab) -> None:
    """`run --once` in the image prints metrics with the healthy registry's http check passed."""
    root = lab.host_root()
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    node = lab.namespace("node")
    done = run_image(
        image, "--volume", f"{root}:/host:ro", "--env", "NODE_NAME=lab-node", image.reference,
        "run", "--once", "--host-root", "/host", "--no-discover", "--timeout", "2",
        "--listen", "127.0.0.1:0", "--registry", HEALTHY,
        network=f"ns:/run/netns/{node.name}",
    )  # fmt: skip
    assert done.returncode == 0, done.describe()
    labels = {"registry": HEALTHY, "endpoint": f"{HEALTHY}:443", "check": "http"}
    assert sample(done.stdout, "registry_probe_success", **labels) == 1, done.describe()
