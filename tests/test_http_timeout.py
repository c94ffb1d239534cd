"""The http check's timeout says how far the answer got (issue 11, item 9): no answer at all is
Go's "awaiting headers"; headers received and a body still arriving is "reading body".

Servers on loopback (plain HTTP, in a thread): one that reads the request and never answers,
one that sends a registry's headers and then trickles the body a byte at a time. `check` runs
as a person runs it, with the registry's name in the node's hosts file.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAME = "registry.test"
TIMEOUT = 1.0

HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Docker-Distribution-Api-Version: registry/2.0\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n"
)


def silent(connection: socket.socket, stop: threading.Event) -> None:
    stop.wait(TIMEOUT * 4)


def trickling(connection: socket.socket, stop: threading.Event) -> None:
    connection.sendall(HEADERS + b"{")
    for _ in range(int(TIMEOUT * 4 / 0.1)):  # bounded: a byte every 0.1 s, past the deadline
        if stop.wait(0.1):
            return
        connection.sendall(b" ")


@contextlib.contextmanager
def serving(answer: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A plain-HTTP server on loopback that reads each request head, then `answer`s."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), connection:
                connection.settimeout(TIMEOUT * 5)
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 8192:
                    chunk = connection.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                answer(connection, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()


def http_check(tmp_path: Path, port: int) -> dict[str, Any]:
    root = tmp_path / "host"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "hosts").write_text(f"127.0.0.1 {NAME}\n")
    (root / "etc" / "resolv.conf").write_text("nameserver 198.18.0.53\n")
    argv = [
        sys.executable, "-m", "probe", "check", "--no-discover",
        "--registry", f"http://{NAME}:{port}", "--host-root", str(root),
        "--timeout", str(TIMEOUT), "--output", "json",
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert time.monotonic() - started < 30
    assert done.returncode == 1, done.stderr
    [check] = [
        c for c in json.loads(done.stdout)["registries"][0]["checks"] if c["check"] == "http"
    ]
    return check


@pytest.mark.parametrize(
    ("answer", "words", "not_words"),
    [
        (silent, "while awaiting headers", "body"),
        (trickling, "200 received, the body was still arriving", "awaiting headers"),
    ],
    ids=["no-answer", "body-trickle"],
)
def test_http_timeout_says_how_far_the_answer_got(
    tmp_path: Path,
    answer: Callable[[socket.socket, threading.Event], None],
    words: str,
    not_words: str,
) -> None:
    """http_timeout either way; the detail says whether headers came and the body was late."""
    with serving(answer) as port:
        check = http_check(tmp_path, port)
    assert check["reason"] == "http_timeout", check
    assert words in check["detail"], check
    assert not_words not in check["detail"], check
