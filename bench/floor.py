"""The floor under the agent's CPU per probe: the same network work in CPython, and nothing else.

    python3 bench/floor.py --dns 198.18.0.53 --ca ca.crt --interval 2 NAME [NAME ...]

`bench/run.py --floor` runs it in the bench's node namespace, beside the agent and
blackbox_exporter, and measures it the same way. Each NAME is probed once per interval, each
at its own fixed offset, as the agent and the driver spread their probes, with exactly the
work on the wire of the other two and of the agent's `http` path: an A and an AAAA query to the
DNS server (one UDP socket each, dnspython's message to and from wire, nothing of its
resolver), a new TCP connection to the first A address, a TLS handshake verifying the chain
against the CA and the name, `GET /v2/` (User-Agent `floor/1`) and its answer read to the end
of the headers, then close. Through the same asyncio `sock_*` calls and `ssl.MemoryBIO` the
agent's connection uses. No report, no metrics, no HTTP server, no timeouts beyond one
`asyncio.timeout` per probe, no error handling beyond counting failures.

What it shows: how much of the agent's CPU per probe is CPython, OpenSSL and the kernel doing
the network work (which no refactor of the agent removes), and how much is the agent's own
logic. Runs until SIGTERM; prints probes and failures to stderr then.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import ssl
import sys
import time

import dns.message
import dns.rdatatype

READ = 65536
TIMEOUT = 1.5  # each probe, whole


async def query(
    loop: asyncio.AbstractEventLoop, dns_server: str, name: str, rdtype: int
) -> list[str]:
    message = dns.message.make_query(name, rdtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((dns_server, 53))
        await loop.sock_sendall(sock, message.to_wire())
        answer = dns.message.from_wire(await loop.sock_recv(sock, READ))
    return [rdata.to_text() for rrset in answer.answer for rdata in rrset if rrset.rdtype == rdtype]


async def probe(
    loop: asyncio.AbstractEventLoop, context: ssl.SSLContext, dns_server: str, name: str
) -> None:
    a, _aaaa = await asyncio.gather(
        query(loop, dns_server, name + ".", dns.rdatatype.A),
        query(loop, dns_server, name + ".", dns.rdatatype.AAAA),
    )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (a[0], 443))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    await loop.sock_sendall(sock, outgoing.read())
                incoming.write(await loop.sock_recv(sock, READ))
        tls.write(f"GET /v2/ HTTP/1.1\r\nHost: {name}\r\nUser-Agent: floor/1\r\n\r\n".encode())
        await loop.sock_sendall(sock, outgoing.read())
        head = b""
        while b"\r\n\r\n" not in head:
            try:
                head += tls.read(READ)
            except ssl.SSLWantReadError:
                data = await loop.sock_recv(sock, READ)
                if not data:
                    raise ConnectionError("closed before the answer's headers") from None
                incoming.write(data)
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 401")):
        raise ConnectionError(head[:40].decode(errors="replace"))


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    context = ssl.create_default_context(cafile=args.ca)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    counts = {"probes": 0, "failures": 0}

    async def one(name: str) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                await probe(loop, context, args.dns, name)
            counts["probes"] += 1
        except (OSError, TimeoutError, ConnectionError, ssl.SSLError, IndexError):
            counts["failures"] += 1

    async def every_interval(name: str, offset: float) -> None:
        next_at = time.monotonic() + offset
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += args.interval
            await one(name)

    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(every_interval(name, args.interval * i / len(args.names)))
            for i, name in enumerate(args.names)
        ]
        await stop.wait()
        for task in tasks:
            task.cancel()
    print(f"probes {counts['probes']} failures {counts['failures']}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dns", required=True, help="the DNS server's IPv4 address")
    parser.add_argument("--ca", required=True, help="the CA the registry's certificate is under")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("names", nargs="+")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
