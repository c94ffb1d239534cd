"""What stock clients (dnspython, Python's ssl) see of the lab, from inside the node namespace.

Run as a script: `python selfcheck.py CA_BUNDLE DNS_SERVER NAME NAME=[http://]ADDRESS[:PORT] ...`;
a bare NAME is a DNS query for A (`NAME/AAAA` for AAAA), NAME=ADDRESS a connection (TLS unless
`http://`; an IPv6 ADDRESS in brackets, `[2001:2:0:1::70]:443`). Prints one JSON
object `{"dns": {name: outcome}, "conn": {name: outcome}}`. It lets the lab's own tests tell a
broken lab from a broken probe: the outcomes are coarse words (`NOERROR:198.18.1.10`,
`timeout`, `refused`, `unreachable`, `cert:expired`, `http:503`, ...), every step bounded by 1 s.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

STEP_SECONDS = 1.0


def dns_outcome(server: str, name: str, rdtype: str = "A") -> str:
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    try:
        reply = dns.query.udp(query, server, timeout=STEP_SECONDS)
    except dns.exception.Timeout:
        return "timeout"
    addresses = sorted(rr.to_text() for rrset in reply.answer for rr in rrset)
    return f"{dns.rcode.to_text(reply.rcode())}:{','.join(addresses)}"


def conn_outcome(cafile: str, name: str, address: str, port: int, plain: bool) -> str:
    try:
        raw = socket.create_connection((address, port), timeout=STEP_SECONDS)
    except TimeoutError:
        return "tcp:timeout"
    except ConnectionRefusedError:
        return "tcp:refused"
    except OSError:
        return "tcp:unreachable"
    if plain:
        with raw:
            return http_outcome(raw, name)
    context = ssl.create_default_context(cafile=cafile)
    try:
        tls = context.wrap_socket(raw, server_hostname=name)
    except ssl.SSLCertVerificationError as e:
        raw.close()
        return f"cert:{e.verify_message}"
    except ssl.SSLError:
        raw.close()
        return "tls:failed"
    except TimeoutError:
        raw.close()
        return "tls:timeout"
    with tls:
        return http_outcome(tls, name)


def http_outcome(sock: socket.socket, name: str) -> str:
    try:
        sock.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(4096).decode(errors="replace")
    except TimeoutError:
        return "http:timeout"
    status = head.split(" ", 2)[1] if head.startswith("HTTP/") else "?"
    registry = "docker-distribution-api-version" in head.lower()
    return f"http:{status}{':registry' if registry else ''}"


def split_target(target: str) -> tuple[str, int]:
    """`198.18.1.10:443`, `[2001:2:0:1::70]:443` or an address alone (port 443)."""
    if target.startswith("["):
        address, _, rest = target[1:].partition("]")
        return address, int(rest.removeprefix(":") or 443)
    address, _, port = target.partition(":")
    return address, int(port or 443)


def main(argv: list[str]) -> None:
    cafile, server, *pairs = argv
    report: dict[str, dict[str, str]] = {"dns": {}, "conn": {}}
    for pair in pairs:
        name, _, target = pair.partition("=")
        if target:
            plain = target.startswith("http://")
            address, port = split_target(target.removeprefix("http://"))
            report["conn"][pair] = conn_outcome(cafile, name, address, port, plain)
        else:
            query, _, rdtype = name.partition("/")
            report["dns"][name] = dns_outcome(server, query, rdtype or "A")
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
