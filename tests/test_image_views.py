"""An image's report as a person reads it: SPEC's JSON entry, the text lines and the fix per
cause (probe.views.report and probe.views.advice), from reports built by hand."""

from __future__ import annotations

import re

import pytest

from probe.config import HostPort
from probe.images.result import CONFIGURED, SANDBOX, ImageReport
from probe.reasons import CheckKind, Reason
from probe.result import CheckResult
from probe.views.advice import image_advice
from probe.views.report import to_json, to_text

HOST = HostPort("registry.example.com", 443)
DIGEST = "sha256:" + "c" * 64
# SPEC.md, "Images": the keys of each entry of "images".
SPEC_KEYS = {"image", "ok", "root_cause", "reason", "advice", "host", "digest", "media_type"}
SPEC_KEYS |= {"checks"}


def report(
    reason: Reason | None,
    *,
    image: str = "registry.example.com/team/app:1",
    registry: str = "registry.example.com",
    role: str = CONFIGURED,
    credentials: str | None = None,
    docker_hub: bool = False,
    ecr: bool = False,
    check: CheckKind = CheckKind.MANIFEST,
) -> ImageReport:
    result = CheckResult(
        endpoint=HOST,
        check=check,
        ok=reason is None,
        reason=reason,
        detail="HEAD /v2/team/app/manifests/1: 200" if reason is None else "failed here",
    )
    return ImageReport(
        image=image,
        reference=image,
        role=role,
        registry=registry,
        reason=reason,
        detail="served" if reason is None else "the detail",
        checks=(result,),
        finished_at=1.0,
        host=HOST,
        digest=DIGEST if reason is None else None,
        media_type="application/vnd.oci.image.index.v1+json" if reason is None else None,
        credentials=credentials,
        repository="team/app",
        tag="1",
        docker_hub=docker_hub,
        ecr=ecr,
        source="/etc/containerd/config.toml" if role == SANDBOX else "flag",
    )


def test_json_entry_has_specs_keys() -> None:
    """Each entry of "images" carries SPEC's keys; ok has no reason, cause or advice."""
    document = to_json("node-1", [], (), [report(None), report(Reason.IMAGE_NOT_FOUND)])
    served, missing = document["images"]
    assert set(served) >= SPEC_KEYS
    assert (served["ok"], served["reason"], served["root_cause"], served["advice"]) == (
        True,
        None,
        None,
        None,
    )
    assert (served["host"], served["digest"]) == ("registry.example.com:443", DIGEST)
    assert served["checks"][0]["check"] == "manifest"
    assert (missing["ok"], missing["reason"], missing["root_cause"]) == (
        False,
        "image_not_found",
        1,
    )
    assert "images" not in to_json("node-1", [])  # no image asked: SPEC's shape as before


@pytest.mark.parametrize(
    "reason",
    [
        Reason.IMAGE_NOT_FOUND,
        Reason.IMAGE_AUTH_MISSING,
        Reason.AUTH_FAILED,
        Reason.IMAGE_ACCESS_DENIED,
        Reason.IMAGE_PLATFORM_MISSING,
    ],
)
def test_every_image_cause_has_its_own_fix(reason: Reason) -> None:
    """Causes 1 to 3 get words of their own, filled in (no placeholder left), with the cause."""
    advice = image_advice(report(reason, credentials="user alice from --pull-secret s.json"))
    assert re.search(r"\{[a-z_]+\}", advice) is None, advice
    assert f"root cause {report(reason).root_cause}" in advice


def test_docker_hub_says_a_missing_repository_looks_private() -> None:
    """On Docker Hub, 401 without access may mean no such repository: the advice says so."""
    advice = image_advice(report(Reason.IMAGE_AUTH_MISSING, registry=HOST.host, docker_hub=True))
    assert "does not exist answers exactly like a private one" in advice
    assert "--docker-server=https://index.docker.io/v1/" in advice
    other = image_advice(report(Reason.IMAGE_AUTH_MISSING))
    assert "does not exist" not in other


def test_ecr_auth_failed_names_the_12_hour_token() -> None:
    """Rejected ECR credentials: the advice says the token expires after 12 hours, and what
    to use instead; an AWS username says the same elsewhere too."""
    ecr = image_advice(report(Reason.AUTH_FAILED, ecr=True, credentials="user AWS from x"))
    assert "expires after 12 hours" in ecr and "credential provider" in ecr
    plain = image_advice(report(Reason.AUTH_FAILED, credentials="user alice from x"))
    assert "12 hours" not in plain
    gcp = image_advice(report(Reason.AUTH_FAILED, credentials="user oauth2accesstoken from x"))
    assert "1 hour" in gcp


def test_sandbox_image_says_no_pod_starts() -> None:
    """The sandbox image's fix adds that no new pod starts on the node, and where it is set."""
    advice = image_advice(report(Reason.IMAGE_NOT_FOUND, role=SANDBOX))
    assert "no new pod starts on this node" in advice
    assert "/etc/containerd/config.toml" in advice


def test_network_reasons_take_the_checks_advice() -> None:
    """A network failure (cause 5) gets the same fix as the registry check would give."""
    advice = image_advice(report(Reason.TCP_TIMEOUT, check=CheckKind.TCP))
    assert "silently dropped" in advice and "registry.example.com:443" in advice


def test_unparsable_reference_advice() -> None:
    """A reference the runtime cannot parse: its words, and to fix the pod spec."""
    refused = ImageReport(
        image="Team/App",
        reference="Team/App",
        role=CONFIGURED,
        registry="",
        reason=Reason.IMAGE_NOT_FOUND,
        detail="the runtime cannot parse this reference: invalid reference format",
        checks=(),
        finished_at=1.0,
    )
    assert image_advice(refused) == (
        "The runtime cannot parse Team/App: invalid reference format. Fix the reference in the "
        "pod spec (root cause 1)."
    )


def test_text_lines_for_a_served_and_a_failing_image() -> None:
    """The text report: OK with host and digest, FAIL with reason, cause, checks and fix, and
    the closing count of images that would not pull."""
    text = to_text("node-1", [], (), [report(None), report(Reason.IMAGE_ACCESS_DENIED)])
    lines = text.splitlines()
    assert (
        "OK    image registry.example.com/team/app:1: served by registry.example.com:443" in lines
    )
    assert f"      digest    {DIGEST}, application/vnd.oci.image.index.v1+json" in lines
    assert (
        "FAIL  image registry.example.com/team/app:1: image_access_denied on "
        "registry.example.com:443"
    ) in lines
    assert "      root cause 3: expired or invalid credentials" in lines
    assert "      account   none (anonymous)" in lines
    assert any(line.startswith("      fix: The credentials (none) are valid") for line in lines)
    assert lines[-1] == "1 of 2 images would not pull: registry.example.com/team/app:1"
