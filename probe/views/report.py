"""The `check` views of the engine's reports: a readable text report, and SPEC's JSON shape."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from probe.images.result import SANDBOX, ImageReport
from probe.node.problems import NodeProblem
from probe.result import CertFacts, CheckResult, RegistryReport
from probe.views.advice import advice_for, cause_line, image_advice, report_advice


def to_json(
    node: str,
    reports: list[RegistryReport],
    problems: Sequence[NodeProblem] = (),
    images: Sequence[ImageReport] = (),
) -> dict[str, Any]:
    """`check --output json`: `{"node": ..., "registries": [...]}` as SPEC.md draws it, the
    node's configuration problems and, when images were checked, `images`."""
    document = {
        "node": node,
        "registries": [_registry_json(r) for r in reports],
        "node_problems": [_problem_json(p) for p in problems],
    }
    if images:
        document["images"] = [_image_json(i) for i in images]
    return document


def _image_json(report: ImageReport) -> dict[str, Any]:
    """SPEC.md's image entry: image, ok, root_cause, reason, advice, host, digest, media_type,
    checks; and what else a person asks (the reference resolved, the credentials used, never
    their value)."""
    return {
        "image": report.image,
        "ok": report.ok,
        "root_cause": report.root_cause,
        "reason": str(report.reason) if report.reason else None,
        "advice": image_advice(report) or None,
        "host": str(report.host) if report.host else None,
        "digest": report.digest,
        "media_type": report.media_type,
        "checks": [_check_json(c) for c in report.checks],
        "reference": report.reference,
        "registry": report.registry or None,
        "role": report.role,
        "source": report.source,
        "detail": report.detail,
        "credentials": report.credentials,
        "platform": report.platform,
    }


def _problem_json(problem: NodeProblem) -> dict[str, Any]:
    return {
        "source": problem.source,
        "line": problem.line,
        "runtime": problem.runtime,
        "message": problem.message,
        "effect": problem.effect or None,
    }


def _registry_json(report: RegistryReport) -> dict[str, Any]:
    document: dict[str, Any] = {
        "registry": report.registry,
        "ok": report.ok,
        "root_cause": report.root_cause,
        "advice": report_advice(report) or None,
        "checks": [_check_json(c) for c in report.checks],
    }
    failure = report.first_failure
    document["failure"] = (
        None
        if failure is None
        else {
            "endpoint": str(failure.endpoint),
            "check": str(failure.check),
            "reason": str(failure.reason),
        }
    )
    if report.pullable is not None:
        document["pullable"] = report.pullable
        document["served_by"] = str(report.served_by) if report.served_by else None
        document["hosts"] = [
            {
                "host": str(h.endpoint),
                "url": h.url,
                "role": h.role,
                "source": h.source,
                "resolves": h.resolves,
                "usable": h.usable,
                "reason": str(h.reason) if h.reason else None,
                "tls_verified": not h.skip_verify,
            }
            for h in report.hosts
        ]
        document["rule"] = report.rule
        document["warnings"] = list(report.warnings)
    if report.ratelimits:
        document["ratelimit"] = [
            {
                "auth": r.auth,
                "limit": r.limit,
                "remaining": r.remaining,
                "window_seconds": r.window_seconds,
                "source": r.source,
                "headers_present": r.headers_present,
            }
            for r in report.ratelimits
        ]
    if report.routes:
        document["routes"] = [
            {"runtime": r.runtime, "route": r.route, "proxy": r.proxy}
            | ({"process": r.process} if r.process else {})
            for r in report.routes
        ]
        document["proxy_consistent"] = report.proxy_consistent
    return document


def _check_json(result: CheckResult) -> dict[str, Any]:
    document: dict[str, Any] = {
        "endpoint": result.endpoint.label,
        "check": str(result.check),
        "ok": result.ok,
        "reason": str(result.reason) if result.reason else None,
        "detail": result.detail,
        "phases": {phase: round(seconds, 6) for phase, seconds in result.phases.items()},
    }
    if result.addresses_ok or result.addresses_failed:
        document["addresses"] = {"ok": result.addresses_ok, "failed": result.addresses_failed}
    if result.cert is not None:
        document["certificate"] = _cert_json(result.cert)
    return document


def _cert_json(cert: CertFacts) -> dict[str, Any]:
    return {
        "not_after": _iso(cert.not_after),
        "not_after_timestamp": cert.not_after,
        "issuer": cert.issuer,
        "subject": cert.subject,
        "tls_version": cert.tls_version,
    }


def to_text(
    node: str,
    reports: list[RegistryReport],
    problems: Sequence[NodeProblem] = (),
    images: Sequence[ImageReport] = (),
) -> str:
    """The report a person on the node reads: per registry, what failed, why, and the fix;
    then each image; then what the node's configuration files get wrong."""
    lines = [f"registry-probe check on node {node}", ""]
    for report in reports:
        lines.extend(_registry_text(report))
        lines.append("")
    for image in images:
        lines.extend(_image_text(image))
        lines.append("")
    if problems:
        lines.append("node configuration problems:")
        lines.extend(f"  {_problem_text(p)}" for p in problems)
        lines.append("")
    failing = [r for r in reports if not r.ok]
    if failing:
        names = ", ".join(r.registry for r in failing)
        lines.append(f"{len(failing)} of {len(reports)} registries failing: {names}")
    else:
        lines.append(f"all {len(reports)} registries reachable")
    if images:
        unpullable = [i for i in images if not i.ok]
        if unpullable:
            names = ", ".join(i.image for i in unpullable)
            lines.append(f"{len(unpullable)} of {len(images)} images would not pull: {names}")
        else:
            lines.append(f"all {len(images)} images would pull")
    return "\n".join(lines) + "\n"


def _image_text(report: ImageReport) -> list[str]:
    role = "sandbox image" if report.role == SANDBOX else "image"
    resolved = f" ({report.reference})" if report.reference != report.image else ""
    if report.ok:
        lines = [f"OK    {role} {report.image}{resolved}: served by {report.host}"]
        if report.digest or report.media_type:
            lines.append(f"      digest    {report.digest or '?'}, {report.media_type or '?'}")
    else:
        where = f" on {report.host}" if report.host else ""
        lines = [f"FAIL  {role} {report.image}{resolved}: {report.reason}{where}"]
        if report.reason is not None:
            lines.append(f"      {cause_line(report.reason)}")
    lines.append(f"      account   {report.credentials or 'none (anonymous)'}")
    width = max((len(c.endpoint.label) for c in report.checks), default=0)
    for check in report.checks:
        status = "ok" if check.ok else str(check.reason)
        lines.append(
            f"      {check.check:<9} {check.endpoint!s:<{width}}  {status}: {check.detail}"
        )
    lines.append(f"      {'verdict' if report.ok else 'why':<9} {report.detail}")
    advice = image_advice(report)
    if advice:
        lines.append(f"      fix: {advice}")
    return lines


def _problem_text(problem: NodeProblem) -> str:
    """`file:line: message (effect)`; the message names its file for logs, said once here."""
    text = problem.describe()
    for named in (f"{problem.source}: ", f"{problem.source} "):
        if text.startswith(named):
            text = text[len(named) :]
            break
    return f"{problem.where}: {text}"


def _registry_text(report: RegistryReport) -> list[str]:
    failure = report.first_failure
    if failure is None or failure.reason is None:
        served = f" (served by {report.served_by})" if len(report.hosts) > 1 else ""
        lines = [f"{'WARN' if report.warnings else 'OK':<6}{report.registry}{served}"]
    else:
        lines = [
            f"FAIL  {report.registry}: {failure.check} {failure.reason} on {failure.endpoint}",
            f"      {cause_line(failure.reason)}",
        ]
    if len(report.hosts) > 1 or report.rule:
        order = ", then ".join(
            f"{h.endpoint}{'' if h.usable else f' ({h.reason})'}" for h in report.hosts
        )
        lines.append(f"      hosts     {order}")
        if report.rule:
            lines.append(f"      rule      {report.rule}")
    for warning in report.warnings:
        lines.append(f"      warning   {warning}")
    width = max((len(c.endpoint.label) for c in report.checks), default=0)
    for check in report.checks:
        status = "ok" if check.ok else str(check.reason)
        lines.append(
            f"      {check.check:<9} {check.endpoint!s:<{width}}  {status}: {check.detail}"
        )
        if check.cert is not None:
            cert = check.cert
            lines.append(
                f"      {'':<9} {'':<{width}}  certificate expires {_iso(cert.not_after)}, "
                f"issuer {cert.issuer or 'unknown'}, {cert.tls_version}"
            )
    for limit in report.ratelimits:
        if limit.headers_present:
            window = f" per {limit.window_seconds}s" if limit.window_seconds else ""
            lines.append(
                f"      ratelimit ({limit.auth}): {limit.remaining} of {limit.limit} pulls left"
                f"{window}, counted for {limit.source or 'unknown source'}"
            )
        else:
            lines.append(f"      ratelimit ({limit.auth}): no limit headers (unlimited account)")
    for route in report.routes:
        via = f"through {route.proxy}" if route.proxy else "direct"
        read = f" (environment of {route.process})" if route.process else ""
        lines.append(f"      route     {route.runtime} goes {via}{read}")
    failures = [c for c in report.checks if not c.ok]
    seen: set[str] = set()
    for check in failures:
        fix = advice_for(check)
        if fix not in seen:
            seen.add(fix)
            lines.append(f"      fix: {fix}")
    return lines


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return "unknown"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
