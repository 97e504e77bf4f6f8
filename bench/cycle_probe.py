"""Time every scheduler cycle of a run of N independent tasks, in process, with no task
process: the tests' fake executor (tests/fake_executor.py) completes each launched task at
its first poll, moving its markers through TaskRecord as the task runtime would.  At most
MAX_IN_FLIGHT tasks are in flight, as with `--max-local-jobs 2`, so a run is about N/2
cycles, each of which launches and finishes a couple of tasks: its cost should not grow with N.

    python bench/cycle_probe.py N INSTANCE_DIR [TIME_CAP_SECONDS]

Prints one JSON line: the number of cycles, their median, p90 and maximum time (ms), the
run's wall time, and whether the time cap stopped the run early (the statistics are then
those of the cycles run so far).  Preparing the instance (`_start`) is not a cycle.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # tests.fake_executor; appended, so a --pythonpath drypipe copy stays first

from drypipe import DryPipe, TaskConf, plugins  # noqa: E402
from drypipe import state as st  # noqa: E402
from drypipe.instance import Instance  # noqa: E402
from drypipe.scheduler import RunOptions, Scheduler  # noqa: E402
from tests.fake_executor import PLUGINS, FakeBackend, Script  # noqa: E402

MAX_IN_FLIGHT = 2
FAKE = TaskConf(executer_type="fake")


class ProbeBackend(FakeBackend):
    """The fake backend with every task unscripted.  FakeBackend._script_for counts the
    earlier launches of a key by scanning all launches (O(N) each); skipping it keeps the
    probe's own cost per launch constant."""

    def _script_for(self, key: str) -> Script:
        return Script()


def independent(n: int):
    def pipeline(dsl):
        for i in range(n):
            yield dsl.task(key=f"t{i}").calls("true\n")()
    return pipeline


def probe(n: int, root: Path, cap: float) -> dict:
    for plugin in PLUGINS:
        plugins.register(plugin)
    options = RunOptions(sleep_schedule=(0,), lost_grace_seconds=0,
                         executor_options={"fake": ProbeBackend(max_in_flight=MAX_IN_FLIGHT)})
    scheduler = Scheduler(DryPipe.create_pipeline(independent(n), task_conf=FAKE), Instance(root), options)
    times: list[float] = []
    cycle = scheduler._cycle

    def timed_cycle() -> bool:
        started = time.perf_counter()
        changed = cycle()
        times.append(time.perf_counter() - started)
        return changed

    scheduler._cycle = timed_cycle  # type: ignore[method-assign]  # the loop calls it through the instance
    start = scheduler._start

    def start_and_sync() -> None:
        # The files prepared by _start are written back to disk now, not during the first cycles
        # (that would slow a short run's cycles more than a long one's).
        start()
        os.sync()

    scheduler._start = start_and_sync  # type: ignore[method-assign]
    timer = threading.Timer(cap, scheduler.request_stop)
    timer.daemon = True
    started = time.perf_counter()
    timer.start()
    summary = scheduler.run()
    wall = time.perf_counter() - started
    timer.cancel()
    ms = sorted(t * 1000 for t in times)
    completed = sum(1 for s in summary.states.values() if s == st.COMPLETED)
    return {
        "n": n, "cycles": len(ms), "completed": completed, "wall": wall, "capped": scheduler.stop_requested,
        "median_ms": statistics.median(ms) if ms else None,
        "p90_ms": ms[int(0.9 * (len(ms) - 1))] if ms else None,
        "max_ms": ms[-1] if ms else None,
        "total_cycle_s": sum(ms) / 1000,
    }


def main() -> None:
    n, root = int(sys.argv[1]), Path(sys.argv[2])
    cap = float(sys.argv[3]) if len(sys.argv) > 3 else 600.0
    print(json.dumps(probe(n, root, cap)))


if __name__ == "__main__":
    main()
