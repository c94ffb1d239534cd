"""Go's proxy selection (golang.org/x/net/http/httpproxy), ported with its own test tables.

`GO_PROXY_FOR_URL` is proxy_test.go's `proxyForURLTests`, `GO_USE_PROXY` its `UseProxyTests`
with the same `noProxy` string. `DIFFERS` adds rows where curl, Python's urllib or httpx decide
otherwise, each with a comment naming the difference.
"""

from __future__ import annotations

import contextlib
import urllib.request
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.checks.proxy import dial_address
from probe.node.goproxy import (
    CGIProxyError,
    InvalidProxyError,
    ProxyEnv,
    decide,
    no_proxy_match,
    proxy_for,
    variable_for,
)


def _request(url: str) -> tuple[str, str, str | None]:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if host.startswith("["):
        name, _, port = host[1:].partition("]")
        return parts.scheme, name.replace("%25", "%"), port.lstrip(":") or None
    name, _, port = host.partition(":")
    return parts.scheme, name, port or None


def _go(env: ProxyEnv, url: str = "http://example.com") -> str:
    """What Go's test prints: the proxy URL, or "<nil>"."""
    scheme, host, port = _request(url)
    return proxy_for(env, scheme, host, port) or "<nil>"


GO_PROXY_FOR_URL: list[tuple[ProxyEnv, str, str]] = [
    (ProxyEnv(http_proxy="127.0.0.1:8080"), "", "http://127.0.0.1:8080"),
    (ProxyEnv(http_proxy="cache.corp.example.com:1234"), "", "http://cache.corp.example.com:1234"),
    (ProxyEnv(http_proxy="cache.corp.example.com"), "", "http://cache.corp.example.com"),
    # single label domain is recognized as scheme by url.Parse
    (ProxyEnv(http_proxy="localhost"), "", "http://localhost"),
    (ProxyEnv(http_proxy="https://cache.corp.example.com"), "", "https://cache.corp.example.com"),
    (ProxyEnv(http_proxy="http://127.0.0.1:8080"), "", "http://127.0.0.1:8080"),
    (ProxyEnv(http_proxy="https://127.0.0.1:8080"), "", "https://127.0.0.1:8080"),
    (ProxyEnv(http_proxy="socks5://127.0.0.1"), "", "socks5://127.0.0.1"),
    # Preserve unknown schemes.
    (ProxyEnv(http_proxy="foo://host"), "", "foo://host"),
    # Don't use secure for http
    (
        ProxyEnv(http_proxy="http.proxy.tld", https_proxy="secure.proxy.tld"),
        "http://insecure.tld/",
        "http://http.proxy.tld",
    ),
    # Use secure for https.
    (
        ProxyEnv(http_proxy="http.proxy.tld", https_proxy="secure.proxy.tld"),
        "https://secure.tld/",
        "http://secure.proxy.tld",
    ),
    (
        ProxyEnv(http_proxy="http.proxy.tld", https_proxy="https://secure.proxy.tld"),
        "https://secure.tld/",
        "https://secure.proxy.tld",
    ),
    (ProxyEnv(http_proxy="http.proxy.tld"), "https://secure.tld/", "<nil>"),
    (ProxyEnv(http_proxy="http.proxy.tld"), "ftp://insecure.tld/", "<nil>"),
    # HTTPS proxy is still used even in CGI environment.
    (
        ProxyEnv(https_proxy="https://secure.proxy.tld", cgi=True),
        "https://secure.tld/",
        "https://secure.proxy.tld",
    ),
    (ProxyEnv(), "", "<nil>"),
    (ProxyEnv(no_proxy="example.com", http_proxy="proxy"), "http://example.com/", "<nil>"),
    (ProxyEnv(no_proxy=".example.com", http_proxy="proxy"), "http://example.com/", "http://proxy"),
    (ProxyEnv(no_proxy="ample.com", http_proxy="proxy"), "http://example.com/", "http://proxy"),
    (ProxyEnv(no_proxy="example.com", http_proxy="proxy"), "http://foo.example.com/", "<nil>"),
    (ProxyEnv(no_proxy=".foo.com", http_proxy="proxy"), "http://example.com/", "http://proxy"),
    (ProxyEnv(no_proxy=".示例.com", http_proxy="proxy"), "http://www.示例.com", "<nil>"),
    (ProxyEnv(no_proxy="xn--fsq092h.com", http_proxy="proxy"), "http://www.示例.com", "<nil>"),
    (ProxyEnv(no_proxy="示例.com", http_proxy="proxy"), "http://www.xn--fsq092h.com", "<nil>"),
    # An IP literal with a zone is an IP: a name entry never matches it.
    (
        ProxyEnv(no_proxy="example.com", http_proxy="proxy"),
        "http://[1000::%25.example.com]:123",
        "http://proxy",
    ),
]


@pytest.mark.parametrize(("env", "url", "want"), GO_PROXY_FOR_URL)
def test_go_proxy_for_url_table(env: ProxyEnv, url: str, want: str) -> None:
    """Every row of Go's proxyForURLTests gives Go's answer."""
    assert _go(env, url or "http://example.com") == want


def test_cgi_refuses_http_proxy() -> None:
    """Issue 16405: HTTP_PROXY is refused for http requests when REQUEST_METHOD is set."""
    with pytest.raises(CGIProxyError, match=r"golang\.org/s/cgihttpproxy"):
        proxy_for(ProxyEnv(http_proxy="http://10.1.2.3:8080", cgi=True), "http", "example.com")


GO_NO_PROXY = (
    "foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, "
    "10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, "
    "2002:db8:a::45/64"
)
GO_USE_PROXY: list[tuple[str, bool]] = [
    # Never proxy localhost:
    ("localhost", False),
    ("127.0.0.1", False),
    ("127.0.0.2", False),
    ("[::1]", False),
    ("[::2]", True),  # not a loopback address
    ("192.168.1.1", False),  # matches exact IPv4
    ("192.168.1.2", True),  # ports do not match
    ("192.168.1.3", False),  # matches exact IPv4:port
    ("192.168.1.4", True),  # no match
    ("10.0.0.2", False),  # matches IPv4/CIDR
    ("[2001:db8::52:0:1]", False),  # matches exact IPv6
    ("[2001:db8::52:0:2]", True),  # no match
    ("[2001:db8::52:0:3]", False),  # matches exact [IPv6]:port
    ("[2002:db8:a::123]", False),  # matches IPv6/CIDR
    ("[fe80::424b:c8be:1643:a1b6]", True),  # no match
    ("barbaz.net", True),  # does not match as .barbaz.net
    ("www.barbaz.net", False),  # does match as .barbaz.net
    ("foobar.com", False),  # does match as foobar.com
    ("www.foobar.com", False),  # match because NO_PROXY includes "foobar.com"
    ("foofoobar.com", True),  # not match as a part of foobar.com
    ("baz.com", True),  # not match as a part of barbaz.com
    ("localhost.net", True),  # not match as suffix of address
    ("local.localhost", True),  # not match as prefix as address
    ("barbarbaz.net", True),  # not match, wrong domain
    ("wildcard.io", True),  # does not match as *.wildcard.io
    ("nested.wildcard.io", False),  # match as *.wildcard.io
    ("awildcard.io", True),  # not a match because of '*'
]


@pytest.mark.parametrize(("host", "proxied"), GO_USE_PROXY)
def test_go_use_proxy_table(host: str, proxied: bool) -> None:
    """Every row of Go's UseProxyTests, on port 80, with Go's noProxy list."""
    assert (no_proxy_match(GO_NO_PROXY, host.strip("[]"), "80") is None) is proxied


@pytest.mark.parametrize(("host", "proxied"), GO_USE_PROXY)
def test_star_disables_every_host(host: str, proxied: bool) -> None:
    """NO_PROXY "*" keeps every host of Go's table direct (TestAllNoProxy)."""
    assert no_proxy_match("*", host.strip("[]"), "80") is not None


def test_invalid_no_proxy_entry_is_ignored() -> None:
    """A NO_PROXY entry with no host part (":1") is dropped, never a crash (TestInvalidNoProxy)."""
    assert no_proxy_match(":1", "example.com", "80") is None


@pytest.mark.parametrize(
    ("environ", "want"),
    [
        # TestFromEnvironment / TestFromEnvironmentLowerCase / ...WithRequestMethod
        (
            {"HTTP_PROXY": "httpproxy", "HTTPS_PROXY": "httpsproxy", "NO_PROXY": "noproxy"},
            ProxyEnv("httpproxy", "httpsproxy", "noproxy"),
        ),
        (
            {"http_proxy": "httpproxy", "https_proxy": "httpsproxy", "no_proxy": "noproxy"},
            ProxyEnv("httpproxy", "httpsproxy", "noproxy"),
        ),
        (
            {"HTTP_PROXY": "httpproxy", "REQUEST_METHOD": "PUT"},
            ProxyEnv(http_proxy="httpproxy", cgi=True),
        ),
        ({"HTTPS_PROXY": "upper", "https_proxy": "lower"}, ProxyEnv(https_proxy="upper")),
        # An empty upper-case value counts as unset (getEnvAny skips empty values).
        ({"HTTPS_PROXY": "", "https_proxy": "lower"}, ProxyEnv(https_proxy="lower")),
        ({"REQUEST_METHOD": ""}, ProxyEnv()),
        # ALL_PROXY is not a Go variable.
        ({"ALL_PROXY": "http://all:1"}, ProxyEnv()),
    ],
)
def test_from_environ(environ: dict[str, str], want: ProxyEnv) -> None:
    """Variables are read upper case first, empty as unset, REQUEST_METHOD as CGI."""
    assert ProxyEnv.from_environ(environ) == want


def test_variable_for_names_the_variable_go_reads() -> None:
    """The report can say which variable (HTTPS_PROXY or https_proxy) Go took a value from."""
    env = {"HTTPS_PROXY": "", "https_proxy": "http://p:1", "NO_PROXY": "x"}
    assert variable_for(env, "https_proxy") == "https_proxy"
    assert variable_for(env, "no_proxy") == "NO_PROXY"
    assert variable_for(env, "http_proxy") is None


# Rows where curl, Python's urllib or httpx decide otherwise. Where Python's urllib is named, the
# test below checks the difference against the running interpreter.
DIFFERS: list[tuple[dict[str, str], str, str]] = [
    # Upper case wins in Go; urllib's getproxies_environment lets lower case win, and curl reads
    # only lower-case http_proxy.
    (
        {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:1"},
        "https://r.io",
        "http://upper:1",
    ),
    # HTTP_PROXY alone does not cover https: the node "has a proxy" and still goes direct.
    ({"HTTP_PROXY": "http://proxy:3128"}, "https://registry-1.docker.io", "<nil>"),
    # ALL_PROXY is read by curl and httpx, never by Go.
    ({"ALL_PROXY": "http://proxy:3128"}, "https://registry-1.docker.io", "<nil>"),
    # ".example.com" is subdomains only in Go; urllib (and curl since 7.86) also bypass example.com.
    (
        {"HTTPS_PROXY": "proxy:3128", "NO_PROXY": ".example.com"},
        "https://example.com",
        "http://proxy:3128",
    ),
    ({"HTTPS_PROXY": "proxy:3128", "NO_PROXY": ".example.com"}, "https://r.example.com", "<nil>"),
    # "*.example.com" is a wildcard in Go; urllib and curl take the "*" literally and proxy.
    ({"HTTPS_PROXY": "proxy:3128", "NO_PROXY": "*.example.com"}, "https://r.example.com", "<nil>"),
    # CIDR entries: Go matches IP literals; urllib has no CIDR support and proxies.
    ({"HTTPS_PROXY": "proxy:3128", "NO_PROXY": "10.0.0.0/8"}, "https://10.1.2.3", "<nil>"),
    # ...but an IP entry never matches a name, even one that resolves to it.
    (
        {"HTTPS_PROXY": "proxy:3128", "NO_PROXY": "10.0.0.0/8"},
        "https://r.internal",
        "http://proxy:3128",
    ),
    # Loopback is never proxied in Go, even with an empty NO_PROXY; urllib proxies it.
    ({"HTTPS_PROXY": "proxy:3128"}, "https://127.0.0.1:5000", "<nil>"),
    ({"HTTPS_PROXY": "proxy:3128"}, "https://[::ffff:127.0.0.1]:5000", "<nil>"),
    # Go compares "localhost" case-sensitively: LOCALHOST goes through the proxy.
    ({"HTTPS_PROXY": "proxy:3128"}, "https://LOCALHOST", "http://proxy:3128"),
    # host:port entries match that port only, with the default port (443) filled in.
    ({"HTTPS_PROXY": "proxy:3128", "NO_PROXY": "r.io:443"}, "https://r.io", "<nil>"),
    (
        {"HTTPS_PROXY": "proxy:3128", "NO_PROXY": "r.io:443"},
        "https://r.io:5000",
        "http://proxy:3128",
    ),
    # Entries are trimmed and lower-cased; "*" anywhere in the list disables the proxy.
    ({"HTTPS_PROXY": "proxy:3128", "NO_PROXY": "  R.IO  ,other"}, "https://r.io", "<nil>"),
    ({"HTTPS_PROXY": "proxy:3128", "NO_PROXY": "a.com, * ,b.com"}, "https://r.io", "<nil>"),
    # A proxy in NO_PROXY form with a port: credentials are kept for use.
    ({"HTTPS_PROXY": "u:p@proxy:3128"}, "https://r.io", "http://u:p@proxy:3128"),
    # A trailing space makes the URL invalid; Go retries "http://" + value and reads the proxy as
    # a host named "http" (decide() reports it as a problem).
    ({"HTTPS_PROXY": "http://proxy:3128 "}, "https://r.io", "http://http://proxy:3128 "),
]


@pytest.mark.parametrize(("environ", "url", "want"), DIFFERS)
def test_go_rules_where_others_differ(environ: dict[str, str], url: str, want: str) -> None:
    """Go's answer for the cases where curl, urllib or httpx would answer otherwise."""
    assert _go(ProxyEnv.from_environ(environ), url) == want


def test_urllib_really_differs() -> None:
    """The urllib differences claimed in DIFFERS hold for this interpreter's urllib."""
    bypass = urllib.request.proxy_bypass_environment
    assert bypass("example.com", {"no": ".example.com"})  # Go: proxied
    assert not bypass("10.1.2.3", {"no": "10.0.0.0/8"})  # Go: direct
    assert not bypass("127.0.0.1", {"no": ""})  # Go: direct
    assert not bypass("r.example.com", {"no": "*.example.com"})  # Go: direct


def test_unparsable_proxy_raises_with_value_redacted() -> None:
    """A proxy Go cannot parse raises InvalidProxyError naming the variable, password hidden."""
    env = ProxyEnv(https_proxy="s3cret@proxy%zz:3128")
    with pytest.raises(InvalidProxyError, match="HTTPS_PROXY") as caught:
        proxy_for(env, "https", "r.io")
    assert "s3cret" not in str(caught.value)
    assert "***@proxy" in str(caught.value)
    decision = decide(env, "https", "r.io")
    assert decision.proxy is None
    assert decision.problem is not None
    assert "connects direct" in decision.problem


def test_control_character_makes_proxy_invalid() -> None:
    """A newline in the value (a badly quoted unit file) is unparsable for Go."""
    with pytest.raises(InvalidProxyError):
        proxy_for(ProxyEnv(https_proxy="http://proxy:3128\n"), "https", "r.io")


def test_misread_proxy_is_reported() -> None:
    """A value Go only reads by prefixing http:// is used, with a problem saying what Go sees."""
    decision = decide(ProxyEnv(https_proxy="http://proxy:3128 "), "https", "r.io")
    assert decision.proxy is not None
    assert decision.proxy.host == "http"
    assert decision.problem is not None
    assert "'http'" in decision.problem


def test_opaque_proxy_is_reported() -> None:
    """ "user:pass@host" parses in Go as scheme "user" with no host: used, and reported."""
    decision = decide(ProxyEnv(https_proxy="user:s3cret@proxy%zz:3128"), "https", "r.io")
    assert decision.proxy is not None
    assert decision.proxy.scheme == "user"
    assert decision.problem is not None
    assert "no proxy host" in decision.problem
    assert "s3cret" not in decision.problem


def test_decision_names_no_proxy_entry() -> None:
    """A direct route caused by NO_PROXY names the entry, as written, for the report."""
    env = ProxyEnv(https_proxy="proxy:3128", no_proxy="x.org, .Example.com")
    decision = decide(env, "https", "r.example.com")
    assert decision.proxy is None
    assert decision.no_proxy_entry == ".Example.com"


def test_proxy_url_parts() -> None:
    """The chosen proxy is split as Go splits it: scheme, credentials, host and port."""
    decision = decide(
        ProxyEnv(https_proxy="http://u%40x:p%3Aw@[2001:db8::1]:3128"), "https", "r.io"
    )
    assert decision.proxy is not None
    assert (decision.proxy.scheme, decision.proxy.host, decision.proxy.port) == (
        "http",
        "2001:db8::1",
        "3128",
    )
    assert (decision.proxy.username, decision.proxy.password) == ("u@x", "p:w")
    assert decision.proxy.redacted == "http://u%40x:***@[2001:db8::1]:3128"


@given(no_proxy=st.text(), host=st.text(), port=st.text(max_size=6))
def test_arbitrary_no_proxy_never_crashes(no_proxy: str, host: str, port: str) -> None:
    """Any NO_PROXY string, host and port give an answer, never an exception (Go: best effort)."""
    result = no_proxy_match(no_proxy, host, port)
    assert result is None or isinstance(result, str)


@given(value=st.text(), no_proxy=st.text(alphabet=",.*:/[]0123456789abcdef. ", max_size=40))
def test_arbitrary_proxy_value_decides_or_raises_invalid(value: str, no_proxy: str) -> None:
    """Any proxy value either gives a decision or InvalidProxyError, nothing else."""
    env = ProxyEnv(https_proxy=value, no_proxy=no_proxy)
    with contextlib.suppress(InvalidProxyError):
        proxy_for(env, "https", "registry.example.com")


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("proxy:3128", ("proxy", 3128)),
        ("http://proxy", ("proxy", 80)),
        ("https://proxy", ("proxy", 443)),
        ("socks5://[2001:db8::1]", ("2001:db8::1", 1080)),
        ("socks5h://proxy", ("proxy", 1080)),
        ("foo://proxy", None),  # no default port for an unknown scheme: Go's dial fails
        ("http://proxy:99999", None),
    ],
)
def test_proxy_address(value: str, address: tuple[str, int] | None) -> None:
    """The proxy's host and port to connect to, the scheme's default port filled in."""
    decision = decide(ProxyEnv(https_proxy=value), "https", "r.io")
    assert decision.proxy is not None
    assert dial_address(decision.proxy) == address
