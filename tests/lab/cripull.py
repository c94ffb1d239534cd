"""A CRI image pull, as the kubelet asks for one: `ImageService/PullImage` on containerd's socket.

Run as a script: `python cripull.py SOCKET REF SECONDS`, with `CRI_USERNAME` and `CRI_PASSWORD`
in the environment for the credentials the kubelet would pass from a pull secret (PullImageRequest's
`auth`: AuthConfig{username, password}). Prints one JSON object, `{"ok": true,
"image": "sha256:..."}` or `{"ok": false, "code": "UNKNOWN", "error": "..."}` (the gRPC status and
containerd's message). Debian has no crictl (cri-tools) for bookworm, so the request is written
here: `runtime.v1.PullImageRequest{image: ImageSpec{image: REF}}` in protobuf's wire format
(field 1, length-delimited, twice), sent with grpcio's generic unary call; the reply's first
field is the image reference (the image id). The pull runs in the daemon: its environment and
its config.toml (`config_path`) decide where it goes, not this client's.
"""

from __future__ import annotations

import json
import os
import sys

import grpc

METHOD = "/runtime.v1.ImageService/PullImage"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def pull_request(ref: str, username: str | None = None, password: str | None = None) -> bytes:
    """PullImageRequest{image: ImageSpec{image: ref}}, with auth: AuthConfig{username,
    password} when given."""
    request = _field(1, _field(1, ref.encode()))
    if username is not None and password is not None:
        request += _field(2, _field(1, username.encode()) + _field(2, password.encode()))
    return request


def first_string(message: bytes) -> str:
    """Field 1 of a reply whose first field is a string (PullImageResponse.image_ref)."""
    if not message or message[0] != (1 << 3 | 2):
        return ""
    length, shift, i = 0, 0, 1
    while True:
        byte = message[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            break
        shift += 7
    return message[i : i + length].decode()


def main(argv: list[str]) -> None:
    socket, ref, seconds = argv[0], argv[1], float(argv[2])
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(METHOD)
        try:
            request = pull_request(
                ref, os.environ.get("CRI_USERNAME"), os.environ.get("CRI_PASSWORD")
            )
            reply = call(request, timeout=seconds)
        except grpc.RpcError as e:
            print(json.dumps({"ok": False, "code": e.code().name, "error": e.details()}))
            return
    print(json.dumps({"ok": True, "image": first_string(reply)}))


if __name__ == "__main__":
    main(sys.argv[1:])
