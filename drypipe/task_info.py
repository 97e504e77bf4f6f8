"""Reads what a task left on disk for humans: log tails, durations, the failure reason."""
from __future__ import annotations

import os
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
    started: float | None
    ended: float | None

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


def task_timing(instance: Instance, key: str) -> Timing:
    """First step start and final state time, from the timestamps in drypipe.log."""
    started = ended = None
    try:
        with open(instance.control_dir(key) / "drypipe.log", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(" ", 2)
                if len(parts) < 3:
                    continue
                try:
                    stamp = float(parts[1])
                except ValueError:
                    continue
                event = parts[2]
                if event.startswith("state.step-started.") and (started is None or ended is not None):
                    started, ended = stamp, None
                elif event.startswith(("state.completed", "state.failed", "state.killed", "state.timed-out")):
                    ended = stamp
    except FileNotFoundError:
        pass
    return Timing(key, started, ended)
