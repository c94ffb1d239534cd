"""The closed vocabulary shared by every view: check kinds, failure reasons, phases, root causes.

The values are public interface (SPEC.md, "Checks and failure reasons"): users' alert rules and
dashboards select on them, so they are never renamed.
"""

from enum import StrEnum


class CheckKind(StrEnum):
    DNS = "dns"
    TCP = "tcp"
    TLS = "tls"
    HTTP = "http"
    PROXY = "proxy"
    RATELIMIT = "ratelimit"
    # An image's manifest, asked for as the runtime resolves a reference (`check --image`,
    # `images:`): HEAD, the token it needs, and the index when the platform is checked.
    MANIFEST = "manifest"


class Reason(StrEnum):
    DNS_NXDOMAIN = "dns_nxdomain"
    DNS_NO_ANSWER = "dns_no_answer"
    DNS_SERVFAIL = "dns_servfail"
    DNS_REFUSED = "dns_refused"
    DNS_TIMEOUT = "dns_timeout"
    DNS_NO_RESOLVERS = "dns_no_resolvers"
    TCP_TIMEOUT = "tcp_timeout"
    TCP_REFUSED = "tcp_refused"
    TCP_UNREACHABLE = "tcp_unreachable"
    TLS_UNKNOWN_AUTHORITY = "tls_unknown_authority"
    TLS_EXPIRED = "tls_expired"
    TLS_NOT_YET_VALID = "tls_not_yet_valid"
    TLS_HOSTNAME_MISMATCH = "tls_hostname_mismatch"
    TLS_HANDSHAKE_TIMEOUT = "tls_handshake_timeout"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    PROXY_UNREACHABLE = "proxy_unreachable"
    PROXY_AUTH_REQUIRED = "proxy_auth_required"
    PROXY_DENIED = "proxy_denied"
    PROXY_UPSTREAM_FAILED = "proxy_upstream_failed"
    PROXY_MISMATCH = "proxy_mismatch"
    PROXY_RESTART_PENDING = "proxy_restart_pending"
    HTTP_TIMEOUT = "http_timeout"
    HTTP_UNEXPECTED_STATUS = "http_unexpected_status"
    NOT_A_REGISTRY = "not_a_registry"
    AUTH_FAILED = "auth_failed"
    RATE_LIMITED = "rate_limited"
    # Why one image cannot be pulled (SPEC.md, "Images"): only the image checks give these.
    IMAGE_NOT_FOUND = "image_not_found"
    IMAGE_AUTH_MISSING = "image_auth_missing"
    IMAGE_ACCESS_DENIED = "image_access_denied"
    IMAGE_PLATFORM_MISSING = "image_platform_missing"


# The phases of one probe, with blackbox_exporter's names so dashboards can sit side by side.
PHASES: tuple[str, ...] = ("resolve", "connect", "tls", "processing", "transfer")

# Root causes are numbered as in seed-imagepullbackoff.txt: 1 wrong image name or tag, 2 a
# private registry without an imagePullSecret, 3 expired or invalid credentials, 4 Docker Hub
# rate limiting, 5 network or firewall.
ROOT_CAUSE: dict[Reason, int] = {reason: 5 for reason in Reason} | {
    Reason.AUTH_FAILED: 3,
    Reason.RATE_LIMITED: 4,
    Reason.IMAGE_NOT_FOUND: 1,
    Reason.IMAGE_AUTH_MISSING: 2,
    Reason.IMAGE_ACCESS_DENIED: 3,
    Reason.IMAGE_PLATFORM_MISSING: 1,
}
