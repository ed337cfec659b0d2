"""py-spy on an API process: its raw (collapsed) stacks -> the top functions."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from bench.common import ROOT

PY_SPY = ROOT / ".venv" / "bin" / "py-spy"


def summarise_profile(path: Path) -> dict[str, Any]:
    """The top functions by self and by inclusive share of the samples."""
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}

    def top(counter: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, round(100 * c / total, 1)) for name, c in counter.most_common(n)]

    return {"samples": total, "self": top(self_counts, 25), "inclusive": top(inclusive, 40)}


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number
    # and shorten site-packages paths so one function is one entry.
    name, _, location = frame.partition(" (")
    location = location.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in location:
            location = location.split(marker, 1)[1]
            break
    return f"{name} ({location})" if location else name


def format_profile(summary: dict[str, Any]) -> str:
    lines = [f"py-spy samples: {summary['samples']}", "", "top self time:"]
    lines += [f"  {share:5.1f} %  {name}" for name, share in summary["self"]]
    lines += ["", "top inclusive time:"]
    lines += [f"  {share:5.1f} %  {name}" for name, share in summary["inclusive"]]
    return "\n".join(lines) + "\n"
