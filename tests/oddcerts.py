"""Real certificates with the odd fields `cryptography`'s builder refuses to write, and a TLS
registry on loopback that serves them.

`with_not_after` builds a leaf with the lab CA (tests/lab/pki.py), then rewrites the DER of its
`notAfter` with any ASN.1 time (a GeneralizedTime with fractional seconds, the year 0000, no
`Z`) and signs the new TBSCertificate with the CA's key: a certificate a hostile or broken
server could send, valid in every other respect. `TLSRegistry` answers `GET /v2/` like a
registry (401, Docker-Distribution-Api-Version) over TLS with a given chain, in a thread, for
a `check` run in a subprocess.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lab.pki import CertificateAuthority

REGISTRY_ANSWER = (
    b"HTTP/1.1 401 Unauthorized\r\n"
    b"Docker-Distribution-Api-Version: registry/2.0\r\n"
    b'WWW-Authenticate: Basic realm="registry"\r\n'
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


# --- DER, just enough to rewrite one field --------------------------------------------------


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at `at`."""
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[at : at + size], "big")
        at += size
    return tag, at, at + length


def _children(data: bytes) -> list[tuple[int, bytes]]:
    found, at = [], 0
    while at < len(data):
        tag, start, end = _tlv(data, at)
        found.append((tag, data[start:end]))
        at = end
    return found


def der(tag: int, content: bytes) -> bytes:
    """One DER element."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def generalized_time(text: str) -> bytes:
    return der(0x18, text.encode("ascii"))


def utc_time(text: str) -> bytes:
    return der(0x17, text.encode("ascii"))


def with_not_after(
    ca: CertificateAuthority, directory: Path, name: str, not_after: bytes
) -> tuple[Path, Path]:
    """A leaf for `name` whose notAfter is the DER time `not_after`, signed by `ca`; written
    as a chain (leaf, CA) and a key. Returns (chain file, key file)."""
    files = ca.issue(directory, name, [name])
    leaf = x509.load_pem_x509_certificates(files.cert.read_bytes())[0]
    [(_, certificate)] = _children(leaf.public_bytes(serialization.Encoding.DER))
    (_, tbs), algorithm, _signature = _children(certificate)
    fields = _children(tbs)
    not_before = _children(fields[4][1])[0]
    fields[4] = (0x30, der(*not_before) + not_after)  # validity: notBefore, notAfter
    new_tbs = der(0x30, b"".join(der(tag, content) for tag, content in fields))
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    signature = ca.key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    rewritten = der(0x30, new_tbs + der(*algorithm) + der(0x03, b"\x00" + signature))
    chain = directory / f"{name}-odd.crt"
    chain.write_text(ssl.DER_cert_to_PEM_cert(rewritten) + ca.pem.decode("ascii"))
    return chain, files.key


# --- a registry on loopback -------------------------------------------------------------------


class TLSRegistry:
    """Answers every connection's first request like a registry's `/v2/`, over TLS."""

    def __init__(self, chain: Path, key: Path) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(chain, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), raw:
                raw.settimeout(5)
                with self._context.wrap_socket(raw, server_side=True) as tls:
                    head = b""
                    while b"\r\n\r\n" not in head and len(head) < 8192:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    tls.sendall(REGISTRY_ANSWER)

    @contextlib.contextmanager
    def running(self) -> Iterator[TLSRegistry]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)
            self._listener.close()
