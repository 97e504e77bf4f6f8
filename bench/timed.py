"""Run one command and report its wall time and peak RSS, as JSON on the last line of stdout.

    python bench/timed.py TIMEOUT_SECONDS LOG_FILE -- COMMAND...

It runs in its own process so that `getrusage(RUSAGE_CHILDREN).ru_maxrss` is the peak RSS of
COMMAND's process tree (the largest single process in it) and of nothing else.  On timeout the
whole process group of COMMAND is killed and `timed_out` is true: the wall time is then a
lower bound.  COMMAND's stdout and stderr go to LOG_FILE.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time


def main() -> None:
    timeout = float(sys.argv[1])
    log_file = sys.argv[2]
    if sys.argv[3] != "--":
        raise SystemExit("usage: timed.py TIMEOUT LOG -- COMMAND...")
    command = sys.argv[4:]
    timed_out = False
    with open(log_file, "ab") as log:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(child.pid, signal.SIGKILL)
            rc = child.wait()
        wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "wall": wall,
        "rc": rc,
        "timed_out": timed_out,
        "maxrss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
        "cpu": usage.ru_utime + usage.ru_stime,
    }))


if __name__ == "__main__":
    main()
