"""Summaries of ``py-spy record --gil --format raw`` profiles (collapsed stacks of GIL holders):
where the CPU went, by package (the frame that was running) and by our own functions (inclusive).
The raw files stay next to the results for speedscope or flamegraph.pl."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.+) \((?P<file>[^():]+)(?::\d+)?\)$")
OURS = ("app/", "worker/")


def package_of(file: str) -> str:
    if file.startswith(OURS):
        parts = file.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else parts[0]
    if "/" in file:
        return file.split("/", 1)[0]
    return "stdlib:" + file.removesuffix(".py")


def compact(path: Path) -> None:
    """Rewrite a raw profile smaller: no process/thread frames (pids make every stack unique), no
    line numbers, identical stacks merged. Still the collapsed-stack format."""
    merged: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [
            re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if not f.startswith(("process ", "thread ("))
        ]
        merged[";".join(frames)] += int(count_text)
    path.write_text("".join(f"{stack} {n}\n" for stack, n in sorted(merged.items())))


def summarise(path: Path, top: int = 12) -> dict[str, Any]:
    leaf: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [m for m in (_FRAME.match(f) for f in stack.split(";")) if m]
        if not frames:
            continue
        total += count
        leaf[package_of(frames[-1].group("file"))] += count
        seen = set()
        for m in frames:
            if m.group("file").startswith(OURS):
                name = f"{m.group('file').removesuffix('.py').replace('/', '.')}.{m.group('func')}"
                if name not in seen:
                    seen.add(name)
                    ours[name] += count

    def pct(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {"samples": total, "by_package": pct(leaf), "our_functions": pct(ours), "file": path.name}
