"""The `check` views of the engine's reports: a readable text report, and SPEC's JSON shape."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from probe.node.problems import NodeProblem
from probe.result import CertFacts, CheckResult, RegistryReport
from probe.views.advice import advice_for, cause_line, report_advice


def to_json(
    node: str, reports: list[RegistryReport], problems: Sequence[NodeProblem] = ()
) -> dict[str, Any]:
    """`check --output json`: `{"node": ..., "registries": [...]}` as SPEC.md draws it, and the
    node's configuration problems."""
    return {
        "node": node,
        "registries": [_registry_json(r) for r in reports],
        "node_problems": [_problem_json(p) for p in problems],
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


def to_text(node: str, reports: list[RegistryReport], problems: Sequence[NodeProblem] = ()) -> str:
    """The report a person on the node reads: per registry, what failed, why, and the fix;
    then what the node's configuration files get wrong."""
    lines = [f"registry-probe check on node {node}", ""]
    for report in reports:
        lines.extend(_registry_text(report))
        lines.append("")
    if problems:
        lines.append("node configuration problems:")
        lines.extend(f"  {p.where}: {p.describe()}" for p in problems)
        lines.append("")
    failing = [r for r in reports if not r.ok]
    if failing:
        names = ", ".join(r.registry for r in failing)
        lines.append(f"{len(failing)} of {len(reports)} registries failing: {names}")
    else:
        lines.append(f"all {len(reports)} registries reachable")
    return "\n".join(lines) + "\n"


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
