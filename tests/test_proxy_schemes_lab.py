"""Every proxy scheme Go speaks for HTTPS, and every way a proxy fails, against real proxies.

The "proxied" node can only leave through a proxy. Here containerd's drop-in names squid's
HTTPS port (TLS to the proxy, CONNECT inside it, the registry's TLS inside the tunnel), dante as
a SOCKS5 server (with and without RFC 1929 credentials), squid and tinyproxy asked for targets
they cannot reach, and two fault-server "proxies" whose answer to CONNECT is broken. Each test
asserts the reason `check --output json` gives, and that the run stays within its deadline.
"""

from __future__ import annotations

from typing import Any

import pytest
from lab import SOCKS_DENIED_NAME, CompletedRun, Lab

pytestmark = pytest.mark.lab

TIMEOUT = 2.0
DEADLINE = TIMEOUT * 1.5 + 3
REGISTRY = "registry.lab.test"
DOCKER_HUB = "registry-1.docker.io"
CONTAINERD_UNIT = "lib/systemd/system/containerd.service"
CONTAINERD_DROPIN = "etc/systemd/system/containerd.service.d/http-proxy.conf"
UNIT = "[Unit]\nDescription=containerd\n[Service]\nExecStart=/usr/bin/containerd\n"


def containerd_proxy(url: str) -> dict[str, str]:
    """containerd's unit, and a drop-in giving it `HTTPS_PROXY=url`."""
    return {
        CONTAINERD_UNIT: UNIT,
        CONTAINERD_DROPIN: f'[Service]\nEnvironment="HTTPS_PROXY={url}"\n',
    }


def check(
    lab: Lab,
    url: str,
    registry: str = REGISTRY,
    *,
    timeout: float = TIMEOUT,
    certs_d: dict[str, bytes] | None = None,
) -> CompletedRun:
    """`check` on the proxied node with containerd going through `url`, within its deadline."""
    root = lab.host_root(files=containerd_proxy(url), certs_d=certs_d)
    run = lab.check([registry], root, timeout=timeout, node="proxied")
    assert run.json is not None, run.describe()
    deadline = timeout * 1.5 + 3
    assert run.elapsed < deadline, f"took {run.elapsed:.2f}s, over {deadline}s\n{run.describe()}"
    return run


def checks(run: CompletedRun, registry: str = REGISTRY) -> dict[str, dict[str, Any]]:
    """The registry endpoint's checks by kind."""
    report = run.registry(registry)
    endpoint = next(c["endpoint"] for c in report["checks"])
    return {c["check"]: c for c in report["checks"] if c["endpoint"] == endpoint}


# --- https:// proxies ----------------------------------------------------------------------------


def test_https_proxy_tunnels_tls_inside_tls(lab: Lab) -> None:
    """An https:// proxy: TLS to squid's https_port, CONNECT inside it, the registry's TLS and
    GET /v2/ inside the tunnel, all passing."""
    run = check(lab, lab.tls_proxy.url)
    found = checks(run)
    assert run.exit_code == 0, run.describe()
    assert set(found) == {"proxy", "tls", "http"}, run.describe()
    assert (
        "CONNECT registry.lab.test:443 via https://tlsproxy.lab.test:3129: 200"
        in (found["proxy"]["detail"])
    )
    assert found["tls"]["certificate"]["subject"] == "CN=registry.lab.test", run.describe()


def test_https_proxy_with_untrusted_certificate_is_a_tls_reason_naming_the_proxy(
    lab: Lab,
) -> None:
    """The proxy's certificate from a CA the node lacks: tls_unknown_authority on the proxy
    check, the detail in Go's words naming the proxy and its issuer, the advice about the
    proxy's TLS."""
    run = check(lab, lab.untrusted_tls_proxy.url)
    found = checks(run)
    assert run.exit_code == 1
    assert set(found) == {"proxy"}, run.describe()
    proxy = found["proxy"]
    assert proxy["reason"] == "tls_unknown_authority", run.describe()
    assert proxy["detail"].startswith(
        "proxyconnect tcp: proxy https://tlsproxy-untrusted.lab.test:3129: "
        "certificate signed by unknown authority"
    ), proxy["detail"]
    assert "issued by CN=registry-probe other CA" in proxy["detail"]
    # The proxy's certificate is not the registry's: no certificate facts (nor expiry metric).
    assert "certificate" not in proxy
    assert "HTTPS proxy" in run.registry(REGISTRY)["advice"]


def test_https_proxy_is_trusted_with_the_registrys_certs_d_ca(lab: Lab) -> None:
    """Go verifies the proxy with the registry's TLS config: containerd's certs.d CA for the
    registry makes the otherwise untrusted proxy pass."""
    run = check(
        lab,
        lab.untrusted_tls_proxy.url,
        certs_d={REGISTRY: lab.other_ca.pem},
    )
    assert run.exit_code == 0, run.describe()
    assert checks(run)["http"]["ok"]


def test_https_proxy_down_is_proxy_unreachable(lab: Lab) -> None:
    """An https:// proxy where nothing listens: proxyconnect tcp, proxy_unreachable."""
    run = check(lab, "https://closed.lab.test:3129")
    proxy = checks(run)["proxy"]
    assert run.exit_code == 1
    assert proxy["reason"] == "proxy_unreachable", run.describe()
    assert proxy["detail"].startswith("proxyconnect tcp: dial tcp 198.18.1.22:3129: "), proxy


def test_docker_hub_behind_an_unreachable_https_proxy_fails_without_crashing(lab: Lab) -> None:
    """EKS nodeadm's `HTTPS_PROXY=https://...` form with the proxy down: the rate-limit path
    no longer crashes (it exited 2, "internal error"); every endpoint says proxy_unreachable."""
    run = check(lab, "https://closed.lab.test:3129", DOCKER_HUB)
    assert run.exit_code == 1, run.describe()
    report = run.registry(DOCKER_HUB)
    assert {c["reason"] for c in report["checks"]} == {"proxy_unreachable"}, run.describe()
    assert "internal error" not in run.stderr


def test_docker_hub_rate_limit_is_read_through_an_https_proxy(lab: Lab) -> None:
    """The rate-limit request (token, then HEAD) goes TLS in TLS through the https proxy."""
    run = check(lab, lab.tls_proxy.url, DOCKER_HUB)
    assert run.exit_code == 0, run.describe()
    ratelimit = checks(run, DOCKER_HUB)["ratelimit"]
    assert ratelimit["ok"], run.describe()
    assert run.registry(DOCKER_HUB)["ratelimit"][0]["remaining"] is not None


# --- socks5:// and socks5h:// --------------------------------------------------------------------


def test_socks5_proxy_reaches_the_registry(lab: Lab) -> None:
    """socks5:// through dante: SOCKS CONNECT, then TLS and GET /v2/ in the tunnel."""
    run = check(lab, lab.socks.url)
    found = checks(run)
    assert run.exit_code == 0, run.describe()
    assert set(found) == {"proxy", "tls", "http"}, run.describe()
    assert "SOCKS5 CONNECT registry.lab.test:443" in found["proxy"]["detail"]


def test_socks5h_proxy_reaches_the_registry(lab: Lab) -> None:
    """socks5h:// is the same protocol to Go: it passes the same way, port 1080 by default."""
    run = check(lab, f"socks5h://{lab.socks.name}")
    assert run.exit_code == 0, run.describe()
    assert checks(run)["http"]["ok"]


def test_socks5_sends_the_name_for_the_proxy_to_resolve(lab: Lab) -> None:
    """Go sends the target's name to the SOCKS server even for socks5://: with a node whose
    resolver is dead (the proxy named by address), the pull still works."""
    files = containerd_proxy(f"socks5://{lab.socks.address}:{lab.socks.port}")
    root = lab.host_root(nameservers=("198.18.0.99",), files=files)
    run = lab.check([REGISTRY], root, timeout=TIMEOUT, node="proxied")
    assert run.elapsed < DEADLINE, run.describe()
    assert run.exit_code == 0, run.describe()
    assert "SOCKS5 CONNECT registry.lab.test:443" in checks(run)["proxy"]["detail"]


def test_socks5_with_credentials_authenticates_and_hides_them(lab: Lab) -> None:
    """User and password in the socks5 URL: RFC 1929 with dante passes; the password is
    never shown."""
    proxy = lab.socks_auth
    run = check(lab, proxy.url_with_credentials())
    assert run.exit_code == 0, run.describe()
    assert "SOCKS5 CONNECT registry.lab.test:443" in checks(run)["proxy"]["detail"]
    assert proxy.password is not None
    assert proxy.password not in run.stdout + run.stderr
    shown = run.registry(REGISTRY)["routes"][0]["proxy"]
    assert shown == f"socks5://{proxy.user}:***@{proxy.name}:{proxy.port}"


def test_socks5_wrong_password_is_proxy_auth_required(lab: Lab) -> None:
    """dante rejects the password: Go's "username/password authentication failed"."""
    wrong = "not-the-socks-password"
    run = check(lab, lab.socks_auth.url_with_credentials(password=wrong))
    proxy = checks(run)["proxy"]
    assert proxy["reason"] == "proxy_auth_required", run.describe()
    assert "socks connect tcp 198.18.1.65:1080->registry.lab.test:443: " in proxy["detail"]
    assert "username/password authentication failed" in proxy["detail"]
    assert wrong not in run.stdout + run.stderr


def test_socks5_without_credentials_to_an_authenticating_proxy(lab: Lab) -> None:
    """No user info, dante wants one: "no acceptable authentication methods"."""
    run = check(lab, lab.socks_auth.url)
    proxy = checks(run)["proxy"]
    assert proxy["reason"] == "proxy_auth_required", run.describe()
    assert "no acceptable authentication methods" in proxy["detail"]


def test_socks5_ruleset_denial_is_proxy_denied(lab: Lab) -> None:
    """dante's `socks block` rule: "connection not allowed by ruleset", proxy_denied."""
    run = check(lab, lab.socks.url, SOCKS_DENIED_NAME)
    proxy = checks(run, SOCKS_DENIED_NAME)["proxy"]
    assert proxy["reason"] == "proxy_denied", run.describe()
    assert "connection not allowed by ruleset" in proxy["detail"]


@pytest.mark.parametrize(
    ("registry", "words"),
    [("closed.lab.test", "connection refused"), ("nxdomain.lab.test", "host unreachable")],
)
def test_socks5_upstream_failure_is_proxy_upstream_failed(
    lab: Lab, registry: str, words: str
) -> None:
    """dante cannot connect to the target, or cannot resolve it: proxy_upstream_failed."""
    run = check(lab, lab.socks.url, registry)
    proxy = checks(run, registry)["proxy"]
    assert proxy["reason"] == "proxy_upstream_failed", run.describe()
    assert f"unknown error {words}" in proxy["detail"]
    assert run.registry(registry)["root_cause"] == 5


def test_socks5_proxy_down_is_proxy_unreachable(lab: Lab) -> None:
    """A socks5 proxy where nothing listens: proxyconnect tcp, as for an HTTP proxy."""
    run = check(lab, "socks5://closed.lab.test:1080")
    proxy = checks(run)["proxy"]
    assert proxy["reason"] == "proxy_unreachable", run.describe()
    assert proxy["detail"].startswith("proxyconnect tcp: dial tcp 198.18.1.22:1080"), proxy


def test_docker_hub_rate_limit_is_read_through_socks5(lab: Lab) -> None:
    """The rate-limit request goes through the SOCKS tunnel too."""
    run = check(lab, lab.socks.url, DOCKER_HUB)
    assert run.exit_code == 0, run.describe()
    assert checks(run, DOCKER_HUB)["ratelimit"]["ok"], run.describe()


# --- a proxy that cannot reach the registry ------------------------------------------------------


@pytest.mark.parametrize("registry", ["closed.lab.test", "nxdomain.lab.test"])
def test_squid_5xx_to_connect_is_proxy_upstream_failed(lab: Lab, registry: str) -> None:
    """squid cannot connect to (503) or resolve (500) the registry: proxy_upstream_failed,
    with advice about the proxy's DNS and egress rather than its ACL."""
    run = check(lab, lab.squid.url, registry)
    proxy = checks(run, registry)["proxy"]
    assert proxy["reason"] == "proxy_upstream_failed", run.describe()
    assert " with 5" in proxy["detail"], proxy["detail"]
    advice = run.registry(registry)["advice"]
    assert "egress" in advice
    assert "ACL is not the cause" in advice


def test_tinyproxy_unable_to_connect_is_proxy_upstream_failed(lab: Lab) -> None:
    """tinyproxy's `500 Unable to connect`: proxy_upstream_failed."""
    run = check(lab, lab.tinyproxy.url_with_credentials(), "closed.lab.test")
    proxy = checks(run, "closed.lab.test")["proxy"]
    assert proxy["reason"] == "proxy_upstream_failed", run.describe()
    assert "500 Unable to connect" in proxy["detail"]


# --- broken answers to CONNECT -------------------------------------------------------------------


def test_garbage_connect_answer_is_denied_at_once(lab: Lab) -> None:
    """An answer that is not HTTP (and never ends a line) is judged from its first bytes:
    proxy_denied, long before the deadline, never proxy_unreachable."""
    timeout = 6.0
    run = check(lab, "http://garbage-proxy.lab.test:3128", timeout=timeout)
    proxy = checks(run)["proxy"]
    assert proxy["reason"] == "proxy_denied", run.describe()
    assert "an answer that is not HTTP" in proxy["detail"]
    assert proxy["phases"]["connect"] < 1.0, proxy
    assert run.elapsed < timeout, run.describe()


def test_endless_headers_after_200_are_not_a_healthy_tunnel(lab: Lab) -> None:
    """`200` followed by headers that never end: no tunnel (proxy_denied), and the registry's
    TLS is not run, so it is not blamed."""
    run = check(lab, "http://endless-proxy.lab.test:3128")
    found = checks(run)
    assert found["proxy"]["reason"] == "proxy_denied", run.describe()
    assert "did not end within 16384 bytes" in found["proxy"]["detail"]
    assert set(found) == {"proxy"}, run.describe()
