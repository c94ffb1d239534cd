"""`check --image` in the network lab: causes 1 to 5 of ImagePullBackOff named for one image.

Real registries hold the lab's tiny image: registry.lab.test (open), basicreg.lab.test
(htpasswd: Basic, no token service) and tokenreg.lab.test (token auth behind a token service
that grants lab/tiny to labuser only); the Docker Hub stand-in serves library/tiny and a private
repository, and answers a missing repository with the same 401 as Docker Hub. Each test runs
`check --output json` in the lab's node and asserts what a user reads: the image's reason, root
cause and advice, the host that serves it, and what Docker Hub received (never a manifest GET
unless --platform asks for one). Passwords are random per session and searched for in every
output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab import CONTAINERD_CONFIG_PATH, CompletedRun, Lab
from lab.containerd import NodeView
from lab.dockerhub import RequestCounts
from lab.private import BASIC, OTHER, TOKEN, USER, PrivateRegistries
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.lab

TIMEOUT = 2.0
REGISTRY = "registry.lab.test"
TINY = f"{REGISTRY}/lab/tiny:1"
HUB = "registry-1.docker.io"
CONTAINERD_UNIT = "lib/systemd/system/containerd.service"
UNIT = "[Unit]\nDescription=containerd\n[Service]\nExecStart=/usr/bin/containerd\n"
WRONG = "not-the-password"  # a password the registries must refuse


@pytest.fixture(scope="module", name="private")
def private_fixture(lab: Lab, private_registries: PrivateRegistries) -> Iterator[PrivateRegistries]:
    """The private registries, and the tiny image (and an index over it) pushed to
    registry.lab.test."""
    script = Path(__file__).parent / "lab" / "ociimage.py"
    with NodeView(lab, lab.host_root()) as view:
        argv = [sys.executable, str(script), "--index", "lab/tiny", "1", f"https://{REGISTRY}"]
        done = view.run(argv, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    yield private_registries


def check(lab: Lab, *args: str, root: Path | None = None, node: str = "node") -> CompletedRun:
    """`check --image ... --output json` on the node, registries only as the images name them."""
    run = lab.check([], root or lab.host_root(), timeout=TIMEOUT, extra_args=args, node=node)
    assert run.json is not None, run.describe()
    return run


def image(run: CompletedRun, name: str) -> dict[str, Any]:
    """The report of one image, by the name given on the command line."""
    assert run.json is not None
    found = [i for i in run.json.get("images", []) if i["image"] == name]
    assert len(found) == 1, run.describe()
    return dict(found[0])


def secrets_absent(run: CompletedRun, private: PrivateRegistries, lab: Lab) -> None:
    """No password of the lab reaches the output."""
    output = run.stdout + run.stderr
    for password in (*private.passwords.values(), lab.dockerhub.password):
        assert password not in output


def hub_counts(lab: Lab) -> RequestCounts:
    return lab.dockerhub.counts()


# ----- cause 1: the wrong name or tag -----------------------------------------------------------


@pytest.mark.usefixtures("private")
def test_existing_tag_is_served_with_its_digest(lab: Lab) -> None:
    """An image the registry holds: ok, the host that serves it, its digest and media type."""
    run = check(lab, "--image", TINY)
    report = image(run, TINY)
    assert run.exit_code == 0, run.describe()
    assert (report["ok"], report["reason"], report["root_cause"], report["advice"]) == (
        True,
        None,
        None,
        None,
    )
    assert report["host"] == f"{REGISTRY}:443"
    assert report["digest"].startswith("sha256:") and len(report["digest"]) == 71
    assert report["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert report["reference"] == TINY and report["credentials"] is None
    [manifest] = report["checks"]
    assert (manifest["check"], manifest["ok"]) == ("manifest", True)
    assert manifest["detail"].startswith("HEAD /v2/lab/tiny/manifests/1: 200")


@pytest.mark.usefixtures("private")
def test_missing_tag_and_missing_repository_are_cause_1(lab: Lab) -> None:
    """A tag or a repository the registry does not have: image_not_found, root cause 1, and the
    advice says to check the tag and how to list them."""
    missing_tag, missing_repository = f"{REGISTRY}/lab/tiny:2", f"{REGISTRY}/lab/nothing:1"
    run = check(lab, "--image", missing_tag, "--image", missing_repository)
    assert run.exit_code == 1
    for name, repository in ((missing_tag, "lab/tiny"), (missing_repository, "lab/nothing")):
        report = image(run, name)
        assert (report["reason"], report["root_cause"]) == ("image_not_found", 1), report
        assert "404" in report["detail"]
        assert f"/v2/{repository}/tags/list" in report["advice"]
        assert "name or the tag is wrong" in report["advice"]
    assert run.registry(REGISTRY)["ok"] is True  # the registry itself is fine


@pytest.mark.usefixtures("private")
def test_unparsable_reference_is_a_usage_error(lab: Lab) -> None:
    """A reference the runtime cannot parse is refused before anything runs, in its words."""
    done = lab.probe(["check", "--image", "Team/App:1", "--output", "json"], timeout=30)
    assert done.returncode == 2
    assert "must be lowercase" in done.stderr


# ----- causes 2 and 3: credentials -------------------------------------------------------------


def test_basic_registry_without_wrong_and_right_credentials(
    lab: Lab, private: PrivateRegistries, tmp_path: Path
) -> None:
    """htpasswd (Basic, no token service): none offered is image_auth_missing (2), a wrong
    password auth_failed (3), labuser's password pulls; the account is named, never its secret."""
    name = f"{BASIC.name}/lab/tiny:1"
    right = private.pull_secret(tmp_path, BASIC.name, USER, private.passwords[USER])
    wrong = private.pull_secret(tmp_path, BASIC.name, USER, WRONG)
    expected = {
        (): ("image_auth_missing", 2),
        (str(wrong),): ("auth_failed", 3),
        (str(right),): (None, None),
    }
    for secrets, (reason, cause) in expected.items():
        args = ["--image", name]
        for secret in secrets:
            args += ["--pull-secret", secret]
        run = check(lab, *args)
        report = image(run, name)
        assert (report["reason"], report["root_cause"]) == (reason, cause), run.describe()
        secrets_absent(run, private, lab)
        if secrets:
            assert report["credentials"] == (
                f"user {USER} from --pull-secret {secrets[0]} (key {BASIC.name})"
            )
    missing = image(check(lab, "--image", name), name)
    assert "imagePullSecrets" in missing["advice"] and "--pull-secret" in missing["advice"]
    assert "Basic challenge" in missing["detail"]


def test_token_registry_accounts(lab: Lab, private: PrivateRegistries, tmp_path: Path) -> None:
    """Token auth: anonymous gets an empty token (image_auth_missing, 2); a wrong password is
    refused by the token service (auth_failed, 3); another valid account gets a token without
    pull access (image_access_denied, 3); labuser pulls."""
    name = f"{TOKEN.name}/lab/tiny:1"
    cases = [
        (None, "image_auth_missing", 2, "anonymous token does not allow"),
        ((USER, WRONG), "auth_failed", 3, "incorrect username or password"),
        ((OTHER, private.passwords[OTHER]), "image_access_denied", 3, "does not allow pulling"),
        ((USER, private.passwords[USER]), None, None, "served by tokenreg.lab.test:443"),
    ]
    for account, reason, cause, words in cases:
        args = ["--image", name]
        if account is not None:
            secret = private.pull_secret(tmp_path, TOKEN.name, *account)
            args += ["--pull-secret", str(secret)]
        run = check(lab, *args)
        report = image(run, name)
        assert (report["reason"], report["root_cause"]) == (reason, cause), run.describe()
        assert words in report["detail"], report["detail"]
        secrets_absent(run, private, lab)
        if reason == "image_access_denied":
            assert "read access" in report["advice"]
        if reason == "auth_failed":
            assert report["checks"][-1]["endpoint"] == "tokenauth.lab.test:443"
            assert "Recreate it" in report["advice"]


def test_secret_of_another_registry_is_not_offered(
    lab: Lab, private: PrivateRegistries, tmp_path: Path
) -> None:
    """The kubelet offers a secret only for the registry its key names: none for this image."""
    secret = private.pull_secret(tmp_path, BASIC.name, USER, private.passwords[USER])
    name = f"{TOKEN.name}/lab/tiny:1"
    report = image(check(lab, "--image", name, "--pull-secret", str(secret)), name)
    assert (report["reason"], report["credentials"]) == ("image_auth_missing", None)


def test_each_matching_account_is_tried_in_turn(
    lab: Lab, private: PrivateRegistries, tmp_path: Path
) -> None:
    """Two pull secrets for one registry: the first is wrong, the second pulls, as the kubelet
    tries each credential until one works."""
    wrong = private.pull_secret(tmp_path, TOKEN.name, USER, WRONG)
    right = private.pull_secret(tmp_path, f"https://{TOKEN.name}", USER, private.passwords[USER])
    name = f"{TOKEN.name}/lab/tiny:1"
    run = check(lab, "--image", name, "--pull-secret", str(wrong), "--pull-secret", str(right))
    report = image(run, name)
    assert report["ok"] is True, run.describe()
    assert str(right) in report["credentials"]


def test_registry_credentials_file_is_checked_at_its_challenge(
    lab: Lab, private: PrivateRegistries, tmp_path: Path
) -> None:
    """Issue 10, item 7: a registry's `credentials_file` is tried at GET /v2/'s challenge: the
    token service (Bearer) or the registry (Basic) rejecting it fails the http check with
    auth_failed (3); accepted, the check passes and says whose they are."""
    for service in (TOKEN, BASIC):
        for password, ok in ((WRONG, False), (private.passwords[USER], True)):
            secret = private.pull_secret(tmp_path, service.name, USER, password)
            config = tmp_path / f"config-{service.name}-{ok}.yaml"
            config.write_text(
                f"registries:\n  - host: {service.name}\n    credentials_file: {secret}\n"
            )
            run = lab.check([], lab.host_root(), TIMEOUT, ("--config", str(config)))
            assert run.json is not None, run.describe()
            [http] = run.checks(service.name, "http")
            report = run.registry(service.name)
            if ok:
                assert http["ok"] is True, run.describe()
                assert f"user {USER} from credentials_file" in http["detail"]
                assert report["ok"] is True
            else:
                assert http["reason"] == "auth_failed", run.describe()
                assert report["root_cause"] == 3
                assert "Recreate it" in report["advice"]
            secrets_absent(run, private, lab)


def test_credentials_file_without_the_registry_is_auth_failed(
    lab: Lab, private: PrivateRegistries, tmp_path: Path
) -> None:
    """A registry's credentials_file that holds no account for it fails its http check."""
    secret = private.pull_secret(tmp_path, "elsewhere.example.com", USER, "x")
    config = tmp_path / "config.yaml"
    config.write_text(f"registries:\n  - host: {TOKEN.name}\n    credentials_file: {secret}\n")
    run = lab.check([], lab.host_root(), TIMEOUT, ("--config", str(config)))
    [http] = run.checks(TOKEN.name, "http")
    assert http["reason"] == "auth_failed"
    assert "holds no username and password for tokenreg.lab.test" in http["detail"]


def test_bad_pull_secret_is_a_usage_error(lab: Lab, tmp_path: Path) -> None:
    """A --pull-secret the kubelet could not read: exit 2, the file and the key named, no
    secret quoted."""
    secret = tmp_path / "broken.json"
    secret.write_text('{"auths": {"r.example.com": {"auth": "not base64 (hunter2)"}}}')
    done = lab.probe(["check", "--image", TINY, "--pull-secret", str(secret)], timeout=30)
    assert done.returncode == 2
    assert f"--pull-secret {secret}" in done.stderr
    assert 'auths["r.example.com"].auth is not base64' in done.stderr
    assert "hunter2" not in done.stdout + done.stderr


# ----- the runtime's host order -----------------------------------------------------------------


@pytest.mark.usefixtures("private")
def test_dead_mirror_falls_back_to_the_upstream(lab: Lab) -> None:
    """A mirror that refuses connections is skipped, as containerd skips it: the registry itself
    serves the image; the mirror's failure is shown, not the image's reason."""
    hosts_toml = '[host."https://closed.lab.test"]\n  capabilities = ["pull", "resolve"]\n'
    root = lab.host_root(
        files={
            CONTAINERD_UNIT: UNIT,
            "etc/containerd/config.toml": CONTAINERD_CONFIG_PATH,
            f"etc/containerd/certs.d/{REGISTRY}/hosts.toml": hosts_toml,
        }
    )
    run = check(lab, "--image", TINY, root=root)
    report = image(run, TINY)
    assert report["ok"] is True, run.describe()
    assert report["host"] == f"{REGISTRY}:443"
    failed = [(c["endpoint"], c["check"], c["reason"]) for c in report["checks"] if not c["ok"]]
    assert failed == [("closed.lab.test:443", "tcp", "tcp_refused")]


# ----- Docker Hub: the stand-in ----------------------------------------------------------------


def test_docker_hub_images_never_get_a_manifest_get(
    lab: Lab, private: PrivateRegistries, tmp_path: Path
) -> None:
    """On Docker Hub: an official image is served; a missing tag is image_not_found; a missing
    repository is image_auth_missing and the advice says it may not exist; a private one pulls
    with its owner's secret and is auth_failed with a wrong password. Only HEADs: no pull spent."""
    hub = lab.dockerhub
    right = hub.write_credentials(tmp_path)
    wrong_dir = tmp_path / "wrong"
    wrong_dir.mkdir()
    wrong = hub.write_credentials(wrong_dir, password=WRONG)
    private_image = f"{hub.user}/private:1"
    before = hub_counts(lab)
    run = check(
        lab,
        *("--image", "tiny:1", "--image", "library/tiny:2", "--image", "nosuch/thing"),
        *("--image", private_image),
    )
    expected = {
        "tiny:1": (None, None),
        "library/tiny:2": ("image_not_found", 1),
        "nosuch/thing": ("image_auth_missing", 2),
        private_image: ("image_auth_missing", 2),
    }
    for name, (reason, cause) in expected.items():
        report = image(run, name)
        assert (report["reason"], report["root_cause"]) == (reason, cause), run.describe()
    served = image(run, "tiny:1")
    assert served["reference"] == "docker.io/library/tiny:1"
    assert served["host"] == f"{HUB}:443"
    assert served["media_type"] == "application/vnd.oci.image.index.v1+json"
    assert (
        "does not exist answers exactly like a private one" in image(run, "nosuch/thing")["advice"]
    )
    owner = image(check(lab, "--image", private_image, "--pull-secret", str(right)), private_image)
    assert owner["ok"] is True
    assert owner["credentials"].startswith(f"user {hub.user} from --pull-secret")
    rejected = check(lab, "--image", private_image, "--pull-secret", str(wrong))
    assert image(rejected, private_image)["reason"] == "auth_failed"
    secrets_absent(rejected, private, lab)
    got = hub_counts(lab) - before
    assert got.manifest_gets == 0
    assert got.requests["GET /v2/library/tiny/manifests/1"] == 0
    assert got.requests["HEAD /v2/library/tiny/manifests/1"] >= 1


@pytest.mark.usefixtures("private")
def test_docker_hub_rate_limit_is_cause_4(lab: Lab) -> None:
    """Docker Hub answering 429 to the manifest HEAD: rate_limited, root cause 4, the advice to
    authenticate pulls or mirror the images."""
    with lab.dockerhub.mode("ratelimited"):
        run = check(lab, "--image", "tiny:1")
    report = image(run, "tiny:1")
    assert (report["reason"], report["root_cause"]) == ("rate_limited", 4), run.describe()
    assert "pull rate limit" in report["advice"]


@pytest.mark.usefixtures("private")
def test_docker_hub_platform_only_when_asked_and_then_one_pull(lab: Lab) -> None:
    """Without --platform a Docker Hub index is not read (it would be a pull); with --platform
    it is, with exactly one GET, and a platform it lacks is image_platform_missing (cause 1)."""
    before = hub_counts(lab)
    plain = image(check(lab, "--image", "tiny:1"), "tiny:1")
    assert plain["ok"] is True and "ask with --platform" in plain["detail"]
    assert (hub_counts(lab) - before).manifest_gets == 0
    run = check(lab, "--image", "tiny:1", "--platform", "linux/s390x")
    report = image(run, "tiny:1")
    assert (report["reason"], report["root_cause"]) == ("image_platform_missing", 1)
    assert "linux/amd64, linux/arm64" in report["detail"]
    assert report["platform"] == "linux/s390x"
    assert (hub_counts(lab) - before).manifest_gets == 1


@pytest.mark.usefixtures("private")
def test_platform_read_from_the_index_where_it_is_free(lab: Lab) -> None:
    """On another registry the index is read by default: the node's platform is listed; one
    it lacks (--platform) is image_platform_missing, root cause 1."""
    name = f"{REGISTRY}/lab/tiny:1-index"
    listed = image(check(lab, "--image", name), name)
    assert listed["ok"] is True, listed
    assert listed["platform"] is not None and f"lists {listed['platform']}" in listed["detail"]
    missing = image(check(lab, "--image", name, "--platform", "linux/s390x"), name)
    assert (missing["reason"], missing["root_cause"]) == ("image_platform_missing", 1)
    assert "linux/riscv64" in missing["detail"]
    assert "nodeSelector" in missing["advice"]


# ----- cause 5: the network, through an image reference ------------------------------------------

NETWORK_FAULTS = {
    "nxdomain.lab.test": "dns_nxdomain",
    "noanswer.lab.test": "dns_no_answer",
    "servfail.lab.test": "dns_servfail",
    "refused.lab.test": "dns_refused",
    "dns-drop.lab.test": "dns_timeout",
    "firewall-drop.lab.test": "tcp_timeout",
    "firewall-reset.lab.test": "tcp_refused",
    "closed.lab.test": "tcp_refused",
    "host-unreachable.lab.test": "tcp_unreachable",
    "net-unreachable.lab.test": "tcp_unreachable",
    "no-route.lab.test": "tcp_unreachable",
    "untrusted.lab.test": "tls_unknown_authority",
    "expired.lab.test": "tls_expired",
    "notyet.lab.test": "tls_not_yet_valid",
    "wrongname.lab.test": "tls_hostname_mismatch",
    "tls-silent.lab.test": "tls_handshake_timeout",
    "tls-garbage.lab.test": "tls_handshake_failed",
    "tls-alert.lab.test": "tls_handshake_failed",
    "http-silent.lab.test": "http_timeout",
    "captive.lab.test": "not_a_registry",
    "status-503.lab.test": "http_unexpected_status",
    "status-503-registry.lab.test": "http_unexpected_status",
}


@pytest.mark.usefixtures("private")
def test_every_network_fault_through_an_image_reference(lab: Lab) -> None:
    """Each DNS, TCP, TLS and HTTP fault of the lab, reached through an image on that host:
    the image fails with the fault's reason, root cause 5, and the advice of that fault."""
    names = {host: f"{host}/lab/tiny:1" for host in NETWORK_FAULTS}
    args = [arg for name in names.values() for arg in ("--image", name)]
    run = check(lab, *args)
    assert run.exit_code == 1
    got = {host: image(run, name)["reason"] for host, name in names.items()}
    assert got == NETWORK_FAULTS, run.describe()
    for host, name in names.items():
        report = image(run, name)
        assert report["root_cause"] == 5
        assert report["advice"] == run.registry(host)["advice"], host
    assert run.elapsed < TIMEOUT * 3 + 8, run.describe()


@pytest.mark.usefixtures("private")
def test_no_resolver_through_an_image_reference(lab: Lab) -> None:
    """A node whose resolv.conf names no resolver: dns_no_resolvers for the image."""
    run = check(lab, "--image", TINY, root=lab.host_root(nameservers=()))
    assert image(run, TINY)["reason"] == "dns_no_resolvers"


@pytest.mark.usefixtures("private")
def test_proxy_faults_through_an_image_reference(lab: Lab) -> None:
    """On the proxied node: squid's refusal and tinyproxy's 407 reach the image as proxy_denied
    and proxy_auth_required; through squid to an open registry the image is served."""
    dropin = "etc/systemd/system/containerd.service.d/http-proxy.conf"
    cases = [
        (lab.squid.url, "denied.lab.test/lab/tiny:1", "proxy_denied"),
        (lab.tinyproxy.url, TINY, "proxy_auth_required"),
        (lab.squid.url, TINY, None),
    ]
    for proxy, name, reason in cases:
        files = {CONTAINERD_UNIT: UNIT, dropin: f'[Service]\nEnvironment="HTTPS_PROXY={proxy}"\n'}
        run = check(lab, "--image", name, root=lab.host_root(files=files), node="proxied")
        assert image(run, name)["reason"] == reason, run.describe()


# ----- the text report ----------------------------------------------------------------------------


@pytest.mark.usefixtures("private")
def test_text_report_names_image_cause_and_fix(lab: Lab) -> None:
    """The text report: the image line, its root cause in words, the checks and the fix."""
    name = f"{REGISTRY}/lab/tiny:2"
    run = lab.check([], lab.host_root(), TIMEOUT, ("--image", name, "--output", "text"))
    lines = run.stdout.splitlines()
    assert f"FAIL  image {name}: image_not_found on {REGISTRY}:443" in lines, run.stdout
    assert "      root cause 1: wrong image name or tag" in lines
    assert any(line.startswith("      fix: No host of registry.lab.test has") for line in lines)
    assert lines[-1] == f"1 of 1 images would not pull: {name}"


# ----- the agent --------------------------------------------------------------------------------


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def agent_metrics(lab: Lab, root: Path, config: Path) -> str:
    args = [
        "run", "--once", "--no-discover", "--host-root", str(root), "--timeout", str(TIMEOUT),
        "--config", str(config), "--listen", "127.0.0.1:0", "--registry", REGISTRY,
    ]  # fmt: skip
    done = lab.probe(args, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.usefixtures("private")
def test_agent_checks_configured_images_and_the_sandbox_image(lab: Lab, tmp_path: Path) -> None:
    """`run`: each configured image and the node's sandbox image (containerd's sandbox_image)
    get registry_probe_image_pullable{image, role}, and a failing one its reason as
    registry_probe_image_failure; `sandbox_image: false` leaves the sandbox image out."""
    missing = f"{REGISTRY}/lab/missing:1"
    pause = f"{REGISTRY}/lab/pause:3.9"
    cri = f'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "{pause}"\n'
    root = lab.host_root(files={CONTAINERD_UNIT: UNIT, "etc/containerd/config.toml": cri})
    config = tmp_path / "config.yaml"
    config.write_text(f"images:\n  - {TINY}\n  - {missing}\n")
    text = agent_metrics(lab, root, config)
    pullable = samples(text, "registry_probe_image_pullable")
    assert pullable == {
        (("image", TINY), ("role", "configured")): 1.0,
        (("image", missing), ("role", "configured")): 0.0,
        (("image", pause), ("role", "sandbox")): 0.0,
    }, text
    assert samples(text, "registry_probe_image_failure") == {
        (("image", missing), ("reason", "image_not_found"), ("role", "configured")): 1.0,
        (("image", pause), ("reason", "image_not_found"), ("role", "sandbox")): 1.0,
    }
    config.write_text(f"images: [{TINY}]\nsandbox_image: false\n")
    text = agent_metrics(lab, root, config)
    assert samples(text, "registry_probe_image_pullable") == {
        (("image", TINY), ("role", "configured")): 1.0
    }
    assert json.dumps(samples(text, "registry_probe_image_failure")) == "{}"
