"""Docker Hub's rate limit read in the lab, from the stand-in behind Docker Hub's real names.

The probe runs in the lab's node with the lab's DNS and CA, so `registry-1.docker.io`,
`auth.docker.io` and `production.cloudfront.docker.com` are tests/dockerhub_standin.py, which
follows Docker's documented behaviour and counts every request it gets. Each test asserts what a
user sees (`check --output json`, the agent's metrics) and what Docker Hub received: never a
manifest GET (a pull), and no more token requests than the interval allows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from dockerhub_standin import account_id
from lab import (
    CONTAINERD_CONFIG_PATH,
    DNS_ADDRESS,
    DOCKERHUB_ADDRESS,
    NODE_ADDRESS,
    AgentRun,
    CompletedRun,
    Lab,
)
from lab.dockerhub import ANONYMOUS_LIMIT, AUTHENTICATED_LIMIT, WINDOW_SECONDS, RequestCounts
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.lab

HUB = "registry-1.docker.io"
TIMEOUT = 2.0
AGENT_SECONDS = 5.0


def hub_check(lab: Lab, config: Path | None, *extra: str) -> tuple[CompletedRun, RequestCounts]:
    """`check --registry registry-1.docker.io` on the node, and what the stand-in got meanwhile."""
    before = lab.dockerhub.counts()
    args = ("--config", str(config), *extra) if config is not None else extra
    run = lab.check([HUB], lab.host_root(), timeout=TIMEOUT, extra_args=args)
    return run, lab.dockerhub.counts() - before


def ratelimits(run: CompletedRun) -> dict[str, dict[str, object]]:
    """The report's `ratelimit` entries by account."""
    return {entry["auth"]: entry for entry in run.registry(HUB).get("ratelimit", [])}


def failures(run: CompletedRun) -> list[tuple[str, str]]:
    """(check, reason) of every failed check of Docker Hub."""
    return [(c["check"], c["reason"]) for c in run.failed(HUB)]


def ratelimit_check(run: CompletedRun) -> dict[str, object]:
    [check] = run.checks(HUB, "ratelimit")
    return check


def samples(metrics: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric in Prometheus text, keyed by their sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == name
    }


def labels(auth: str, **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"registry": HUB, "auth": auth, **more}.items()))


def agent_once(lab: Lab, config: Path) -> str:
    """`probe run --once` on the node: the Prometheus text it prints."""
    args = [
        "run", "--once", "--no-discover", "--host-root", str(lab.host_root()),
        "--timeout", str(TIMEOUT), "--registry", HUB, "--config", str(config),
        "--listen", "127.0.0.1:0",
    ]  # fmt: skip
    done = lab.probe(args, timeout=30)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert lab.dockerhub.password not in done.stdout + done.stderr
    return done.stdout


def test_lab_dockerhub_names_lead_to_the_standin(lab: Lab) -> None:
    """The lab's DNS gives Docker Hub's three names the stand-in, whose certificate they trust."""
    script = Path(__file__).parent / "lab" / "selfcheck.py"
    bundle = lab.host_root() / "etc" / "ssl" / "certs" / "ca-certificates.crt"
    names = ["registry-1.docker.io", "auth.docker.io", "production.cloudfront.docker.com"]
    done = lab.run_in(
        [sys.executable, str(script), str(bundle), DNS_ADDRESS, *names]
        + [f"{name}={DOCKERHUB_ADDRESS}:443" for name in names],
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "dns": dict.fromkeys(names, f"NOERROR:{DOCKERHUB_ADDRESS}"),
        "conn": {
            f"registry-1.docker.io={DOCKERHUB_ADDRESS}:443": "http:401:registry",
            f"auth.docker.io={DOCKERHUB_ADDRESS}:443": "http:404",  # only /token there
            f"production.cloudfront.docker.com={DOCKERHUB_ADDRESS}:443": "http:421",  # no blobs
        },
    }


def test_limits_of_both_accounts_are_read_from_the_headers(lab: Lab) -> None:
    """Anonymous and authenticated limits, remaining, window and source come from the headers."""
    run, got = hub_check(lab, lab.dockerhub.write_config())
    assert run.exit_code == 0, run.describe()
    assert run.registry(HUB)["ok"] is True, run.describe()
    assert ratelimit_check(run)["ok"] is True, run.describe()
    remaining = lab.dockerhub.state()["remaining"]
    anonymous_source, account_source = NODE_ADDRESS, account_id(lab.dockerhub.user)
    assert ratelimits(run) == {
        "anonymous": {
            "auth": "anonymous",
            "limit": ANONYMOUS_LIMIT,
            "remaining": remaining[anonymous_source],
            "window_seconds": WINDOW_SECONDS,
            "source": anonymous_source,
            "headers_present": True,
        },
        "authenticated": {
            "auth": "authenticated",
            "limit": AUTHENTICATED_LIMIT,
            "remaining": remaining[account_source],
            "window_seconds": WINDOW_SECONDS,
            "source": account_source,
            "headers_present": True,
        },
    }, run.describe()
    assert got.manifest_gets == 0, got
    assert got.manifest_heads == 2, got
    assert got.token_requests == {"anonymous": 1, lab.dockerhub.user: 1}, got
    assert lab.dockerhub.password not in run.stdout + run.stderr


def test_without_credentials_only_anonymous_is_read(lab: Lab) -> None:
    """With no credentials file only the anonymous limit is read, with one token and one HEAD."""
    run, got = hub_check(lab, None)
    assert run.exit_code == 0, run.describe()
    assert set(ratelimits(run)) == {"anonymous"}, run.describe()
    assert (got.manifest_gets, got.manifest_heads, got.token_requests) == (
        0,
        1,
        {"anonymous": 1},
    ), got


@pytest.mark.parametrize("mode", ["ratelimited", "token-ratelimited"])
def test_429_is_rate_limited(lab: Lab, mode: str) -> None:
    """A 429 from the manifest HEAD or the token endpoint is rate_limited: root cause 4, exit 1."""
    with lab.dockerhub.mode(mode):
        run, got = hub_check(lab, lab.dockerhub.write_config())
    assert run.exit_code == 1, run.describe()
    report = run.registry(HUB)
    assert (report["ok"], report["root_cause"]) == (False, 4), run.describe()
    assert report["advice"], run.describe()
    assert failures(run) == [("ratelimit", "rate_limited")], run.describe()
    assert got.manifest_gets == 0, got
    if mode == "ratelimited":
        # The limits come with the 429: nothing is left of this window.
        limits = ratelimits(run)
        assert {auth: (e["limit"], e["remaining"]) for auth, e in limits.items()} == {
            "anonymous": (ANONYMOUS_LIMIT, 0),
            "authenticated": (AUTHENTICATED_LIMIT, 0),
        }, run.describe()
        assert {e["window_seconds"] for e in limits.values()} == {WINDOW_SECONDS}, run.describe()


def test_wrong_password_is_auth_failed_and_never_shown(lab: Lab) -> None:
    """Rejected credentials are auth_failed (root cause 3); the password appears in no output."""
    wrong = "wrong-pw-d41d8cd98f00"
    config = lab.dockerhub.write_config(password=wrong)
    run, got = hub_check(lab, config)
    assert run.exit_code == 1, run.describe()
    report = run.registry(HUB)
    assert (report["ok"], report["root_cause"]) == (False, 3), run.describe()
    assert failures(run) == [("ratelimit", "auth_failed")], run.describe()
    assert "anonymous" in ratelimits(run), run.describe()  # the anonymous limit is still read
    assert got.token_rejected == {lab.dockerhub.user: 1}, got
    assert got.manifest_gets == 0, got
    text, _ = hub_check(lab, config, "--output", "text")
    for output in (run.stdout, run.stderr, text.stdout, text.stderr):
        assert wrong not in output
        assert lab.dockerhub.password not in output


SKIP_VERIFY_HOSTS_TOML = """server = "https://registry-1.docker.io"
[host."https://registry-1.docker.io"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
"""


@pytest.mark.parametrize("where", ["config", "hosts.toml"])
def test_credentials_are_never_sent_without_verification(lab: Lab, where: str) -> None:
    """With skip_verify on Docker Hub (the config's insecure_skip_verify, or the node's
    certs.d/docker.io/hosts.toml) the password never leaves: the token service gets no
    Authorization, the anonymous limit is still read, and the report says both."""
    if where == "config":
        extra = "registries:\n  - host: registry-1.docker.io\n    insecure_skip_verify: true\n"
        config, root = lab.dockerhub.write_config(extra_yaml=extra), lab.host_root()
    else:
        config = lab.dockerhub.write_config()
        root = lab.host_root(
            files={
                # containerd reads certs.d only when config_path names it.
                "etc/containerd/config.toml": CONTAINERD_CONFIG_PATH,
                "etc/containerd/certs.d/docker.io/hosts.toml": SKIP_VERIFY_HOSTS_TOML,
            }
        )
    before = lab.dockerhub.counts()
    run = lab.check([HUB], root, timeout=TIMEOUT, extra_args=("--config", str(config)))
    got = lab.dockerhub.counts() - before
    assert got.token_requests == {"anonymous": 1}, (got, run.describe())
    assert got.manifest_gets == 0, got
    assert set(ratelimits(run)) == {"anonymous"}, run.describe()
    limit = ratelimit_check(run)
    assert limit["ok"] is True, run.describe()
    assert "credentials not sent" in str(limit["detail"]), limit
    assert "skip_verify" in str(limit["detail"]), limit
    tls = [c for c in run.checks(HUB, "tls") if c["endpoint"] == f"{HUB}:443"]
    assert tls and "not verified (skip_verify)" in tls[0]["detail"], run.describe()
    assert lab.dockerhub.password not in run.stdout + run.stderr


def test_no_headers_means_unlimited(lab: Lab) -> None:
    """Without limit headers (a paid account) the check passes and headers_present is false."""
    with lab.dockerhub.mode("noheaders"):
        run, got = hub_check(lab, lab.dockerhub.write_config())
    assert run.exit_code == 0, run.describe()
    assert ratelimit_check(run)["ok"] is True, run.describe()
    limits = ratelimits(run)
    assert set(limits) == {"anonymous", "authenticated"}, run.describe()
    assert all(e["headers_present"] is False for e in limits.values()), run.describe()
    assert got.manifest_gets == 0, got


def test_agent_exports_the_limits_as_metrics(lab: Lab) -> None:
    """`run --once` prints remaining, limit, window, headers_present and source per account."""
    metrics = agent_once(lab, lab.dockerhub.write_config())
    remaining = lab.dockerhub.state()["remaining"]
    sources = {"anonymous": NODE_ADDRESS, "authenticated": account_id(lab.dockerhub.user)}
    limits = {"anonymous": ANONYMOUS_LIMIT, "authenticated": AUTHENTICATED_LIMIT}
    prefix = "registry_probe_dockerhub_ratelimit"
    for auth, source in sources.items():
        expected = {
            "remaining": remaining[source],
            "limit": limits[auth],
            "window_seconds": WINDOW_SECONDS,
            "headers_present": 1,
        }
        for metric, value in expected.items():
            assert samples(metrics, f"{prefix}_{metric}").get(labels(auth)) == value, (
                f"{metric} {auth}\n{metrics}"
            )
        assert samples(metrics, f"{prefix}_source_info").get(labels(auth, source=source)) == 1, (
            metrics
        )


def test_agent_reports_missing_headers_as_zero(lab: Lab) -> None:
    """In `noheaders` mode the agent exports headers_present 0 for both accounts, not nothing."""
    with lab.dockerhub.mode("noheaders"):
        metrics = agent_once(lab, lab.dockerhub.write_config())
    present = samples(metrics, "registry_probe_dockerhub_ratelimit_headers_present")
    assert present == {labels("anonymous"): 0, labels("authenticated"): 0}, metrics
    assert not samples(metrics, "registry_probe_dockerhub_ratelimit_remaining"), metrics


def run_agent(lab: Lab, config: Path) -> tuple[AgentRun, RequestCounts]:
    """The agent probing Docker Hub every second for AGENT_SECONDS, and what the stand-in got."""
    args = [
        "--no-discover", "--host-root", str(lab.host_root()), "--registry", HUB,
        "--config", str(config), "--interval", "1", "--timeout", "1",
        "--listen", "127.0.0.1:0",
    ]  # fmt: skip
    before = lab.dockerhub.counts()
    run = lab.run_agent(args, seconds=AGENT_SECONDS)
    got = lab.dockerhub.counts() - before
    assert run.exit_code == 0, run.describe()
    assert got.manifest_gets == 0, got
    assert got.v2_probes >= 3, (got, run.describe())  # the registry itself was probed each cycle
    assert lab.dockerhub.password not in run.stdout + run.stderr
    return run, got


def test_agent_asks_docker_hub_once_per_ratelimit_interval(lab: Lab) -> None:
    """Probing every second for 5 s, Docker Hub gets one token and one HEAD per account."""
    run, got = run_agent(lab, lab.dockerhub.write_config(ratelimit_interval="1h"))
    assert got.token_requests == {"anonymous": 1, lab.dockerhub.user: 1}, (got, run.describe())
    assert got.manifest_heads == 2, (got, run.describe())


def test_agent_backs_off_after_429(lab: Lab) -> None:
    """With a 1 s ratelimit_interval and every HEAD a 429, the asks back off (1 s, then 2, 4...)."""
    with lab.dockerhub.mode("ratelimited"):
        run, got = run_agent(lab, lab.dockerhub.write_config(ratelimit_interval="1s"))
    # Without backoff each account would be asked about once a cycle; with it, twice in 5 s
    # (at 0 s and about 2 s; the next ask is due about 4 s later). Tokens are reused throughout.
    assert got.manifest_heads <= 4, (got, run.describe())
    assert got.token_requests == {"anonymous": 1, lab.dockerhub.user: 1}, (got, run.describe())
