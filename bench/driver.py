"""The benchmark's HTTP client, run inside the node namespace: it plays Prometheus.

    python driver.py wait URL --deadline S          until URL answers 200 (exit 1 at the deadline)
    python driver.py time URL --count K [--body]    K GETs, one after the other: JSON durations
    python driver.py loop URLS_FILE --interval I --max-seconds S --out FILE

`loop` scrapes every URL of URLS_FILE (one a line) once per interval, each at its own fixed
offset within the interval (Prometheus spreads its targets the same way), with Prometheus's
request headers (OpenMetrics preferred, gzip unless `--no-gzip`, the scrape timeout header)
and one keep-alive connection per URL, until SIGTERM or `--max-seconds`; then writes per-URL
counts, statuses,
`probe_success` values and durations to FILE as JSON. Its own CPU is not measured: it is
the Prometheus server of the comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip as gzip_module
import json
import signal
import statistics
import sys
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

# Prometheus 2.x's scrape request (scrape/scrape.go: acceptHeader, User-Agent, timeout header).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
REQUEST_TIMEOUT = 10.0


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float


class Client:
    """One keep-alive HTTP/1.1 connection (h11), reopened when the server closes it."""

    def __init__(self, url: str, headers: list[tuple[str, str]]) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.headers = [("Host", parts.netloc), *headers]
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._conn = h11.Connection(h11.CLIENT)

    async def get(self) -> Answer:
        started = time.monotonic()
        async with asyncio.timeout(REQUEST_TIMEOUT):
            for attempt in (1, 2):
                try:
                    return await self._get(started)
                except (OSError, h11.ProtocolError, asyncio.IncompleteReadError):
                    self.close()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def _get(self, started: float) -> Answer:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
            self._conn = h11.Connection(h11.CLIENT)
        reader, writer = self._streams
        request = h11.Request(method="GET", target=self.target, headers=self.headers)
        writer.write(self._conn.send(request) + self._conn.send(h11.EndOfMessage()))
        await writer.drain()
        status, encoding, chunks = 0, "", []
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                self._conn.receive_data(data)
                if not data and self._conn.their_state is not h11.DONE:
                    raise OSError("connection closed mid-response")
            elif isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    if name == b"content-encoding":
                        encoding = value.decode()
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise OSError(f"unexpected {event!r}")
        seconds = time.monotonic() - started
        if self._conn.our_state is h11.MUST_CLOSE or self._conn.their_state is h11.MUST_CLOSE:
            self.close()
        else:
            self._conn.start_next_cycle()
        body = b"".join(chunks)
        if encoding == "gzip":
            body = gzip_module.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        return Answer(status, body, seconds)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def probe_success(body: bytes) -> float | None:
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("probe_success "):
            return float(line.split()[1])
    return None


@dataclass
class Tally:
    url: str
    statuses: dict[str, int] = field(default_factory=dict)
    successes: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)


async def scrape_forever(
    url: str, offset: float, interval: float, scrape_timeout: float, gzip: bool, tally: Tally
) -> None:
    headers = [
        ("Accept", PROMETHEUS_ACCEPT),
        *([("Accept-Encoding", "gzip")] if gzip else []),
        ("User-Agent", "Prometheus/2.45.3"),
        ("X-Prometheus-Scrape-Timeout-Seconds", f"{scrape_timeout:g}"),
    ]
    client = Client(url, headers)
    loop = asyncio.get_running_loop()
    start = loop.time() + offset
    n = 0
    try:
        while True:
            delay = start + n * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            n += 1
            try:
                answer = await client.get()
            except (OSError, TimeoutError, h11.ProtocolError) as error:
                name = type(error).__name__
                tally.errors[name] = tally.errors.get(name, 0) + 1
                continue
            tally.statuses[str(answer.status)] = tally.statuses.get(str(answer.status), 0) + 1
            tally.seconds.append(answer.seconds)
            success = probe_success(answer.body)
            if success is not None:
                key = f"{success:g}"
                tally.successes[key] = tally.successes.get(key, 0) + 1
    finally:
        client.close()


async def loop_main(args: argparse.Namespace) -> int:
    urls = args.url_list
    tallies = [Tally(url) for url in urls]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    timeout = args.scrape_timeout or args.interval
    tasks = [
        asyncio.create_task(
            scrape_forever(
                url, args.interval * i / len(urls), args.interval, timeout, args.gzip, tally
            )
        )
        for i, (url, tally) in enumerate(zip(urls, tallies, strict=True))
    ]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(args.max_seconds):
            await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    args.summary = [
        {
            "url": t.url,
            "statuses": t.statuses,
            "probe_success": t.successes,
            "errors": t.errors,
            "median_seconds": statistics.median(t.seconds) if t.seconds else None,
            "count": len(t.seconds),
        }
        for t in tallies
    ]
    return 0


async def wait_main(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.deadline
    while time.monotonic() < deadline:
        client = Client(args.url, [])
        try:
            answer = await client.get()
            if answer.status == 200:
                return 0
        except (OSError, TimeoutError, h11.ProtocolError):
            pass
        finally:
            client.close()
        await asyncio.sleep(0.1)
    print(f"{args.url} did not answer 200 within {args.deadline}s", file=sys.stderr)
    return 1


async def time_main(args: argparse.Namespace) -> int:
    headers = [("Accept", args.accept)] if args.accept else []
    client = Client(args.url, headers)
    seconds, answer = [], None
    try:
        for _ in range(args.count):
            answer = await client.get()
            seconds.append(answer.seconds)
            await asyncio.sleep(args.pause)
    finally:
        client.close()
    assert answer is not None
    result: dict[str, object] = {"seconds": seconds, "status": answer.status}
    if args.body:
        result["body"] = answer.body.decode("utf-8", "replace")
    print(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    wait = sub.add_parser("wait")
    wait.add_argument("url")
    wait.add_argument("--deadline", type=float, default=30)
    timed = sub.add_parser("time")
    timed.add_argument("url")
    timed.add_argument("--count", type=int, default=9)
    timed.add_argument("--pause", type=float, default=0.05)
    timed.add_argument("--accept", default="")
    timed.add_argument("--body", action="store_true")
    looped = sub.add_parser("loop")
    looped.add_argument("urls")
    looped.add_argument("--interval", type=float, required=True)
    looped.add_argument("--scrape-timeout", type=float, default=0)
    looped.add_argument("--max-seconds", type=float, required=True)
    looped.add_argument("--out", required=True)
    looped.add_argument(
        "--no-gzip", dest="gzip", action="store_false", help="no Accept-Encoding: gzip"
    )
    args = parser.parse_args()
    if args.command == "loop":
        with open(args.urls, encoding="utf-8") as f:
            args.url_list = [line.strip() for line in f if line.strip()]
        status = asyncio.run(loop_main(args))
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(args.summary, f)
        return status
    runner = {"wait": wait_main, "time": time_main}[args.command]
    return asyncio.run(runner(args))


if __name__ == "__main__":
    sys.exit(main())
