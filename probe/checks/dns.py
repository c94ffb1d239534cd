"""The `dns` check: resolve an endpoint with the node's resolvers, never the agent's own.

dnspython reads the node's resolv.conf (nameservers, search, ndots, timeout, attempts) and the
A and AAAA questions go out together, as Go's resolver sends them. The mapping from dnspython's
exceptions to reasons is `classify`, most specific first.

An answer the resolver gave but that cannot be used is not a timeout: a CNAME chain that loops
or runs past dnspython's 16 links (`dns.message.ChainTooLong`; a recursive resolver answers
SERVFAIL for the same loop, and Go finds no address in it) and a malformed answer are
`dns_servfail`, with what was wrong in the detail. Only unanswered queries and network errors
on the way to the resolver are `dns_timeout`; a socket the agent could not open (out of file
descriptors) is one too, with a detail saying it is the agent's trouble
(`probe.checks.descriptors`).
"""

from __future__ import annotations

import asyncio
import time

import dns.asyncresolver
import dns.exception
import dns.message
import dns.rdatatype
import dns.resolver

from probe.checks import Outcome, Probe
from probe.checks.descriptors import log_shortage, shortage
from probe.config import is_ip_address
from probe.display import clip
from probe.reasons import Reason


async def run(probe: Probe) -> Outcome:
    host = probe.endpoint.host
    if is_ip_address(host):
        return Outcome(detail=f"{host} is an address", phases={"resolve": 0.0}, addresses=(host,))
    started = time.perf_counter()
    node = probe.resolver
    # Go's resolver (and so containerd) reads /etc/hosts before DNS ("files dns").
    pinned = node.pinned(host)
    if pinned:
        return Outcome(
            detail=f"{host} has {', '.join(pinned)} (from /etc/hosts)",
            phases={"resolve": time.perf_counter() - started},
            addresses=pinned,
        )
    if node.resolver is None:
        return Outcome.failed(
            Reason.DNS_NO_RESOLVERS, node.problem or "no resolver", phases={"resolve": 0.0}
        )
    servers = ", ".join(node.nameservers)
    results = await asyncio.gather(
        _query(node.resolver, host, dns.rdatatype.A),
        _query(node.resolver, host, dns.rdatatype.AAAA),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - started
    addresses: list[str] = []
    errors: list[Exception] = []
    for result in results:
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result  # cancellation and the like are not DNS answers
            errors.append(result)
        else:
            addresses.extend(result)
    phases = {"resolve": elapsed}
    if addresses:
        return Outcome(
            detail=f"{host} has {', '.join(addresses)} (from {servers})",
            phases=phases,
            addresses=tuple(addresses),
        )
    for error in _problems(errors):
        log_shortage(error, f"lookup {host}")
    reason, why = classify(errors)
    return Outcome.failed(reason, f"{host}: {why} (resolvers: {servers})", phases=phases)


async def _query(
    resolver: dns.asyncresolver.Resolver, host: str, rdtype: dns.rdatatype.RdataType
) -> list[str]:
    try:
        answer = await resolver.resolve(host, rdtype, search=True)
    except dns.resolver.NoAnswer:
        return []
    return [rdata.to_text() for rdata in answer]


def _problems(errors: list[Exception]) -> list[BaseException]:
    """The errors of a lookup, with those of each resolver a NoNameservers carries."""
    found: list[BaseException] = []
    for error in errors:
        found.append(error)
        if isinstance(error, dns.resolver.NoNameservers):
            found += [e[3] for e in error.kwargs.get("errors", []) if isinstance(e[3], Exception)]
    return found


def classify(errors: list[Exception]) -> tuple[Reason, str]:
    """The one reason for a failed resolution; NXDOMAIN wins, as Go reports `no such host`."""
    if not errors:
        return Reason.DNS_NO_ANSWER, "the name exists but has no A or AAAA record"
    if any(isinstance(e, dns.resolver.NXDOMAIN) for e in errors):
        return Reason.DNS_NXDOMAIN, "no such host (NXDOMAIN)"
    rcodes: set[str] = set()
    io_errors: list[str] = []
    chains: list[str] = []  # resolvers whose answer was a CNAME loop or too long a chain
    unusable: list[str] = []  # resolvers whose answer could not be parsed or used
    local: list[str] = []  # the agent could not open a socket: nothing was asked
    problems: list[tuple[str, object]] = [("", e) for e in errors]
    for error in errors:
        if isinstance(error, dns.resolver.NoNameservers):
            problems += [(str(e[0]), e[3]) for e in error.kwargs.get("errors", [])]
    for server, problem in problems:
        where = f"{clip(server)}: " if server else ""
        if isinstance(problem, dns.resolver.NoNameservers):
            continue  # its entries are in `problems`
        words = shortage(problem) if isinstance(problem, BaseException) else None
        if words is not None:
            local.append(words)
        elif isinstance(problem, str):
            rcodes.add(problem)
        elif isinstance(problem, dns.message.ChainTooLong):
            chains.append(server or "the resolver")
        elif isinstance(problem, dns.exception.Timeout | TimeoutError | OSError):
            if server:  # a timeout of the whole lookup is worded below
                io_errors.append(f"{where}{clip(str(problem))}")
        else:
            unusable.append(f"{where}{type(problem).__name__}: {clip(str(problem))}")
    if "SERVFAIL" in rcodes:
        return Reason.DNS_SERVFAIL, "the resolver failed (SERVFAIL)"
    if "REFUSED" in rcodes:
        return Reason.DNS_REFUSED, "the resolver refused the query (REFUSED)"
    if rcodes:
        return Reason.DNS_SERVFAIL, f"the resolver answered {', '.join(sorted(rcodes))}"
    if chains:
        return Reason.DNS_SERVFAIL, (
            f"the answer of {', '.join(sorted(set(chains)))} is a CNAME loop or a chain longer "
            "than 16 names: no address at its end (a recursive resolver answers SERVFAIL)"
        )
    if unusable:
        return Reason.DNS_SERVFAIL, f"the resolver's answer cannot be used ({'; '.join(unusable)})"
    if local:
        return Reason.DNS_TIMEOUT, local[0]
    if any(isinstance(e, dns.exception.Timeout | TimeoutError) for e in errors) or io_errors:
        why = "; ".join(io_errors) if io_errors else "no resolver answered in time"
        return Reason.DNS_TIMEOUT, why
    return Reason.DNS_SERVFAIL, clip("; ".join(str(e) for e in errors), 400)
