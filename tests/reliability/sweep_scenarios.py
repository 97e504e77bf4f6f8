"""The crash-point sweep's scenarios, and how one crash point is run and judged.

A crash point is one syscall of `drypipe run` made to fail, by strace:

* mode `orchestrator`: strace without -f, so only the orchestrator's own syscalls count; its
  K-th call of the class (rename, mkdir, write, unlink, link) is hit.  What a crash of the
  orchestrator means: its task processes (their own sessions) go on and are adopted later.
* mode `tree`: strace -f, so task scripts and their steps are hit too, and -P PATH: strace
  counts injections per process (per tracee), so without -P `when=K` would hit the K-th call
  of *every* process at once; with -P it is the K-th call on PATH of each process touching it
  (nearly always one).  PATHs are the files that task processes touch in an uninterrupted
  run, the same in two traced runs (temporary names are random).  Calls given relative paths
  (coreutils `mkdir -p` walks them) cannot be aimed at.

A fault is `SIGKILL` (the process dies at the call, before it happens) or `ENOSPC` (the call
fails).  strace 6.1 ignores `signal=` injections under --seccomp-bpf, which only ENOSPC uses.

After the faulty run comes what a user does: the same command again; when a fault hit a task's
own process (tree mode) the task may rightly have failed (a step killed, a full disk), so
`--restart-failed` may follow once.  A fault in the orchestrator alone must need nothing more
than the plain rerun.  The result is then compared with an uninterrupted run of the scenario.

Run one crash point by hand (it prints the strace command, the hit calls and what differed):

    python -m tests.reliability.sweep_scenarios stale orchestrator SIGKILL rename 9
    python -m tests.reliability.sweep_scenarios fresh tree ENOSPC write 1 instance/.drypipe/multi/drypipe.log
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from drypipe import state as st
from drypipe.proc import process_matches
from tests.reliability.support import REPO, markers, run_counts, start_run, wait_until

GEN = "tests.reliability.sweep_pipeline:gen"
ENV = {"DRYPIPE_LOST_GRACE_SECONDS": "1"}
CLASSES = {
    "rename": ("rename", "renameat", "renameat2"),
    "mkdir": ("mkdir", "mkdirat"),
    "write": ("write", "pwrite64"),
    "unlink": ("unlink", "unlinkat"),
    "link": ("link", "linkat"),  # the task runtime moves a marker to a later state by link + unlink
}
FAULTS = {"SIGKILL": "signal=SIGKILL", "ENOSPC": "error=ENOSPC"}
MODES = ("orchestrator", "tree")
OWN_LOGS = ("runs.log", "done.log")  # the test's instruments, not drypipe's files
TIMEOUT = 90


# -- scenarios -----------------------------------------------------------------------------------


def _drypipe(*args: str, env: dict | None = None, log: Path) -> int:
    run = start_run(REPO, *args, env={**ENV, **(env or {})}, log=log)
    return run.wait(timeout=TIMEOUT)


def _nothing(base: Path) -> None:
    """A new instance: the faulty run is its first."""


def _completed(base: Path) -> None:
    """An instance whose every task completed (the scenario then changes something)."""
    assert _drypipe("run", "-p", GEN, "-i", str(base / "instance"), log=base / "setup.log") == 0


def _one_failed(base: Path) -> None:
    """multi failed at step 1 (fail-multi was there), final waits; fail-multi is gone since."""
    flag = base / "instance" / "fail-multi"
    flag.parent.mkdir(parents=True)
    flag.touch()
    assert _drypipe("run", "-p", GEN, "-i", str(flag.parent), log=base / "setup.log") == 1
    assert markers(flag.parent)["multi"] == ["state.failed.1"]
    flag.unlink()


def _cache_filled(base: Path) -> None:
    """A cache filled by another instance, that is then thrown away."""
    seed = base / "seed"
    assert _drypipe("run", "-p", GEN, "-i", str(seed), "--cache", str(base / "cache"), log=base / "setup.log") == 0
    shutil.rmtree(seed)


def _no_fourth_chunk(instance: Path) -> list[str]:
    """split made 3 chunks this time: nothing downstream may see a 4th one."""
    found = []
    if (instance / "output/split/chunk.4.txt").exists():
        found.append("output/split/chunk.4.txt of the earlier run is still there")
    if "chunk 4" in _text(instance / "output/gather/all.txt"):
        found.append("gather read chunk 4")
    return found


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: Callable[[Path], None]  # builds the starting point in a directory: instance/ (cache/)
    options: tuple[str, ...] = ()  # of the faulty `drypipe run` (and of the reruns)
    env: dict = field(default_factory=dict)  # what changed since the setup
    check: Callable[[Path], list[str]] = lambda instance: []  # what any correct result satisfies

    def args(self, base: Path, *more: str) -> list[str]:
        options = [o.format(cache=base / "cache") for o in self.options]
        return ["run", "-p", GEN, "-i", str(base / "instance"), *options, *more]


SCENARIOS = {s.name: s for s in (
    Scenario("fresh", _nothing),
    Scenario("stale", _completed, env={"SWEEP_VARIANT": "2"}),
    Scenario("restart-failed", _one_failed, options=("--restart-failed",)),
    Scenario("cache-publish", _nothing, options=("--cache", "{cache}")),
    Scenario("cache-restore", _cache_filled, options=("--cache", "{cache}")),
    Scenario("fileset-shrink", _completed, env={"SWEEP_CHUNKS": "3"}, check=_no_fourth_chunk),
)}


# -- crash points --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashPoint:
    scenario: str
    mode: str  # orchestrator | tree
    fault: str  # SIGKILL | ENOSPC
    klass: str  # a key of CLASSES
    k: int
    path: str | None = None  # tree mode: the file aimed at, relative to the point's directory

    def __str__(self) -> str:
        return f"{self.scenario} {self.mode} {self.fault} {self.klass} {self.k}" + (f" {self.path}" if self.path else "")

    def strace(self, base: Path, log: Path) -> list[str]:
        calls = ",".join(CLASSES[self.klass])
        cmd = ["strace", "-qq", "-e", "signal=none", "-yy", "-s", "120", "-o", str(log), "-e", f"trace={calls}",
               "-e", f"inject={calls}:{FAULTS[self.fault]}:when={self.k}"]
        if self.mode == "tree":
            cmd[1:1] = ["-f", "-P", str(base / self.path)] + (["--seccomp-bpf"] if self.fault == "ENOSPC" else [])
        return cmd


_CALL = re.compile(r"^(?:(\d+) +)?([a-z0-9_]+)\((.*)$")
_RESUMED = re.compile(r"^(?:(\d+) +)?<\.\.\. ([a-z0-9_]+) resumed>(.*)$")
_KILLED = re.compile(r"^(?:(\d+) +)?\+\+\+ killed by SIGKILL")
_PATHS = re.compile(r'"(/[^"]*)"|^\d+<(/[^>]*)>')


def syscalls(log: Path) -> list[tuple[int | None, str, str]]:
    """(pid, syscall, arguments and result) of every call in an strace log (pid None without
    -f), in order; a call that -f split in two (`<unfinished ...>`, `<... resumed>`) is joined,
    one whose process was killed in it ends in ` = ?`."""
    calls, open_call = [], {}
    for line in log.read_text(errors="replace").splitlines():
        if m := _CALL.match(line):
            pid = int(m.group(1)) if m.group(1) else None
            calls.append([pid, m.group(2), m.group(3)])
            if line.endswith("<unfinished ...>"):
                calls[-1][2] = calls[-1][2][:-len("<unfinished ...>")]
                open_call[pid] = calls[-1]
        elif (m := _RESUMED.match(line)) or (m := _KILLED.match(line)):
            call = open_call.pop(int(m.group(1)) if m.group(1) else None, None)
            if call:
                call[2] += m.group(3) if m.re is _RESUMED else ") = ?"
    return [tuple(c) for c in calls]


def hits(log: Path, k: int) -> list[tuple[int | None, str]]:
    """The calls strace hit: the K-th of each syscall in each process (what `when=K` counts),
    where the log shows the injection (ENOSPC returned, or the process killed in the call)."""
    seen: Counter = Counter()
    found = []
    for pid, name, args in syscalls(log):
        seen[pid, name] += 1
        if seen[pid, name] == k and ("(INJECTED)" in args or args.endswith("= ?")):
            found.append((pid, f"{name}({args}"))
    return found


def _touched(base: Path, args: str) -> set[str]:
    prefix = f"{base}/"
    paths = {a or b for a, b in _PATHS.findall(args)}
    return {p[len(prefix):] for p in paths if p.startswith(prefix) and p.rsplit("/", 1)[-1] not in OWN_LOGS}


def crash_points(scenario: Scenario, traces: list[tuple[Path, Path, int]]) -> list[CrashPoint]:
    """Every crash point of a scenario, from uninterrupted runs traced with strace -f, given
    as (base directory, log, orchestrator pid)."""
    return _orchestrator_points(scenario.name, traces[0]) + _tree_points(scenario.name, traces)


def _classified(log: Path):
    """(class, pid, syscall, arguments) of the calls of the swept classes in a log."""
    class_of = {name: klass for klass, names in CLASSES.items() for name in names}
    for pid, name, args in syscalls(log):
        if name in class_of:
            yield class_of[name], pid, name, args


def _orchestrator_points(scenario: str, trace: tuple[Path, Path, int]) -> list[CrashPoint]:
    """K from 1 to the orchestrator's number of calls of each class (of its busiest syscall)."""
    _, log, root = trace
    own = Counter((klass, name) for klass, pid, name, _ in _classified(log) if pid == root)
    points = []
    for klass in CLASSES:
        top = max((n for (c, _), n in own.items() if c == klass), default=0)
        points += [CrashPoint(scenario, "orchestrator", f, klass, k) for f in FAULTS for k in range(1, top + 1)]
    return points


def _tree_points(scenario: str, traces: list[tuple[Path, Path, int]]) -> list[CrashPoint]:
    """Each file task processes touched in every trace (a random temporary name is not the
    same twice), K from 1 to the most calls on it of one task process (per syscall)."""
    depths = []
    for base, log, root in traces:
        per_process = Counter((klass, path, pid, name) for klass, pid, name, args in _classified(log)
                              if pid != root for path in _touched(base, args))
        depth: Counter = Counter()
        for (klass, path, _, _), n in per_process.items():
            depth[klass, path] = max(depth[klass, path], n)
        depths.append(depth)
    stable = set.intersection(*(set(d) for d in depths))
    return [CrashPoint(scenario, "tree", f, klass, k, path) for klass, path in sorted(stable) for f in FAULTS
            for k in range(1, min(d[klass, path] for d in depths) + 1)]


# -- running one point ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a scenario ended with, after the faulty run and the user's reruns."""
    injected_rc: int | None = None
    first_failure: str = ""  # the first FAILED or error line of the faulty run
    hits: list[str] = field(default_factory=list)
    task_hit: set[str] = field(default_factory=set)  # tasks whose own processes a fault hit
    child_hit: bool = False  # a fault hit a process other than the orchestrator
    reruns: list[str] = field(default_factory=list)  # "run --restart-failed: exit 1 (last line)"
    rerun_ok: bool = False
    markers: dict = field(default_factory=dict)
    started: Counter = field(default_factory=Counter)
    finished: Counter = field(default_factory=Counter)
    results: dict = field(default_factory=dict)  # output/ files and output_vars, by relative path
    cache: dict = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)
    status: str = ""
    checks: list[str] = field(default_factory=list)


def copy_start(template: Path, base: Path) -> None:
    shutil.copytree(template, base, symlinks=True)


def build_template(scenario: Scenario, template: Path) -> None:
    template.mkdir(parents=True)
    scenario.setup(template)


def run_point(scenario: Scenario, template: Path, base: Path, point: CrashPoint | None) -> Outcome:
    """The scenario from a copy of its template in `base`: the run (faulty unless point is
    None), the reruns a user would do, and what they ended with."""
    copy_start(template, base)
    instance = base / "instance"
    started, finished, old_pid = run_counts(instance), run_counts(instance, "done.log"), _orchestrator_pid(instance)
    out = Outcome()
    prefix = tuple(point.strace(base, base / "strace.log")) if point else ()
    run = start_run(REPO, *scenario.args(base), env={**ENV, **scenario.env}, log=base / "faulty.log", prefix=prefix)
    out.injected_rc = run.wait(timeout=TIMEOUT)
    out.first_failure = next((line[:160] for line in (base / "faulty.log").read_text(errors="replace").splitlines()
                              if line.startswith(("FAILED", "drypipe: error"))), "")
    if point:
        root = _orchestrator_pid(instance)
        root = None if root == old_pid else root  # no new orchestrator pid: it died first, alone
        for pid, call in hits(base / "strace.log", point.k):
            out.hits.append(call.replace(f"{base}/", ""))
            if pid is not None and root is not None and pid != root:
                out.child_hit = True
                out.task_hit |= set(re.findall(r"/(?:\.drypipe|output)/([^/]+)/", call))
    _rerun(scenario, base, out)
    _wait_for_tasks(instance)
    out.markers = markers(instance) if (instance / ".drypipe").is_dir() else {}
    out.started = run_counts(instance) - started
    out.finished = run_counts(instance, "done.log") - finished
    out.results = _results(instance)
    out.cache = _cache(base / "cache")
    out.leftovers = sorted(_short(p.relative_to(base)) for p in base.rglob("*.tmp"))
    out.checks = scenario.check(instance)
    if out.rerun_ok:
        status = start_run(REPO, "status", "-p", GEN, "-i", str(instance), env={**ENV, **scenario.env},
                           log=base / "status.log")
        rc = status.wait(timeout=TIMEOUT)
        out.status = f"exit {rc}: " + _status_summary((base / "status.log").read_text())
    return out


def _rerun(scenario: Scenario, base: Path, out: Outcome) -> None:
    """The plain rerun, then --restart-failed once if the fault hit a task and one failed (or
    was found lost by the rerun)."""
    restart = () if "--restart-failed" in scenario.options else ("--restart-failed",)
    for n, more in enumerate([(), restart] if out.child_hit else [()]):
        log = base / f"rerun-{n}.log"
        rc = _drypipe(*scenario.args(base, *more), env=scenario.env, log=log)
        last = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
        out.reruns.append(f"rerun{' --restart-failed' if n else ''}: exit {rc}" + (f" ({last[0][:120]})" if rc else ""))
        if rc == 0:
            out.rerun_ok = True
            return
        if not any(st.is_failure(s) for s in _states(base / "instance").values()):
            return  # nothing that --restart-failed is for


def _orchestrator_pid(instance: Path) -> int | None:
    try:
        return int((instance / ".drypipe/.orchestrator.pid").read_text())
    except (OSError, ValueError):
        return None


def _states(instance: Path) -> dict[str, str]:
    if not (instance / ".drypipe").is_dir():
        return {}
    return {k: m[0][len("state."):] for k, m in markers(instance).items() if len(m) == 1}


def _wait_for_tasks(instance: Path) -> None:
    """No task process of the point may still write while it is judged (or deleted)."""
    def gone() -> bool:
        for pid_file in instance.glob(".drypipe/*/pid"):
            fields = pid_file.read_text().split()
            if len(fields) >= 2 and process_matches(int(fields[0]), fields[1]):
                return False
        return True
    wait_until(gone, timeout=30, what="the task processes to end")


def _results(instance: Path) -> dict[str, bytes]:
    """What the pipeline produced: files under output/ (not scratch dirs), output variables."""
    found = {}
    for path in sorted(instance.glob("output/**/*")):
        rel = path.relative_to(instance)
        if path.is_file() and "scratch" not in rel.parts:
            found[str(rel)] = path.read_bytes()
    for path in sorted(instance.glob(".drypipe/*/output_vars")):
        found[str(path.relative_to(instance))] = path.read_bytes()
    return found


def _cache(cache: Path) -> dict[str, bytes]:
    """Every file of the cache; manifests without their creation time.  The temporary files
    of an interrupted publication (`.*.tmp`) are left out: no reader ever opens them."""
    found = {}
    for path in sorted(cache.rglob("*")) if cache.is_dir() else []:
        if path.is_file() and not (path.name.startswith(".") and path.name.endswith(".tmp")):
            data = path.read_bytes()
            if path.name == "manifest.json":
                try:
                    manifest = json.loads(data)
                    manifest.pop("created", None)
                    data = json.dumps(manifest, sort_keys=True).encode()
                except ValueError:
                    pass
            found[_short(path.relative_to(cache))] = data
    return found


def _short(path: Path) -> str:
    """A path with its signatures cut to 8 digits, to keep messages short."""
    return re.sub(r"([0-9a-f]{8})[0-9a-f]{56}", r"\1..", str(path))


def _status_summary(text: str) -> str:
    """`drypipe status` as one line: the tasks not plainly completed, and the totals line."""
    lines = [line for line in text.splitlines() if line.strip()]
    odd = [" ".join(line.split()[:3]) for line in lines[1:-1] if line.split()[1:2] != ["completed"]
           or "stale" in line]
    return "; ".join(odd + lines[-1:])


# -- judging -------------------------------------------------------------------------------------


def differences(out: Outcome, ref: Outcome) -> list[str]:
    """What differs from the uninterrupted run, compactly (empty: the crash point is fine)."""
    found = []
    if not out.rerun_ok:
        found.append("reruns failed: " + "; ".join(out.reruns))
    bad = {k: [m[6:] for m in ms] for k, ms in out.markers.items() if ms != ["state.completed"]}
    if bad or set(out.markers) != set(ref.markers):
        found.append(f"states {bad}" if bad else f"tasks {sorted(out.markers)} vs {sorted(ref.markers)}")
    again = {k: n for k, n in out.finished.items() if n > ref.finished[k] and k not in out.task_hit}
    if again:
        found.append("ran to the end more often: " + ", ".join(f"{k} {n} (ref {ref.finished[k]})"
                                                               for k, n in sorted(again.items())))
    missed = sorted(k for k, n in ref.finished.items() if out.finished[k] < n)
    if missed:
        found.append(f"never finished: {', '.join(missed)}")
    for what, mine, theirs in (("outputs", out.results, ref.results), ("cache", out.cache, ref.cache)):
        diff = _dict_diff(mine, theirs)
        if diff:
            found.append(f"{what} differ: {diff}")
    if out.leftovers != ref.leftovers:
        found.append(f"left {', '.join(out.leftovers[:3])}")
    if out.rerun_ok and out.status != ref.status:
        found.append(f"status -p {out.status!r} (ref {ref.status!r})")
    return found


def _dict_diff(mine: dict, theirs: dict) -> str:
    changed = [f"{k} changed" for k in mine.keys() & theirs.keys() if mine[k] != theirs[k]]
    missing = [f"{k} missing" for k in theirs.keys() - mine.keys()]
    extra = [f"{k} extra" for k in mine.keys() - theirs.keys()]
    items = sorted(changed) + sorted(missing) + sorted(extra)
    return ", ".join(items[:3]) + (f" (+{len(items) - 3})" if len(items) > 3 else "")


def completed(ref: Outcome) -> bool:
    """An uninterrupted run that completed: one crash points can be compared with."""
    return ref.injected_rc == 0 and ref.rerun_ok and ref.status.startswith("exit 0")


def reference_problems(ref: Outcome) -> list[str]:
    """An uninterrupted run must itself be right: completed, and the scenario's invariant."""
    found = list(ref.checks)
    if not completed(ref):
        found.append(f"the run exits {ref.injected_rc} ({ref.first_failure}), then {'; '.join(ref.reruns)}")
    return found


def traced_reference(scenario: Scenario, template: Path, base: Path) -> tuple[Path, Path, int]:
    """One uninterrupted run under strace -f (no injection), for counting crash points."""
    copy_start(template, base)
    calls = ",".join(name for names in CLASSES.values() for name in names)
    log = base / "trace.log"
    prefix = ("strace", "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-yy", "-s", "200", "-o", str(log),
              "-e", f"trace={calls}")
    run = start_run(REPO, *scenario.args(base), env={**ENV, **scenario.env}, log=base / "traced.log", prefix=prefix)
    run.wait(timeout=TIMEOUT)  # if it fails, so does the reference run, which says so
    return base, log, _orchestrator_pid(base / "instance")


# -- by hand -------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """One crash point, by hand: SCENARIO MODE FAULT CLASS K [PATH]."""
    if len(argv) not in (5, 6) or argv[0] not in SCENARIOS or argv[1] not in MODES or argv[2] not in FAULTS \
            or argv[3] not in CLASSES:
        print(__doc__.split("Run one crash point by hand")[1], file=sys.stderr)
        return 2
    scenario = SCENARIOS[argv[0]]
    point = CrashPoint(argv[0], argv[1], argv[2], argv[3], int(argv[4]), argv[5] if len(argv) == 6 else None)
    work = Path(os.path.realpath(tempfile.mkdtemp(prefix="drypipe-crash-point-")))
    build_template(scenario, work / "template")
    ref = run_point(scenario, work / "template", work / "reference", None)
    out = run_point(scenario, work / "template", work / "point", point)
    command = [*point.strace(work / "point", work / "point/strace.log"), sys.executable, "-m", "drypipe",
               *scenario.args(work / "point")]
    print("faulty run:", " ".join(f"{k}={v}" for k, v in {**ENV, **scenario.env}.items()), subprocess.list2cmdline(command))
    print("hit:", *(out.hits or ["nothing (the run made fewer calls)"]), sep="\n  ")
    print("faulty run exit", out.injected_rc, "| reruns:", "; ".join(out.reruns))
    print("started", dict(out.started), "finished", dict(out.finished), "(uninterrupted:", dict(ref.finished), ")")
    found = reference_problems(ref) + differences(out, ref)
    print("differences:" if found else "same result as the uninterrupted run", *found, sep="\n  ")
    print("files kept in", work)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
