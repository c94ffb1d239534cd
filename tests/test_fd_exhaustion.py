"""Out of file descriptors is the agent's own trouble, never the network's (issue 11, item 9).

A subprocess lowers its open-files limit, takes every descriptor left, and runs the `tcp` and
`dns` checks against real servers on loopback (a listening socket; the lab's DNS server in
its event loop, asked once before so that dnspython is warmed up as in a running agent, and
once cold). The checks fail (they could not run), with the detail saying the agent ran out of
file descriptors and nothing about the network, and the agent logs it once as an error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

SCRIPT = """
import asyncio, json, os, resource, socket, sys
sys.path[:0] = [{root!r}, {tests!r}]
import dns.asyncresolver
from lab.dnsserver import UDPServer, Zone
from probe.checks import Endpoint, Probe
from probe.checks import dns as dns_check, tcp as tcp_check
from probe.node.resolver import NodeResolver

async def main():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UDPServer(Zone({zone!r})), local_addr=("127.0.0.1", 0)
    )
    listener = socket.create_server(("127.0.0.1", 0))
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = transport.get_extra_info("sockname")[1]
    resolver.lifetime = 3.0
    node = NodeResolver(resolver, None)
    endpoint = Endpoint("registry.test", listener.getsockname()[1], "registry")
    results = {{}}
    if {warm!r}:
        results["before"] = (await dns_check.run(Probe(endpoint, node))).detail
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    hog = []
    try:
        while True:
            hog.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    tcp = await tcp_check.run(Probe(endpoint, node, address="127.0.0.1"))
    looked_up = await dns_check.run(Probe(endpoint, node))
    for fd in hog:
        os.close(fd)
    results["tcp"] = [tcp.reason, tcp.detail]
    results["dns"] = [looked_up.reason, looked_up.detail]
    print(json.dumps(results))

asyncio.run(main())
"""


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_out_of_descriptors_is_the_agents_trouble(tmp_path: Path, warm: bool) -> None:
    """tcp and dns with no descriptor left: failed, with details that name the agent's limit
    and say nothing of the network; one error line in the log."""
    zone = tmp_path / "zone.json"
    zone.write_text(json.dumps({"registry.test.": {"A": ["127.0.0.1"]}}))
    script = SCRIPT.format(root=str(ROOT), tests=str(TESTS), zone=str(zone), warm=warm)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    if warm:
        assert "127.0.0.1" in results["before"], results  # the DNS server answers
    tcp_reason, tcp_detail = results["tcp"]
    dns_reason, dns_detail = results["dns"]
    assert tcp_reason == "tcp_unreachable", results
    assert dns_reason == "dns_timeout", results
    for detail in (tcp_detail, dns_detail):
        assert "the agent ran out of file descriptors" in detail, results
        assert "EMFILE" in detail and "nothing is known of the network" in detail, results
        assert "Too many open files" not in detail, results  # not a raw error
    assert done.stderr.count("the agent ran out of file descriptors") == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
