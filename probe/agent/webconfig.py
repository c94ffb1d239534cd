"""The web config of `registry-probe run --web-config FILE`: TLS and basic auth for the server.

The file has the shape of Prometheus exporter-toolkit's `web-config.yml`
(github.com/prometheus/exporter-toolkit, docs/web-configuration.md), so a file written for
node_exporter works here too:

    tls_server_config:
      cert_file: /etc/registry-probe/web/tls.crt   # relative paths: beside this file
      key_file: /etc/registry-probe/web/tls.key
      client_ca_file: /etc/registry-probe/web/ca.crt  # with a client_auth_type that verifies
      client_auth_type: RequireAndVerifyClientCert    # default NoClientCert
      min_version: TLS12                              # default TLS12; max_version default TLS13
    basic_auth_users:
      prometheus: $2y$10$...                          # bcrypt, as `htpasswd -nBC 10 ""` prints

An empty file serves plain HTTP with no auth, as exporter-toolkit does.

Where it differs from exporter-toolkit, and why:
- **Basic auth guards /metrics only; /healthz and /readyz answer without it.** exporter-toolkit
  guards every path. kubelet's httpGet probes can use HTTPS (without verifying the certificate)
  but cannot send basic auth unless the password is written into the pod spec, which would
  defeat the Secret. The health endpoints tell only "ok" or "ready": nothing to protect. TLS,
  being per connection, applies to every path: with `RequireAndVerifyClientCert`, kubelet's
  httpGet probes cannot connect (it has no client certificate); use tcpSocket probes then.
- **Only what Python's ssl module can do.** `RequestClientCert` and `RequireAnyClientCert` ask
  for a client certificate without verifying it, which it cannot do (and exporter-toolkit calls
  them insecure); `cipher_suites`, `curve_preferences` and `prefer_server_cipher_suites` take Go's
  names; `client_allowed_sans`, inline `cert`/`key`/`client_ca`, `http_server_config` and
  `rate_limit` are not implemented. Each is refused with a message naming its key, never
  silently ignored: a security setting that does nothing is worse than an error.
  TLS 1.0 and 1.1 are refused (RFC 8996 deprecates them).
- **Read at start and on SIGHUP**, not on every request: a bad file at start stops `run` (exit
  2); a bad file on SIGHUP is logged and the previous config stays.

Problems are reported like the main config's (`probe.config.loader`, whose reader this module
reuses): `FILE:LINE: KEY.PATH: what is wrong (what is expected)`, every problem at once. No
message ever shows a password hash or the content of a key file.
"""

from __future__ import annotations

import difflib
import re
import ssl
from dataclasses import dataclass, field

import yaml

from probe.config import ConfigError
from probe.config.loader import _compose, _got, _key_path, _read_text, _Reader

TOP_LEVEL_KEYS = ("tls_server_config", "basic_auth_users")
TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "min_version",
    "max_version",
)
# exporter-toolkit's keys this agent does not implement, each with what to do instead.
_UNSUPPORTED_TOP = {
    "http_server_config": "the agent speaks HTTP/1.1 and adds no headers (remove it)",
    "rate_limit": "the agent bounds connections and rendering itself (remove it)",
}
_UNSUPPORTED_TLS = {
    "cert": "inline certificates are not read (expected cert_file: a path to a PEM file)",
    "key": "inline keys are not read (expected key_file: a path to a PEM file)",
    "client_ca": "inline CAs are not read (expected client_ca_file: a path to a PEM file)",
    "cipher_suites": "Python's ssl module chooses the cipher suites (remove it)",
    "curve_preferences": "Python's ssl module chooses the curves (remove it)",
    "prefer_server_cipher_suites": "Python's ssl module chooses the cipher suites (remove it)",
    "client_allowed_sans": "not implemented (remove it; give the scrapers a client CA of "
    "their own instead)",
}
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_DEPRECATED_VERSIONS = ("TLS10", "TLS11")

_AUTH_TYPE_FORMS = "NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
_VERSION_FORMS = "TLS12 or TLS13"
_HASH_FORMS = "a bcrypt hash such as $2y$10$..., as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints"
# $2a$/$2b$/$2y$ (the variants bcrypt libraries write), a two-digit cost, then 22 characters of
# salt and 31 of hash in bcrypt's base64 alphabet.
_BCRYPT = re.compile(rb"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_MAX_PEM_BYTES = 1 << 20


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"


@dataclass(frozen=True)
class WebConfig:
    """A loaded web config. `users` holds bcrypt hashes: kept out of repr()."""

    path: str
    tls: TLSServerConfig | None = None
    users: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)
    tls_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @property
    def user_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.users)

    def describe(self) -> dict[str, str]:
        """What a log line says about it: never a hash or a key."""
        if self.tls is None:
            tls = "off"
        elif self.tls.client_auth_type == "NoClientCert":
            tls = "on"
        else:
            tls = f"on, client certificates {self.tls.client_auth_type}"
        return {"web_config": self.path, "tls": tls, "basic_auth_users": str(len(self.users))}


def load_web_config(path: str) -> WebConfig:
    """Read and check a web config file; build its TLS context (so key and certificate are
    known to load). Raises ConfigError listing every problem, each with its line and key."""
    root = _compose(path, _read_text(path))
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag.endswith(":null")):
        return WebConfig(path=path)
    reader = _WebReader(path)
    config = reader.web_config(root)
    if reader.problems or config is None:
        raise ConfigError(reader.sorted_problems())
    return config


class _EncryptedKey(Exception):
    """OpenSSL asked for a passphrase: the key file is encrypted."""


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and wait for good.
    raise _EncryptedKey


class _WebReader(_Reader):
    def web_config(self, root: yaml.Node) -> WebConfig | None:
        values = self.mapping(
            root,
            "",
            TOP_LEVEL_KEYS + tuple(_UNSUPPORTED_TOP),
            "a mapping with tls_server_config and basic_auth_users",
        )
        if values is None:
            return None
        self.unsupported(values, "", _UNSUPPORTED_TOP)
        tls = context = None
        users: tuple[tuple[str, bytes], ...] = ()
        if "tls_server_config" in values:
            found = self.tls_server_config(values["tls_server_config"], "tls_server_config")
            if found is not None:
                tls, context = found
        if "basic_auth_users" in values:
            users = self.basic_auth_users(values["basic_auth_users"], "basic_auth_users")
        return WebConfig(path=self.path, tls=tls, users=users, tls_context=context)

    def unsupported(self, values: dict[str, yaml.Node], parent: str, keys: dict[str, str]) -> None:
        for name, why in keys.items():
            if name in values:
                self.problem(values[name], _key_path(parent, name), f"not supported: {why}")

    # -- tls_server_config -------------------------------------------------------------------

    def tls_server_config(
        self, node: yaml.Node, key: str
    ) -> tuple[TLSServerConfig, ssl.SSLContext] | None:
        values = self.mapping(
            node,
            key,
            TLS_KEYS + tuple(_UNSUPPORTED_TLS),
            "a mapping such as {cert_file: tls.crt, key_file: tls.key}",
        )
        if values is None:
            return None
        self.unsupported(values, key, _UNSUPPORTED_TLS)
        ok = not any(name in values for name in _UNSUPPORTED_TLS)
        files: dict[str, str | None] = {}
        for name, inline, what in (
            ("cert_file", "cert", "the server's certificate, a PEM file"),
            ("key_file", "key", "the server's private key, a PEM file"),
        ):
            if name not in values:
                if inline not in values:  # else already told to use `name` instead
                    self.problem(node, f"{key}.{name}", f"missing (expected {what})")
                ok = False
                continue
            files[name] = self.readable_file(values[name], f"{key}.{name}")
        ca_file = None
        if "client_ca_file" in values:
            ca_file = self.readable_file(values["client_ca_file"], f"{key}.client_ca_file")
            ok = ok and ca_file is not None
        auth_type: str | None = "NoClientCert"
        if "client_auth_type" in values:
            auth_type = self.client_auth_type(values["client_auth_type"], f"{key}.client_auth_type")
            ok = ok and auth_type is not None
        versions = {"min_version": "TLS12", "max_version": "TLS13"}
        for name in versions:
            if name in values:
                version = self.tls_version(values[name], f"{key}.{name}")
                ok = ok and version is not None
                versions[name] = version or versions[name]
        if (
            "max_version" in values
            and TLS_VERSIONS[versions["max_version"]] < TLS_VERSIONS[versions["min_version"]]
        ):
            self.problem(
                values["max_version"],
                f"{key}.max_version",
                f"{versions['max_version']} is below min_version {versions['min_version']} "
                f"(expected {_VERSION_FORMS}, not below min_version)",
            )
            ok = False
        if "client_ca_file" in values and auth_type == "NoClientCert":
            self.problem(
                values["client_ca_file"],
                f"{key}.client_ca_file",
                "set, but client_auth_type is NoClientCert, so no client certificate is asked "
                "for (expected client_auth_type: RequireAndVerifyClientCert)",
            )
            ok = False
        if auth_type not in (None, "NoClientCert") and "client_ca_file" not in values:
            self.problem(
                values["client_auth_type"],
                f"{key}.client_auth_type",
                f"{auth_type} verifies client certificates, but no client_ca_file says who "
                "issues them (expected client_ca_file)",
            )
            ok = False
        cert_file, key_file = files.get("cert_file"), files.get("key_file")
        if not ok or cert_file is None or key_file is None or auth_type is None:
            return None
        config = TLSServerConfig(
            cert_file=cert_file,
            key_file=key_file,
            client_ca_file=ca_file,
            client_auth_type=auth_type,
            min_version=versions["min_version"],
            max_version=versions["max_version"],
        )
        context = self.context(config, values, key)
        return None if context is None else (config, context)

    def client_auth_type(self, node: yaml.Node, key: str) -> str | None:
        text = self.string(node, key, _AUTH_TYPE_FORMS)
        if text is None:
            return None
        if text in CLIENT_AUTH_TYPES:
            return text
        if text in _UNVERIFIED_CLIENT_AUTH:
            self.problem(
                node,
                key,
                f"{text} asks for a client certificate without verifying it: insecure, and "
                f"Python's ssl module cannot do it (expected {_AUTH_TYPE_FORMS})",
            )
            return None
        close = difflib.get_close_matches(text, CLIENT_AUTH_TYPES, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        self.problem(node, key, f"{_got(node)} (expected {_AUTH_TYPE_FORMS}{hint})")
        return None

    def tls_version(self, node: yaml.Node, key: str) -> str | None:
        text = self.string(node, key, _VERSION_FORMS)
        if text is None:
            return None
        if text in TLS_VERSIONS:
            return text
        if text in _DEPRECATED_VERSIONS:
            self.problem(
                node,
                key,
                f"{text} is not supported: TLS 1.0 and 1.1 are deprecated by RFC 8996 "
                f"(expected {_VERSION_FORMS})",
            )
        else:
            self.problem(node, key, f"{_got(node)} (expected {_VERSION_FORMS})")
        return None

    def context(
        self, config: TLSServerConfig, values: dict[str, yaml.Node], key: str
    ) -> ssl.SSLContext | None:
        """The server's SSLContext; a file that does not load is a problem on its own key."""
        cert_key, key_key = f"{key}.cert_file", f"{key}.key_file"
        ok = self.pem(values["cert_file"], cert_key, config.cert_file, "CERTIFICATE")
        ok = self.pem(values["key_file"], key_key, config.key_file, "PRIVATE KEY") and ok
        if config.client_ca_file is not None:
            ca_key = f"{key}.client_ca_file"
            ca_ok = self.pem(values["client_ca_file"], ca_key, config.client_ca_file, "CERTIFICATE")
            ok = ca_ok and ok
        if not ok:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[config.min_version]
        context.maximum_version = TLS_VERSIONS[config.max_version]
        context.set_alpn_protocols(["http/1.1"])
        try:
            context.load_cert_chain(config.cert_file, config.key_file, password=_no_passphrase)
        except _EncryptedKey:
            self.problem(
                values["key_file"],
                key_key,
                "the key is encrypted (expected an unencrypted PEM key: the agent cannot ask "
                "for a passphrase)",
            )
            return None
        except ssl.SSLError as error:  # before OSError: it is one
            if error.reason == "KEY_VALUES_MISMATCH":
                self.problem(
                    values["key_file"],
                    key_key,
                    "is not the key of cert_file's certificate (expected the key it was "
                    "issued for)",
                )
            else:
                self.problem(
                    values["cert_file"],
                    cert_key,
                    f"cannot load it with key_file: {_ssl_reason(error)} (expected a PEM "
                    "certificate and its PEM key)",
                )
            return None
        except OSError as error:  # a file gone since it was checked
            self.problem(
                values["cert_file"], cert_key, f"cannot read it: {error.strerror or error}"
            )
            return None
        if config.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=config.client_ca_file)
            except OSError as error:  # ssl.SSLError included
                reason = (
                    _ssl_reason(error)
                    if isinstance(error, ssl.SSLError)
                    else (error.strerror or str(error))
                )
                self.problem(
                    values["client_ca_file"],
                    f"{key}.client_ca_file",
                    f"cannot load it: {reason} (expected PEM CA certificates)",
                )
                return None
        context.verify_mode = CLIENT_AUTH_TYPES[config.client_auth_type]
        return context

    def pem(self, node: yaml.Node, key: str, path: str, label: str) -> bool:
        """Whether the file holds a PEM block of this kind; says what it holds if not.

        Reads the file but never shows its content (it may be a private key)."""
        try:
            with open(path, "rb") as file:
                data = file.read(_MAX_PEM_BYTES + 1)
        except OSError as error:
            self.problem(node, key, f"cannot read it: {error.strerror or type(error).__name__}")
            return False
        if len(data) > _MAX_PEM_BYTES:
            self.problem(node, key, f"larger than 1 MiB (expected a PEM {label.lower()})")
            return False
        expected = f"expected a PEM file with -----BEGIN {label}-----"
        if label == "PRIVATE KEY":
            if b"ENCRYPTED" in data:
                self.problem(
                    node,
                    key,
                    "the key is encrypted (expected an unencrypted PEM key: the agent cannot "
                    "ask for a passphrase)",
                )
                return False
            if re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", data) is None:
                self.problem(node, key, f"holds no PEM private key ({expected})")
                return False
            return True
        if f"-----BEGIN {label}-----".encode() not in data:
            self.problem(node, key, f"holds no PEM certificate ({expected})")
            return False
        return True

    # -- basic_auth_users --------------------------------------------------------------------

    def basic_auth_users(self, node: yaml.Node, key: str) -> tuple[tuple[str, bytes], ...]:
        if not isinstance(node, yaml.MappingNode):
            self.problem(
                node, key, f"{_got(node)} (expected a mapping of user names to bcrypt hashes)"
            )
            return ()
        users: list[tuple[str, bytes]] = []
        for name, (key_node, value) in self._entries(node, key, frozenset()).items():
            user_key = _key_path(key, name)
            if not name:
                self.problem(key_node, user_key, "an empty user name (expected a name)")
                continue
            if ":" in name:
                self.problem(
                    key_node,
                    user_key,
                    "a user name cannot contain a colon: the Authorization header ends the name "
                    "at the first one (expected a name without a colon)",
                )
                continue
            hashed = self.bcrypt_hash(value, user_key)
            if hashed is not None:
                users.append((name, hashed))
        return tuple(users)

    def bcrypt_hash(self, node: yaml.Node, key: str) -> bytes | None:
        """A bcrypt hash. Never shown in a message, even when it is wrong: it may be a password
        pasted in the wrong place."""
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, key, f"{_got(node)} (expected {_HASH_FORMS})")
            return None
        if node.tag.endswith(":null"):
            self.problem(node, key, f"has no value (expected {_HASH_FORMS})")
            return None
        text = str(node.value).strip()
        found = _BCRYPT.fullmatch(text.encode("utf-8", "replace"))
        if found is None:
            self.problem(
                node, key, f"is not a bcrypt hash, and is not shown here (expected {_HASH_FORMS})"
            )
            return None
        cost = int(found.group(1))
        if not 4 <= cost <= 31:
            self.problem(
                node, key, f"has the bcrypt cost {cost} (expected a cost from 4 to 31; 10 is usual)"
            )
            return None
        return found.group(0)


def _ssl_reason(error: ssl.SSLError) -> str:
    """OpenSSL's reason, without the `(_ssl.c:1234)` of Python's message."""
    if error.reason:
        return str(error.reason).replace("_", " ").lower()
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(error.args[-1] if error.args else error))
