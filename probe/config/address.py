"""Addresses, parsed once: a registry (`scheme`, `host`, `port`), a listen address, a host:port.

Every other layer carries these values and never splits a string again. The rules:

- A registry is `HOST[:PORT]`, `https://HOST[:PORT]` or `http://HOST:PORT` (a plain-HTTP registry
  needs its port); a trailing `/` is forgiven (a common paste), a path, query, fragment or
  userinfo is an error. The host is a DNS name (RFC 1123 labels, `_` allowed as Go's
  `net.isDomainName` allows it), an IPv4 address, or an IPv6 address in brackets; it is lower
  case from here on. The registry's label (`registry` in metrics) is `host[:port]` as written.
- Docker Hub has several names (`docker.io`, `index.docker.io`, `registry-1.docker.io`); pulls go
  to `registry-1.docker.io` (containerd's `docker.io` host rewrite), so they are one registry.
- A listen address is `HOST:PORT`, `[V6]:PORT` or `:PORT` (every interface, as Go's
  `net.Listen` reads it); port 0 asks the kernel for a free port.

Errors are ValueError with a message that shows the input (escaped, secrets masked) and says
what was expected.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from probe.display import describe_input
from probe.redact import MASK, redact_url

DOCKER_HUB = "registry-1.docker.io"
# Names that mean Docker Hub; containerd rewrites docker.io to registry-1.docker.io. In the order
# `docker login` and Kubernetes secrets most often key its credentials.
DOCKER_HUB_ALIASES: tuple[str, ...] = ("index.docker.io", "docker.io", DOCKER_HUB)
DOCKER_HUB_BLOB_HOSTS: tuple[str, ...] = ("production.cloudfront.docker.com",)

REGISTRY_FORMS = "HOST[:PORT], http://HOST:PORT or https://HOST[:PORT]"
LISTEN_FORMS = "HOST:PORT, such as 0.0.0.0:9741 or [::]:9741"
HOST_PORT_FORMS = "HOST[:PORT]"
DEFAULT_PORTS = {"https": 443, "http": 80}

# One DNS label (RFC 1123), with `_` allowed as Go's net.isDomainName allows it.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True, order=True)
class HostPort:
    """A host (lower case; an IPv6 address without brackets) and a port, None when not given."""

    host: str
    port: int | None = None

    @property
    def bracketed(self) -> str:
        """The host as it stands before `:port`: IPv6 addresses in brackets."""
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def label(self) -> str:
        """`host[:port]` as written (IPv6 in brackets)."""
        return self.bracketed if self.port is None else f"{self.bracketed}:{self.port}"

    def with_default_port(self, port: int) -> HostPort:
        return self if self.port is not None else HostPort(self.host, port)

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, order=True)
class RegistryAddress:
    """Where a registry is: `https` (the default) or `http`, a host, and a port if written."""

    scheme: str
    host: str  # lower case; an IPv6 address without brackets
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> RegistryAddress:
        """`HOST[:PORT]`, `http://HOST:PORT` or `https://HOST[:PORT]`; else ValueError."""
        scheme = "https"
        rest = text
        if "://" in text:
            given, rest = text.split("://", 1)
            scheme = given.lower()
            if scheme not in DEFAULT_PORTS:
                raise ValueError(
                    f"{describe_input(redact_address(text))} has the scheme "
                    f"{describe_input(given)} (expected {REGISTRY_FORMS})"
                )
            rest = rest.removesuffix("/")  # https://registry.example.com/ is a common paste
        address = parse_host_port(rest, REGISTRY_FORMS, shown_as=text)
        if scheme == "http" and address.port is None:
            raise ValueError(
                f"{describe_input(text)} has no port: a plain-HTTP registry needs one "
                f"(expected {REGISTRY_FORMS})"
            )
        return cls(scheme, address.host, address.port)

    @classmethod
    def of(cls, host_port: HostPort, scheme: str = "https") -> RegistryAddress:
        return cls(scheme, host_port.host, host_port.port)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.scheme]

    @property
    def host_port(self) -> HostPort:
        return HostPort(self.host, self.port)

    @property
    def label(self) -> str:
        """`host[:port]` as configured: the `registry` label, and certs.d's directory name."""
        return self.host_port.label

    @property
    def authority(self) -> str:
        """`host:port`, the port always written: an endpoint's name."""
        return f"{self.host_port.bracketed}:{self.effective_port}"

    @property
    def url(self) -> str:
        """`https://host[:port]`, as a proxy decision or a message names the registry."""
        return f"{self.scheme}://{self.label}"

    @property
    def shown(self) -> str:
        """The label, with `http://` in front for a plain-HTTP registry."""
        return self.label if self.tls else self.url

    @property
    def is_docker_hub(self) -> bool:
        return self.host in DOCKER_HUB_ALIASES and self.effective_port == 443 and self.tls

    @property
    def pull_address(self) -> RegistryAddress:
        """Where pulls go: every Docker Hub name is registry-1.docker.io (containerd's rewrite)."""
        return RegistryAddress("https", DOCKER_HUB) if self.is_docker_hub else self

    @property
    def identity(self) -> tuple[str, int]:
        """What makes two names one registry: the host pulls go to and its port."""
        pull = self.pull_address
        return pull.host, pull.effective_port

    def __str__(self) -> str:
        return self.shown


def parse_host_port(
    text: str,
    expected: str = HOST_PORT_FORMS,
    *,
    port_required: bool = False,
    shown_as: str | None = None,
) -> HostPort:
    """`host[:port]` or `[v6][:port]`; else ValueError. The port is 1 to 65535."""
    shown = describe_input(redact_address(shown_as if shown_as is not None else text))
    if not text:
        raise ValueError(f"{shown} has no host (expected {expected})")
    if "@" in text:
        raise ValueError(f"{shown} contains credentials (expected {expected}; no user or password)")
    if "://" in text:
        raise ValueError(f"{shown} has a scheme (expected {expected})")
    if "?" in text:
        raise ValueError(f"{shown} has a query (expected {expected})")
    for separator, what in (("/", "a path"), ("#", "a fragment")):
        if separator in text:
            part = describe_input(text[text.index(separator) :])
            raise ValueError(f"{shown} has {what} {part} (expected {expected})")
    host, port_text = _split(text, shown, expected)
    port = None
    if port_text is not None:
        port = _port(port_text, shown, expected, lowest=1)
    elif port_required:
        raise ValueError(f"{shown} has no port (expected {expected})")
    return HostPort(host, port)


def parse_listen(text: str) -> HostPort:
    """A listen address: `HOST:PORT`, `[V6]:PORT` or `:PORT` (every interface); else ValueError.

    The host of `:PORT` is `0.0.0.0`; port 0 lets the kernel choose.
    """
    shown = describe_input(text)
    if text.startswith(":") and text.count(":") == 1:
        return HostPort("0.0.0.0", _port(text[1:], shown, LISTEN_FORMS, lowest=0))  # noqa: S104 - every interface is what `:PORT` asks for
    for separator, what in (("/", "a path"), ("@", "credentials"), ("?", "a query")):
        if separator in text:
            raise ValueError(f"{shown} has {what} (expected {LISTEN_FORMS})")
    host, port_text = _split(text, shown, LISTEN_FORMS)
    if port_text is None:
        raise ValueError(f"{shown} has no port (expected {LISTEN_FORMS})")
    return HostPort(host, _port(port_text, shown, LISTEN_FORMS, lowest=0))


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address as Python reads one (an IPv6 zone `%eth0` included)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def redact_address(text: str) -> str:
    """An address fit for a message: userinfo masked as everywhere (SPEC: secrets), and a query
    hidden whole, since registry URLs carry tokens there (`?token=...`)."""
    if "?" in text:
        text = text[: text.index("?")] + "?" + MASK
    return redact_url(text)


def _split(text: str, shown: str, expected: str) -> tuple[str, str | None]:
    """(host, port text or None), the host checked and lower-cased."""
    if text.startswith("["):
        host, bracket, after = text[1:].partition("]")
        try:
            if not bracket:
                raise ValueError
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"{shown} has no valid IPv6 address in brackets (expected {expected})"
            ) from None
        if after and not after.startswith(":"):
            raise ValueError(f"{shown} has text after the address (expected {expected})")
        return host.lower(), (after[1:] if after else None)
    if text.count(":") > 1:
        raise ValueError(
            f"{shown} has more than one colon: an IPv6 address goes in brackets, "
            f"as [::1]:5000 (expected {expected})"
        )
    host, colon, after = text.partition(":")
    host = host.lower()
    _check_hostname(host, shown, expected)
    return host, (after if colon else None)


def _port(text: str, shown: str, expected: str, *, lowest: int) -> int:
    digits = text.isascii() and text.isdigit() and len(text) <= 5
    if not (digits and lowest <= int(text) < 65536):
        raise ValueError(
            f"{shown} has the port {describe_input(text)}, not one from {lowest} to 65535 "
            f"(expected {expected})"
        )
    return int(text)


def _check_hostname(hostname: str, shown: str, expected: str) -> None:
    if not hostname:
        raise ValueError(f"{shown} has no host (expected {expected})")
    labels = hostname.split(".")
    if all(label.isascii() and label.isdigit() for label in labels):
        # All digits is meant as an IPv4 address (999.1.1.1 is a typo, not a name).
        try:
            ipaddress.IPv4Address(hostname)
        except ValueError:
            raise ValueError(f"{shown} is not a valid IPv4 address (expected {expected})") from None
        return
    if len(hostname) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{shown} is not a valid host name or IP address (expected {expected})")
