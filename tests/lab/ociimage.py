"""A tiny OCI image, built in Python, and its upload to a registry with the distribution API.

`tiny_image()` is one small gzipped layer (a single file), its config and an OCI manifest for
the machine's own platform (what `ctr images pull` picks), byte-for-byte the same on every call,
so every lab registry that holds it serves the same digests. As a script, run inside a lab
node whose resolver and trust store are the lab's (containerd.py's node view):

    python ociimage.py REPOSITORY TAG https://HOST[:PORT] ...

uploads it to each registry: every blob with a monolithic upload (`POST /v2/<name>/blobs/uploads/`,
then `PUT <location>?digest=...` with the whole blob), then `PUT /v2/<name>/manifests/<tag>`.
Each request is bounded by 10 s; a failure exits non-zero with the registry's answer.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import ssl
import sys
import tarfile
import urllib.parse
import urllib.request
from dataclasses import dataclass

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
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


def _request(
    context: ssl.SSLContext, method: str, url: str, body: bytes = b"", content_type: str = ""
) -> tuple[int, dict[str, str], bytes]:
    assert url.startswith("https://"), url
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)  # noqa: S310
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(request, timeout=REQUEST_SECONDS) as response:
        return response.status, dict(response.headers), response.read()


def push(image: Image, base: str, repository: str, tag: str) -> None:
    """Upload `image` to the registry at `base` (`https://host[:port]`) as `repository:tag`."""
    context = ssl.create_default_context()
    for digest, blob in image.blobs.items():
        status, headers, _ = _request(context, "POST", f"{base}/v2/{repository}/blobs/uploads/")
        assert status == 202, f"POST upload: {status}"
        location = urllib.parse.urljoin(f"{base}/", headers["Location"])
        separator = "&" if "?" in location else "?"
        url = f"{location}{separator}digest={urllib.parse.quote(digest)}"
        status, _, _ = _request(context, "PUT", url, blob, "application/octet-stream")
        assert status == 201, f"PUT blob {digest}: {status}"
    url = f"{base}/v2/{repository}/manifests/{tag}"
    status, headers, _ = _request(context, "PUT", url, image.manifest, image.media_type)
    assert status == 201, f"PUT manifest: {status}"
    assert headers.get("Docker-Content-Digest") == image.digest, headers


def main(argv: list[str]) -> None:
    repository, tag, *registries = argv
    image = tiny_image()
    for base in registries:
        push(image, base, repository, tag)
    print(json.dumps({"digest": image.digest, "registries": registries}))


if __name__ == "__main__":
    main(sys.argv[1:])
