"""Identify local processes by (pid, start time), so a recycled pid is never mistaken for a task."""
from __future__ import annotations


def start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_matches(pid: int, recorded_start_time: str) -> bool:
    current = start_time(pid)
    if current is None:
        return False
    return recorded_start_time in ("0", current)
