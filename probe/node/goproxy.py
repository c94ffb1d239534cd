"""Which proxy a Go program (containerd, dockerd, CRI-O) takes for a request: a pure function.

A port of golang.org/x/net/http/httpproxy (`FromEnvironment`, `ProxyFunc`, `useProxy`, `init`,
`parseProxy`), which net/http vendors as `ProxyFromEnvironment`. The rules, and where curl, Python's
urllib and httpx read the same variables differently (why the agent never lets httpx read them):

- Upper case before lower case: `HTTPS_PROXY` wins over `https_proxy`; an empty value counts as
  unset (`getEnvAny`). curl reads `http_proxy` only in lower case; urllib prefers lower case.
- https requests use `HTTPS_PROXY` only, with no fallback to `HTTP_PROXY`; http requests use
  `HTTP_PROXY`. `ALL_PROXY` is not read at all (curl reads it).
- When `REQUEST_METHOD` is set (a CGI process) `HTTP_PROXY` is refused for http requests
  (golang.org/s/cgihttpproxy); `HTTPS_PROXY` is still used.
- A proxy without a scheme (`proxy:3128`) is `http://proxy:3128`; unknown schemes are kept.
- `localhost` and loopback IPs are never proxied, whatever `NO_PROXY` says.
- `NO_PROXY`: comma-separated, each entry trimmed and lower-cased; `*` as any entry disables
  proxying; an IP or CIDR entry matches only IP-literal hosts (and a name entry never matches
  one); `foo.com` matches foo.com and its subdomains; `.foo.com` and `*.foo.com` only
  subdomains; `host:port` only that port, the request's default port (80/443) filled in.

Errors (all `ProxyConfigError`, a `ValueError`):
    ProxyConfigError
    ├── InvalidProxyError   the proxy variable for the scheme cannot be parsed as a URL
    └── CGIProxyError       HTTP_PROXY set for an http request in a CGI environment

An unparsable proxy value: Go's `init` drops it silently (the request goes direct), while Go
before 1.10 failed every request with "invalid proxy address". The node is misconfigured either
way, so `proxy_for` raises `InvalidProxyError` and the caller reports it (and routes direct, as a
current runtime does); `decide` reports it in the decision without raising.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from probe.redact import redact_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Go's portMap: the default port of a request's scheme.
DEFAULT_PORTS: Mapping[str, str] = {"http": "80", "https": "443", "socks5": "1080"}

# The variables each Go setting is read from, in the order `getEnvAny` tries them.
PROXY_VARIABLES: Mapping[str, tuple[str, str]] = {
    "http_proxy": ("HTTP_PROXY", "http_proxy"),
    "https_proxy": ("HTTPS_PROXY", "https_proxy"),
    "no_proxy": ("NO_PROXY", "no_proxy"),
}


class ProxyConfigError(ValueError):
    """The proxy environment makes a Go program fail or ignore a setting."""


class InvalidProxyError(ProxyConfigError):
    """A proxy variable that Go's `parseProxy` rejects; the message holds it redacted."""

    def __init__(self, variable: str, value: str, why: str) -> None:
        super().__init__(
            f"invalid proxy address in {variable} ({redact_url(value)!r}: {why}); "
            "Go ignores it and connects direct"
        )
        self.variable = variable


class CGIProxyError(ProxyConfigError):
    """Go refuses HTTP_PROXY when REQUEST_METHOD is set (golang.org/s/cgihttpproxy)."""

    def __init__(self) -> None:
        super().__init__(
            "refusing to use HTTP_PROXY value in CGI environment; see golang.org/s/cgihttpproxy"
        )


@dataclass(frozen=True)
class ProxyEnv:
    """The three settings Go reads, as `httpproxy.FromEnvironment` takes them from a process."""

    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""
    cgi: bool = False  # REQUEST_METHOD is set

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> ProxyEnv:
        """Upper case before lower case; an empty value counts as unset (Go's `getEnvAny`)."""
        values = {
            setting: next((env[name] for name in names if env.get(name)), "")
            for setting, names in PROXY_VARIABLES.items()
        }
        return cls(**values, cgi=bool(env.get("REQUEST_METHOD")))


def variable_for(env: Mapping[str, str], setting: str) -> str | None:
    """The variable name Go takes `setting` ("https_proxy"...) from, or None when unset."""
    return next((name for name in PROXY_VARIABLES[setting] if env.get(name)), None)


@dataclass(frozen=True)
class ProxyURL:
    """A proxy as Go's `url.Parse` reads it. `url` carries the password: never show it."""

    scheme: str
    username: str | None  # percent-decoded, as Go's url.User holds it
    password: str | None
    host: str  # without brackets around an IPv6 literal; "" for an opaque URL
    port: str  # "" when not given
    url: str

    @property
    def redacted(self) -> str:
        return redact_url(self.url)


@dataclass(frozen=True)
class ProxyDecision:
    """What Go decides for one request, and why (for the report)."""

    proxy: ProxyURL | None
    why: str
    no_proxy_entry: str | None = None  # the NO_PROXY entry that sent it direct
    problem: str | None = None  # an unparsable or misread proxy value, redacted


# --- Go's url.Parse, the part parseProxy depends on ----------------------------------------------


class _URLError(ValueError):
    pass


_USERINFO_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@"
)
# Characters Go's shouldEscape lets stand in a host (encodeHost); any other ASCII is an error.
_HOST_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]<>\""
)
_HEX = frozenset("0123456789abcdefABCDEF")


def _unescape(s: str, host: bool) -> str:
    """Go's `unescape`: every `%` needs two hex digits; in a host only non-ASCII bytes or `%25`."""
    i = 0
    while i < len(s):
        c = s[i]
        if c == "%":
            if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
                raise _URLError(f"invalid URL escape {s[i : i + 3]!r}")
            if host and int(s[i + 1], 16) < 8 and s[i : i + 3] != "%25":
                raise _URLError(f"invalid URL escape {s[i : i + 3]!r}")
            i += 3
            continue
        if host and ord(c) < 0x80 and c not in _HOST_CHARS:
            raise _URLError(f"invalid character {c!r} in host name")
        i += 1
    return s


def _valid_optional_port(port: str) -> bool:
    return port == "" or (port[0] == ":" and all(c in "0123456789" for c in port[1:]))


def _parse_host(host: str) -> str:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise _URLError("missing ']' in host")
        if not _valid_optional_port(host[end + 1 :]):
            raise _URLError(f"invalid port {host[end + 1 :]!r} after host")
        zone = host[:end].find("%25")
        if zone >= 0:
            _unescape(host[:zone], host=True)
            _unescape(host[end:], host=True)
            return host
    elif (colon := host.rfind(":")) >= 0 and not _valid_optional_port(host[colon:]):
        raise _URLError(f"invalid port {host[colon:]!r} after host")
    return _unescape(host, host=True)


def _get_scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise _URLError("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return "", raw
    return "", raw


def _split_host_port(hostport: str) -> tuple[str, str]:
    """The host part and port of a Go URL Host ("[::1]:80" -> ("::1", "80"))."""
    if hostport.startswith("["):
        end = hostport.rfind("]")
        return hostport[1:end], hostport[end + 2 :]
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    return host, port


def _go_url_parse(raw: str) -> ProxyURL:
    """Go's `url.Parse`, far enough to tell what `parseProxy` accepts and what it yields."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise _URLError("net/url: invalid control character in URL")
    rest, _, fragment = raw.partition("#")
    _unescape(fragment, host=False)
    scheme, rest = _get_scheme(rest)
    scheme = scheme.lower()
    rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return ProxyURL(scheme, None, None, "", "", raw)  # opaque: "proxy:3128" in Go's eyes
        if ":" in rest.partition("/")[0]:
            raise _URLError("first path segment in URL cannot contain colon")
    username: str | None = None
    password: str | None = None
    hostport = ""
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        at = authority.rfind("@")
        hostport = _parse_host(authority[at + 1 :])
        if at >= 0:
            userinfo = authority[:at]
            if any(c not in _USERINFO_CHARS for c in userinfo):
                raise _URLError("net/url: invalid userinfo")
            user, colon, secret = userinfo.partition(":")
            try:
                _unescape(userinfo, host=False)
            except _URLError:
                # Go's message quotes the bad escape: part of a password. Say less.
                raise _URLError("invalid URL escape in userinfo") from None
            username = unquote(user)
            password = unquote(secret) if colon else None
    _unescape(rest, host=False)
    host, port = _split_host_port(hostport)
    return ProxyURL(scheme, username, password, host, port, raw)


def _parse_proxy(value: str) -> ProxyURL:
    """Go's `parseProxy`: a proxy without a scheme (or host) is tried again as `http://value`.

    Raises `_URLError` when neither form parses.
    """
    try:
        parsed: ProxyURL | None = _go_url_parse(value)
        first_error: _URLError | None = None
    except _URLError as exc:
        parsed, first_error = None, exc
    if parsed is None or not parsed.scheme or not parsed.host:
        try:
            return _go_url_parse("http://" + value)
        except _URLError:
            pass
    if first_error is not None:
        raise first_error
    assert parsed is not None  # noqa: S101 - first_error is None exactly when parsed is set
    return parsed


# --- NO_PROXY ---------------------------------------------------------------------------------


def _go_split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's `net.SplitHostPort`, None where it errs."""
    i = hostport.rfind(":")
    if i < 0:
        return None
    j = k = 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or end + 1 != i:
            return None
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            return None
    if "[" in hostport[j:] or "]" in hostport[k:]:
        return None
    return host, hostport[i + 1 :]


def _unmap(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as IPv4, as Go's `To4` treats it; zone dropped."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.scope_id:
            return ipaddress.IPv6Address(str(ip).partition("%")[0])
    return ip


def _parse_ip(text: str, zone_ok: bool) -> IPAddress | None:
    """Go's `net.ParseIP` (zone_ok False) or `netip.ParseAddr` (zone_ok True)."""
    if "%" in text and not zone_ok:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_cidr(text: str) -> IPNetwork | None:
    """Go's `net.ParseCIDR`: address (no zone) / decimal prefix length; host bits allowed."""
    addr, slash, bits = text.partition("/")
    # Go's dtoi: ASCII digits, leading zeros allowed, anything huge rejected.
    if not slash or not bits.isascii() or not bits.isdigit() or len(bits.lstrip("0")) > 3:
        return None
    ip = _parse_ip(addr, zone_ok=False)
    if ip is None or int(bits) > ip.max_prefixlen:
        return None
    network = ipaddress.ip_network(f"{ip}/{int(bits)}", strict=False)
    mapped = getattr(network.network_address, "ipv4_mapped", None)
    if mapped is not None and network.prefixlen >= 96:  # Go compares v4-mapped as IPv4
        return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


def _idna_ascii(name: str) -> str:
    """Go's `idnaASCII`: ASCII as is, else IDNA per label; a name that fails stays as it was."""
    if name.isascii():
        return name
    try:
        return ".".join(
            label.encode("idna").decode("ascii") if label else "" for label in name.split(".")
        )
    except UnicodeError:
        return name


@dataclass(frozen=True)
class _Matcher:
    entry: str  # as written in NO_PROXY, trimmed
    kind: str  # "all", "cidr", "ip", "domain"
    network: IPNetwork | None = None
    ip: IPAddress | None = None
    domain: str = ""  # with a leading "."
    match_host: bool = False  # the entry had no leading "." or "*.": the domain itself matches
    port: str = ""

    def matches(self, host: str, port: str, ip: IPAddress | None) -> bool:
        if self.kind == "all":
            return True
        if self.kind == "cidr":
            assert self.network is not None  # noqa: S101 - set for every "cidr" matcher
            return ip is not None and ip.version == self.network.version and ip in self.network
        if self.kind == "ip":
            return ip is not None and ip == self.ip and self.port in ("", port)
        if ip is not None:  # a name entry never matches an IP-literal host
            return False
        if host.endswith(self.domain) or (self.match_host and host == self.domain[1:]):
            return self.port in ("", port)
        return False


# Go's unicode.IsSpace, which strings.TrimSpace uses (Python's str.strip also strips \x1c-\x1f).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _no_proxy_matchers(no_proxy: str) -> tuple[_Matcher, ...]:
    """Go's `config.init`: NO_PROXY as matchers, malformed entries dropped, never an error."""
    matchers: list[_Matcher] = []
    for raw in no_proxy.split(","):
        entry = raw.strip(_GO_SPACE)
        p = entry.lower()
        if not p:
            continue
        if p == "*":
            return (_Matcher(entry, "all"),)
        network = _parse_cidr(p)
        if network is not None:
            matchers.append(_Matcher(entry, "cidr", network=network))
            continue
        split = _go_split_host_port(p)
        if split is not None:
            phost, pport = split
            if not phost:
                continue  # ":1" and the like: no host part
            if phost.startswith("[") and phost.endswith("]"):
                phost = phost[1:-1]
        else:
            phost, pport = p, ""
        pip = _parse_ip(phost, zone_ok=False)
        if pip is not None:
            matchers.append(_Matcher(entry, "ip", ip=_unmap(pip), port=pport))
            continue
        if not phost:
            continue
        if phost.startswith("*."):
            phost = phost[1:]
        match_host = not phost.startswith(".")
        if match_host:
            phost = "." + phost
        matchers.append(
            _Matcher(entry, "domain", domain=_idna_ascii(phost), match_host=match_host, port=pport)
        )
    return tuple(matchers)


def _ip_host(host: str) -> IPAddress | None:
    ip = _parse_ip(host, zone_ok=True)
    return None if ip is None else _unmap(ip)


def no_proxy_match(no_proxy: str, host: str, port: str) -> str | None:
    """The NO_PROXY entry (or "localhost"/"loopback") that keeps host:port direct, else None.

    Go's `useProxy` inverted; `host` is the request's host without brackets, `port` its port.
    """
    host = _idna_ascii(host)
    if host == "localhost":  # case-sensitive in Go: "LOCALHOST" is proxied
        return "localhost"
    ip = _ip_host(host)
    if ip is not None and ip.is_loopback:
        return "loopback"
    name = host.strip(_GO_SPACE).lower()
    for matcher in _no_proxy_matchers(no_proxy):
        if matcher.matches(name, port, ip):
            return matcher.entry
    return None


def _selected(env: ProxyEnv, scheme: str) -> tuple[str, str] | None:
    """The variable Go consults for a request's scheme, and its value."""
    if scheme == "https":
        return "HTTPS_PROXY", env.https_proxy
    if scheme == "http":
        return "HTTP_PROXY", env.http_proxy
    return None


def decide(env: ProxyEnv, scheme: str, host: str, port: int | str | None = None) -> ProxyDecision:
    """Go's `proxyForURL` for scheme://host:port, with the reason. Raises only `CGIProxyError`.

    `host` is a name or an IP literal (brackets allowed); `port` None means the scheme's default.
    """
    scheme = scheme.lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port_text = str(port) if port not in (None, "") else DEFAULT_PORTS.get(scheme, "")
    selected = _selected(env, scheme)
    if selected is None:
        return ProxyDecision(None, f"no proxy for scheme {scheme!r}")
    variable, value = selected
    if not value:
        return ProxyDecision(None, f"{variable} is not set")
    try:
        proxy = _parse_proxy(value)
    except _URLError as exc:
        invalid = str(InvalidProxyError(variable, value, str(exc)))
        return ProxyDecision(None, f"{variable} cannot be parsed", problem=invalid)
    if scheme == "http" and env.cgi:
        raise CGIProxyError
    problem: str | None = None
    if not proxy.host:
        problem = (
            f"{variable} {redact_url(value)!r} has no proxy host; Go reads it as a URL of "
            f"scheme {proxy.scheme!r} and the connection fails"
        )
    elif "://" in value and proxy.url == "http://" + value:
        # Go's parseProxy retried "http://" + value: "http://proxy:3128 " (a trailing space) is
        # read as a proxy named "http". Go uses it; the report says what it really is.
        problem = (
            f"{variable} {redact_url(value)!r} is not a valid URL; Go reads it as proxy host "
            f"{proxy.host!r}"
        )
    entry = no_proxy_match(env.no_proxy, host, port_text)
    if entry in ("localhost", "loopback"):
        return ProxyDecision(None, f"{entry} is never proxied")
    if entry is not None:
        return ProxyDecision(None, f"NO_PROXY entry {entry!r}", no_proxy_entry=entry)
    return ProxyDecision(proxy, f"{variable} is set", problem=problem)


def proxy_for(env: ProxyEnv, scheme: str, host: str, port: int | str | None = None) -> str | None:
    """The proxy URL (with its credentials) Go uses for scheme://host:port, or None for direct.

    Raises `InvalidProxyError` when the scheme's proxy variable cannot be parsed (a current Go
    goes direct, silently), and `CGIProxyError` for HTTP_PROXY in a CGI environment.
    """
    decision = decide(env, scheme, host, port)
    if decision.problem is not None and decision.proxy is None:
        selected = _selected(env, scheme.lower())
        assert selected is not None  # noqa: S101 - a problem is only found for http and https
        variable, value = selected
        try:
            _parse_proxy(value)
        except _URLError as exc:
            raise InvalidProxyError(variable, value, str(exc)) from None
    return None if decision.proxy is None else decision.proxy.url
