"""An authoritative DNS server for the lab, each name's behaviour read from a JSON zone file.

Run as a script inside the lab's "net" namespace (like dnspython's tests/nanonameserver.py, built
on dnspython's message and wire handling, nothing of its resolver):

    python dnsserver.py ZONE.json ADDRESS [ADDRESS ...]

It answers on UDP and TCP port 53 of every ADDRESS. ZONE.json maps names to behaviour:

    {"registry.lab.test": {"A": ["198.18.1.10"], "AAAA": []},
     "noanswer.lab.test": {"TXT": ["exists, no address"]},
     "gone.lab.test": "nxdomain", "broken.lab.test": "servfail",
     "closed.lab.test": "refused", "black.lab.test": "drop"}

A name with records answers NOERROR with the records of the asked type (none: NOERROR with an
empty answer, "NODATA"); a name with a "CNAME" (`{"CNAME": ["target.lab.test."]}`) answers any
other type with its CNAME and, as an authoritative server does, the chain it leads to within the
zone, at most 16 links (a loop answers its first 16); `nxdomain`, `servfail`, `refused` answer
with that rcode; `drop` never answers. Names not in the file are NXDOMAIN. The file is reread
when its mtime changes, so the lab can add names while the server runs (write a new file and
rename it over the old one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
import sys
from typing import cast

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 5
MAX_CHAIN = 16  # CNAME links followed within the zone in one answer (BIND's limit)
_SOA = "ns.lab.test. hostmaster.lab.test. 1 60 60 600 5"
_RCODES = {
    "nxdomain": dns.rcode.NXDOMAIN,
    "servfail": dns.rcode.SERVFAIL,
    "refused": dns.rcode.REFUSED,
}


class Zone:
    """The names and behaviours of the zone file, reloaded when the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mtime_ns = -1
        self.names: dict[dns.name.Name, object] = {}

    def lookup(self, name: dns.name.Name) -> object:
        try:
            mtime_ns = os.stat(self.path).st_mtime_ns
        except OSError:
            mtime_ns = self.mtime_ns
        if mtime_ns != self.mtime_ns:
            with open(self.path, encoding="utf-8") as f:
                raw = json.load(f)
            self.names = {dns.name.from_text(k): v for k, v in raw.items()}
            self.mtime_ns = mtime_ns
        return self.names.get(name, "nxdomain")


def answer(zone: Zone, wire: bytes) -> bytes | None:
    """The wire answer to one query, or None to stay silent."""
    try:
        query = dns.message.from_wire(wire)
    except Exception:  # garbage in: a real server ignores it too
        return None
    if not query.question:
        return None
    question = query.question[0]
    behaviour = zone.lookup(question.name)
    if behaviour == "drop":
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA | dns.flags.RA
    if isinstance(behaviour, str):
        response.set_rcode(_RCODES.get(behaviour, dns.rcode.SERVFAIL))
        if behaviour == "nxdomain":
            response.authority.append(_soa())
        return response.to_wire()
    assert isinstance(behaviour, dict)
    name = question.name
    for _ in range(MAX_CHAIN):
        target = behaviour.get("CNAME") if isinstance(behaviour, dict) else None
        if not target or question.rdtype == dns.rdatatype.CNAME:
            break
        response.answer.append(
            dns.rrset.from_text_list(name, TTL, dns.rdataclass.IN, dns.rdatatype.CNAME, target)
        )
        name = dns.name.from_text(target[0])
        behaviour = zone.lookup(name)
    rdtype = dns.rdatatype.to_text(question.rdtype)
    values = behaviour.get(rdtype, []) if isinstance(behaviour, dict) else []
    if values:
        rrset = dns.rrset.from_text_list(
            name, TTL, dns.rdataclass.IN, question.rdtype, _quoted(question, values)
        )
        response.answer.append(rrset)
    elif not response.answer:
        response.authority.append(_soa())
    return response.to_wire()


def _quoted(question: dns.rrset.RRset, values: list[str]) -> list[str]:
    if question.rdtype == dns.rdatatype.TXT:
        return [json.dumps(v) for v in values]
    return values


def _soa() -> dns.rrset.RRset:
    return dns.rrset.from_text("lab.test.", TTL, "IN", "SOA", _SOA)


class UDPServer(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer(self.zone, data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve_tcp(zone: Zone, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(30):
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = answer(zone, await reader.readexactly(length))
                if reply is None:
                    continue  # "drop": hold the connection, never answer
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def main(zone_path: str, addresses: list[str]) -> None:
    zone = Zone(zone_path)
    zone.lookup(dns.name.root)  # fail at start, not on the first query, if the file is bad
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    transports = []
    servers = []
    for address in addresses:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: UDPServer(zone), local_addr=(address, 53)
        )
        transports.append(transport)
        servers.append(await asyncio.start_server(lambda r, w: serve_tcp(zone, r, w), address, 53))
    print("dnsserver: listening on", ", ".join(addresses), flush=True)
    await stop.wait()
    for transport in transports:
        transport.close()
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
