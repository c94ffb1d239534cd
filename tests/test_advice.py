"""The fix `check` prints: one for every reason, naming the endpoint it is about."""

from __future__ import annotations

import pytest

from probe.config import HostPort
from probe.reasons import CheckKind, Reason
from probe.result import CheckResult
from probe.views.advice import advice_for


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_has_concrete_advice(reason: Reason) -> None:
    """Each reason's advice is filled in (no placeholder left) and names the host."""
    result = CheckResult(
        HostPort("registry.lab.test", 5000), CheckKind.TCP, False, reason, "detail"
    )
    advice = advice_for(result)
    assert "{" not in advice
    assert "registry.lab.test" in advice or reason in (
        Reason.PROXY_UNREACHABLE,
        Reason.PROXY_RESTART_PENDING,
        Reason.RATE_LIMITED,
    )


def test_mismatch_advice_carries_the_named_fix() -> None:
    """For a proxy mismatch the detail (runtimes, files, restart) is part of the advice."""
    detail = "dockerd goes direct: add the same Environment= lines to X and restart docker"
    result = CheckResult(
        HostPort("r.lab.test", 443), CheckKind.PROXY, False, Reason.PROXY_MISMATCH, detail
    )
    assert advice_for(result).endswith(detail)
