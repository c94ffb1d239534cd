"""How the node resolves names and what it trusts, read from files under `--host-root`.

Pure reading: nothing here touches the network. The engine builds resolvers and TLS contexts
from these values, so a check sees the node as its container runtime does, not as the agent's
own container does.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from probe.node.hostfs import host_path, read_host_text

RESOLV_CONF = "/etc/resolv.conf"
HOSTS_FILE = "/etc/hosts"

# Go's crypto/x509 (root_linux.go) reads the first bundle that exists, then every file of the
# certificate directories: containerd trusts exactly that set.
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

_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class TrustSources:
    """The PEM text the node trusts, and the files it came from (for advice)."""

    pem: str
    files: tuple[str, ...]


def read_node_trust(host_root: str) -> TrustSources:
    """The node's system trust store, as Go (and so containerd) loads it."""
    pem: list[str] = []
    files: list[str] = []
    for bundle in CA_BUNDLES:
        text = read_host_text(host_root, bundle)
        if text is not None and _PEM_BEGIN in text:
            pem.append(text)
            files.append(bundle)
            break
    seen: set[str] = set(pem)
    for directory in CA_DIRECTORIES:
        path = host_path(host_root, directory)
        try:
            names = sorted(os.listdir(path))
        except OSError:
            continue
        for name in names:
            text = read_host_text(host_root, f"{directory}/{name}")
            if text is None or _PEM_BEGIN not in text or text in seen:
                continue
            seen.add(text)
            pem.append(text)
            files.append(f"{directory}/{name}")
    return TrustSources(pem="\n".join(pem), files=tuple(files))


def containerd_ca_files(host_root: str, registry_host: str) -> tuple[Path, ...]:
    """CA files containerd trusts for one registry: `certs.d/<host[:port]>/*.crt`.

    containerd's hosts directory loads every `*.crt` there as a CA (and `*.cert`/`*.key` as
    client pairs), per its docs/hosts.md.
    """
    directory = host_path(host_root, f"{CONTAINERD_CERTS_D}/{registry_host}")
    try:
        return tuple(sorted(p for p in directory.glob("*.crt") if p.is_file()))
    except OSError:
        return ()


def build_ssl_context(
    trust: TrustSources,
    extra_ca_files: tuple[Path | str, ...] = (),
    insecure_skip_verify: bool = False,
) -> ssl.SSLContext:
    """A client context trusting the node's store plus a registry's own CAs.

    Raises OSError or ssl.SSLError when an extra CA file cannot be read or parsed.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # Go's default client minimum
    context.set_alpn_protocols(["http/1.1"])
    if trust.pem:
        context.load_verify_locations(cadata=trust.pem)
    for ca_file in extra_ca_files:
        context.load_verify_locations(cafile=str(ca_file))
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
