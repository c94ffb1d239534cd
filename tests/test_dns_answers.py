"""DNS answers the node's resolvers may give, from a real DNS server on loopback (the lab's
tests/lab/dnsserver.py, run in the test's event loop), classified by the `dns` check.

As dnspython's tests/nanonameserver.py: the server speaks real DNS over UDP on 127.0.0.1, and
the check's resolver is pointed at its port, so the answer is parsed by dnspython as the probe
parses the node's resolvers' answers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import dns.asyncresolver
from lab.dnsserver import UDPServer, Zone

from probe.checks import Endpoint, Outcome, Probe
from probe.checks import dns as dns_check
from probe.node.resolver import NodeResolver
from probe.reasons import Reason

ZONE = {
    "registry.test.": {"A": ["198.18.1.10"]},
    "alias.test.": {"CNAME": ["registry.test."]},
    "loop-a.test.": {"CNAME": ["loop-b.test."]},
    "loop-b.test.": {"CNAME": ["loop-a.test."]},
    "self.test.": {"CNAME": ["self.test."]},
}


def resolve(tmp_path: Path, name: str) -> Outcome:
    """The dns check of `name` against the zone, served on a loopback port."""
    zone_path = tmp_path / "zone.json"
    zone_path.write_text(json.dumps(ZONE))

    async def scenario() -> Outcome:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: UDPServer(Zone(str(zone_path))), local_addr=("127.0.0.1", 0)
        )
        try:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
            resolver.port = transport.get_extra_info("sockname")[1]
            resolver.lifetime = 3.0
            node = NodeResolver(resolver, None)
            return await dns_check.run(Probe(Endpoint(name, 443, "registry"), node))
        finally:
            transport.close()

    return asyncio.run(scenario())


def test_a_cname_chain_resolves(tmp_path: Path) -> None:
    """A CNAME to a name with an A record gives that address (the server works)."""
    outcome = resolve(tmp_path, "alias.test")
    assert outcome.ok and outcome.addresses == ("198.18.1.10",), outcome


def test_a_cname_loop_is_servfail_not_timeout(tmp_path: Path) -> None:
    """A CNAME loop answered at once is dns_servfail (what a recursive resolver answers for
    it), named as a loop, not dns_timeout."""
    for name in ("loop-a.test", "self.test"):
        outcome = resolve(tmp_path, name)
        assert outcome.reason is Reason.DNS_SERVFAIL, outcome
        assert "CNAME" in outcome.detail and "loop" in outcome.detail, outcome
