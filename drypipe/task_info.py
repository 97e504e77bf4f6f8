"""Reads what a task left on disk for humans: log tails, durations, the failure reason."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from drypipe.instance import Instance


def log_tail(instance: Instance, key: str, lines: int = 5, name: str = "out.log") -> list[str]:
    path = instance.control_dir(key) / name
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:]


def failure_reason(instance: Instance, key: str) -> str | None:
    """The last state line of drypipe.log, e.g. 'state.failed.0 exit code 3'."""
    for line in reversed(log_tail(instance, key, 20, "drypipe.log")):
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[2].startswith(("state.failed", "state.killed", "state.timed-out", "state.lost")):
            return parts[2]
    return None


@dataclass
class Timing:
    key: str
    started: float | None  # epoch seconds of the last run's first step
    ended: float | None
    cpu: float | None = None  # user + system seconds of the steps, when the task runtime recorded them

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


_BASH_TIME = re.compile(r"^(?:(\d+)m)?([\d.,]+)s$")
_END_EVENTS = ("state.completed", "state.failed", "state.killed", "state.timed-out", "state.lost")


def _bash_seconds(text: str) -> float:
    """`1m2.500s` (bash `times` format) -> 62.5."""
    m = _BASH_TIME.match(text.strip())
    if not m:
        raise ValueError(text)
    return int(m.group(1) or 0) * 60 + float(m.group(2).replace(",", "."))


def task_timing(instance: Instance, key: str) -> Timing:
    """Start, end and CPU time of the task's last run, from the lines of its drypipe.log."""
    started = ended = cpu = None
    try:
        with open(instance.control_dir(key) / "drypipe.log", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 2)
                if len(parts) < 3:
                    continue
                try:
                    stamp = float(parts[1])
                except ValueError:
                    continue
                event = parts[2]
                if event.startswith("state.step-started.") and (started is None or ended is not None):
                    started, ended, cpu = stamp, None, None
                elif event.startswith(_END_EVENTS):
                    ended = stamp
                elif event.startswith("cpu "):  # `cpu <user> <system>` written by the task runtime
                    try:
                        cpu = (cpu or 0.0) + sum(_bash_seconds(t) for t in event.split()[1:3])
                    except ValueError:
                        pass
    except FileNotFoundError:
        pass
    return Timing(key, started, ended, cpu)
