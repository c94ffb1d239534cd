"""Top entries of a py-spy profile, from its collapsed stacks (`py-spy record --format raw`).

    python3 bench/stacks.py agent.pyspy.txt [--top 25] [--focus read_node_routes]

Each line of the file is `frame;frame;...;leaf COUNT`, a frame `function (file)` (with
`--nolineno`) or `function (file:line)`. "own" counts the samples whose leaf is the function
(where the CPU is spent), also summed by file; "cumulative" the samples with the function
anywhere in the stack, each stack counted once per function (what it and its callees cost),
listed for the project's own functions (probe/). py-spy samples only threads it finds running,
so the percentages are of the process's CPU, but for one blind spot: on a busy machine the event
loop, woken from epoll and waiting for a CPU, is runnable in `select`, and py-spy does not
always see an idle thread of asyncio's default executor (there since the agent resolved its
listen address) as idle. Those samples (leaf `select (selectors.py)`: the wait for I/O; leaf
`_worker (concurrent/futures/thread.py)`: a worker waiting for a job, which would otherwise be
the job's function) are left out and counted apart, unless `--keep-idle`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_LINENO = re.compile(r":\d+\)$")
_IDLE_LEAF = re.compile(
    r"^(\w*\.?select \(selectors\.py\)|_worker \(concurrent/futures/thread\.py\))$"
)


@dataclass(frozen=True)
class Profile:
    total: int
    own: Counter[str]
    cumulative: Counter[str]
    stacks: list[tuple[tuple[str, ...], int]]
    idle: int = 0  # samples left out: select() and idle executor threads


def frame_name(frame: str) -> str:
    """`run (asyncio/runners.py:118)` -> `run (asyncio/runners.py)`: one entry per function."""
    return _LINENO.sub(")", frame.strip())


def read_collapsed(path: Path, keep_idle: bool = False) -> Profile:
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = idle = 0
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        if not keep_idle and _IDLE_LEAF.match(frames[-1]):
            idle += count
            continue
        total += count
        stacks.append((tuple(frames), count))
        own[frames[-1]] += count
        for frame in set(frames):
            cumulative[frame] += count
    return Profile(total, own, cumulative, stacks, idle)


def under(profile: Profile, function: str) -> float:
    """The fraction of samples with `function` anywhere in the stack: a bare name (`render`),
    or a name with the start of its file (`run (probe/checks/dns`) where names repeat."""

    def matches(frame: str) -> bool:
        if " (" in function:
            return frame.startswith(function)
        return frame.split(" (")[0] == function

    hits = sum(count for frames, count in profile.stacks if any(map(matches, frames)))
    return hits / profile.total if profile.total else 0.0


def frame_file(frame: str) -> str:
    """`read (probe/hostfs.py)` -> `probe/hostfs.py`."""
    return frame.rpartition(" (")[2].rstrip(")")


def print_top(profile: Profile, top: int, focus: tuple[str, ...] = ()) -> None:
    """Own time by function and by file; cumulative time of the project's (probe/) functions;
    the share of samples under each `focus` function."""
    if profile.total == 0:
        print("no samples (was the process idle, or py-spy unable to read it?)")
        return
    by_file: Counter[str] = Counter()
    for frame, count in profile.own.items():
        by_file[frame_file(frame)] += count
    project = Counter({f: c for f, c in profile.cumulative.items() if "(probe/" in f})
    left_out = (
        f"; {profile.idle} more waiting in select() or idle worker threads left out"
        if profile.idle
        else ""
    )
    print(f"{profile.total} samples (only while running on a CPU{left_out})")
    for title, counter in (
        ("own time, by function", profile.own),
        ("own time, by file", by_file),
        ("cumulative time, probe/ functions", project),
    ):
        print(f"\ntop {top} by {title}:")
        for name, count in counter.most_common(top):
            print(f"  {100 * count / profile.total:5.1f}%  {name}")
    if focus:
        print("\nshare of samples under:")
        for name in focus:
            print(f"  {100 * under(profile, name):5.1f}%  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep-idle", action="store_true", help="count samples in select()")
    parser.add_argument(
        "--focus",
        action="append",
        default=[],
        help="a function (`name` or `name (file`): the share of samples under it (repeatable)",
    )
    args = parser.parse_args(argv)
    print_top(read_collapsed(args.file, args.keep_idle), args.top, tuple(args.focus))
    return 0


if __name__ == "__main__":
    sys.exit(main())
