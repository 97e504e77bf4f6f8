"""Identify local processes by (pid, start time), so a recycled pid is never mistaken for a task."""
from __future__ import annotations

import os
import signal
import time


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    """The kernel start time of a live process; None if there is none (a zombie is not live:
    where init does not reap orphans, a dead task script stays a zombie for ever)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def process_matches(pid: int, recorded_start_time: str) -> bool:
    current = start_time(pid)
    if current is None:
        return False
    return recorded_start_time in ("0", current)


def stop_orphans(leader: int, wait: float = 2.0) -> list[int]:
    """Stop the processes left behind by a dead task script: those of the session it led (a
    task script started in a new session, its steps in process groups of their own) or of the
    process group it led (a task run by a process executor's worker, its steps in its group).
    Steps of a task script that was SIGKILLed keep running otherwise.

    Nothing is done while the leader lives (Linux does not reuse a pid that is still a live
    process's session or group id, so the processes found belong to that task).  Returns their pids."""
    if start_time(leader) is not None:
        return []
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != leader:
            fields = _stat_fields(int(name))
            if fields is not None and fields[0] not in ("Z", "X") and str(leader) in (fields[2], fields[3]):
                members.append(int(name))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in members:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while sig == signal.SIGTERM and time.monotonic() < deadline and any(start_time(p) for p in members):
            time.sleep(0.05)
    return members
