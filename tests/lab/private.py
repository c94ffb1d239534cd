"""Registries that want credentials, for the image tests: real docker-registry instances.

- `basicreg.lab.test`: `auth: htpasswd` (bcrypt), so `GET /v2/` and every pull answer 401 with a
  Basic challenge: a token-less private registry (a plain docker-registry, Nexus, Artifactory's
  Basic mode).
- `tokenreg.lab.test`: `auth: token`, behind `tokenauth.lab.test` (tokenserver.py): the realm
  issues JWTs whose `access` grants `lab/tiny` to `labuser` only, so another valid account
  gets a token that pulls nothing (valid credentials, wrong repository), and anonymous requests
  get an empty token, as Harbor and Docker Hub do.

Both hold the lab's tiny image as `lab/tiny:1` (pushed with labuser's credentials). Passwords are
random per session, so a test can search every output for them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import sys
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .containerd import NodeView
from .lab import LAB_DIR, Lab, Service

BASIC = Service("basicreg.lab.test", ("198.18.1.85",), "docker-registry")
TOKEN = Service("tokenreg.lab.test", ("198.18.1.86",), "docker-registry")
TOKEN_AUTH_NAME, TOKEN_AUTH_ADDRESS = "tokenauth.lab.test", "198.18.1.87"
ISSUER = "registry-probe lab token issuer"
USER, OTHER = "labuser", "otheruser"
REPOSITORY, TAG = "lab/tiny", "1"


class PrivateRegistries:
    """The two private registries of one lab session, and the accounts they know."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.passwords = {
            USER: f"reg-pw-{secrets.token_hex(8)}",
            OTHER: f"other-pw-{secrets.token_hex(8)}",
        }
        self.directory = lab.workdir / "private-registries"
        self.digest = ""
        self._secrets = 0

    def start(self) -> None:
        """Start both registries and the token service, then push the image into both."""
        self.directory.mkdir()
        htpasswd = self.directory / "htpasswd"
        htpasswd.write_text(
            "".join(
                f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                for user, password in self.passwords.items()
            )
        )
        self.lab.add_registry(
            BASIC, f"auth:\n  htpasswd:\n    realm: lab-basic\n    path: {htpasswd}\n"
        )
        signing_key, signing_cert = self._signing_pair()
        self._start_token_service(signing_key, signing_cert)
        self.lab.add_registry(
            TOKEN,
            "auth:\n  token:\n"
            f"    realm: https://{TOKEN_AUTH_NAME}/token\n"
            f"    service: {TOKEN.name}\n"
            f"    issuer: {ISSUER}\n"
            f"    rootcertbundle: {signing_cert}\n",
        )
        self._push()

    def _signing_pair(self) -> tuple[Path, Path]:
        """An RSA key and a self-signed certificate for it: the registry trusts tokens whose
        x5c header carries that certificate (its rootcertbundle)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        key_path = self.directory / "token-signing.key"
        cert_path = self.directory / "token-signing.crt"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key_path, cert_path

    def _start_token_service(self, signing_key: Path, signing_cert: Path) -> None:
        assert self.lab.net is not None
        self.lab.net.ip("addr", "add", f"{TOKEN_AUTH_ADDRESS}/32", "dev", "lo")
        self.lab.set_name(TOKEN_AUTH_NAME, {"A": [TOKEN_AUTH_ADDRESS]})
        tls = self.lab.ca.issue(self.directory, "tokenauth", [TOKEN_AUTH_NAME])
        config = self.directory / "tokenserver.json"
        config.write_text(
            json.dumps(
                {
                    "listen": f"{TOKEN_AUTH_ADDRESS}:443",
                    "cert": str(tls.cert),
                    "key": str(tls.key),
                    "signing_key": str(signing_key),
                    "signing_cert": str(signing_cert),
                    "issuer": ISSUER,
                    "service": TOKEN.name,
                    "accounts": self.passwords,
                    "grants": {USER: {REPOSITORY: ["pull", "push"]}},
                }
            )
        )
        self.lab.net.spawn(
            "tokenserver",
            [sys.executable, str(LAB_DIR / "tokenserver.py"), str(config)],
            self.lab.workdir / "tokenserver.log",
            listens=[("tcp", TOKEN_AUTH_ADDRESS, 443)],
        )

    def _push(self) -> None:
        """The tiny image into both registries, as labuser (a node view: the lab's DNS and CA)."""
        script = LAB_DIR / "ociimage.py"
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "REGISTRY_USER": USER,
            "REGISTRY_PASSWORD": self.passwords[USER],
        }
        registries = [f"https://{BASIC.name}", f"https://{TOKEN.name}"]
        with NodeView(self.lab, self.lab.host_root()) as view:
            argv = [sys.executable, str(script), REPOSITORY, TAG, *registries]
            done = view.run(argv, timeout=60, env=env)
        assert done.returncode == 0, f"push failed: {done.stdout}\n{done.stderr}"
        self.digest = json.loads(done.stdout)["digest"]

    def pull_secret(self, directory: Path, server: str, user: str, password: str) -> Path:
        """A `.dockerconfigjson` as `kubectl create secret docker-registry --docker-server=SERVER`
        writes it."""
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._secrets += 1
        path = directory / f"pull-secret-{self._secrets}.json"
        document = {"auths": {server: {"username": user, "password": password, "auth": auth}}}
        path.write_text(json.dumps(document), encoding="utf-8")
        path.chmod(0o600)
        return path
