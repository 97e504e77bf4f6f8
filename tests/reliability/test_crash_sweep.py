"""Crash-point sweep: whatever syscall of `drypipe run` is killed or fails, the user's rerun
ends with the same result as an uninterrupted run.

Each scenario of sweep_scenarios.py (a new instance; a stale rerun; --restart-failed after a
failure; publishing to a --cache; restoring from one; a fileset that shrinks), all on the
six-task pipeline of sweep_pipeline.py (bash tasks, a python call, a three-step task, a
fileset and its gather), is first run uninterrupted twice under `strace -f` to list its crash
points, then once plainly as the reference.  Each crash point is one syscall made to fail:

* the orchestrator's K-th rename / mkdir / write / unlink / link (strace without -f: a crash of the
  orchestrator, its tasks go on and are adopted), for every K it makes;
* the K-th such call on one file by a task script or step (strace -f -P FILE), for every file
  task processes touch: a task killed, or hitting a full disk, mid-write.  strace counts per
  process, so every process touching FILE is hit at its K-th call on it (the orchestrator too,
  where it names FILE by an absolute path); a file that `mv` renames into place is touched by
  a new process each time: with K=1 nobody can rename it during that run;

each with SIGKILL and with ENOSPC.  Then the same command is rerun, and when the fault hit a
task's own process (which may rightly fail it), `--restart-failed` once more; a fault in the
orchestrator alone must need no more than the plain rerun.  With a cache too: a task killed by
a signal or a full disk did not fail because of its code and inputs, so a cache that keeps it
as a failure, failing it at once in every instance that shares the cache (`--rerun-failing`
needed), is counted as a problem.  The result must equal the
reference's: output files and output variables byte for byte (scratch dirs aside), the cache's
files, every task completed with exactly one marker, `status -p` the same (nothing stale), no
temporary file left, and no task running to its end more often (runs.log counts starts, which
a killed step may repeat; done.log counts finishes, which only a task whose own process was hit
may repeat).  The reference must also meet the scenario's invariant (the shrunk fileset).

Sizes: DRYPIPE_SWEEP=ci (default) sweeps a seeded sample of CI_POINTS crash points spread
over every scenario, mode, fault and syscall class (4 to 5 minutes on 2 busy cores);
DRYPIPE_SWEEP=full sweeps them all (each group of more than GROUP_CAP sampled down to it);
DRYPIPE_SWEEP=N a sample of N.  DRYPIPE_SWEEP_SEED picks the sample, DRYPIPE_SWEEP_JOBS the
parallelism (3).  One crash point by hand: see sweep_scenarios.py.
"""
from __future__ import annotations

import os
import random
import shutil
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.reliability.sweep_scenarios import (
    SCENARIOS,
    CrashPoint,
    Outcome,
    Scenario,
    build_template,
    completed,
    crash_points,
    differences,
    reference_problems,
    run_point,
    traced_reference,
)

CI_POINTS = 300
GROUP_CAP = 150
SEED = int(os.environ.get("DRYPIPE_SWEEP_SEED", "20261201"))
JOBS = int(os.environ.get("DRYPIPE_SWEEP_JOBS", "3"))  # runs mostly wait on each other: 3 fill 2 cores
SHOWN = 10


def _group(point: CrashPoint) -> tuple:
    return point.scenario, point.mode, point.fault, point.klass


def select(points: list[CrashPoint], size: str, rng: random.Random) -> list[CrashPoint]:
    """`full`: every point (groups over GROUP_CAP sampled); a number: that many, taken in turn
    from each group (scenario, mode, fault, class) in a seeded order, so that all are covered."""
    groups = defaultdict(list)
    for point in points:
        groups[_group(point)].append(point)
    for members in groups.values():
        rng.shuffle(members)
    if size == "full":
        return [p for members in groups.values() for p in members[:GROUP_CAP]]
    budget = int(size)
    chosen = []
    for rank in range(max(map(len, groups.values()), default=0)):
        chosen += [members[rank] for members in groups.values() if rank < len(members)]
    return chosen[:budget]


def _prepare(scenario: Scenario, work: Path):
    """Template, reference outcome and crash points of one scenario (none to sweep when the
    uninterrupted run itself does not complete: reference_problems says why)."""
    root = work / scenario.name
    template = root / "template"
    build_template(scenario, template)
    traces = [traced_reference(scenario, template, root / f"trace-{n}") for n in (1, 2)]
    reference = run_point(scenario, template, root / "reference", None)
    return template, reference, crash_points(scenario, traces) if completed(reference) else []


def _sweep_one(job):
    """One crash point: (point, outcome, differences), differences None if nothing was hit."""
    point, template, reference, base = job
    try:
        out = run_point(SCENARIOS[point.scenario], template, base, point)
    except Exception as e:  # a hang (subprocess timeout) or a harness error: report, go on
        return point, Outcome(hits=["(unknown: the harness stopped)"]), [f"{type(e).__name__}: {str(e)[:200]}"]
    found = differences(out, reference) if out.hits else None  # None: the run never made that call
    if found == []:
        shutil.rmtree(base)  # kept only where something differed, to look at
    return point, out, found


def _print_counts(everything: list[CrashPoint], results: list) -> None:
    """Crash points swept / existing, one line per scenario, by mode, fault and class."""
    counts = defaultdict(lambda: [0, 0])
    for point in everything:
        counts[_group(point)][0] += 1
    for point, _, found in results:
        counts[_group(point)][1] += found is not None
    for scenario in SCENARIOS:
        groups = sorted((g, n) for g, n in counts.items() if g[0] == scenario)
        print(f"  {scenario}: " + ", ".join(f"{' '.join(g[1:])} {done}/{available}" for g, (available, done) in groups))


def _hits(calls: list[str]) -> str:
    more = f" (and {len(calls) - 1} more: each process touching the file is hit)" if len(calls) > 1 else ""
    return f"hit {calls[0][:160]}{more}"


def _strace_missing() -> str | None:
    return None if shutil.which("strace") else "strace is not installed (Debian package strace)"


def test_every_crash_point_recovers_to_the_uninterrupted_result(tmp_path, reliability):
    missing = _strace_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    started = time.monotonic()
    work = Path(os.path.realpath(tmp_path))  # strace -P compares resolved paths
    size = os.environ.get("DRYPIPE_SWEEP", "ci")
    size = str(CI_POINTS) if size == "ci" else size
    with ThreadPoolExecutor(JOBS) as pool:
        prepared = dict(zip(SCENARIOS, pool.map(lambda s: _prepare(s, work), SCENARIOS.values())))
        everything = [p for _, _, points in prepared.values() for p in points]
        chosen = select(everything, size, random.Random(SEED))
        jobs = [(p, *prepared[p.scenario][:2], work / "points" / str(n)) for n, p in enumerate(chosen)]
        results = list(pool.map(_sweep_one, jobs))

    wrong = [f"{name} uninterrupted: {what}" for name, (_, ref, _) in prepared.items()
             for what in reference_problems(ref)]
    problems = [f"{point}: {'; '.join(found)} [{_hits(out.hits)}]" for point, out, found in results if found]
    swept = sum(1 for _, _, found in results if found is not None)
    print(f"crash-point sweep ({size}, seed {SEED}): {len(everything)} crash points, {len(chosen)} chosen, "
          f"{swept} swept ({len(chosen) - swept} never reached), {len(problems)} problems, "
          f"{len(wrong)} wrong uninterrupted results, {time.monotonic() - started:.0f} s")
    _print_counts(everything, results)
    for problem in wrong + problems:
        print("PROBLEM", problem)
    reliability.sweep(swept=swept, problems=len(problems))
    assert swept >= 0.8 * len(chosen), "strace injected nothing at most crash points: is the harness broken?"
    shown = (wrong + problems)[:SHOWN]
    assert not wrong + problems, f"{len(wrong)} wrong uninterrupted result(s), {len(problems)} crash point(s) " \
        f"recovering to another result than an uninterrupted run (files in {work}); first {len(shown)}:\n" \
        + "\n".join(shown)
