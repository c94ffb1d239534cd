"""Top entries of a py-spy profile, from its collapsed stacks (`py-spy record --format raw`).

    python3 bench/stacks.py agent.pyspy.txt [--top 25] [--focus read_node_routes]

Each line of the file is `frame;frame;...;leaf COUNT`, a frame `function (file)` (with
`--nolineno`) or `function (file:line)`. "own" counts the samples whose leaf is the function
(where the CPU is spent); "cumulative" the samples with the function anywhere in the stack,
each stack counted once per function (what it and its callees cost). py-spy samples only
threads that are running, so the percentages are of the process's CPU.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_LINENO = re.compile(r":\d+\)$")


@dataclass(frozen=True)
class Profile:
    total: int
    own: Counter[str]
    cumulative: Counter[str]
    stacks: list[tuple[tuple[str, ...], int]]


def frame_name(frame: str) -> str:
    """`run (asyncio/runners.py:118)` -> `run (asyncio/runners.py)`: one entry per function."""
    return _LINENO.sub(")", frame.strip())


def read_collapsed(path: Path) -> Profile:
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        stacks.append((tuple(frames), count))
        own[frames[-1]] += count
        for frame in set(frames):
            cumulative[frame] += count
    return Profile(total, own, cumulative, stacks)


def under(profile: Profile, function: str) -> float:
    """The fraction of samples with `function` (a bare name) anywhere in the stack."""
    hits = sum(
        count
        for frames, count in profile.stacks
        if any(frame.split(" (")[0] == function for frame in frames)
    )
    return hits / profile.total if profile.total else 0.0


def print_top(profile: Profile, top: int) -> None:
    if profile.total == 0:
        print("no samples (was the process idle, or py-spy unable to read it?)")
        return
    print(f"{profile.total} samples")
    for title, counter in (("own", profile.own), ("cumulative", profile.cumulative)):
        print(f"\ntop {top} by {title} time:")
        for name, count in counter.most_common(top):
            print(f"  {100 * count / profile.total:5.1f}%  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--focus",
        action="append",
        default=[],
        help="a function name: print the share of samples under it (repeatable)",
    )
    args = parser.parse_args(argv)
    profile = read_collapsed(args.file)
    print_top(profile, args.top)
    for name in args.focus:
        print(f"\nunder {name}: {100 * under(profile, name):.1f}% of samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
