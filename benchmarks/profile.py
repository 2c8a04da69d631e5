"""``--profile``: sample a server with py-spy during a scenario's measured window, and sum it up.

py-spy reads the server's stacks from outside (no code change, no restart). The raw (collapsed)
stacks are kept next to a summary that answers "where does the time go": the share of samples whose
innermost frame is a function (self time) and the share whose stack contains it (inclusive time).
Sampling costs CPU on a 2-core machine, so numbers from a profiled run are not benchmark results.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = ["Profiler", "summarise_stacks"]

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """One py-spy recording of ``pid`` for ``seconds`` into ``path`` (raw collapsed stacks)."""

    def __init__(self, pid: int, seconds: float, path: Path, *, gil: bool = False) -> None:
        self.path = path
        tool = _py_spy()
        if tool is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        command = [tool, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                   "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(path)]
        if gil:
            command.append("--gil")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )

    def finish(self, timeout: float = 60.0) -> str:
        """Wait for the recording; returns the summary (also written beside it as ``.summary.txt``)."""
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            return "py-spy did not finish"
        if not self.path.exists():
            return f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}"
        text = summarise_stacks(self.path.read_text(errors="replace"))
        self.path.with_suffix(".summary.txt").write_text(text)
        return text


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['function']} ({match['file']})"


def summarise_stacks(raw: str, top: int = 25) -> str:
    """Self and inclusive shares of samples per function, from py-spy's raw collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        stack, count = match[1], int(match[2])
        frames = [_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples (non-idle threads)", "", "self %  function (innermost frame)"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in own.most_common(top)]
    lines += ["", "incl %  function (anywhere in the stack)"]
    lines += [f"{100 * n / total:6.1f}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
