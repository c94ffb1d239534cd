"""Differential test: the tool's verdict against a real containerd pull on the same node (issue 10).

For each scenario a lab node gets its files (resolv.conf, CA bundle, containerd's config.toml
and certs.d hosts directories, the containerd unit with the scenario's proxy environment), and
in one node view (lab/containerd.py: a PID and mount namespace of its own inside the node, the
files bound over /etc) a real containerd 1.6 daemon runs with that environment while
`ctr images pull --hosts-dir /etc/containerd/certs.d REF` pulls a tiny image pushed into the lab's
registries (or, for the `cri-*` scenarios, a CRI PullImage as the kubelet sends it, resolved by
the daemon with its own environment and config.toml), and `probe check --host-root ROOT` runs
beside it (`--registry HOST` unless the node's certs.d names the registry). Both results are
mapped to one outcome class (ok, dns, tcp, tls, http, proxy, auth, not_found):
`test_containerd_pulls_as_expected` pins what containerd does (so a broken lab cannot pass as
agreement), `test_tool_agrees_with_containerd` that the tool predicts it. Where the tool
disagrees today, that test is `xfail(strict=True)` with what differs: fixing the tool turns it
into an XPASS, which fails until the marker is removed.

All scenarios run concurrently (each is mostly waiting on timeouts), once per session, in a
module fixture; slow ones (a dead mirror makes every request wait for its dial timeout) run
only with `--run-slow`.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lab import Lab, Service, cripull
from lab.containerd import HOSTS_DIR, OUTCOMES, NodeView, Pull, classify_pull, missing
from lab.private import BASIC, OTHER, TOKEN, USER, PrivateRegistries

from probe.images.pull import MANIFEST_ACCEPT

pytestmark = pytest.mark.lab

REPOSITORY, TAG = "lab/tiny", "1"
IMAGE = f"{REPOSITORY}:{TAG}"
MIRROR = Service("mirror.lab.test", ("198.18.1.80",), "docker-registry")
OTHERCA = Service("otherca.lab.test", ("198.18.1.81",), "docker-registry", "other-ca")
DEAD_PROXY = "http://closed.lab.test:3128"  # resolves; nothing listens on 3128
PROBE_TIMEOUT = 3.0
PULL_SECONDS = 45.0  # containerd dials for 30 s before it gives up on a dropped SYN
WORKERS = 6  # each scenario mostly waits; 2 cores still start the processes
CONTAINERD_UNIT = "lib/systemd/system/containerd.service"
CONTAINERD_DROPIN = "etc/systemd/system/containerd.service.d/http-proxy.conf"
UNIT = "[Unit]\nDescription=containerd\n[Service]\nExecStart=/usr/bin/containerd\n"
# A node whose containerd reads hosts directories (containerd 1.6 reads none unless this is set).
CONFIG_TOML = (
    'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
    '  config_path = "/etc/containerd/certs.d"\n'
)
OTHER_CA = "@other-ca"  # a node file whose content is the PEM of the CA the node lacks
LAB_CA = "@lab-ca"


@dataclass(frozen=True)
class Scenario:
    """One node configuration and one pull; `expect` is containerd's outcome class."""

    id: str
    ref: str
    expect: str
    node: str = "node"
    env: dict[str, str] = field(default_factory=dict)  # containerd's environment (its unit's)
    # certs.d/<name>/<file> -> text (or OTHER_CA / LAB_CA)
    certs_d: dict[str, str] = field(default_factory=dict)
    nameservers: tuple[str, ...] | None = None  # None: the lab's DNS server
    disagree: str = ""  # what the tool gets wrong today (issue 10), empty when it agrees
    slow: bool = False
    pull_seconds: float = PULL_SECONDS
    # Whether the tool is given `--registry HOST`; by default only when the node's certs.d has
    # no directory for it (else the tool finds it in the node's files, as a user would run it).
    named: bool | None = None
    # A CRI pull (the kubelet's way: the daemon resolves with its environment and config.toml)
    # instead of `ctr images pull --hosts-dir`; `config_path` is config.toml's hosts directory
    # (None: unset, containerd 1.6's default, which reads no hosts directory at all).
    cri: bool = False
    config_path: str | None = HOSTS_DIR
    # The account a pull secret gives (CRI pulls only): labuser, otheruser (valid, without
    # access to lab/tiny) or "wrong" (labuser with a wrong password). The tool gets the same
    # account as --pull-secret.
    account: str | None = None

    @property
    def registry(self) -> str:
        """The registry the pull goes to, as the tool is asked about it."""
        return self.ref.split("/", 1)[0]

    @property
    def names_registry(self) -> bool:
        if self.named is not None:
            return self.named
        return not any(path.startswith(f"{self.registry}/") for path in self.certs_d)


def hosts_toml(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# An empty [host] table: containerd 1.6 needs one in every hosts.toml (see the trust scenarios).
HOST_STUB = "[host]"
# The mirror also holds the image under lab/<REPOSITORY>: with override_path, a mirror URL with
# this path is the whole API prefix (as behind a registry that serves a project under a path).
PREFIXED_PATH = "/v2/lab"


def mirror_table(url: str, *settings: str) -> str:
    return "\n".join([f'[host."{url}"]', '  capabilities = ["pull", "resolve"]', *settings])


REGISTRY_REF = f"registry.lab.test/{IMAGE}"
BASIC_REF = f"{BASIC.name}/{IMAGE}"
TOKEN_REF = f"{TOKEN.name}/{IMAGE}"
OTHERCA_REF = f"otherca.lab.test/{IMAGE}"
DEAD_UPSTREAM_REF = f"closed.lab.test/{IMAGE}"  # RST at once
NO_PROXY_ENV = {"HTTPS_PROXY": DEAD_PROXY}

SCENARIOS: tuple[Scenario, ...] = (
    # --- network faults, each provoked for real -------------------------------------------
    Scenario("ok", REGISTRY_REF, "ok"),
    Scenario("dns-nxdomain", f"nxdomain.lab.test/{IMAGE}", "dns"),
    Scenario("dns-no-answer", f"noanswer.lab.test/{IMAGE}", "dns"),
    Scenario("dns-servfail", f"servfail.lab.test/{IMAGE}", "dns"),
    Scenario("dns-refused", f"refused.lab.test/{IMAGE}", "dns"),
    Scenario("dns-timeout", f"dns-drop.lab.test/{IMAGE}", "dns"),
    Scenario("dns-dead-resolver", REGISTRY_REF, "dns", nameservers=("198.18.0.99",)),
    Scenario("dns-no-resolvers", REGISTRY_REF, "dns", nameservers=()),
    Scenario("tcp-drop", f"firewall-drop.lab.test/{IMAGE}", "tcp"),
    Scenario("tcp-reset", f"firewall-reset.lab.test/{IMAGE}", "tcp"),
    Scenario("tcp-closed", f"closed.lab.test/{IMAGE}", "tcp"),
    Scenario("tcp-host-unreachable", f"host-unreachable.lab.test/{IMAGE}", "tcp"),
    Scenario("tcp-net-unreachable", f"net-unreachable.lab.test/{IMAGE}", "tcp"),
    Scenario("tcp-no-route", f"no-route.lab.test/{IMAGE}", "tcp"),
    Scenario("tls-unknown-authority", f"untrusted.lab.test/{IMAGE}", "tls"),
    Scenario("tls-expired", f"expired.lab.test/{IMAGE}", "tls"),
    Scenario("tls-not-yet-valid", f"notyet.lab.test/{IMAGE}", "tls"),
    Scenario("tls-wrong-name", f"wrongname.lab.test/{IMAGE}", "tls"),
    Scenario("tls-alert", f"tls-alert.lab.test/{IMAGE}", "tls"),
    Scenario("tls-plain-http-answer", f"tls-garbage.lab.test/{IMAGE}", "tls"),
    Scenario("tls-silent", f"tls-silent.lab.test/{IMAGE}", "tls"),
    Scenario("http-silent", f"http-silent.lab.test/{IMAGE}", "http", pull_seconds=8),
    Scenario("http-503", f"status-503.lab.test/{IMAGE}", "http"),
    Scenario("http-503-registry", f"status-503-registry.lab.test/{IMAGE}", "http"),
    Scenario("http-captive-portal", f"captive.lab.test/{IMAGE}", "http"),
    Scenario("image-not-found", "registry.lab.test/lab/missing:1", "not_found"),
    Scenario("auth-token-refused", f"authreg.lab.test/{IMAGE}", "auth"),
    # --- proxies (the proxied node: no direct way out) --------------------------------------
    Scenario("proxy-squid", REGISTRY_REF, "ok", "proxied", {"HTTPS_PROXY": "{squid}"}),
    Scenario("proxy-squid-lower-case", REGISTRY_REF, "ok", "proxied", {"https_proxy": "{squid}"}),
    Scenario(
        "proxy-without-scheme",
        REGISTRY_REF,
        "ok",
        "proxied",
        {"HTTPS_PROXY": "squid.lab.test:3128"},
    ),
    Scenario(
        "proxy-tinyproxy-credentials",
        REGISTRY_REF,
        "ok",
        "proxied",
        {"HTTPS_PROXY": "{tinyproxy_auth}"},
    ),
    Scenario(
        "proxy-407-no-credentials", REGISTRY_REF, "proxy", "proxied", {"HTTPS_PROXY": "{tinyproxy}"}
    ),
    Scenario(
        "proxy-wrong-credentials",
        REGISTRY_REF,
        "proxy",
        "proxied",
        {"HTTPS_PROXY": "{tinyproxy_wrong}"},
    ),
    Scenario(
        "proxy-denied", f"denied.lab.test/{IMAGE}", "proxy", "proxied", {"HTTPS_PROXY": "{squid}"}
    ),
    Scenario(
        "proxy-upstream-nxdomain",
        f"nxdomain.lab.test/{IMAGE}",
        "proxy",
        "proxied",
        {"HTTPS_PROXY": "{squid}"},
    ),
    Scenario("proxy-down", REGISTRY_REF, "proxy", "proxied", {"HTTPS_PROXY": DEAD_PROXY}),
    Scenario("proxy-http-proxy-only", REGISTRY_REF, "tcp", "proxied", {"HTTP_PROXY": "{squid}"}),
    Scenario(
        "proxy-no-proxy-sends-direct",
        REGISTRY_REF,
        "tcp",
        "proxied",
        {"HTTPS_PROXY": "{squid}", "NO_PROXY": ".lab.test"},
    ),
    # --- NO_PROXY forms: a dead proxy, so "direct" pulls and "proxied" fails as proxy ---------
    Scenario("no-proxy-unset", REGISTRY_REF, "proxy", env=NO_PROXY_ENV),
    *(
        Scenario(f"no-proxy-{label}", REGISTRY_REF, expect, env={**NO_PROXY_ENV, key: value})
        for label, key, value, expect in (
            ("host", "NO_PROXY", "registry.lab.test", "ok"),
            ("dot-domain", "NO_PROXY", ".lab.test", "ok"),
            ("star-domain", "NO_PROXY", "*.lab.test", "ok"),
            ("bare-domain", "NO_PROXY", "lab.test", "ok"),
            ("ip", "NO_PROXY", "198.18.1.10", "proxy"),
            ("cidr", "NO_PROXY", "198.18.1.0/24", "proxy"),
            ("host-port", "NO_PROXY", "registry.lab.test:443", "ok"),
            ("other-port", "NO_PROXY", "registry.lab.test:5000", "proxy"),
            ("star", "NO_PROXY", "*", "ok"),
            ("trimmed-upper-case", "NO_PROXY", "other.example, REGISTRY.LAB.TEST ", "ok"),
            ("lower-case", "no_proxy", "registry.lab.test", "ok"),
            ("other-domain", "NO_PROXY", "example.com,.example.org", "proxy"),
        )
    ),
    # --- mirror order (hosts.toml in the upstream's directory; the tool finds it itself) -------
    Scenario(
        "mirror-healthy-upstream-dead",
        DEAD_UPSTREAM_REF,
        "ok",
        certs_d={"closed.lab.test/hosts.toml": hosts_toml(mirror_table("https://mirror.lab.test"))},
    ),
    Scenario(
        "mirror-refused-upstream-healthy",
        REGISTRY_REF,
        "ok",
        certs_d={
            "registry.lab.test/hosts.toml": hosts_toml(mirror_table("https://closed.lab.test"))
        },
    ),
    Scenario(
        "mirror-dropped-upstream-healthy",
        REGISTRY_REF,
        "ok",
        certs_d={
            "registry.lab.test/hosts.toml": hosts_toml(
                mirror_table("https://firewall-drop.lab.test")
            )
        },
        slow=True,
        pull_seconds=300,
    ),
    Scenario(
        "mirror-override-path",
        DEAD_UPSTREAM_REF,
        "ok",
        certs_d={
            "closed.lab.test/hosts.toml": hosts_toml(
                mirror_table(f"https://mirror.lab.test{PREFIXED_PATH}", "  override_path = true")
            )
        },
    ),
    Scenario(
        "mirror-path-without-override",
        DEAD_UPSTREAM_REF,
        "tcp",
        certs_d={
            "closed.lab.test/hosts.toml": hosts_toml(
                mirror_table(f"https://mirror.lab.test{PREFIXED_PATH}")
            )
        },
    ),
    Scenario(
        "mirror-path-ending-in-v2",
        DEAD_UPSTREAM_REF,
        "ok",
        certs_d={
            "closed.lab.test/hosts.toml": hosts_toml(mirror_table("https://mirror.lab.test/v2"))
        },
    ),
    Scenario(
        "mirror-pull-only-cannot-resolve",
        DEAD_UPSTREAM_REF,
        "tcp",
        certs_d={
            "closed.lab.test/hosts.toml": hosts_toml(
                '[host."https://mirror.lab.test"]', '  capabilities = ["pull"]'
            )
        },
    ),
    Scenario(
        "mirror-for-docker-hub",
        f"docker.io/{IMAGE}",
        "ok",
        certs_d={"docker.io/hosts.toml": hosts_toml(mirror_table("https://mirror.lab.test"))},
    ),
    Scenario(
        "docker-hub-server-docker-io",
        f"docker.io/{IMAGE}",
        "dns",
        certs_d={"docker.io/hosts.toml": hosts_toml('server = "https://docker.io"', HOST_STUB)},
    ),
    # --- trust (otherca.lab.test is signed by the CA the node's bundle lacks) -----------------
    Scenario("trust-none", OTHERCA_REF, "tls"),
    Scenario(
        "trust-ca-top-level",
        OTHERCA_REF,
        "ok",
        certs_d={
            "otherca.lab.test/hosts.toml": hosts_toml(
                'server = "https://otherca.lab.test"', 'ca = "other-ca.pem"', HOST_STUB
            ),
            "otherca.lab.test/other-ca.pem": OTHER_CA,
        },
    ),
    Scenario(
        "trust-ca-top-level-registry-named",
        OTHERCA_REF,
        "ok",
        certs_d={
            "otherca.lab.test/hosts.toml": hosts_toml(
                'server = "https://otherca.lab.test"', 'ca = "other-ca.pem"', HOST_STUB
            ),
            "otherca.lab.test/other-ca.pem": OTHER_CA,
        },
        named=True,
    ),
    Scenario(
        "trust-ca-list-absolute",
        OTHERCA_REF,
        "ok",
        certs_d={
            "otherca.lab.test/hosts.toml": hosts_toml(
                'server = "https://otherca.lab.test"',
                'ca = ["/etc/containerd/certs.d/otherca.lab.test/other-ca.pem"]',
                HOST_STUB,
            ),
            "otherca.lab.test/other-ca.pem": OTHER_CA,
        },
    ),
    Scenario(
        "trust-ca-in-host-table",
        OTHERCA_REF,
        "ok",
        certs_d={
            "otherca.lab.test/hosts.toml": hosts_toml(
                '[host."https://otherca.lab.test"]',
                '  capabilities = ["pull", "resolve"]',
                '  ca = "other-ca.pem"',
            ),
            "otherca.lab.test/other-ca.pem": OTHER_CA,
        },
    ),
    Scenario(
        "trust-skip-verify-in-host-table",
        OTHERCA_REF,
        "ok",
        certs_d={
            "otherca.lab.test/hosts.toml": hosts_toml(
                '[host."https://otherca.lab.test"]',
                '  capabilities = ["pull", "resolve"]',
                "  skip_verify = true",
            )
        },
    ),
    Scenario(
        "trust-skip-verify-top-level",
        OTHERCA_REF,
        "ok",
        certs_d={
            "otherca.lab.test/hosts.toml": hosts_toml(
                'server = "https://otherca.lab.test"', "skip_verify = true", HOST_STUB
            )
        },
    ),
    Scenario(
        "trust-wrong-ca",
        OTHERCA_REF,
        "tls",
        certs_d={
            "otherca.lab.test/hosts.toml": hosts_toml(
                'server = "https://otherca.lab.test"', 'ca = "lab-ca.pem"', HOST_STUB
            ),
            "otherca.lab.test/lab-ca.pem": LAB_CA,
        },
    ),
    Scenario(
        "trust-certs-d-crt-without-hosts-toml",
        OTHERCA_REF,
        "ok",
        certs_d={"otherca.lab.test/ca.crt": OTHER_CA},
    ),
    Scenario(
        "trust-certs-d-crt-beside-hosts-toml",
        OTHERCA_REF,
        "tls",
        certs_d={
            "otherca.lab.test/hosts.toml": hosts_toml(
                'server = "https://otherca.lab.test"', HOST_STUB
            ),
            "otherca.lab.test/ca.crt": OTHER_CA,
        },
    ),
    # containerd 1.6 rejects a hosts.toml without any [host] table ("failed to decode hosts.toml"
    # error="invalid `host` tree") and falls back to the directory's *.crt files, as if there
    # were no hosts.toml (containerd/containerd#10027; fixed for 1.7 by #10028; 2.x, on go-toml
    # v2, reads such a file). k3s writes a `[host]` stub for this reason (k3s-io/k3s#9853).
    Scenario(
        "trust-hosts-toml-without-host-table",
        OTHERCA_REF,
        "tls",
        certs_d={
            "otherca.lab.test/hosts.toml": hosts_toml(
                'server = "https://otherca.lab.test"', 'ca = "other-ca.pem"'
            ),
            "otherca.lab.test/other-ca.pem": OTHER_CA,
        },
    ),
    Scenario(
        "trust-hosts-toml-without-host-table-crt-fallback",
        OTHERCA_REF,
        "ok",
        certs_d={
            "otherca.lab.test/hosts.toml": hosts_toml('server = "https://otherca.lab.test"'),
            "otherca.lab.test/ca.crt": OTHER_CA,
        },
    ),
    # --- CRI pulls: the daemon's environment and config.toml decide ---------------------------
    Scenario("cri-ok", REGISTRY_REF, "ok", cri=True),
    Scenario(
        "cri-daemon-proxy", REGISTRY_REF, "ok", "proxied", {"HTTPS_PROXY": "{squid}"}, cri=True
    ),
    Scenario("cri-daemon-proxy-down", REGISTRY_REF, "proxy", env=NO_PROXY_ENV, cri=True),
    Scenario(
        "cri-mirror-healthy-upstream-dead",
        DEAD_UPSTREAM_REF,
        "ok",
        certs_d={"closed.lab.test/hosts.toml": hosts_toml(mirror_table("https://mirror.lab.test"))},
        cri=True,
    ),
    Scenario(
        "cri-certs-d-with-config-path",
        OTHERCA_REF,
        "ok",
        certs_d={"otherca.lab.test/ca.crt": OTHER_CA},
        cri=True,
    ),
    Scenario(
        "cri-certs-d-without-config-path",
        OTHERCA_REF,
        "tls",
        certs_d={"otherca.lab.test/ca.crt": OTHER_CA},
        cri=True,
        config_path=None,
        named=True,  # containerd knows nothing of it: the tool is told
    ),
    Scenario(
        "cri-mirror-without-config-path",
        DEAD_UPSTREAM_REF,
        "tcp",
        certs_d={"closed.lab.test/hosts.toml": hosts_toml(mirror_table("https://mirror.lab.test"))},
        cri=True,
        config_path=None,
        named=True,  # containerd knows nothing of it: the tool is told
    ),
    # --- credentials, as the kubelet passes a pull secret's (issue 12) -------------------------
    # basicreg: htpasswd (Basic, no token service); tokenreg: a token service granting lab/tiny
    # to labuser only. containerd names every refusal "failed to authorize" or "pull access
    # denied"; the tool tells causes 2 and 3 apart within that class.
    Scenario("cri-basic-no-credentials", BASIC_REF, "auth", cri=True),
    Scenario("cri-basic-wrong-password", BASIC_REF, "auth", cri=True, account="wrong"),
    Scenario("cri-basic-credentials", BASIC_REF, "ok", cri=True, account=USER),
    Scenario("cri-token-no-credentials", TOKEN_REF, "auth", cri=True),
    Scenario("cri-token-wrong-password", TOKEN_REF, "auth", cri=True, account="wrong"),
    Scenario("cri-token-other-account", TOKEN_REF, "auth", cri=True, account=OTHER),
    Scenario("cri-token-credentials", TOKEN_REF, "ok", cri=True, account=USER),
)


# ----- the tool's verdict, as an outcome class ----------------------------------------------------

# Each reason of SPEC.md as the class of pull failure it predicts; None: the pull is not stopped
# by it (a consistency finding about another runtime or the unit, not the route in use).
REASON_OUTCOMES: dict[str, str | None] = {
    **dict.fromkeys(
        ("dns_nxdomain", "dns_no_answer", "dns_servfail", "dns_refused", "dns_timeout"), "dns"
    ),
    "dns_no_resolvers": "dns",
    **dict.fromkeys(("tcp_timeout", "tcp_refused", "tcp_unreachable"), "tcp"),
    **dict.fromkeys(
        (
            "tls_unknown_authority",
            "tls_expired",
            "tls_not_yet_valid",
            "tls_hostname_mismatch",
            "tls_handshake_timeout",
            "tls_handshake_failed",
        ),
        "tls",
    ),
    **dict.fromkeys(
        ("proxy_unreachable", "proxy_auth_required", "proxy_denied", "proxy_upstream_failed"),
        "proxy",
    ),
    "proxy_mismatch": None,
    "proxy_restart_pending": None,
    **dict.fromkeys(("http_timeout", "http_unexpected_status", "not_a_registry"), "http"),
    "rate_limited": "http",
    "auth_failed": "auth",
    "image_auth_missing": "auth",
    "image_access_denied": "auth",
    "image_not_found": "not_found",
    "image_platform_missing": "not_found",
}


def tool_outcome(report: dict[str, Any], registry: str) -> str:
    """The pull outcome the tool's JSON report predicts for an image on `registry`.

    With an image checked (`check --image REF`, as every scenario runs), its verdict: "ok", or
    the class of its reason. Else the registry's entry says whether a pull succeeds by the order
    the runtime tries its hosts (`pullable`: mirrors, then the registry): "ok" then; else the
    class of the first failure that stops a pull, in that order (consistency findings do not
    stop one). An entry without the verdict is read by its checks alone.
    """
    images = report.get("images") or []
    if images:
        if images[0]["ok"]:
            return "ok"
        return REASON_OUTCOMES.get(images[0]["reason"]) or "unclassified"
    names = {registry, "registry-1.docker.io" if registry == "docker.io" else registry}
    entries = [e for e in report["registries"] if e["registry"] in names]
    assert entries, f"{registry} not in the report: {[e['registry'] for e in report['registries']]}"
    if entries[0].get("pullable"):
        return "ok"
    failure = entries[0].get("failure")
    if failure is not None and entries[0].get("pullable") is False:
        # The failure a pull reports: containerd keeps the first error that is not a 404.
        return REASON_OUTCOMES.get(failure["reason"]) or "unclassified"
    for check in entries[0]["checks"]:
        if check["ok"]:
            continue
        outcome = REASON_OUTCOMES.get(check["reason"], "unclassified")
        if outcome is not None:
            return outcome
    return "ok"


# ----- running both ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    pull: Pull
    report: dict[str, Any] | None
    probe_output: str

    def describe(self) -> str:
        report = json.dumps(self.report, indent=1) if self.report else self.probe_output
        return f"{self.pull.describe()}\n--- probe check:\n{report}"


class Differential:
    """Runs scenarios: node files, a containerd in a node view, a pull, the probe beside it."""

    def __init__(self, lab: Lab, private: PrivateRegistries) -> None:
        self.lab = lab
        self.private = private
        self.futures: dict[str, Future[Result]] = {}
        self.secrets = lab.workdir / "differential-secrets"
        self.secrets.mkdir(exist_ok=True)

    def prepare(self) -> None:
        """The mirror and other-CA registries, and the image in each registry (once)."""
        for service in (MIRROR, OTHERCA):
            self.lab.add_registry(service)
        bundle = (self.lab.ca.pem + self.lab.other_ca.pem).decode()
        root = self.lab.host_root(files={"etc/ssl/certs/ca-certificates.crt": bundle})
        script = Path(__file__).parent / "lab" / "ociimage.py"
        everywhere = [f"https://{n}" for n in ("registry.lab.test", MIRROR.name, OTHERCA.name)]
        with NodeView(self.lab, root) as view:
            for repository, registries in (
                (REPOSITORY, everywhere),
                (f"lab/{REPOSITORY}", [f"https://{MIRROR.name}"]),  # for PREFIXED_PATH
            ):
                argv = [sys.executable, str(script), repository, TAG, *registries]
                done = view.run(argv, timeout=60)
                assert done.returncode == 0, f"push failed: {done.stdout}\n{done.stderr}"

    def placeholders(self) -> dict[str, str]:
        tiny = self.lab.tinyproxy
        return {
            "squid": self.lab.squid.url,
            "tinyproxy": tiny.url,
            "tinyproxy_auth": tiny.url_with_credentials(),
            "tinyproxy_wrong": tiny.url_with_credentials("not-the-password"),
        }

    def node_root(self, scenario: Scenario, env: dict[str, str]) -> Path:
        config = CONFIG_TOML if scenario.config_path == HOSTS_DIR else "version = 2\n"
        assert scenario.config_path in (HOSTS_DIR, None), scenario
        files = {CONTAINERD_UNIT: UNIT, "etc/containerd/config.toml": config}
        if env:
            quoted = " ".join(f'"{k}={v}"' for k, v in env.items())
            files[CONTAINERD_DROPIN] = f"[Service]\nEnvironment={quoted}\n"
        pems = {OTHER_CA: self.lab.other_ca.pem.decode(), LAB_CA: self.lab.ca.pem.decode()}
        for relative, text in scenario.certs_d.items():
            files[f"etc/containerd/certs.d/{relative}"] = pems.get(text, text)
        extra = {} if scenario.nameservers is None else {"nameservers": scenario.nameservers}
        return self.lab.host_root(files=files, **extra)

    def run(self, scenario: Scenario) -> Result:
        values = self.placeholders()
        env = {k: v.format(**values) for k, v in scenario.env.items()}
        root = self.node_root(scenario, env)
        with NodeView(self.lab, root, node=scenario.node) as view:
            daemon = view.containerd(env, cri=scenario.cri, config_path=scenario.config_path)
            args = [
                "check", "--host-root", str(root), "--timeout", str(PROBE_TIMEOUT),
                "--output", "json",
            ]  # fmt: skip
            if scenario.names_registry:
                args += ["--registry", scenario.registry]
            args += ["--image", scenario.ref]  # the pull's own reference
            account = self.account(scenario)
            if account is not None:
                secret = self.private.pull_secret(self.secrets, scenario.registry, *account)
                args += ["--pull-secret", str(secret)]
            probe = view.probe(args, timeout=PROBE_TIMEOUT * 6 + 20)
            if scenario.cri:
                pull = daemon.cri_pull(scenario.ref, seconds=scenario.pull_seconds, account=account)
            else:
                pull = daemon.pull(scenario.ref, seconds=scenario.pull_seconds)
        report = None
        with contextlib.suppress(ValueError):
            report = json.loads(probe.stdout)
        return Result(pull, report, f"exit={probe.returncode}\n{probe.stdout}\n{probe.stderr}")

    def account(self, scenario: Scenario) -> tuple[str, str] | None:
        """The scenario's (username, password), as its pull secret holds them."""
        if scenario.account is None:
            return None
        assert scenario.cri, "accounts are passed to CRI pulls only"
        if scenario.account == "wrong":
            return USER, "not-the-password"
        return scenario.account, self.private.passwords[scenario.account]

    def summary(self) -> str:
        """One line per finished scenario: containerd's class, the tool's, time, ctr's error."""
        lines = []
        for scenario in SCENARIOS:
            future = self.futures.get(scenario.id)
            if future is None or not future.done() or future.exception() is not None:
                continue
            result = future.result()
            tool = "-" if result.report is None else tool_outcome(result.report, scenario.registry)
            mark = "=" if tool == result.pull.outcome else "!"
            lines.append(
                f"{scenario.id:40} ctr={result.pull.outcome:10} {mark} tool={tool:10} "
                f"{result.pull.elapsed:5.1f}s {result.pull.error}"
            )
        agree = sum(" = tool=" in line for line in lines)
        lines.append(f"agree {agree}, disagree {len(lines) - agree}")
        return "\n".join(lines)

    def result(self, scenario: Scenario) -> Result:
        if scenario.id not in self.futures:
            raise AssertionError(f"{scenario.id} was not run in this session")
        return self.futures[scenario.id].result()


def wanted(request: pytest.FixtureRequest) -> list[Scenario]:
    """The scenarios whose tests this session runs (slow ones only with --run-slow)."""
    ids = set()
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        scenario = callspec.params.get("scenario") if callspec is not None else None
        if isinstance(scenario, Scenario):
            ids.add(scenario.id)
    run_slow = bool(request.config.getoption("--run-slow"))
    return [s for s in SCENARIOS if s.id in ids and (run_slow or not s.slow)]


@pytest.fixture(scope="module")
def differential(
    lab: Lab, private_registries: PrivateRegistries, request: pytest.FixtureRequest
) -> Iterator[Differential]:
    """Every wanted scenario, run concurrently; each test waits for its own result."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    runner = Differential(lab, private_registries)
    runner.prepare()
    started = time.monotonic()
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="differential") as pool:
        try:
            runner.futures = {s.id: pool.submit(runner.run, s) for s in wanted(request)}
            yield runner
        finally:
            for future in runner.futures.values():
                future.cancel()
    elapsed = time.monotonic() - started
    print(f"\ncontainerd differential: {len(runner.futures)} scenarios in {elapsed:.0f}s")
    print(runner.summary())


def params() -> list[Any]:
    marks: list[Any] = []
    out = []
    for scenario in SCENARIOS:
        marks = [pytest.mark.slow] if scenario.slow else []
        out.append(pytest.param(scenario, id=scenario.id, marks=marks))
    return out


def agreement_params() -> list[Any]:
    out = []
    for scenario in SCENARIOS:
        marks: list[Any] = [pytest.mark.slow] if scenario.slow else []
        if scenario.disagree:
            # Only the agreement assertion may fail as expected; a LabError is a real failure.
            marks.append(
                pytest.mark.xfail(strict=True, raises=AssertionError, reason=scenario.disagree)
            )
        out.append(pytest.param(scenario, id=scenario.id, marks=marks))
    return out


@pytest.mark.parametrize("scenario", params())
def test_containerd_pulls_as_expected(differential: Differential, scenario: Scenario) -> None:
    """containerd's pull in this scenario ends in the expected outcome class."""
    result = differential.result(scenario)
    assert result.pull.outcome == scenario.expect, result.describe()


class LabError(Exception):
    """Not a disagreement: the scenario did not run as designed (never an expected failure)."""


@pytest.mark.parametrize("scenario", agreement_params())
def test_tool_agrees_with_containerd(differential: Differential, scenario: Scenario) -> None:
    """The tool's verdict predicts containerd's pull outcome in this scenario."""
    result = differential.result(scenario)
    if result.report is None or result.pull.outcome != scenario.expect:
        raise LabError(result.describe())
    assert tool_outcome(result.report, scenario.registry) == result.pull.outcome, result.describe()


def test_scenarios_cover_every_outcome_class() -> None:
    """The scenarios expect every outcome class at least once, and ids are unique."""
    assert {s.expect for s in SCENARIOS} == set(OUTCOMES)
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS)
    assert all(re.fullmatch(r"[a-z0-9-]+", s.id) for s in SCENARIOS)


# ctr's error line for each class, verbatim from Debian's containerd 1.6.20 in this lab.
_REF = 'ctr: failed to resolve reference "{host}/lab/tiny:1": '
_HEAD = _REF + 'failed to do request: Head "https://{host}/v2/lab/tiny/manifests/1": '
CTR_ERRORS: tuple[tuple[str, str], ...] = (
    ("proxy", _HEAD.format(host="registry.lab.test") + "Proxy Authentication Required"),
    ("proxy", _HEAD.format(host="registry.lab.test") + "Unauthorized"),  # tinyproxy, wrong user
    ("proxy", _HEAD.format(host="denied.lab.test") + "Forbidden"),
    ("proxy", _HEAD.format(host="nxdomain.lab.test") + "Internal Server Error"),  # squid
    (
        "proxy",
        _HEAD.format(host="registry.lab.test")
        + "proxyconnect tcp: dial tcp 198.18.1.22:3128: connect: connection refused",
    ),
    (
        "dns",
        _HEAD.format(host="nxdomain.lab.test")
        + "dial tcp: lookup nxdomain.lab.test on 198.18.0.53:53: no such host",
    ),
    (
        "dns",
        _HEAD.format(host="servfail.lab.test")
        + "dial tcp: lookup servfail.lab.test on 198.18.0.53:53: server misbehaving",
    ),
    (
        "dns",
        _HEAD.format(host="dns-drop.lab.test") + "dial tcp: lookup dns-drop.lab.test on "
        "198.18.0.53:53: read udp 198.18.0.2:57677->198.18.0.53:53: i/o timeout",
    ),
    (
        "dns",
        _HEAD.format(host="registry.lab.test") + "dial tcp: lookup registry.lab.test on "
        "[::1]:53: read udp [::1]:36111->[::1]:53: read: connection refused",
    ),
    ("tcp", _HEAD.format(host="firewall-drop.lab.test") + "dial tcp 198.18.1.20:443: i/o timeout"),
    (
        "tcp",
        _HEAD.format(host="closed.lab.test")
        + "dial tcp 198.18.1.22:443: connect: connection refused",
    ),
    (
        "tcp",
        _HEAD.format(host="no-route.lab.test")
        + "dial tcp 198.18.1.25:443: connect: no route to host",
    ),
    (
        "tcp",
        _HEAD.format(host="net-unreachable.lab.test")
        + "dial tcp 198.18.1.24:443: connect: network is unreachable",
    ),
    (
        "tls",
        _HEAD.format(host="untrusted.lab.test") + "x509: certificate signed by unknown authority",
    ),
    (
        "tls",
        _HEAD.format(host="expired.lab.test") + "x509: certificate has expired or is not yet "
        "valid: current time 2026-12-01T22:51:34Z is after 2026-11-30T22:51:18Z",
    ),
    (
        "tls",
        _HEAD.format(host="wrongname.lab.test")
        + "x509: certificate is valid for elsewhere.lab.test, not wrongname.lab.test",
    ),
    ("tls", _HEAD.format(host="tls-alert.lab.test") + "remote error: tls: handshake failure"),
    (
        "tls",
        _HEAD.format(host="tls-garbage.lab.test")
        + "http: server gave HTTP response to HTTPS client",
    ),
    ("tls", _HEAD.format(host="tls-silent.lab.test") + "net/http: TLS handshake timeout"),
    (
        "http",
        _REF.format(host="http-silent.lab.test")
        + "failed to do request: context deadline exceeded",
    ),
    (
        "http",
        _REF.format(host="status-503.lab.test") + "pulling from host status-503.lab.test failed "
        "with status code [manifests 1]: 503 Service Unavailable",
    ),
    (
        "http",
        "ctr: unexpected media type text/html for sha256:52994510ef6f0cb8b6a60601ab2854e43f16b530"
        "c09d95da269e1a43e0c4d709: not found",
    ),
    (
        "auth",
        _REF.format(host="authreg.lab.test") + "failed to authorize: failed to fetch anonymous "
        "token: authorization server did not include a token in the response",
    ),
    (
        "not_found",
        'ctr: failed to resolve reference "registry.lab.test/lab/missing:1": '
        "registry.lab.test/lab/missing:1: not found",
    ),
    (
        "auth",
        'cri: UNKNOWN: failed to pull and unpack image "basicreg.lab.test/lab/tiny:1": '
        + _REF.format(host="basicreg.lab.test").removeprefix("ctr: ")
        + "pulling from host basicreg.lab.test failed with status code [manifests 1]: "
        "401 Unauthorized",
    ),
    (
        "auth",
        'cri: UNKNOWN: failed to pull and unpack image "tokenreg.lab.test/lab/tiny:1": '
        + _REF.format(host="tokenreg.lab.test").removeprefix("ctr: ")
        + "pull access denied, repository does not exist or may require authorization: "
        "server message: insufficient_scope: authorization failed",
    ),
    (
        "auth",
        'cri: UNKNOWN: failed to pull and unpack image "tokenreg.lab.test/lab/tiny:1": '
        + _REF.format(host="tokenreg.lab.test").removeprefix("ctr: ")
        + "failed to authorize: failed to fetch oauth token: unexpected status: "
        "401 Unauthorized",
    ),
)


@pytest.mark.parametrize(("outcome", "error"), CTR_ERRORS)
def test_classify_pull_names_each_ctr_error(outcome: str, error: str) -> None:
    """Each error line ctr printed in the lab maps to its outcome class (output before it too)."""
    progress = "registry.lab.test/lab/tiny:1: resolving      |" + "-" * 38 + "|\n"
    assert classify_pull(1, progress + error + "\n") == outcome


def test_classify_pull_success_and_unknown_errors() -> None:
    """Exit 0 is ok whatever was printed; an error no rule knows is `unclassified`, not a guess."""
    assert classify_pull(0, "done: 121.277327ms\n") == "ok"
    assert classify_pull(1, "ctr: something new went wrong\n") == "unclassified"
    assert classify_pull(-9, "killed after 60s (ctr --timeout did not end it)") == "unclassified"
    assert {outcome for outcome, _ in CTR_ERRORS} == set(OUTCOMES) - {"ok"}


def _report(registry: str, *checks: tuple[str, str, str | None]) -> dict[str, Any]:
    return {
        "registries": [
            {
                "registry": registry,
                "checks": [
                    {"endpoint": endpoint, "check": check, "ok": reason is None, "reason": reason}
                    for endpoint, check, reason in checks
                ],
            }
        ]
    }


def test_tool_outcome_reads_the_registry_entry() -> None:
    """The prediction is the registry's first pull-stopping failure; consistency findings and
    other entries (mirrors) do not count; Docker Hub is found under registry-1.docker.io."""
    healthy = _report("r.lab.test", ("r.lab.test:443", "http", None))
    assert tool_outcome(healthy, "r.lab.test") == "ok"
    failing = _report(
        "r.lab.test",
        ("r.lab.test:443", "proxy", "proxy_restart_pending"),
        ("r.lab.test:443", "tcp", "tcp_timeout"),
        ("auth.lab.test:443", "dns", "dns_nxdomain"),
    )
    assert tool_outcome(failing, "r.lab.test") == "tcp"
    mismatch_only = _report("r.lab.test", ("r.lab.test:443", "proxy", "proxy_mismatch"))
    assert tool_outcome(mismatch_only, "r.lab.test") == "ok"
    hub = _report("registry-1.docker.io", ("registry-1.docker.io:443", "tls", "tls_expired"))
    assert tool_outcome(hub, "docker.io") == "tls"
    image = {**healthy, "images": [{"ok": False, "reason": "image_auth_missing"}]}
    assert tool_outcome(image, "r.lab.test") == "auth"  # an image's verdict comes first
    with pytest.raises(AssertionError):
        tool_outcome(healthy, "other.lab.test")


def test_ctr_pulls_with_its_own_environment_not_the_daemons(differential: Differential) -> None:
    """containerd 1.6's `ctr images pull` resolves and fetches in ctr: a dead proxy in the
    daemon's environment changes nothing, the same proxy in ctr's stops the pull (this is why
    every pull here gets the scenario's environment, and the daemon too)."""
    root = differential.lab.host_root(
        files={CONTAINERD_UNIT: UNIT, "etc/containerd/config.toml": CONFIG_TOML}
    )
    with NodeView(differential.lab, root) as view:
        daemon = view.containerd({"HTTPS_PROXY": DEAD_PROXY})
        through_daemon = daemon.pull(REGISTRY_REF, seconds=20, env={})
        through_ctr = daemon.pull(REGISTRY_REF, seconds=20, env={"HTTPS_PROXY": DEAD_PROXY})
    assert through_daemon.outcome == "ok", through_daemon.describe()
    assert through_ctr.outcome == "proxy", through_ctr.describe()
    assert "proxyconnect tcp" in through_ctr.error, through_ctr.describe()


def test_cri_pull_request_wire_format() -> None:
    """cripull.py writes PullImageRequest{image: ImageSpec{image: REF}} as protobuf does, and
    reads the reply's image reference; a 200-byte reference takes a two-byte length."""
    assert cripull.pull_request("r/a:1") == b"\x0a\x07\x0a\x05r/a:1"
    long_ref = "r/" + "a" * 198
    encoded = cripull.pull_request(long_ref)
    assert encoded[:5] == b"\x0a\xcb\x01\x0a\xc8" and encoded[5:7] == b"\x01r"
    assert cripull.first_string(b"\x0a\x07sha256:") == "sha256:"
    assert cripull.first_string(b"\x0a\xc8\x01" + long_ref.encode()) == long_ref
    assert cripull.first_string(b"") == ""


def test_image_check_asks_for_what_containerd_asks_for(differential: Differential) -> None:
    """The manifest HEAD of `check --image` carries the Accept header containerd's own resolve
    sends: the Docker Hub stand-in records each client's, and both resolve docker.io/library/tiny
    there (ctr's pull then fails on the stand-in's missing blobs; the HEAD is what counts)."""
    lab = differential.lab
    root = lab.host_root(files={CONTAINERD_UNIT: UNIT, "etc/containerd/config.toml": CONFIG_TOML})
    with NodeView(lab, root) as view:
        daemon = view.containerd({})
        daemon.pull("docker.io/library/tiny:1", seconds=20)
        args = ["check", "--host-root", str(root), "--image", "tiny:1", "--output", "json"]
        probe = view.probe(args, timeout=60)
    assert json.loads(probe.stdout)["images"][0]["ok"] is True, probe.stdout + probe.stderr
    accept = lab.dockerhub.state()["manifest_accept"]
    path = " /v2/library/tiny/manifests/1"
    ctr = [v for k, v in accept.items() if k.startswith("containerd/") and k.endswith(path)]
    ours = [v for k, v in accept.items() if k.startswith("registry-probe/") and k.endswith(path)]
    assert ctr and ours, accept
    assert ctr[0] == ours[0] == MANIFEST_ACCEPT, accept
