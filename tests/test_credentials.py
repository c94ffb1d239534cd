"""Credentials go only over verified TLS (issue 11, item 1), on the node client every token and
rate-limit request goes through, against real servers on loopback.

The rule: a request marked as carrying credentials (Basic, an account's Bearer token, a refresh
token) is sent only over TLS that verified the server, or over plain HTTP when the registry is
configured as plain HTTP; never with skip_verify; and a redirect is never followed, so they
never go to another host. The servers record what reaches them: a withheld request reaches
nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from pathlib import Path

import pytest
from lab.pki import CertificateAuthority
from test_proxy_client import client, recording, server_context, serving, trusting

from probe.checks.client import CredentialsWithheld
from probe.node.trust import NodeTrust

SECRET = ("Authorization", "Basic bGFidXNlcjpzM2NyM3Q=")


def skip_verify_context(ca: CertificateAuthority) -> ssl.SSLContext:
    """The context the engine builds for a skip_verify host (the node trusts the CA too)."""
    return NodeTrust(ca.pem.decode(), ("ca.crt",)).context(skip_verify=True)


def test_credentials_are_withheld_over_skip_verify(tmp_path: Path) -> None:
    """skip_verify: a request with credentials is refused before connecting; without, it goes."""
    ca = CertificateAuthority("credentials CA")
    seen: list[bytes] = []

    async def scenario() -> None:
        tls = server_context(ca, tmp_path, "registry.test")
        async with serving(recording(seen), tls) as port:
            node = client({}, skip_verify_context(ca))
            url = f"https://registry.test:{port}/token"
            with pytest.raises(CredentialsWithheld, match=r"not verified \(skip_verify\)"):
                await node.request("GET", url, [SECRET], credentials=True)
            assert seen == []
            answer = await node.request("GET", url)  # the anonymous request still goes
            assert answer.status == 200

    asyncio.run(scenario())
    assert len(seen) == 1 and b"authorization" not in seen[0].lower()


def test_credentials_go_over_verified_tls(tmp_path: Path) -> None:
    """A verified connection to the token service carries the Authorization header."""
    ca = CertificateAuthority("credentials CA")
    seen: list[bytes] = []

    async def scenario() -> None:
        tls = server_context(ca, tmp_path, "registry.test")
        async with serving(recording(seen), tls) as port:
            node = client({}, trusting(ca))
            url = f"https://registry.test:{port}/token"
            answer = await node.request("GET", url, [SECRET], credentials=True)
            assert answer.status == 200

    asyncio.run(scenario())
    assert len(seen) == 1 and b"Authorization: Basic" in seen[0]


@pytest.mark.parametrize("plain_registry", [False, True])
def test_credentials_go_in_clear_text_only_to_a_plain_http_registry(plain_registry: bool) -> None:
    """http://: credentials are sent only when the registry itself is configured as plain HTTP."""
    ca = CertificateAuthority("credentials CA")
    seen: list[bytes] = []

    async def scenario() -> None:
        async with serving(recording(seen)) as port:
            node = dataclasses.replace(
                client({}, trusting(ca)), plain_http_credentials=plain_registry
            )
            url = f"http://registry.test:{port}/token"
            if plain_registry:
                await node.request("GET", url, [SECRET], credentials=True)
            else:
                with pytest.raises(CredentialsWithheld, match="clear text"):
                    await node.request("GET", url, [SECRET], credentials=True)

    asyncio.run(scenario())
    assert len(seen) == (1 if plain_registry else 0)


def test_a_redirect_is_never_followed(tmp_path: Path) -> None:
    """A token service's 307 to another host is the answer: nothing reaches the other host."""
    ca = CertificateAuthority("credentials CA")
    elsewhere: list[bytes] = []

    async def scenario() -> None:
        tls = server_context(ca, tmp_path, "registry.test")
        async with serving(recording(elsewhere), tls) as other:

            async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.readuntil(b"\r\n\r\n")
                location = f"https://proxy.test:{other}/token"
                writer.write(
                    f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                )
                await writer.drain()

            async with serving(redirect, tls) as port:
                node = client({}, trusting(ca))
                url = f"https://registry.test:{port}/token"
                answer = await node.request("GET", url, [SECRET], credentials=True)
                assert answer.status == 307

    asyncio.run(scenario())
    assert elsewhere == []
