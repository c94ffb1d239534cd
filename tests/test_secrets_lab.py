"""No secret the agent is given reaches any of its output (SPEC.md: secrets never appear in logs,
metrics, `check` output or error messages; issue 11).

The lab's node is given every kind of secret at once, and each is used in real requests:
Docker Hub credentials in the config's `.dockerconfigjson` (as `auth`, as `username` and
`password`, as an `identitytoken`), sent to the Docker Hub stand-in's token service, also for a
private image the config names; a registry credentials file; a pull secret for an image on a
registry behind a token service; containerd's proxy in its unit drop-in with tinyproxy's user
and password (every request goes through it); dockerd's proxy in daemon.json with the SOCKS
server's password; and a config that names a registry by a URL with a password (invalid:
`validate` and `check` refuse it). Then every command runs: `check` as text and JSON and with
`--image` and `--pull-secret`, `run --once`, `validate` on the good and the bad config, and
`run` with its text and JSON logs while /metrics and /healthz are scraped. All that is printed,
logged or served is searched for every secret as it is, percent-encoded, and base64-encoded
alone or as `user:secret` (what a Basic header or a `.dockerconfigjson` `auth` carries).
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets as random_secrets
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lab import NODE_ADDRESS, Lab
from lab.private import TOKEN, USER, PrivateRegistries

pytestmark = pytest.mark.lab

HUB = "registry-1.docker.io"
REGISTRY = "registry.lab.test"
TIMEOUT = 2.0
AGENT_SECONDS = 6.0
CONTAINERD_UNIT = "lib/systemd/system/containerd.service"
CONTAINERD_DROPIN = "etc/systemd/system/containerd.service.d/http-proxy.conf"
DOCKER_UNIT = "lib/systemd/system/docker.service"
UNIT = "[Unit]\nDescription={name}\n[Service]\nExecStart=/usr/bin/{name}\n"
_ports = itertools.count(19960)

FETCH = """
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(sys.argv[1], timeout=5) as response:
        sys.stdout.write(response.read().decode())
except urllib.error.HTTPError as error:
    sys.stdout.write(error.read().decode())
"""


@dataclass
class Secrets:
    """Every secret handed to the agent, with its user when it has one."""

    pairs: list[tuple[str | None, str]] = field(default_factory=list)

    def add(self, secret: str, user: str | None = None) -> str:
        assert len(secret) >= 8, "a short secret could match by chance"
        self.pairs.append((user, secret))
        return secret

    def forms(self) -> dict[str, str]:
        """Every way a secret could be written, mapped to what it is (for the failure message)."""
        found: dict[str, str] = {}
        for user, secret in self.pairs:
            texts = [secret] + ([f"{user}:{secret}"] if user else [])
            for text in texts:
                raw = text.encode()
                found[text] = f"raw {text!r}"
                found[urllib.parse.quote(text, safe="")] = f"percent-encoded {text!r}"
                found[urllib.parse.quote_plus(text)] = f"form-encoded {text!r}"
                for encode in (base64.b64encode, base64.urlsafe_b64encode):
                    found[encode(raw).decode().rstrip("=")] = f"base64 of {text!r}"
        return found

    def leaks(self, where: str, text: str) -> list[str]:
        return [f"{what} in {where}" for form, what in self.forms().items() if form in text]


@dataclass(frozen=True)
class Node:
    """The node's host root and the agent's config files, with the secrets they hold."""

    root: Path
    config: Path
    bad_config: Path
    secrets: Secrets
    hub_credentials: Path


def docker_config(path: Path, entry: dict[str, str]) -> Path:
    path.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": entry}}))
    path.chmod(0o600)
    return path


def build_node(lab: Lab, tmp_path: Path, hub_entry: str) -> Node:
    """A node whose runtimes go through proxies with passwords, and configs with credentials
    (`hub_entry`: how the .dockerconfigjson holds Docker Hub's: auth, password or token)."""
    found = Secrets()
    assert lab.tinyproxy.password is not None and lab.socks_auth.password is not None
    found.add(lab.tinyproxy.password, lab.tinyproxy.user)
    found.add(lab.socks_auth.password, lab.socks_auth.user)
    hub_user, hub_password = lab.dockerhub.user, lab.dockerhub.password
    found.add(hub_password, hub_user)
    entries = {
        "auth": {"auth": base64.b64encode(f"{hub_user}:{hub_password}".encode()).decode()},
        "password": {"username": hub_user, "password": hub_password},
        # The stand-in knows no identity token: the token service refuses it (auth_failed).
        "identitytoken": {
            "username": hub_user,
            "identitytoken": found.add(f"idtoken-{random_secrets.token_hex(12)}"),
        },
    }
    files = tmp_path / f"secrets-{hub_entry}"
    files.mkdir()
    hub_file = docker_config(files / "hub.dockerconfigjson", entries[hub_entry])
    robot_password = found.add(f"robot-pw-{random_secrets.token_hex(8)}", "robot")
    registry_file = docker_config(
        files / "registry.dockerconfigjson", {"username": "robot", "password": robot_password}
    )
    config = files / "config.yaml"
    config.write_text(
        "registries:\n"
        f"  - host: {HUB}\n    credentials_file: {hub_file}\n"
        f"  - host: {REGISTRY}\n    credentials_file: {registry_file}\n"
        f"dockerhub:\n  ratelimit_interval: 1s\n  credentials_file: {hub_file}\n"
        "runtimes: [containerd, dockerd]\n"
        f"images: [{hub_user}/private:1]\n"
    )
    url_password = found.add(f"url-pw-{random_secrets.token_hex(8)}", "robot")
    bad_config = files / "bad.yaml"
    bad_config.write_text(
        f"registries:\n  - host: https://robot:{url_password}@{REGISTRY}\n"
        f"    credentials_file: {files / 'missing.json'}\n"
        f"  - host: https://{REGISTRY}:5000?token={url_password}\n"
    )
    tinyproxy = lab.tinyproxy.url_with_credentials()
    socks = lab.socks_auth.url_with_credentials()
    root = lab.host_root(
        files={
            CONTAINERD_UNIT: UNIT.format(name="containerd"),
            CONTAINERD_DROPIN: f'[Service]\nEnvironment="HTTPS_PROXY={tinyproxy}"\n',
            DOCKER_UNIT: UNIT.format(name="dockerd"),
            "etc/docker/daemon.json": json.dumps({"proxies": {"https-proxy": socks}}),
        }
    )
    return Node(root, config, bad_config, found, hub_file)


def run_probe(lab: Lab, *args: str) -> tuple[int, str]:
    """`python -m probe ARGS` in the lab's node: exit status, stdout and stderr together."""
    done = lab.probe(list(args), timeout=60)
    return done.returncode, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"


@pytest.mark.parametrize("hub_entry", ["auth", "password", "identitytoken"])
def test_no_secret_in_check_run_once_or_validate(
    lab: Lab, private_registries: PrivateRegistries, tmp_path: Path, hub_entry: str
) -> None:
    """check (text, JSON, with images and pull secrets), run --once and validate (good and bad
    config) print no secret, with every secret in use: the proxy's for each request, Docker
    Hub's for its token, a pull secret's at its registry's token service."""
    node = build_node(lab, tmp_path, hub_entry)
    password = node.secrets.add(private_registries.passwords[USER], USER)
    pull_secret = private_registries.pull_secret(tmp_path, TOKEN.name, USER, password)
    common = ["--host-root", str(node.root), "--no-discover", "--timeout", str(TIMEOUT)]
    hub_image = f"{lab.dockerhub.user}/private:1"
    images = [
        "--image", f"{TOKEN.name}/lab/tiny:1", "--pull-secret", str(pull_secret),
        "--image", hub_image, "--pull-secret", str(node.hub_credentials),
    ]  # fmt: skip
    before = lab.dockerhub.counts()
    outputs: dict[str, tuple[int, str]] = {
        "check --output json": run_probe(
            lab, "check", "--config", str(node.config), *common, "--output", "json"
        ),
        "check --output text": run_probe(lab, "check", "--config", str(node.config), *common),
        "check --image": run_probe(lab, "check", *common, "--output", "json", *images),
        "run --once": run_probe(
            lab, "run", "--once", "--config", str(node.config), *common, "--listen", "127.0.0.1:0"
        ),
        "validate (good)": run_probe(lab, "validate", str(node.config)),
        "validate (bad)": run_probe(lab, "validate", str(node.bad_config)),
        "check with the bad config": run_probe(
            lab, "check", "--config", str(node.bad_config), *common
        ),
    }
    got = lab.dockerhub.counts() - before

    leaks = [leak for name, (_, text) in outputs.items() for leak in node.secrets.leaks(name, text)]
    assert leaks == [], "\n".join(leaks)

    # Every command ran to its end (an identity token POST without Content-Length was an
    # "internal error" before h11 framed the body).
    for name in ("check --output json", "check --output text", "check --image", "run --once"):
        code, text = outputs[name]
        assert code in (0, 1) and "internal error" not in text, f"{name}: {text}"
    # The secrets were used: the requests went through tinyproxy with its password, and Docker
    # Hub's token service was asked with the account's credentials.
    _, report_text = outputs["check --output json"]
    report = json.loads(report_text.split("stdout:\n", 1)[1].split("\nstderr:\n", 1)[0])
    registry = next(r for r in report["registries"] if r["registry"] == REGISTRY)
    proxy = next(c for c in registry["checks"] if c["check"] == "proxy")
    assert "tinyproxy.lab.test" in proxy["detail"], proxy
    assert {c["check"]: c["ok"] for c in registry["checks"]}.get("http") is True, registry
    _, images_text = outputs["check --image"]
    images_report = json.loads(images_text.split("stdout:\n", 1)[1].split("\nstderr:\n", 1)[0])
    offered = {i["image"]: i.get("credentials") or "" for i in images_report["images"]}
    assert offered[f"{TOKEN.name}/lab/tiny:1"].startswith(f"user {USER} from --pull-secret"), (
        images_report
    )
    if hub_entry == "identitytoken":
        assert got.token_rejected["(refresh token)"] >= 1, got  # the stand-in knows no token
    else:
        assert got.token_requests[lab.dockerhub.user] >= 1, got
        assert got.token_rejected[lab.dockerhub.user] == 0, got
    assert outputs["validate (good)"][0] == 0, outputs["validate (good)"]
    assert outputs["validate (bad)"][0] == 2, outputs["validate (bad)"]
    assert "robot:***@" in outputs["validate (bad)"][1]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_in_the_agents_logs_or_metrics(lab: Lab, tmp_path: Path, log_format: str) -> None:
    """`run` for a few cycles, scraped meanwhile: neither its log (text or JSON) nor /metrics
    nor /healthz holds a secret, while every secret was in use."""
    node = build_node(lab, tmp_path, "auth")
    assert lab.node is not None
    port = next(_ports)
    argv = [
        "--config", str(node.config), "--no-discover", "--host-root", str(node.root),
        "--interval", "1", "--timeout", str(TIMEOUT), "--log-format", log_format,
    ]  # fmt: skip
    before = lab.dockerhub.counts()
    agent = lab.spawn_agent(argv, port, tmp_path)
    served: dict[str, str] = {}
    try:
        end = time.monotonic() + AGENT_SECONDS
        for number in itertools.count():
            if time.monotonic() > end:
                break
            for path in ("/metrics", "/healthz", "/readyz"):
                fetched = lab.node.run(
                    [sys.executable, "-c", FETCH, f"http://{NODE_ADDRESS}:{port}{path}"]
                )
                served[f"{path} #{number}"] = fetched.stdout
            time.sleep(0.5)
    finally:
        agent.stop()
    log = agent.log_text()
    got = lab.dockerhub.counts() - before

    leaks = node.secrets.leaks("the agent's log", log)
    leaks += [leak for where, text in served.items() for leak in node.secrets.leaks(where, text)]
    assert leaks == [], "\n".join(leaks)

    assert got.token_requests[lab.dockerhub.user] >= 1, got  # the account's password was used
    metrics = served[max((k for k in served if k.startswith("/metrics")), key=len)]
    assert 'registry_probe_success{check="http",endpoint="registry.lab.test:443"' in metrics
    assert 'registry_probe_runtime_proxy_route{registry="registry.lab.test",route="proxy"' in (
        metrics
    )
    if log_format == "json":
        assert all(json.loads(line) for line in log.splitlines() if line.strip())
