"""The fix, in words, for each reason: what a person on the node should look at.

The root causes and their fixes follow seed-imagepullbackoff.txt (1 wrong image name or tag,
2 a private registry without an imagePullSecret, 3 expired or invalid credentials, 4 Docker Hub
rate limiting, 5 network or firewall); the words name the concrete thing to change (which tag,
which secret, resolver, firewall, security group, VPC endpoint, CA, proxy drop-in).
"""

from __future__ import annotations

from probe.images.result import SANDBOX, ImageReport
from probe.reasons import ROOT_CAUSE, CheckKind, Reason
from probe.result import CheckResult, RegistryReport

CAUSE_TITLE = {
    1: "wrong image name or tag",
    2: "private registry without an imagePullSecret",
    3: "expired or invalid credentials",
    4: "Docker Hub rate limiting",
    5: "network or firewall blocking the registry",
}

_ADVICE: dict[Reason, str] = {
    Reason.DNS_NXDOMAIN: (
        "The node's resolvers say {host} does not exist. Check the name for a typo, then the "
        "resolvers in /etc/resolv.conf: a split-horizon or private DNS zone (Route 53 private "
        "hosted zone, a VPC endpoint's private DNS name not enabled for this VPC, CoreDNS stub "
        "domains do not apply: containerd uses the node's resolv.conf) may not know it."
    ),
    Reason.DNS_NO_ANSWER: (
        "{host} exists but has no A or AAAA record on the node's resolvers. Check the DNS "
        "zone's records, and an interface VPC endpoint whose private DNS is only half set up."
    ),
    Reason.DNS_SERVFAIL: (
        "The node's resolver failed to resolve {host} (SERVFAIL): the resolver or its upstream "
        "is broken or DNSSEC validation fails. Check the resolvers in /etc/resolv.conf "
        "(`resolvectl status` with systemd-resolved) and their forwarders."
    ),
    Reason.DNS_REFUSED: (
        "The node's resolver refused to resolve {host} (REFUSED): it does not serve this node "
        "or this zone. Check that /etc/resolv.conf names the VPC or corporate resolver, and the "
        "resolver's allow-list (allow-query / access-control) for the node's subnet."
    ),
    Reason.DNS_TIMEOUT: (
        "No resolver in /etc/resolv.conf answered for {host}. Allow UDP and TCP port 53 from "
        "the node to its resolvers (node firewall, security group, network ACL) and check the "
        "resolvers are up (`resolvectl status`, systemd-resolved's upstream servers)."
    ),
    Reason.DNS_NO_RESOLVERS: (
        "The node's /etc/resolv.conf names no nameserver, so containerd cannot resolve {host}. "
        "Fix the node's DNS configuration (DHCP options, netplan, systemd-resolved's "
        "stub-resolv.conf link)."
    ),
    Reason.TCP_TIMEOUT: (
        "Connections from the node to {endpoint} are silently dropped. Allow outbound TCP "
        "{port} to it: the node's firewall (nftables/iptables), its security group's egress "
        "rules, the subnet's network ACL and route table (NAT gateway). For a cloud registry "
        "without internet egress, add the VPC endpoint (ECR: com.amazonaws.<region>.ecr.dkr "
        "and ecr.api, plus the S3 gateway endpoint for layers). If egress must go through a "
        "proxy, configure it for containerd (a systemd drop-in with HTTPS_PROXY)."
    ),
    Reason.TCP_REFUSED: (
        "{endpoint} actively refuses connections from the node: nothing listens on port {port} "
        "there, or a firewall rejects the traffic. Check the registry's address and port, the "
        "load balancer's listeners, and reject rules in the node's or network's firewall."
    ),
    Reason.TCP_UNREACHABLE: (
        "The node has no route to {endpoint} (host or network unreachable). Check the node's "
        "routes and the subnet's route table (NAT gateway, transit gateway, VPN), and firewall "
        "rules that answer with ICMP unreachable."
    ),
    Reason.TLS_UNKNOWN_AUTHORITY: (
        "The certificate served for {host} is not signed by a CA the node trusts. For a "
        "private registry, install its CA on the node (/etc/containerd/certs.d/{hostport}/"
        "ca.crt, or the system store then update-ca-certificates). If the issuer is a "
        "corporate proxy or firewall (TLS interception), exempt the registry from inspection "
        "or add that CA the same way."
    ),
    Reason.TLS_EXPIRED: (
        "A certificate in the chain served for {host} has expired. Renew the registry's "
        "certificate (or its intermediate); if it looks valid elsewhere, check the node's "
        "clock (chronyc tracking / timedatectl)."
    ),
    Reason.TLS_NOT_YET_VALID: (
        "The certificate served for {host} is not valid yet: usually the node's clock is "
        "behind. Check time sync on the node (chronyc tracking / timedatectl, NTP reachable)."
    ),
    Reason.TLS_HOSTNAME_MISMATCH: (
        "The certificate served at {endpoint} is not issued for {host}. The name resolves to "
        "the wrong server, the load balancer serves another certificate, or a proxy "
        "intercepts: fix the certificate's names or the DNS record."
    ),
    Reason.TLS_HANDSHAKE_TIMEOUT: (
        "TCP to {endpoint} connects but the TLS handshake never completes: a middlebox (proxy, "
        "firewall doing inspection, MTU black hole) stalls it. Check for TLS inspection and "
        "path MTU issues (large ServerHello packets dropped)."
    ),
    Reason.TLS_HANDSHAKE_FAILED: (
        "The TLS handshake with {endpoint} fails: the server is not speaking TLS on this port, "
        "or offers no protocol or cipher the node accepts (TLS 1.2+), or something resets it. "
        "Check the port, the server's TLS settings, and firewalls that inspect TLS."
    ),
    Reason.PROXY_UNREACHABLE: (
        "The proxy the node's runtime is configured with cannot be reached. Check the proxy's "
        "address in the runtime's systemd drop-in and that the proxy is up and allowed."
    ),
    Reason.PROXY_AUTH_REQUIRED: (
        "The proxy on the way to {host} wants credentials (407). Put them in the runtime's "
        "HTTPS_PROXY URL (systemd drop-in) or have the proxy allow the node's address."
    ),
    Reason.PROXY_DENIED: (
        "The proxy answers but opens no tunnel to {endpoint}. Allow the registry (and its auth "
        "and blob hosts) in the proxy's ACL (squid http_access, dante socks pass), or add it to "
        "NO_PROXY if it is reachable directly. If the detail says the answer was not HTTP (or "
        "not SOCKS), the proxy URL names the wrong kind of proxy or port: fix its scheme or port "
        "in the runtime's drop-in."
    ),
    Reason.PROXY_UPSTREAM_FAILED: (
        "The proxy takes the request but cannot reach {endpoint} itself (squid's 503, "
        "tinyproxy's 500, a SOCKS server failure): the node's side is fine. On the proxy host, "
        "check that it resolves {host} (its DNS servers) and that its own egress allows TCP "
        "{port} to the registry and its auth and blob hosts (its firewall, security group, NAT "
        "gateway or parent proxy); the proxy's log names the failure. Its ACL is not the cause."
    ),
    Reason.PROXY_MISMATCH: (
        "The node's container runtimes reach {host} by different routes, so what works with "
        "`docker pull` may fail for kubelet (or the other way round). Proxy settings belong "
        "where the pulls happen: containerd (or CRI-O)."
    ),
    Reason.PROXY_RESTART_PENDING: (
        "The runtime's unit files name other proxy settings than the running process uses: "
        "they take effect only after `systemctl daemon-reload` and a restart of it."
    ),
    Reason.HTTP_TIMEOUT: (
        "{endpoint} accepts the connection and the TLS handshake, then never answers "
        "GET /v2/. The registry (or a proxy in front of it) is overloaded or stuck: check the "
        "registry's health and any load balancer or proxy on the path."
    ),
    Reason.HTTP_UNEXPECTED_STATUS: (
        "The registry at {endpoint} answers GET /v2/ with a status a healthy registry does not "
        "give: it is failing or in maintenance. Check the registry's status page or logs."
    ),
    Reason.NOT_A_REGISTRY: (
        "Something that is not a registry answers at {endpoint}: a captive portal, a proxy's "
        "or firewall's block page, or another service. Check where {host} resolves and "
        "whether a transparent proxy or web filter intercepts the node's traffic."
    ),
    Reason.AUTH_FAILED: (
        "The credentials for {host} are rejected by its token service (root cause 3): the pull "
        "secret is expired or wrong. Recreate it (kubectl create secret docker-registry ...), "
        "and for ECR refresh tokens automatically (IRSA, or a CronJob every 8 to 10 hours)."
    ),
    Reason.RATE_LIMITED: (
        "Docker Hub's pull rate limit is exhausted for this node's egress address (root cause "
        "4). Authenticate pulls with a Docker Hub account (imagePullSecrets), and mirror the "
        "images you need to your own registry or a pull-through cache."
    ),
    # The image reasons, for a single check; an image's report has fuller words (image_advice).
    Reason.IMAGE_NOT_FOUND: (
        "{endpoint} does not have this image (404: the repository or the tag is unknown): check "
        "the image's name and tag in the pod spec (root cause 1)."
    ),
    Reason.IMAGE_AUTH_MISSING: (
        "{host} wants credentials for this image and none were offered (root cause 2): create a "
        "pull secret (kubectl create secret docker-registry ...) and reference it in the pod's "
        "imagePullSecrets."
    ),
    Reason.IMAGE_ACCESS_DENIED: (
        "The credentials are valid at {host} but may not pull this repository (root cause 3): "
        "grant the account read access, or use an account that has it."
    ),
    Reason.IMAGE_PLATFORM_MISSING: (
        "The image on {host} is not built for this node's platform (root cause 1): use a "
        "multi-platform tag, or keep the workload off these nodes (nodeSelector "
        "kubernetes.io/arch)."
    ),
}


_DETAIL_IS_THE_FIX = frozenset({Reason.PROXY_MISMATCH, Reason.PROXY_RESTART_PENDING})
_PENDING = "and a restart is pending: "  # how the engine adds a pending restart to a failure

# A tls_* reason on the proxy check is about an https proxy's certificate, not the registry's.
_PROXY_TLS = (
    "The HTTPS proxy's TLS fails (the detail names the proxy and why). containerd verifies the "
    "proxy with the trust it uses for {host}: the node's CA store plus "
    "/etc/containerd/certs.d/{hostport}/. Install the proxy's CA there or in the system store, "
    "renew the proxy's certificate, name the proxy by a name its certificate carries, or check "
    "the node's clock, as the detail says."
)


def advice_for(result: CheckResult) -> str:
    """The fix for one failed check, with its endpoint filled in."""
    assert result.reason is not None  # noqa: S101 - advice is only asked for failures
    endpoint = result.endpoint
    host, port = endpoint.bracketed, endpoint.port
    hostport = host if port == 443 else endpoint.label
    template = _ADVICE[result.reason]
    if result.check == CheckKind.PROXY and result.reason.value.startswith("tls_"):
        template = _PROXY_TLS
    advice = template.format(host=host, port=port, endpoint=endpoint.label, hostport=hostport)
    if result.reason in _DETAIL_IS_THE_FIX:
        # The check's detail names the runtimes, the files and the command: the fix itself.
        advice = f"{advice} {result.detail}"
    elif _PENDING in result.detail:
        # The unit files may already hold the fix: the running process has not read them.
        advice = f"{advice} Before changing anything: {result.detail.split(_PENDING, 1)[1]}"
    return advice


def report_advice(report: RegistryReport) -> str:
    """The fix for a registry: its first failure's advice, or an empty string when it is fine."""
    failure = report.first_failure
    if failure is None:
        return ""
    return advice_for(failure)


def cause_line(reason: Reason) -> str:
    cause = ROOT_CAUSE[reason]
    return f"root cause {cause}: {CAUSE_TITLE[cause]}"


# --- images (check --image, images:) -----------------------------------------------------------

_IMAGE_ADVICE: dict[Reason, str] = {
    Reason.IMAGE_NOT_FOUND: (
        "No host of {registry} has {reference}: the name or the tag is wrong, or the image was "
        "never pushed (root cause 1). Compare the pod's image (`kubectl get pod <pod> -o "
        "jsonpath='{{.spec.containers[*].image}}'`) with what the registry holds: list the "
        "repository's tags where the registry allows it ({tags}), then fix the tag in the "
        "workload (`kubectl set image deployment/<name> <container>=<image:tag>`)."
    ),
    Reason.IMAGE_AUTH_MISSING: (
        "{registry} wants credentials to pull {repository} and none were offered (root cause 2). "
        "Create a pull secret for it (`kubectl create secret docker-registry regcred "
        "--docker-server={server} --docker-username=<user> --docker-password=<token> -n "
        "<namespace>`), reference it in the pod's `imagePullSecrets` (or add it to the "
        "namespace's default service account), and check it from the node with "
        "`registry-probe check --image {image} --pull-secret <the .dockerconfigjson>`."
    ),
    Reason.AUTH_FAILED: (
        "The credentials offered for {registry} ({credentials}) are rejected (root cause 3): the "
        "pull secret is expired, revoked or mistyped. Recreate it with a valid token "
        "(`kubectl delete secret <name>`, then `kubectl create secret docker-registry <name> "
        "--docker-server={server} ...`) and check it again with `registry-probe check --image "
        "{image} --pull-secret <the .dockerconfigjson>`."
    ),
    Reason.IMAGE_ACCESS_DENIED: (
        "The credentials ({credentials}) are valid at {registry} but may not pull {repository} "
        "(root cause 3): the account has no read access to that repository (another "
        "organisation or project, a repository policy). Grant it pull access, or use the secret "
        "of an account that has it."
    ),
    Reason.IMAGE_PLATFORM_MISSING: (
        "{reference} is published for other platforms only, not this node's {platform} (root "
        'cause 1): its pods fail here with "no match for platform in manifest". Use a tag built '
        "for {platform} (a multi-platform build), or keep the workload off these nodes "
        "(nodeSelector kubernetes.io/arch)."
    ),
}

_DOCKER_HUB_MISSING = (
    " On Docker Hub a repository that does not exist answers exactly like a private one: check "
    "the name first (official images are library/<name>, others <account>/<name>)."
)
_ECR_ADVICE = (
    " This is Amazon ECR: a pull secret made with `aws ecr get-login-password` holds a token "
    "that expires after 12 hours. Refresh it on a schedule (a CronJob every 8 to 10 hours) or, "
    "better, let the kubelet get tokens itself (the ECR credential provider, IRSA / EKS Pod "
    "Identity on EKS) instead of a static secret."
)
_SHORT_LIVED = (
    " The account {user} is a short-lived token's: such a secret expires within hours "
    "(Google's oauth2accesstoken: 1 hour; Azure's token user 00000000-0000-0000-0000-000000000000: "
    "3 hours); use the cloud's credential provider instead of a static secret."
)
_SHORT_LIVED_USERS = ("oauth2accesstoken", "00000000-0000-0000-0000-000000000000")
_SANDBOX = (
    " This is the node's sandbox (pause) image ({source}): while it cannot be pulled, no new "
    "pod starts on this node."
)


def image_advice(report: ImageReport) -> str:
    """The fix for an image that would not pull, or an empty string when it would."""
    if report.reason is None:
        return ""
    if not report.registry:  # the runtime cannot parse the reference
        advice = (
            f"The runtime cannot parse {report.image}: {report.detail.split(': ', 1)[-1]}. "
            "Fix the reference in the pod spec (root cause 1)."
        )
    elif report.reason in _IMAGE_ADVICE:
        advice = _IMAGE_ADVICE[report.reason].format(**_image_words(report))
        if report.docker_hub and report.reason in (
            Reason.IMAGE_AUTH_MISSING,
            Reason.IMAGE_ACCESS_DENIED,
        ):
            advice += _DOCKER_HUB_MISSING
        if report.reason == Reason.AUTH_FAILED:
            user = _user_of(report.credentials)
            if report.ecr or user == "AWS":
                advice += _ECR_ADVICE
            elif user in _SHORT_LIVED_USERS:
                advice += _SHORT_LIVED.format(user=user)
    else:
        failure = report.failure
        advice = advice_for(failure) if failure is not None else report.detail
    if report.role == SANDBOX:
        advice += _SANDBOX.format(source=report.source)
    return advice


def _user_of(credentials: str | None) -> str | None:
    """The account name in an offer's description (`user alice from ...`)."""
    if credentials is None or not credentials.startswith("user "):
        return None
    return credentials.split(" ", 2)[1]


def _image_words(report: ImageReport) -> dict[str, str]:
    registry = report.registry
    server = "https://index.docker.io/v1/" if report.docker_hub else registry
    if report.docker_hub:
        hub_repo = report.repository
        tags = f"https://hub.docker.com/v2/repositories/{hub_repo}/tags/"
    else:
        tags = (
            f"`curl https://{registry}/v2/{report.repository}/tags/list`, with a token if private"
        )
    return {
        "registry": "Docker Hub" if report.docker_hub else registry,
        "reference": report.reference,
        "repository": report.repository,
        "image": report.image,
        "server": server,
        "tags": tags,
        "credentials": report.credentials or "none",
        "platform": report.platform or "the node's platform",
    }
