"""What the node trusts: its CA store, as Go (and so containerd) loads it, and the TLS contexts
built from it.

Go's crypto/x509 (root_linux.go) reads the first CA bundle that exists, then every file of the
certificate directories: containerd trusts exactly that set, plus a registry's own CAs from its
hosts directory (`certs.d/<host[:port]>/`). Reading is pure; contexts are built at most once per
set of CAs and reused for as long as the node view lives.
"""

from __future__ import annotations

import hashlib
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field

from probe.node.hostfs import HostFS

CA_BUNDLES: tuple[str, ...] = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Gentoo, Arch
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL 6
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/pki/tls/cacert.pem",  # OpenELEC
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # CentOS, RHEL 7
    "/etc/ssl/cert.pem",  # Alpine
)
CA_DIRECTORIES: tuple[str, ...] = ("/etc/ssl/certs", "/etc/pki/tls/certs")
CONTAINERD_CERTS_D = "/etc/containerd/certs.d"
MAX_CONTEXTS = 256  # one per registry's set of CAs; bounded whatever the node's files say

PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class CAFile:
    """A CA certificate file and its PEM text; `name` is how a report names it."""

    name: str
    pem: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.pem.encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class NodeTrust:
    """The PEM text the node trusts and the files it came from; builds and keeps TLS contexts."""

    pem: str
    files: tuple[str, ...]
    _contexts: OrderedDict[tuple[object, ...], ssl.SSLContext] = field(
        default_factory=OrderedDict, repr=False
    )

    def context(self, extra: tuple[CAFile, ...] = (), skip_verify: bool = False) -> ssl.SSLContext:
        """A client context trusting the node's store plus `extra`; built once per CA set.

        Raises ssl.SSLError when an extra CA cannot be parsed.
        """
        key = (skip_verify, *(ca.digest for ca in extra))
        context = self._contexts.get(key)
        if context is None:
            context = build_ssl_context(self.pem, extra, skip_verify)
            self._contexts[key] = context
            while len(self._contexts) > MAX_CONTEXTS:
                self._contexts.popitem(last=False)
        else:
            self._contexts.move_to_end(key)
        return context


def read_trust(fs: HostFS) -> NodeTrust:
    """The node's system trust store, as Go (and so containerd) loads it."""
    pem: list[str] = []
    files: list[str] = []
    for bundle in CA_BUNDLES:
        text = fs.read_text(bundle)
        if text is not None and PEM_BEGIN in text:
            pem.append(text)
            files.append(bundle)
            break
    seen: set[str] = set(pem)
    for directory in CA_DIRECTORIES:
        for path in fs.files(directory, "*"):
            text = fs.read_text(path)
            if text is None or PEM_BEGIN not in text or text in seen:
                continue
            seen.add(text)
            pem.append(text)
            files.append(path)
    return NodeTrust(pem="\n".join(pem), files=tuple(files))


def read_ca_files(fs: HostFS, paths: tuple[str, ...]) -> tuple[CAFile, ...]:
    """CA files the node names (hosts.toml `ca`, certs.d), read inside the host root."""
    found: list[CAFile] = []
    for path in paths:
        text = fs.read_text(path)
        if text is not None:
            found.append(CAFile(path, text))
    return tuple(found)


def certs_d_ca_files(fs: HostFS, registry_label: str) -> tuple[str, ...]:
    """CA files containerd trusts for one registry: `certs.d/<host[:port]>/*.crt`.

    containerd's hosts directory loads every `*.crt` there as a CA (and `*.cert`/`*.key` as
    client pairs), per its docs/hosts.md.
    """
    return tuple(fs.files(f"{CONTAINERD_CERTS_D}/{registry_label}", "*.crt"))


def build_ssl_context(
    pem: str, extra: tuple[CAFile, ...] = (), skip_verify: bool = False
) -> ssl.SSLContext:
    """A client context trusting `pem` plus extra CAs, as Go's TLS client would verify.

    Raises ssl.SSLError when an extra CA cannot be parsed.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # Go's default client minimum
    context.set_alpn_protocols(["http/1.1"])
    if pem:
        context.load_verify_locations(cadata=pem)
    for ca in extra:
        try:
            context.load_verify_locations(cadata=ca.pem)
        except (ssl.SSLError, ValueError) as error:
            raise ssl.SSLError(f"{ca.name} is not a PEM certificate ({error})") from None
    if skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
