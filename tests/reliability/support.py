"""Helpers of the reliability suite: background runs, waiting, marker and process checks."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from drypipe.proc import start_time
from tests.helpers import REPO, wait_until, write_module  # noqa: F401  (re-exported for the tests)

# `$__task_key` appended to runs.log when a task's step starts: a task run twice shows twice.
LOG_RUN = 'echo "$__task_key" >> "$__pipeline_instance_dir/runs.log"\n'
# ... and to done.log as the last command of its last step: a start may repeat when a step was
# killed, a finish must not.  A failed write fails the step, so no finish goes unrecorded.
LOG_DONE = 'echo "$__task_key" >> "$__pipeline_instance_dir/done.log" || exit 1\n'


def cli_env(cwd: Path, extra: dict | None = None) -> dict:
    return {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{REPO}", **(extra or {})}


def start_run(cwd: Path, *args: str, env: dict | None = None, log: Path | None = None,
              prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    """`drypipe ARGS` in the background; output to `log` (a file: nothing can block on a pipe).
    `prefix` runs it under another command (`strace ...`)."""
    out = open(log or cwd / f"run-{time.monotonic_ns()}.log", "wb")
    try:
        return subprocess.Popen([*prefix, sys.executable, "-m", "drypipe", *args], cwd=cwd, env=cli_env(cwd, env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()




def markers(instance: Path) -> dict[str, list[str]]:
    """Every task's state.* entries (files or not), by task key."""
    found = {}
    for control in sorted((instance / ".drypipe").iterdir()):
        if control.is_dir() and not control.name.startswith("."):
            found[control.name] = sorted(p.name for p in control.iterdir()
                                         if p.name.startswith("state.") and not p.name.endswith(".tmp"))
    return found


def states(instance: Path) -> dict[str, str]:
    """The single state of every task; fails if a task has none or several markers."""
    found = markers(instance)
    bad = {k: m for k, m in found.items() if len(m) != 1 or not (instance / ".drypipe" / k / m[0]).is_file()}
    assert not bad, f"tasks without exactly one marker file: {bad}"
    return {k: m[0][len("state."):] for k, m in found.items()}


def run_counts(instance: Path, log: str = "runs.log") -> Counter:
    """How many times each task key was appended to `log` (LOG_RUN: runs.log, when a step starts)."""
    path = instance / log
    return Counter(path.read_text().split()) if path.exists() else Counter()


def alive(pid: int) -> bool:
    """A live process (a zombie is not: this VM's init does not reap orphans)."""
    return start_time(pid) is not None


def task_pid(instance: Path, key: str) -> int:
    return int((instance / ".drypipe" / key / "pid").read_text().split()[0])


def drypipe_log(instance: Path, key: str) -> str:
    return (instance / ".drypipe" / key / "drypipe.log").read_text(errors="replace")


def out_log(instance: Path, key: str) -> str:
    path = instance / ".drypipe" / key / "out.log"
    return path.read_text(errors="replace") if path.exists() else ""
