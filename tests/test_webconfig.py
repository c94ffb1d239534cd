"""`registry-probe run --web-config FILE`: exporter-toolkit's web-config.yml for the agent's
server. Bad files map to exact messages (tests/data/webconfig/invalid-*.yaml) that never show a
secret; real TLS, mutual TLS and basic-auth scrapes; `run` exits 2 on a bad file; SIGHUP
reloads it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from lab.pki import CertificateAuthority
from metricsamples import sample
from servedagent import ServedAgent
from test_agent import agent_for, eventually

from probe.agent.basicauth import BasicAuth
from probe.agent.server import AgentApp, HttpServer, Limits
from probe.agent.webconfig import TLSServerConfig, WebConfig, load_web_config
from probe.config import ConfigError

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data" / "webconfig"
DEADLINE = 10.0

_HASH = "a bcrypt hash such as $2y$10$..., as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints"
_AUTH_TYPES = "NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
_FILE = "a readable file on the agent's own filesystem, not under host_root"

INVALID: dict[str, list[str]] = {
    "invalid-bcrypt-hashes.yaml": [
        "invalid-bcrypt-hashes.yaml:3: basic_auth_users.alice: is not a bcrypt hash, and is not"
        f" shown here (expected {_HASH})",
        "invalid-bcrypt-hashes.yaml:4: basic_auth_users.bob: is not a bcrypt hash, and is not"
        f" shown here (expected {_HASH})",
        "invalid-bcrypt-hashes.yaml:5: basic_auth_users.carol: has the bcrypt cost 3 (expected a"
        " cost from 4 to 31; 10 is usual)",
        'invalid-bcrypt-hashes.yaml:6: basic_auth_users."dave:admin": a user name cannot contain'
        " a colon: the Authorization header ends the name at the first one (expected a name"
        " without a colon)",
        f"invalid-bcrypt-hashes.yaml:7: basic_auth_users.eve: has no value (expected {_HASH})",
        f"invalid-bcrypt-hashes.yaml:8: basic_auth_users.frank: got a list (expected {_HASH})",
        "invalid-bcrypt-hashes.yaml:9: basic_auth_users.alice: set twice, first at line 3"
        " (expected each key once)",
    ],
    "invalid-client-auth-typo.yaml": [
        "invalid-client-auth-typo.yaml:5: tls_server_config.client_auth_type: got"
        f' "RequireAndVerifyClientCerts" (expected {_AUTH_TYPES}; did you mean'
        " RequireAndVerifyClientCert?)",
    ],
    "invalid-client-auth-unverified.yaml": [
        "invalid-client-auth-unverified.yaml:5: tls_server_config.client_auth_type:"
        " RequireAnyClientCert asks for a client certificate without verifying it: insecure,"
        f" and Python's ssl module cannot do it (expected {_AUTH_TYPES})",
    ],
    "invalid-client-auth-without-ca.yaml": [
        "invalid-client-auth-without-ca.yaml:4: tls_server_config.client_auth_type:"
        " RequireAndVerifyClientCert verifies client certificates, but no client_ca_file says"
        " who issues them (expected client_ca_file)",
    ],
    "invalid-client-ca-without-auth.yaml": [
        "invalid-client-ca-without-auth.yaml:4: tls_server_config.client_ca_file: set, but"
        " client_auth_type is NoClientCert, so no client certificate is asked for (expected"
        " client_auth_type: RequireAndVerifyClientCert)",
    ],
    "invalid-encrypted-key.yaml": [
        "invalid-encrypted-key.yaml:3: tls_server_config.key_file: the key is encrypted"
        " (expected an unencrypted PEM key: the agent cannot ask for a passphrase)",
    ],
    "invalid-key-mismatch.yaml": [
        "invalid-key-mismatch.yaml:3: tls_server_config.key_file: is not the key of cert_file's"
        " certificate (expected the key it was issued for)",
    ],
    "invalid-max-below-min.yaml": [
        "invalid-max-below-min.yaml:5: tls_server_config.max_version: TLS12 is below"
        " min_version TLS13 (expected TLS12 or TLS13, not below min_version)",
    ],
    "invalid-missing-key-file.yaml": [
        "invalid-missing-key-file.yaml:2: tls_server_config.key_file: missing (expected the"
        " server's private key, a PEM file)",
    ],
    "invalid-not-a-mapping.yaml": [
        "invalid-not-a-mapping.yaml:1: got a list (expected a mapping with tls_server_config"
        " and basic_auth_users)",
    ],
    "invalid-not-pem.yaml": [
        "invalid-not-pem.yaml:2: tls_server_config.cert_file: holds no PEM certificate (expected"
        " a PEM file with -----BEGIN CERTIFICATE-----)",
        "invalid-not-pem.yaml:3: tls_server_config.key_file: holds no PEM private key (expected"
        " a PEM file with -----BEGIN PRIVATE KEY-----)",
    ],
    "invalid-tls-version.yaml": [
        "invalid-tls-version.yaml:4: tls_server_config.min_version: TLS11 is not supported:"
        " TLS 1.0 and 1.1 are deprecated by RFC 8996 (expected TLS12 or TLS13)",
        'invalid-tls-version.yaml:5: tls_server_config.max_version: got "1.3" (expected TLS12'
        " or TLS13)",
    ],
    "invalid-unknown-key.yaml": [
        "invalid-unknown-key.yaml:2: tls_server_config.certfile: unknown key (did you mean"
        " cert_file?)",
        "invalid-unknown-key.yaml:2: tls_server_config.cert_file: missing (expected the server's"
        " certificate, a PEM file)",
        "invalid-unknown-key.yaml:4: basic_auth_user: unknown key (did you mean basic_auth_users?)",
    ],
    "invalid-unreadable-file.yaml": [
        'invalid-unreadable-file.yaml:2: tls_server_config.cert_file: cannot read "missing.crt":'
        f" No such file or directory (expected {_FILE})",
    ],
    "invalid-unsupported-keys.yaml": [
        "invalid-unsupported-keys.yaml:3: tls_server_config.cert: not supported: inline"
        " certificates are not read (expected cert_file: a path to a PEM file)",
        "invalid-unsupported-keys.yaml:8: tls_server_config.cipher_suites: not supported:"
        " Python's ssl module chooses the cipher suites (remove it)",
        "invalid-unsupported-keys.yaml:10: http_server_config: not supported: the agent speaks"
        " HTTP/1.1 and adds no headers (remove it)",
        "invalid-unsupported-keys.yaml:12: rate_limit: not supported: the agent bounds"
        " connections and rendering itself (remove it)",
    ],
    "invalid-yaml-syntax.yaml": [
        "invalid-yaml-syntax.yaml:3: invalid YAML: mapping values are not allowed here"
        " (at column 12)",
    ],
}

# What no message may show: wrong hashes (maybe pasted passwords), inline PEM, key material.
SECRETS = (
    "tooshort",
    "plaintext-password-of-bob",
    "qRTBuFoULoYNA7AQ",
    "2UXri9cIDdgeKjBo4Rlpx",
    "MIIBdummyinlinecertificate",
    *(line for line in (DATA / "server.key").read_text().splitlines() if "-----" not in line),
    *(line for line in (DATA / "encrypted.key").read_text().splitlines() if "-----" not in line),
)


@pytest.fixture
def in_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tests/data/webconfig, so messages show the fixture names as written."""
    monkeypatch.chdir(DATA)


# -- loading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INVALID))
@pytest.mark.usefixtures("in_data")
def test_invalid_fixture(name: str) -> None:
    """Each invalid web config gives exactly its messages, in line order, all at once."""
    with pytest.raises(ConfigError) as caught:
        load_web_config(name)
    assert caught.value.problems == INVALID[name]


def test_every_invalid_fixture_is_mapped() -> None:
    """A new invalid-*.yaml cannot be added without its expected messages."""
    assert sorted(p.name for p in DATA.glob("invalid-*.yaml")) == sorted(INVALID)


@pytest.mark.usefixtures("in_data")
def test_no_message_shows_a_secret() -> None:
    """No message of any invalid fixture shows a hash, an inline PEM or key material."""
    for name in INVALID:
        with pytest.raises(ConfigError) as caught:
            load_web_config(name)
        text = str(caught.value)
        assert [secret for secret in SECRETS if secret in text] == [], name


@pytest.mark.usefixtures("in_data")
def test_mutual_tls_fixture_loads_as_written() -> None:
    """valid-mtls.yaml: its files, client auth and versions, and a context that requires and
    verifies client certificates with TLS 1.3 only."""
    web = load_web_config("valid-mtls.yaml")
    assert web.tls == TLSServerConfig(
        cert_file="server.crt",
        key_file="server.key",
        client_ca_file="ca.crt",
        client_auth_type="RequireAndVerifyClientCert",
        min_version="TLS13",
        max_version="TLS13",
    )
    assert web.users == ()
    assert web.tls_context is not None
    assert web.tls_context.verify_mode == ssl.CERT_REQUIRED
    assert web.tls_context.minimum_version == ssl.TLSVersion.TLSv1_3


@pytest.mark.usefixtures("in_data")
def test_empty_fixture_is_plain_http_without_auth() -> None:
    """An empty web config serves plain HTTP with no auth, as exporter-toolkit's does."""
    assert load_web_config("valid-empty.yaml") == WebConfig(path="valid-empty.yaml")


@pytest.mark.usefixtures("in_data")
def test_exporter_toolkit_users_file_checks_its_own_passwords() -> None:
    """exporter-toolkit's own users file loads, its $2y$ hashes verify the toolkit's test
    passwords, and repr() shows user names, never a hash."""
    web = load_web_config("valid-exporter-toolkit-users.yaml")
    assert web.user_names == ("alice", "bob", "carol", "dave")
    assert "$2y$" not in repr(web)
    auth = BasicAuth(dict(web.users))

    async def check() -> list[bool]:
        return [
            await auth.allows(basic("carol", "carol123")),
            await auth.allows(basic("dave", "dave123")),
            await auth.allows(basic("carol", "dave123")),
        ]

    assert asyncio.run(check()) == [True, True, False]


# -- basic auth ------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def hashed(password: str) -> bytes:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4))


def _basic_of(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


RIGHT = hashed("right")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"no colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:pw").decode(),
        basic("prometheus", "x" * 73),
    ],
    ids=["absent", "empty", "bearer", "bad-base64", "no-colon", "not-utf8", "over-72-bytes"],
)
def test_malformed_credentials_are_refused(header: str | None) -> None:
    """Absent, non-Basic, undecodable, colon-less, non-UTF-8 or too long: refused."""
    # bcrypt reads 72 bytes: a longer password would match the hash of its first 72.
    auth = BasicAuth({"prometheus": hashed("x" * 72)})
    assert asyncio.run(auth.allows(header)) is False


def test_a_right_password_costs_one_bcrypt_round_then_none() -> None:
    """The first right password is checked with bcrypt, the next ones from the cache; a wrong
    password and an unknown user always cost a round; the cache does not admit them."""
    auth = BasicAuth({"prometheus": hashed("right")})

    async def check() -> None:
        assert await auth.allows(basic("prometheus", "right"))
        assert auth.bcrypt_rounds == 1
        for _ in range(20):
            assert await auth.allows(basic("prometheus", "right"))
        assert auth.bcrypt_rounds == 1
        assert not await auth.allows(basic("prometheus", "wrong"))
        assert not await auth.allows(basic("nobody", "right"))
        assert auth.bcrypt_rounds == 3

    asyncio.run(check())


@settings(max_examples=200, deadline=None)
@given(header=st.one_of(st.text(max_size=120), st.binary(max_size=90).map(_basic_of)))
def test_any_authorization_header_is_a_yes_or_a_no(header: str) -> None:
    """Whatever the Authorization header holds, the check answers True or False: only the
    right user and password pass."""
    allowed = asyncio.run(BasicAuth({"prometheus": RIGHT}).allows(header))
    assert allowed is (header == basic("prometheus", "right"))


@pytest.fixture(scope="module", name="scratch")
def scratch_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the generated files (module scope: hypothesis reuses it)."""
    return tmp_path_factory.mktemp("webconfig")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_any_web_config_text_loads_or_says_what_is_wrong(scratch: Path, text: str) -> None:
    """Any text: a WebConfig, or a ConfigError whose every line starts with the file's path."""
    path = scratch / "web.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        web = load_web_config(str(path))
    except ConfigError as error:
        assert error.problems
        assert all(p.startswith(str(path)) and p.isprintable() for p in error.problems)
    else:
        assert isinstance(web, WebConfig)


# -- the server with a web config, in-process ----------------------------------------------------


def _leaf(
    ca: CertificateAuthority, directory: Path, stem: str, *, client: bool
) -> tuple[Path, Path]:
    """A certificate from `ca` for localhost and 127.0.0.1: a server's, or a client's."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Pki:
    """A server CA with a server certificate, and a client CA with a client certificate, plus a
    client certificate from a CA the server does not trust."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server_ca = CertificateAuthority("web test server CA")
        self.client_ca = CertificateAuthority("web test client CA")
        self.stranger_ca = CertificateAuthority("web test stranger CA")
        for ca, name in ((self.server_ca, "server-ca"), (self.client_ca, "client-ca")):
            (directory / f"{name}.crt").write_bytes(ca.pem)
        self.server = _leaf(self.server_ca, directory, "server", client=False)
        self.client = _leaf(self.client_ca, directory, "client", client=True)
        self.stranger = _leaf(self.stranger_ca, directory, "stranger", client=True)

    def web_config(self, text: str) -> WebConfig:
        path = self.directory / "web.yaml"
        path.write_text(text)
        return load_web_config(str(path))

    def client_context(self, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.directory / "server-ca.crt"))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
MTLS = TLS + "  client_ca_file: client-ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n"


@contextlib.asynccontextmanager
async def serving(web: WebConfig, limits: Limits | None = None) -> AsyncIterator[str]:
    """The agent (fake engine, first cycle done) behind `web`; yields https://127.0.0.1:PORT."""
    agent = agent_for("a.example")
    auth = BasicAuth(dict(web.users)) if web.users else None
    server = HttpServer(AgentApp(agent, auth), limits=limits, tls_context=web.tls_context)
    await server.start("127.0.0.1", 0)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(agent.run())
            try:
                await eventually(lambda: agent.ready, "first cycle")
                host, port = server.address
                yield f"https://{host}:{port}"
            finally:
                agent.stop()
    finally:
        await server.close()


def https(context: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=DEADLINE, verify=context)


def test_tls_scrape(pki: Pki) -> None:
    """With tls_server_config, /metrics answers over verified TLS; plain HTTP gets nothing."""

    async def scenario() -> None:
        async with serving(pki.web_config(TLS)) as url, https(pki.client_context()) as http:
            response = await http.get(f"{url}/metrics")
            assert response.status_code == 200
            assert sample(response.text, "registry_probe_success", registry="a.example") == 1
            async with httpx.AsyncClient(trust_env=False, timeout=DEADLINE) as plain:
                with pytest.raises(httpx.HTTPError):
                    await plain.get(url.replace("https://", "http://") + "/healthz")

    asyncio.run(scenario())


def test_mutual_tls_admits_the_client_ca_and_refuses_others(pki: Pki) -> None:
    """RequireAndVerifyClientCert: a certificate from client_ca_file is served; none, or one
    from another CA, is refused during the handshake."""

    async def scenario() -> None:
        async with serving(pki.web_config(MTLS)) as url:
            async with https(pki.client_context(pki.client)) as http:
                assert (await http.get(f"{url}/metrics")).status_code == 200
            for cert in (None, pki.stranger):
                async with https(pki.client_context(cert)) as http:
                    with pytest.raises((httpx.ConnectError, httpx.ReadError)):
                        await http.get(f"{url}/healthz")

    asyncio.run(scenario())


def test_basic_auth_guards_metrics_and_leaves_health_open(pki: Pki) -> None:
    """basic_auth_users: /metrics needs the right password (401 with WWW-Authenticate Basic
    otherwise); /healthz and /readyz answer kubelet without credentials."""
    web = pki.web_config(TLS + f"basic_auth_users:\n  prometheus: {hashed('s3cret').decode()}\n")

    async def scenario() -> None:
        async with serving(web) as url, https(pki.client_context()) as http:
            right = await http.get(f"{url}/metrics", auth=("prometheus", "s3cret"))
            assert right.status_code == 200
            assert sample(right.text, "registry_probe_build_info") == 1
            for auth in (None, ("prometheus", "wrong"), ("someone", "s3cret")):
                refused = await http.get(f"{url}/metrics", auth=auth)
                assert refused.status_code == 401
                assert refused.headers["www-authenticate"].startswith('Basic realm="')
                assert "registry_probe" not in refused.text
            assert (await http.get(f"{url}/healthz")).status_code == 200
            assert (await http.get(f"{url}/readyz")).status_code == 200

    asyncio.run(scenario())


def test_a_silent_tls_client_is_dropped_after_the_head_timeout(pki: Pki) -> None:
    """A client that connects to the TLS port and never starts the handshake is dropped after
    head_seconds."""

    async def scenario() -> None:
        async with serving(pki.web_config(TLS), Limits(head_seconds=0.5)) as url:
            host, port = url.removeprefix("https://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            started = time.monotonic()
            async with asyncio.timeout(DEADLINE):
                with contextlib.suppress(ConnectionError):
                    assert await reader.read() == b""
            assert 0.4 < time.monotonic() - started < 2.0
            writer.close()

    asyncio.run(scenario())


# -- the command -------------------------------------------------------------------------------


def _run_command(*args: str, cwd: Path = DATA) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "probe", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )


@pytest.mark.parametrize("name", ["invalid-bcrypt-hashes.yaml", "invalid-key-mismatch.yaml"])
def test_run_exits_two_on_a_bad_web_config(name: str, tmp_path: Path) -> None:
    """`run --web-config BAD` logs each problem, shows no secret, and exits 2 before serving."""
    process = _run_command(
        "--web-config", name, "--registry", "a.example", "--host-root", str(tmp_path)
    )
    _, stderr = process.communicate(timeout=DEADLINE)
    text = stderr.decode()
    assert process.returncode == 2, text
    for problem in INVALID[name]:
        assert f"bad web configuration error={json.dumps(problem)}" in text
    assert "agent started" not in text
    assert [secret for secret in SECRETS if secret in text] == []


def test_run_serves_tls_and_basic_auth_from_the_flag(pki: Pki, tmp_path: Path) -> None:
    """`registry-probe run --web-config FILE` serves /metrics over TLS behind basic auth and
    says so in its start line, without a hash."""
    hash_text = hashed("s3cret").decode()
    (tmp_path / "web.yaml").write_text(TLS + f"basic_auth_users:\n  prometheus: {hash_text}\n")
    process = _run_command(
        "--web-config",
        "web.yaml",
        "--listen",
        "127.0.0.1:0",
        "--registry",
        "http://127.0.0.1:9",
        "--no-discover",
        "--host-root",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert process.stderr is not None
    try:
        # The start line; a node problem may come first (a process named containerd elsewhere
        # on the machine running the tests is one).
        for _ in range(20):
            line = process.stderr.readline().decode()
            found = re.search(r"agent started listen=(\S+)", line)
            if found or not line:
                break
        assert found, line
        assert "tls=on basic_auth_users=1" in line
        context = pki.client_context()
        with httpx.Client(trust_env=False, timeout=DEADLINE, verify=context) as http:
            url = f"https://{found.group(1)}/metrics"
            assert http.get(url).status_code == 401
            metrics = http.get(url, auth=("prometheus", "s3cret"))
            assert sample(metrics.text, "registry_probe_build_info") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0
    assert hash_text not in line + rest.decode()


@pytest.fixture
def served() -> Iterator[list[ServedAgent]]:
    started: list[ServedAgent] = []
    yield started
    for agent in started:
        agent.close()


def test_sighup_reloads_the_web_config_and_keeps_it_when_broken(
    tmp_path: Path, served: list[ServedAgent]
) -> None:
    """SIGHUP applies a changed password; a broken web config is logged (no hash) and the
    previous one stays; plain HTTP with basic auth is warned about."""
    web = tmp_path / "web.yaml"
    first, second = hashed("first").decode(), hashed("second").decode()
    web.write_text(f"basic_auth_users:\n  prometheus: {first}\n")
    agent = ServedAgent(tmp_path, ["a.example"], web_config=str(web))
    served.append(agent)

    def status(password: str) -> int:
        with httpx.Client(trust_env=False, timeout=DEADLINE) as http:
            return http.get(f"{agent.url()}/metrics", auth=("prometheus", password)).status_code

    assert (status("first"), status("second")) == (200, 401)
    web.write_text(f"basic_auth_users:\n  prometheus: {second}\n")
    agent.hangup()
    for _ in range(int(DEADLINE / 0.05)):
        if status("second") == 200:
            break
        time.sleep(0.05)
    assert (status("first"), status("second")) == (401, 200)
    web.write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
    agent.hangup()
    for _ in range(int(DEADLINE / 0.05)):
        if "web config reload failed" in agent.stderr:
            break
        time.sleep(0.05)
    assert status("second") == 200
    assert agent.stop() == 0
    log = agent.stderr
    assert "web config reload failed; keeping the previous one" in log
    assert "basic_auth_users.prometheus: is not a bcrypt hash" in log
    assert "passwords cross the network in clear text" in log
    assert log.count("web config reloaded") == 1
    assert first not in log and second not in log and "not-a-hash" not in log
