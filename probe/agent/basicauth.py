"""HTTP basic auth for /metrics against bcrypt hashes, as Prometheus exporter-toolkit does it.

Rules, from exporter-toolkit's `web/handler.go` and RFC 7617:
- `Authorization: Basic base64(user ":" password)`; the user ends at the first colon.
- The password is checked with bcrypt against the user's hash (`$2a$`, `$2b$`, `$2y$`); an
  unknown user is checked against a dummy hash of the same cost, so the time taken does not
  tell which users exist.
- A bcrypt round costs tens of milliseconds (cost 10) to seconds (cost 18) of CPU, so it runs
  in a worker thread (pyca/bcrypt releases the GIL), one round at a time: a flood of wrong
  passwords costs at most one core and never blocks the event loop (probes and /healthz).
- A successful check is remembered per user as a salted SHA-256 of the password and the hash it
  matched, compared in constant time, so Prometheus's scrape every 15-60 s costs no bcrypt
  round. Only successes are remembered, one entry per configured user: what a client sends
  cannot grow the cache. A new hash for the user (a reload) no longer matches the entry.

No password, hash or digest is ever logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping

import bcrypt

BCRYPT_MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; pyca/bcrypt 5 refuses longer ones


class BasicAuth:
    """Checks `Authorization` headers against `users` (user name -> bcrypt hash)."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._salt = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}  # user -> digest of the password that matched
        self._dummy: bytes | None = None  # made on first need, at the users' highest cost
        self._one_round_at_a_time = asyncio.Lock()
        self.bcrypt_rounds = 0  # how many checks needed bcrypt (the rest hit the cache)

    async def allows(self, authorization: str | None) -> bool:
        credentials = _credentials(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        if len(password) > BCRYPT_MAX_PASSWORD_BYTES:
            return False
        if hashed is None:
            async with self._one_round_at_a_time:
                self.bcrypt_rounds += 1
                await asyncio.to_thread(_checkpw, password, await self._dummy_hash())
            return False
        digest = self._digest(user, password, hashed)
        remembered = self._verified.get(user)
        if remembered is not None and hmac.compare_digest(remembered, digest):
            return True
        async with self._one_round_at_a_time:
            self.bcrypt_rounds += 1
            matched = await asyncio.to_thread(_checkpw, password, hashed)
        if matched:
            self._verified[user] = digest
        return matched

    def _digest(self, user: str, password: bytes, hashed: bytes) -> bytes:
        name = user.encode()
        message = b"".join(len(part).to_bytes(4, "big") + part for part in (name, password, hashed))
        return hashlib.sha256(self._salt + message).digest()

    async def _dummy_hash(self) -> bytes:
        if self._dummy is None:
            cost = max((_cost(h) for h in self._users.values()), default=10)
            salt = bcrypt.gensalt(rounds=cost)
            self._dummy = await asyncio.to_thread(bcrypt.hashpw, b"not a password", salt)
        return self._dummy


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a hash the loader let through that bcrypt still refuses
        return False


def _cost(hashed: bytes) -> int:
    """The cost of a `$2y$10$...` hash (the loader checked the format)."""
    return int(hashed.split(b"$")[2])


def _credentials(authorization: str | None) -> tuple[str, bytes] | None:
    """(user, password) from `Basic base64(user:password)`, None when absent or malformed."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None
