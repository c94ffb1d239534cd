"""The lab's proxied node and its proxies, seen by stock clients (curl, Python's socket and ssl).

These check the lab itself, so a proxy test that fails can be told from a broken lab: squid
tunnels from the proxied node (also over TLS on its https_ports), refuses its denied name and
answers 503 for a target it cannot reach, tinyproxy wants Basic credentials, dante tunnels,
authenticates and refuses by rule, and nothing leaves the proxied node directly for ports 443
and 5000.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from lab import DENIED_NAME, DNS_ADDRESS, PROXIED_NODE_ADDRESS, SOCKS_DENIED_NAME, Lab

pytestmark = pytest.mark.lab

SELFCHECK = Path(__file__).parent / "lab" / "selfcheck.py"


def through_proxy(
    lab: Lab, proxy: str, url: str, extra: list[str] | None = None
) -> tuple[int, str]:
    """curl from the proxied node: its exit status and `<CONNECT status> <HTTP status>`."""
    bundle = lab.host_root() / "etc" / "ssl" / "certs" / "ca-certificates.crt"
    argv = [
        "curl", "-sS", "-o", "/dev/null", "--max-time", "3", "--cacert", str(bundle),
        "--proxy", proxy, "-w", "%{http_connect} %{http_code}", *(extra or []), url,
    ]  # fmt: skip
    done = lab.run_in(argv, node="proxied", timeout=10)
    return done.returncode, done.stdout


def test_lab_squid_tunnels_from_the_proxied_node(lab: Lab) -> None:
    """squid tunnels to the lab's registry and Docker Hub, and its access log shows the node."""
    assert through_proxy(lab, lab.squid.address_url, "https://registry.lab.test/v2/") == (
        0,
        "200 200",
    )
    assert through_proxy(lab, lab.squid.address_url, "https://registry-1.docker.io/v2/") == (
        0,
        "200 401",  # the Docker Hub stand-in's Bearer challenge
    )
    assert lab.squid.access_log is not None
    log = lab.squid.access_log.read_text(encoding="utf-8")
    assert f"{PROXIED_NODE_ADDRESS} TCP_TUNNEL/200" in log, log
    assert "CONNECT registry.lab.test:443" in log, log


def test_lab_squid_denies_one_destination(lab: Lab) -> None:
    """squid answers 403 to a CONNECT to the denied name (which resolves to a healthy registry)."""
    assert through_proxy(lab, lab.squid.address_url, f"https://{DENIED_NAME}/v2/") == (
        56,
        "403 000",
    )


def test_lab_tinyproxy_wants_credentials(lab: Lab) -> None:
    """tinyproxy answers 407 to a CONNECT without credentials and tunnels with them.

    With wrong credentials tinyproxy 1.11 answers 401, not 407: a proxy test must expect that.
    """
    url = "https://registry.lab.test/v2/"
    proxy = lab.tinyproxy
    without = through_proxy(lab, proxy.address_url, url)
    right = through_proxy(lab, proxy.url_with_credentials(by_address=True), url)
    wrong = through_proxy(lab, proxy.url_with_credentials("wrong", by_address=True), url)
    assert (without, right, wrong) == ((56, "407 000"), (0, "200 200"), (56, "401 000"))


def test_lab_squid_https_ports_serve_the_lab_ca_and_the_other_ca(lab: Lab) -> None:
    """squid's https_port tunnels with a lab-CA certificate; the other port's certificate is
    not trusted by the node's bundle (curl: 60)."""
    bundle = lab.host_root() / "etc" / "ssl" / "certs" / "ca-certificates.crt"
    results = []
    for proxy in (lab.tls_proxy, lab.untrusted_tls_proxy):
        pinned = f"{proxy.name}:{proxy.port}:{proxy.address}"  # the lab's DNS, for curl
        tls = ["--proxy-cacert", str(bundle), "--resolve", pinned]
        results.append(through_proxy(lab, proxy.url, "https://registry.lab.test/v2/", tls))
    assert results == [(0, "200 200"), (60, "000 000")]


def test_lab_dante_tunnels_authenticates_and_denies(lab: Lab) -> None:
    """dante: the open server tunnels and refuses its denied name by rule; the other one wants
    the lab's SOCKS user (curl: 97 for a rejected user or a refused connection)."""
    url = "https://registry.lab.test/v2/"
    socks, auth = lab.socks, lab.socks_auth
    open_url = f"socks5h://{socks.address}:{socks.port}"
    assert through_proxy(lab, open_url, url) == (0, "000 200")
    assert through_proxy(lab, open_url, f"https://{SOCKS_DENIED_NAME}/v2/")[0] == 97
    right = auth.url_with_credentials(by_address=True, scheme="socks5h")
    wrong = auth.url_with_credentials("wrong", by_address=True, scheme="socks5h")
    assert through_proxy(lab, right, url) == (0, "000 200")
    assert through_proxy(lab, wrong, url)[0] == 97


def test_lab_squid_answers_503_for_a_target_it_cannot_reach(lab: Lab) -> None:
    """squid's CONNECT to closed.lab.test (nothing listens) is answered 503."""
    assert through_proxy(lab, lab.squid.address_url, "https://closed.lab.test/v2/") == (
        56,
        "503 000",
    )


def test_lab_proxied_node_has_no_direct_way_out(lab: Lab) -> None:
    """From the proxied node, DNS works but a direct connection to 443 or 5000 times out."""
    targets = ["registry.lab.test=198.18.1.10:443", "port5000.lab.test=198.18.1.19:5000"]
    done = lab.run_in(
        [sys.executable, str(SELFCHECK), "-", DNS_ADDRESS, "registry.lab.test", *targets],
        node="proxied",
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "dns": {"registry.lab.test": "NOERROR:198.18.1.10"},
        "conn": dict.fromkeys(targets, "tcp:timeout"),
    }


def test_lab_host_root_writes_extra_files(lab: Lab) -> None:
    """`host_root(files=...)` writes each file under the root, directories included."""
    dropin = "etc/systemd/system/containerd.service.d/http-proxy.conf"
    text = f'[Service]\nEnvironment="HTTPS_PROXY={lab.squid.url}"\n'
    root = lab.host_root(files={dropin: text, "etc/docker/daemon.json": "{}\n"})
    assert (root / dropin).read_text(encoding="utf-8") == text
    assert (root / "etc" / "docker" / "daemon.json").read_text(encoding="utf-8") == "{}\n"


def test_lab_spawned_process_has_exactly_its_environment(lab: Lab) -> None:
    """`spawn_in(env=...)` starts a process in the proxied node whose environ is that env."""
    env = {"HTTPS_PROXY": lab.squid.url, "PATH": "/usr/bin:/bin"}
    process = lab.spawn_in("fake-containerd", ["sleep", "30"], node="proxied", env=env)
    try:
        environ = Path(f"/proc/{process.popen.pid}/environ").read_bytes()
        assert sorted(environ.decode().strip("\0").split("\0")) == sorted(
            f"{k}={v}" for k, v in env.items()
        )
    finally:
        process.stop()
