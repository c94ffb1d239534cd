"""Issue 4 in the lab: each registry is checked through the proxy containerd would use.

The "proxied" node drops every direct TCP connection to 443 and 5000, so a proxy (a real squid,
or a tinyproxy wanting Basic credentials) is the only way out. The node's runtimes are systemd
units written into its host root; the probe reads them as containerd's Go code would.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from lab import CONTAINERD_CONFIG_PATH, Lab

pytestmark = pytest.mark.lab

TIMEOUT = 2.0
REGISTRY = "registry.lab.test"
CONTAINERD_UNIT = "lib/systemd/system/containerd.service"
DOCKER_UNIT = "lib/systemd/system/docker.service"
CONTAINERD_DROPIN = "etc/systemd/system/containerd.service.d/http-proxy.conf"
UNIT = "[Unit]\nDescription={name}\n[Service]\nExecStart=/usr/bin/{name}\n"


def units(
    containerd_env: str = "", *, docker: bool = False, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """A node's unit files: containerd (with a proxy drop-in when given), optionally dockerd."""
    files = {CONTAINERD_UNIT: UNIT.format(name="containerd")}
    if containerd_env:
        files[CONTAINERD_DROPIN] = f"[Service]\n{containerd_env}\n"
    if docker:
        files[DOCKER_UNIT] = UNIT.format(name="dockerd")
    files.update(extra or {})
    return files


def check(lab: Lab, files: dict[str, str], registry: str = REGISTRY) -> Any:
    run = lab.check([registry], lab.host_root(files=files), timeout=TIMEOUT, node="proxied")
    assert run.json is not None, run.describe()
    assert run.elapsed < TIMEOUT * 3 + 5, run.describe()
    return run


def by_check(run: Any, registry: str = REGISTRY) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in run.registry(registry)["checks"]}


def test_containerd_through_squid_reaches_the_registry(lab: Lab) -> None:
    """containerd's HTTPS_PROXY drop-in: CONNECT through squid, TLS and /v2/ inside the tunnel."""
    run = check(lab, units(f'Environment="HTTPS_PROXY={lab.squid.url}"'))
    checks = by_check(run)
    assert run.exit_code == 0, run.describe()
    assert set(checks) == {"proxy", "tls", "http"}  # the proxy resolves and dials, not the node
    assert all(c["ok"] for c in checks.values()), run.describe()
    assert run.registry(REGISTRY)["routes"] == [
        {"runtime": "containerd", "route": "proxy", "proxy": lab.squid.url}
    ]


def test_docker_proxied_containerd_not_is_a_named_mismatch(lab: Lab) -> None:
    """The seed's case: dockerd has the proxy, containerd none: direct times out, mismatch named."""
    files = units(
        docker=True,
        extra={
            "etc/systemd/system/docker.service.d/http-proxy.conf": (
                f'[Service]\nEnvironment="HTTPS_PROXY={lab.squid.url}"\n'
            )
        },
    )
    run = check(lab, files)
    checks = by_check(run)
    assert run.exit_code == 1
    assert checks["tcp"]["reason"] == "tcp_timeout", run.describe()
    assert checks["proxy"]["reason"] == "proxy_mismatch"
    assert "containerd goes direct" in checks["proxy"]["detail"]
    assert "/etc/systemd/system/containerd.service.d/http-proxy.conf" in checks["proxy"]["detail"]
    report = run.registry(REGISTRY)
    assert report["proxy_consistent"] is False
    assert {(r["runtime"], r["route"]) for r in report["routes"]} == {
        ("containerd", "direct"),
        ("dockerd", "proxy"),
    }


def test_containerd_proxied_docker_direct_works_but_mismatch_is_reported(lab: Lab) -> None:
    """containerd through squid passes every connectivity check; dockerd's direct route is named."""
    run = check(lab, units(f'Environment="HTTPS_PROXY={lab.squid.url}"', docker=True))
    checks = by_check(run)
    assert checks["tls"]["ok"] and checks["http"]["ok"], run.describe()
    assert checks["proxy"]["reason"] == "proxy_mismatch"
    assert "dockerd goes direct" in checks["proxy"]["detail"]
    assert "docker.service.d" in checks["proxy"]["detail"]


def test_agent_exports_routes_and_consistency(lab: Lab) -> None:
    """`run --once` renders each runtime's route and the consistency gauge."""
    root = lab.host_root(files=units(f'Environment="HTTPS_PROXY={lab.squid.url}"', docker=True))
    done = lab.probe(
        ["run", "--once", "--no-discover", "--host-root", str(root), "--timeout", "2",
         "--registry", REGISTRY, "--listen", "127.0.0.1:0"],
        node="proxied",
        timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    route = "registry_probe_runtime_proxy_route"
    for sample in (
        f'{route}{{registry="{REGISTRY}",route="proxy",runtime="containerd"}} 1.0',
        f'{route}{{registry="{REGISTRY}",route="direct",runtime="dockerd"}} 1.0',
        f'registry_probe_proxy_consistent{{registry="{REGISTRY}"}} 0.0',
    ):
        assert sample in done.stdout, done.stdout


def test_dot_domain_no_proxy_sends_the_registry_direct(lab: Lab) -> None:
    """NO_PROXY=.lab.test matches registry.lab.test: Go goes direct, and direct is dropped."""
    env = f'Environment="HTTPS_PROXY={lab.squid.url}" "NO_PROXY=localhost,.lab.test"'
    run = check(lab, units(env))
    checks = by_check(run)
    assert checks["tcp"]["reason"] == "tcp_timeout", run.describe()
    assert run.registry(REGISTRY)["routes"][0]["route"] == "direct"


def test_http_proxy_alone_does_not_cover_https(lab: Lab) -> None:
    """Go uses HTTPS_PROXY for https and never falls back to HTTP_PROXY: the pull goes direct."""
    run = check(lab, units(f'Environment="HTTP_PROXY={lab.squid.url}"'))
    assert by_check(run)["tcp"]["reason"] == "tcp_timeout", run.describe()
    assert run.registry(REGISTRY)["routes"][0]["route"] == "direct"


def test_proxy_down_is_proxy_unreachable(lab: Lab) -> None:
    """A proxy where nothing listens: proxyconnect fails, named as proxy_unreachable."""
    run = check(lab, units('Environment="HTTPS_PROXY=http://closed.lab.test:3128"'))
    proxy = by_check(run)["proxy"]
    assert run.exit_code == 1
    assert proxy["reason"] == "proxy_unreachable", run.describe()
    assert "proxyconnect" in proxy["detail"]
    assert run.registry(REGISTRY)["root_cause"] == 5


def test_proxy_wanting_credentials_is_proxy_auth_required(lab: Lab) -> None:
    """tinyproxy without credentials answers 407: proxy_auth_required."""
    run = check(lab, units(f'Environment="HTTPS_PROXY={lab.tinyproxy.url}"'))
    assert by_check(run)["proxy"]["reason"] == "proxy_auth_required", run.describe()


def test_proxy_credentials_are_used_and_never_shown(lab: Lab) -> None:
    """With user:password in the URL the tunnel works, and the password appears nowhere."""
    url = lab.tinyproxy.url_with_credentials()
    run = check(lab, units(f'Environment="HTTPS_PROXY={url}"'))
    assert run.exit_code == 0, run.describe()
    assert lab.tinyproxy.password
    assert lab.tinyproxy.password not in run.stdout + run.stderr
    shown = run.registry(REGISTRY)["routes"][0]["proxy"]
    assert shown == f"http://{lab.tinyproxy.user}:***@{lab.tinyproxy.name}:{lab.tinyproxy.port}"
    text = lab.probe(
        ["check", "--no-discover", "--host-root", str(lab.host_root(files=units(
            f'Environment="HTTPS_PROXY={url}"'))), "--registry", REGISTRY, "--timeout", "2"],
        node="proxied",
    )  # fmt: skip
    assert lab.tinyproxy.password not in text.stdout + text.stderr


def test_wrong_proxy_credentials_are_named(lab: Lab) -> None:
    """Wrong credentials are rejected (tinyproxy: 401) and reported as an auth problem."""
    wrong = "not-the-password"
    url = lab.tinyproxy.url_with_credentials(password=wrong)
    run = check(lab, units(f'Environment="HTTPS_PROXY={url}"'))
    assert by_check(run)["proxy"]["reason"] == "proxy_auth_required", run.describe()
    assert wrong not in run.stdout + run.stderr


def test_destination_the_proxy_denies_is_proxy_denied(lab: Lab) -> None:
    """squid refuses CONNECT to denied.lab.test with 403: proxy_denied."""
    run = check(lab, units(f'Environment="HTTPS_PROXY={lab.squid.url}"'), "denied.lab.test")
    proxy = by_check(run, "denied.lab.test")["proxy"]
    assert proxy["reason"] == "proxy_denied", run.describe()
    assert "403" in proxy["detail"]


def test_environment_file_proxy_is_followed(lab: Lab) -> None:
    """EnvironmentFile=- (optional) with the proxy in it: containerd goes through squid."""
    files = units(
        "EnvironmentFile=-/etc/default/containerd-missing\n"
        "EnvironmentFile=-/etc/default/containerd",
        extra={"etc/default/containerd": f"HTTPS_PROXY={lab.squid.url}\n"},
    )
    run = check(lab, files)
    assert run.exit_code == 0, run.describe()
    assert run.registry(REGISTRY)["routes"][0]["route"] == "proxy"


def node_pid(pid: int) -> int:
    """A lab process's pid as the node (its own PID namespace) numbers it: NSpid's last field."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


def test_running_process_with_other_environment_is_restart_pending(
    lab: Lab, tmp_path: Path
) -> None:
    """A running containerd started with a proxy its unit no longer has: restart pending.

    The live environment is what containerd uses until it restarts, so the check goes
    through the proxy (and passes), while the proxy check names the pending restart. The
    stand-in runs as root the binary the unit's ExecStart= names, so it is trusted as
    containerd, and the report names it.
    """
    sleep = shutil.which("sleep")
    assert sleep is not None
    binary = tmp_path / "containerd"
    shutil.copy(sleep, binary)
    process = lab.spawn_in(
        "fake-containerd",
        [str(binary), "60"],
        node="proxied",
        env={"PATH": "/usr/bin:/bin", "HTTPS_PROXY": lab.squid.url},
    )
    pid = node_pid(process.popen.pid)
    files = units()
    files[CONTAINERD_UNIT] = f"[Unit]\nDescription=containerd\n[Service]\nExecStart={binary}\n"
    try:
        run = check(lab, files)
    finally:
        process.stop()
    checks = by_check(run)
    assert checks["tls"]["ok"] and checks["http"]["ok"], run.describe()
    assert checks["proxy"]["reason"] == "proxy_restart_pending", run.describe()
    assert "systemctl restart containerd" in checks["proxy"]["detail"]
    read = f"pid {pid} ({binary})"
    assert read in checks["proxy"]["detail"], run.describe()
    assert run.registry(REGISTRY)["routes"][0]["process"] == read, run.describe()


def test_a_non_root_containerd_cannot_steer_the_route(lab: Lab) -> None:
    """A process named containerd run by an unprivileged user, with a proxy in its
    environment, is ignored: containerd's files decide (direct, and the registry passes), and a
    node problem names the process (pid, executable, uid) and why."""
    sleep, setpriv = shutil.which("sleep"), shutil.which("setpriv")
    assert sleep is not None and setpriv is not None
    # A link named containerd (so the process is named so) in a directory nobody can reach.
    directory = Path(tempfile.mkdtemp(prefix="rp-fake-containerd-"))
    try:
        directory.chmod(0o755)
        (directory / "containerd").symlink_to(sleep)
        process = lab.spawn_in(
            "user-containerd",
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
             str(directory / "containerd"), "60"],
            node="node",
            env={"PATH": "/usr/bin:/bin", "HTTPS_PROXY": lab.squid.url},
        )  # fmt: skip
        pid = node_pid(process.popen.pid)
        try:
            run = lab.check([REGISTRY], lab.host_root(files=units()), timeout=TIMEOUT)
        finally:
            process.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert run.exit_code == 0, run.describe()
    [route] = run.registry(REGISTRY)["routes"]
    assert route == {"runtime": "containerd", "route": "direct", "proxy": None}, run.describe()
    assert run.json is not None
    problems = [p for p in run.json["node_problems"] if p["source"] == "/proc"]
    assert [p["message"] for p in problems] == [
        f"process {pid} named containerd ({Path(sleep).resolve()}, "
        "uid 65534) is not trusted as containerd: it runs as uid 65534 (effective 65534), "
        "not root"
    ], run.describe()


def test_default_check_probes_containerd_mirror_and_upstream(lab: Lab) -> None:
    """A containerd mirror for docker.io is a host of Docker Hub, probed and tried first."""
    hosts_toml = (
        'server = "https://registry-1.docker.io"\n\n'
        f'[host."https://{REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    root = lab.host_root(
        files={
            "etc/containerd/config.toml": CONTAINERD_CONFIG_PATH,
            "etc/containerd/certs.d/docker.io/hosts.toml": hosts_toml,
        }
    )
    done = lab.probe(
        ["check", "--host-root", str(root), "--timeout", "2", "--output", "json"], node="node"
    )
    report = json.loads(done.stdout)
    (hub,) = report["registries"]
    assert hub["registry"] == "registry-1.docker.io", done.stdout
    assert [h["host"] for h in hub["hosts"]] == [f"{REGISTRY}:443", "registry-1.docker.io:443"]
    assert (hub["ok"], hub["pullable"], hub["served_by"]) == (True, True, f"{REGISTRY}:443")
