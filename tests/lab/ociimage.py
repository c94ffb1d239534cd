"""A tiny OCI image, built in Python, and its upload to a registry with the distribution API.

`tiny_image()` is one small gzipped layer (a single file), its config and an OCI manifest for
the machine's own platform (what `ctr images pull` picks), byte-for-byte the same on every call,
so every lab registry that holds it serves the same digests. As a script, run inside a lab
node whose resolver and trust store are the lab's (containerd.py's node view):

    python ociimage.py REPOSITORY TAG https://HOST[:PORT] ...

uploads it to each registry: every blob with a monolithic upload (`POST /v2/<name>/blobs/uploads/`,
then `PUT <location>?digest=...` with the whole blob), then `PUT /v2/<name>/manifests/<tag>`.
With `REGISTRY_USER` and `REGISTRY_PASSWORD` in the environment it answers a 401 as a client of
distribution's auth does: Basic, or a token for `repository:<name>:pull,push` from the Bearer
challenge's realm. `--index` also pushes an OCI index over the image as `<tag>-index`, listing
this machine's platform and linux/riscv64, for platform checks. Each request is bounded by 10 s;
a failure exits non-zero with the registry's answer.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import platform
import re
import ssl
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}
REQUEST_SECONDS = 10


@dataclass(frozen=True)
class Image:
    """An image's blobs (digest -> bytes, config and layer) and its manifest."""

    blobs: dict[str, bytes]
    manifest: bytes
    media_type: str = MANIFEST_TYPE

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _layer() -> tuple[bytes, bytes]:
    """A tar with one file, and its gzip; fixed timestamps, so the bytes never change."""
    body = b"registry-probe lab image\n"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime, info.mode = len(body), 0, 0o644
        tar.addfile(info, io.BytesIO(body))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, mtime=0)


def tiny_image() -> Image:
    """The lab's image: one layer, for the platform of this machine."""
    tar_bytes, layer = _layer()
    config = json.dumps(
        {
            "architecture": _ARCH.get(platform.machine(), platform.machine()),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(tar_bytes)]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": digest_of(layer), "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    return Image({digest_of(config): config, digest_of(layer): layer}, manifest)


class _Auth:
    """What a 401 asks for, answered with the environment's account (never printed)."""

    def __init__(self, context: ssl.SSLContext, repository: str) -> None:
        self.context = context
        self.repository = repository
        self.user = os.environ.get("REGISTRY_USER")
        self.password = os.environ.get("REGISTRY_PASSWORD")
        self.header: str | None = None

    def basic(self) -> str:
        secret = f"{self.user}:{self.password}".encode()
        return "Basic " + base64.b64encode(secret).decode()

    def answer(self, challenge: str) -> None:
        if self.user is None:
            raise SystemExit(f"401 ({challenge}) and no REGISTRY_USER to answer it")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            self.header = self.basic()
            return
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = urllib.parse.urlencode(
            {
                "service": fields.get("service", ""),
                "scope": f"repository:{self.repository}:pull,push",
            }
        )
        request = urllib.request.Request(  # noqa: S310 - the realm is https (asserted)
            f"{fields['realm']}?{query}", headers={"Authorization": self.basic()}
        )
        assert fields["realm"].startswith("https://"), fields
        with _opener(self.context).open(request, timeout=REQUEST_SECONDS) as response:
            self.header = "Bearer " + json.loads(response.read())["token"]


def _opener(context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )


def _request(
    context: ssl.SSLContext,
    method: str,
    url: str,
    body: bytes = b"",
    content_type: str = "",
    auth: _Auth | None = None,
) -> tuple[int, dict[str, str], bytes]:
    assert url.startswith("https://"), url
    for _ in range(2):
        headers = {"Content-Type": content_type} if content_type else {}
        if auth is not None and auth.header is not None:
            headers["Authorization"] = auth.header
        request = urllib.request.Request(url, data=body or None, method=method, headers=headers)  # noqa: S310
        try:
            with _opener(context).open(request, timeout=REQUEST_SECONDS) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            if error.code != 401 or auth is None or auth.header is not None:
                raise
            auth.answer(error.headers.get("WWW-Authenticate", ""))
    raise AssertionError("unreachable: the second attempt returns or raises")


def push(image: Image, base: str, repository: str, tag: str) -> None:
    """Upload `image` to the registry at `base` (`https://host[:port]`) as `repository:tag`."""
    context = ssl.create_default_context()
    auth = _Auth(context, repository)
    for digest, blob in image.blobs.items():
        status, headers, _ = _request(
            context, "POST", f"{base}/v2/{repository}/blobs/uploads/", auth=auth
        )
        assert status == 202, f"POST upload: {status}"
        location = urllib.parse.urljoin(f"{base}/", headers["Location"])
        separator = "&" if "?" in location else "?"
        url = f"{location}{separator}digest={urllib.parse.quote(digest)}"
        status, _, _ = _request(context, "PUT", url, blob, "application/octet-stream", auth)
        assert status == 201, f"PUT blob {digest}: {status}"
    url = f"{base}/v2/{repository}/manifests/{tag}"
    status, headers, _ = _request(context, "PUT", url, image.manifest, image.media_type, auth)
    assert status == 201, f"PUT manifest: {status}"
    assert headers.get("Docker-Content-Digest") == image.digest, headers


def index_of(image: Image) -> Image:
    """An OCI index over `image`, listed for this machine's platform and for linux/riscv64 (the
    registry checks that what an index names exists, so both entries name the same manifest)."""
    entry = {"mediaType": MANIFEST_TYPE, "digest": image.digest, "size": len(image.manifest)}
    arch = _ARCH.get(platform.machine(), platform.machine())
    manifests = [
        {**entry, "platform": {"architecture": arch, "os": "linux"}},
        {**entry, "platform": {"architecture": "riscv64", "os": "linux"}},
    ]
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": manifests}, sort_keys=True
    ).encode()
    return Image({}, body, INDEX_TYPE)


def main(argv: list[str]) -> None:
    with_index = "--index" in argv
    repository, tag, *registries = [a for a in argv if a != "--index"]
    image = tiny_image()
    for base in registries:
        push(image, base, repository, tag)
        if with_index:
            push(index_of(image), base, repository, f"{tag}-index")
    print(json.dumps({"digest": image.digest, "registries": registries}))


if __name__ == "__main__":
    main(sys.argv[1:])
