"""A token service for a lab docker-registry with `auth: token`, as distribution's token spec
describes it (docs "Token Authentication Specification" and "Token Authentication
Implementation"): `GET /token?service=...&scope=repository:<name>:<actions>` with the account as
HTTP Basic (or none, anonymous) answers `{"token", "access_token", "expires_in", "issued_at"}`,
a JWT signed RS256 whose `x5c` header carries the signing certificate (the registry's
`rootcertbundle` holds it) and whose `access` claim grants only what the account may do.

    python tokenserver.py CONFIG.json

CONFIG: {"listen": "ADDR:PORT", "cert": ..., "key": ... (TLS), "signing_key": ...,
"signing_cert": ..., "issuer": ..., "service": ..., "accounts": {"user": "password"},
"grants": {"user or *": {"repository": ["pull", "push"]}}}. "*" is what anyone gets, anonymous
included. A wrong password is 401 `{"details": "incorrect username or password"}`, as Docker Hub
answers; an unknown service 400. Every connection is bounded (30 s); SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets
import signal
import ssl
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HOLD_SECONDS = 30
TOKEN_SECONDS = 300


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenService:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        with open(config["signing_key"], "rb") as file:
            key = serialization.load_pem_private_key(file.read(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.key = key
        with open(config["signing_cert"], "rb") as file:
            cert = x509.load_pem_x509_certificate(file.read())
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

    def account(self, header: str | None) -> tuple[str | None, bool]:
        """(the account, whether the password is right); (None, True) when anonymous."""
        if not header:
            return None, True
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return "(not basic)", False
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "(malformed)", False
        expected = self.config["accounts"].get(user)
        return user, expected is not None and secrets.compare_digest(expected, password)

    def granted(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        """The access claim: each asked repository scope, cut down to what the account may do."""
        grants = self.config["grants"]
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            allowed = set(grants.get("*", {}).get(name, []))
            if user is not None:
                allowed |= set(grants.get(user, {}).get(name, []))
            wanted = [a for a in actions.split(",") if a in allowed]
            access.append({"type": "repository", "name": name, "actions": wanted})
        return access

    def token(self, user: str | None, scopes: list[str]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": self.config["issuer"],
            "sub": user or "",
            "aud": self.config["service"],
            "exp": now + TOKEN_SECONDS,
            "nbf": now - 60,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": self.granted(user, scopes),
        }
        signing_input = ".".join(
            b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def answer(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        url = urlsplit(target)
        if method != "GET" or url.path != "/token":
            return 404, b'{"details": "not found"}'
        query = parse_qs(url.query)
        if query.get("service", [""])[0] != self.config["service"]:
            return 400, b'{"details": "invalid service"}'
        user, valid = self.account(headers.get("authorization"))
        if not valid:
            return 401, b'{"details": "incorrect username or password"}'
        token = self.token(user, query.get("scope", []))
        issued = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body = {
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_SECONDS,
            "issued_at": issued,
        }
        return 200, json.dumps(body).encode()


async def serve(config: dict[str, Any]) -> None:
    service = TokenService(config)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["cert"], config["key"])

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HOLD_SECONDS):
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.setdefault(name.strip().lower(), value.strip())
                status, body = service.answer(method, target, headers)
                reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized"}.get(status, "Error")
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(1):
                    await writer.wait_closed()

    host, _, port = config["listen"].rpartition(":")
    server = await asyncio.start_server(connection, host, int(port), ssl=context)
    print(f"tokenserver: listening on {config['listen']}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as config_file:
        asyncio.run(serve(json.load(config_file)))
