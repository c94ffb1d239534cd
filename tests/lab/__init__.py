"""The network lab the fault tests run the probe in: namespaces, DNS, registries, faults.

`Lab.start(workdir)` builds it (tests use the session fixture `lab` from tests/conftest.py);
`lab.check([...], lab.host_root(...))` runs `probe check --output json` on the lab's node.
"""

from .lab import (
    DEAD_DNS_ADDRESS,
    DNS_ADDRESS,
    SERVICES,
    CompletedRun,
    Lab,
    Service,
    missing_requirements,
)

__all__ = [
    "DEAD_DNS_ADDRESS",
    "DNS_ADDRESS",
    "SERVICES",
    "CompletedRun",
    "Lab",
    "Service",
    "missing_requirements",
]
