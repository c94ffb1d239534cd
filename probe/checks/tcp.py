"""The `tcp` check: connect to one resolved address, as the runtime's dialer would.

Linux tells a drop from a reject: a dropped SYN never answers (the caller's deadline ends it:
`tcp_timeout`), a RST is ECONNREFUSED, an ICMP unreachable or a missing route is
EHOSTUNREACH / ENETUNREACH. A socket the agent cannot open (EMFILE, ENFILE) is the agent's own
trouble, said so in the detail (`probe.checks.descriptors`).
"""

from __future__ import annotations

import errno
import time

from probe.checks import Outcome, Probe
from probe.checks.connection import Connection
from probe.checks.descriptors import log_shortage, shortage
from probe.reasons import Reason

_UNREACHABLE = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN, errno.EHOSTDOWN}
)


async def run(probe: Probe) -> Outcome:
    assert probe.address is not None, "tcp runs on a resolved address"  # noqa: S101 - engine invariant
    target = _target(probe.address, probe.endpoint.port)
    started = time.perf_counter()
    try:
        probe.connection = await Connection.open(probe.address, probe.endpoint.port)
    except OSError as error:
        phases = {"connect": time.perf_counter() - started}
        log_shortage(error, f"dial tcp {target}")
        reason, why = classify(error)
        return Outcome.failed(reason, f"dial tcp {target}: {why}", phases=phases)
    phases = {"connect": time.perf_counter() - started}
    return Outcome(detail=f"connected to {target}", phases=phases)


def classify(error: OSError) -> tuple[Reason, str]:
    """The reason for a failed connect; the words are the kernel's, as kubelet shows them."""
    why = error.strerror or str(error)
    local = shortage(error)
    if local is not None:  # no packet left: like EADDRNOTAVAIL, a local refusal to dial
        return Reason.TCP_UNREACHABLE, local
    if isinstance(error, ConnectionRefusedError) or error.errno == errno.ECONNREFUSED:
        return Reason.TCP_REFUSED, "connection refused"
    if error.errno in _UNREACHABLE:
        return Reason.TCP_UNREACHABLE, why.lower()
    if isinstance(error, TimeoutError) or error.errno == errno.ETIMEDOUT:
        return Reason.TCP_TIMEOUT, "i/o timeout"
    return Reason.TCP_UNREACHABLE, why.lower()


def _target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
