"""Run the drypipe CLI in this process, as `python -m drypipe ARGS...` would, and write the
resource usage of this process alone (the orchestrator and its threads, not the tasks it
starts) to the JSON file named by $BENCH_SELF_USAGE when it exits.

    BENCH_SELF_USAGE=/tmp/usage.json python bench/self_usage.py run -p ... -i ...

`getrusage(RUSAGE_SELF)` counts every thread of the process and none of its children
(those are RUSAGE_CHILDREN), so `cpu` is the orchestrator's own CPU time and `maxrss_mb` its
own peak RSS.  The exit code is drypipe's: click leaves through sys.exit, which runs the
atexit hook on its way out (the interpreter's teardown after it is not counted).  Without
$BENCH_SELF_USAGE nothing is written.
"""
from __future__ import annotations

import atexit
import json
import os
import resource
import runpy
import sys


def _write_usage(path: str) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(path, "w") as out:
        json.dump({
            "user": usage.ru_utime,
            "system": usage.ru_stime,
            "cpu": usage.ru_utime + usage.ru_stime,
            "maxrss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
        }, out)


def main() -> None:
    path = os.environ.pop("BENCH_SELF_USAGE", None)  # popped: the tasks inherit no bench variable
    if path:
        atexit.register(_write_usage, path)  # registered first, so it runs last
    sys.path[0] = os.getcwd()  # what `python -m` puts first, instead of this script's directory
    runpy.run_module("drypipe", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
