#!/usr/bin/env python3
"""drypipe benchmarks: the orchestrator against the floor (the same commands without an
orchestrator) and against Snakemake on the same DAG.  `make bench` runs it.

    python bench/run.py                  every case, median of 3 runs (long: see bench/README.md)
    python bench/run.py --quick          1 run each, smaller N
    python bench/run.py --only chain     one case (repeat --only, or comma-separate, for more)
    python bench/run.py --pythonpath /tmp/dp-exp   measure another drypipe checkout (a patch)

Prints one table (case, drypipe, baseline, ratio, target) and writes bench/results/latest.json
with every raw measurement.  Snakemake is installed into its own venv (DRYPIPE_BENCH_VENV,
default /tmp/drypipe-bench-venv), never into the project's environment.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import file_census

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SNAKEFILES = BENCH_DIR / "snakemake"
CASES = ("throughput", "chain", "noop", "scale", "files", "cycle", "dagbuild", "dynamic", "slurm")

SIZES = {
    False: {  # full
        "throughput": (1000, 10000), "chain": 200, "noop": 10000, "scale": 100000, "files": 200,
        "cycle": (1000, 10000, 100000), "dagbuild": (10000, 100000), "dynamic": 5000, "slurm": 1000,
    },
    True: {  # --quick
        "throughput": (1000, 2000), "chain": 100, "noop": 2000, "scale": 5000, "files": 200,
        "cycle": (1000, 10000), "dagbuild": (2000, 20000), "dynamic": 500, "slurm": 200,
    },
}
# Time caps (seconds).  A capped measurement is reported as a lower bound ("> N s").
CAPS = {
    False: {"default": 1800, "snakemake_default_large": 600, "snakemake_dry_large": 600, "cycle": 600, "scale": 3600},
    True: {"default": 600, "snakemake_default_large": 120, "snakemake_dry_large": 120, "cycle": 120, "scale": 600},
}
SNAKEMAKE_SPEC = "snakemake"


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Measure:
    """Runs of one command: the median wall time, or a lower bound when a run hit its cap."""

    runs: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.runs) and self.error is None

    @property
    def capped(self) -> bool:
        return any(r["timed_out"] for r in self.runs)

    @property
    def wall(self) -> float | None:
        if not self.runs:
            return None
        if self.capped:
            return max(r["wall"] for r in self.runs)
        return statistics.median(r["wall"] for r in self.runs)

    @property
    def maxrss_mb(self) -> float | None:
        return max((r["maxrss_mb"] for r in self.runs), default=None)

    @property
    def self_cpu(self) -> float | None:
        """The median CPU time (user+system) of the orchestrator process alone (bench/self_usage.py)."""
        cpus = [r["self"]["cpu"] for r in self.runs if "self" in r]
        return statistics.median(cpus) if cpus and self.ok else None

    @property
    def self_maxrss_mb(self) -> float | None:
        """The peak RSS of the orchestrator process alone, over the runs."""
        return max((r["self"]["maxrss_mb"] for r in self.runs if "self" in r), default=None) if self.ok else None

    def to_json(self) -> dict:
        return {"wall": self.wall, "capped": self.capped, "error": self.error, "runs": self.runs}


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.quick = args.quick
        self.runs = args.runs or (1 if args.quick else 3)
        self.sizes = dict(SIZES[self.quick])
        for spec in args.size:
            case, _, value = spec.partition("=")
            numbers = tuple(int(v) for v in value.split("/"))
            self.sizes[case] = numbers if isinstance(self.sizes[case], tuple) else numbers[0]
        self.caps = CAPS[self.quick]
        self.work = Path(args.workdir).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.logs = self.work / "logs"
        self.logs.mkdir(exist_ok=True)
        self.rows: list[dict] = []
        self.raw: dict = {}
        self.snakemake: str | None = None
        self.snakemake_reason: str | None = None
        self.completed_instances: dict[int, Path] = {}  # throughput N -> completed drypipe instance
        self.completed_smk: dict[int, Path] = {}  # throughput N -> completed snakemake workdir
        self.throughput_walls: dict[int, float] = {}  # throughput N -> median drypipe wall time
        pythonpath = [str(BENCH_DIR)]
        if args.pythonpath:
            pythonpath.insert(0, str(Path(args.pythonpath).resolve()))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DRYPIPE_")}
        self.env["PYTHONPATH"] = os.pathsep.join(pythonpath + [p for p in [os.environ.get("PYTHONPATH")] if p])
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.commit = _commit(Path(args.pythonpath) if args.pythonpath else REPO)  # at the start: the tree may move

    # -- plumbing ------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def timed(self, name: str, command: list[str], *, cwd: Path, env: dict | None = None,
              timeout: float | None = None) -> dict:
        log_file = self.logs / f"{name}.log"
        wrapper = [sys.executable, str(BENCH_DIR / "timed.py"), str(timeout or self.caps["default"]), str(log_file), "--"]
        done = subprocess.run(wrapper + command, cwd=cwd, env=env or self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"timed.py failed: {done.stderr}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["log"] = str(log_file)
        return result

    def measure(self, name: str, command: list[str], *, cwd: Path, setup=None, env: dict | None = None,
                timeout: float | None = None, runs: int | None = None, self_usage: bool = False) -> Measure:
        """Run `command` `runs` times (each after `setup()`); stop early on error or cap.
        `self_usage`: the command is a `drypipe_self` one; each run's r["self"] is its report."""
        m = Measure()
        for i in range(runs or self.runs):
            if setup is not None:
                setup()
            cwd.mkdir(parents=True, exist_ok=True)
            usage = self.logs / f"{name}.{i}.self.json"
            usage.unlink(missing_ok=True)
            run_env = {**(env or self.env), "BENCH_SELF_USAGE": str(usage)} if self_usage else env
            r = self.timed(f"{name}.{i}", command, cwd=cwd, env=run_env, timeout=timeout)
            if usage.exists():
                r["self"] = json.loads(usage.read_text())
            m.runs.append(r)
            shown = f"{r['wall']:.2f} s" + (" (CAPPED)" if r["timed_out"] else "")
            if "self" in r:
                shown += f", orchestrator CPU {r['self']['cpu']:.2f} s, its peak RSS {r['self']['maxrss_mb']:.0f} MiB"
            self.log(f"  {name} run {i + 1}: {shown}, rc {r['rc']}, peak RSS {r['maxrss_mb']:.0f} MiB")
            if r["timed_out"]:
                break
            if r["rc"] != 0:
                tail = Path(r["log"]).read_text(errors="replace").splitlines()[-5:]
                m.error = f"exit code {r['rc']}: " + " | ".join(tail)
                self.log(f"  {name} FAILED: {m.error}")
                break
        self.raw[name] = m.to_json()
        return m

    def drypipe(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "drypipe", *args]

    def drypipe_self(self, *args: str) -> list[str]:
        """`python -m drypipe ARGS` through bench/self_usage.py: measure with self_usage=True."""
        return [sys.executable, str(BENCH_DIR / "self_usage.py"), *args]

    def case_dir(self, name: str) -> Path:
        """A case's scratch directory, emptied first."""
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def fresh(self, path: Path):
        def setup() -> None:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            # Deleting a run's thousands of files leaves the file system journal busy; the next
            # run's file creations would pay for it (measured: +1.7 s of system time at 1k).
            os.sync()
        return setup

    # -- snakemake -----------------------------------------------------------------------------

    def ensure_snakemake(self) -> None:
        if self.args.no_snakemake:
            self.snakemake_reason = "not measured (--no-snakemake)"
            return
        venv = Path(os.environ.get("DRYPIPE_BENCH_VENV", "/tmp/drypipe-bench-venv"))
        exe = venv / "bin" / "snakemake"
        if not exe.exists():
            self.log(f"installing Snakemake into its own venv {venv} (pip install {SNAKEMAKE_SPEC}) ...")
            log_file = self.logs / "snakemake-install.log"
            with open(log_file, "w") as log:
                ok = subprocess.run([sys.executable, "-m", "venv", str(venv)], stdout=log, stderr=log, check=False).returncode == 0
                ok = ok and subprocess.run([str(venv / "bin" / "pip"), "install", "-q", SNAKEMAKE_SPEC],
                                           stdout=log, stderr=log, check=False).returncode == 0
            if not ok:
                tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
                self.snakemake_reason = f"n/a: snakemake could not be installed ({tail[0][:80]})"
                self.log(self.snakemake_reason)
                return
        done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            self.snakemake_reason = f"n/a: {exe} --version failed"
            return
        self.snakemake = str(exe)
        self.raw["snakemake_version"] = done.stdout.strip()
        self.log(f"Snakemake {done.stdout.strip()} at {exe}")

    def smk(self, snakefile: str, n: int, *extra: str) -> list[str]:
        return [self.snakemake, "-s", str(SNAKEFILES / snakefile), "--cores", "2", "--config", f"ntasks={n}", *extra]

    # -- rows ----------------------------------------------------------------------------------

    def row(self, case: str, drypipe: Measure | float | None, baseline: str, base: Measure | float | str | None,
            kind: str, target: float | None, note: str = "", value: float | None = None, unit: str = "s") -> None:
        """kind: 'le' (drypipe/baseline <= target), 'speedup' (baseline/drypipe >= target),
        'abs_le' (value <= target, no baseline), 'info' (no target)."""
        dp_wall, dp_capped, dp_err = _wall(drypipe)
        b_wall, b_capped, b_err = _wall(base)
        ratio = None
        bound = ""  # "≥" or "≤" when the ratio is a bound (a side was capped)
        if kind == "abs_le" or (kind == "info" and value is not None):
            ratio = value
        elif dp_wall and b_wall and not dp_err and not b_err:
            if kind in ("le", "info"):
                ratio = dp_wall / b_wall
                bound = "≥" if dp_capped else ("≤" if b_capped else "")
            else:
                ratio = b_wall / dp_wall
                bound = "≥" if b_capped else ("≤" if dp_capped else "")
        met = None
        if ratio is not None and target is not None and not dp_err and not b_err:
            if kind in ("le", "abs_le"):
                good = ratio <= target
                # bound "≥": the true ratio is larger (drypipe capped); "≤": smaller (baseline capped)
                met = good if not bound else (False if bound == "≥" and not good else True if bound == "≤" and good else None)
            elif kind == "speedup":
                good = ratio >= target
                met = good if not bound else (True if bound == "≥" and good else False if bound == "≤" and not good else None)
        target_text = {"le": f"dp/base ≤ {target}", "speedup": f"base/dp ≥ {target}",
                       "abs_le": f"≤ {target} {unit}", "info": "—"}[kind] if target is not None else "—"
        if kind == "abs_le" or (kind == "info" and value is not None):
            ratio_text = _num(ratio) + f" {unit}"
        else:
            ratio_text = (bound + _num(ratio) + "×") if ratio is not None else "—"
        self.rows.append({
            "case": case,
            "drypipe": dp_err or _seconds(dp_wall, dp_capped),
            "baseline": baseline,
            "baseline_time": b_err or (_seconds(b_wall, b_capped) if b_wall is not None else "—"),
            "ratio": ratio_text,
            "ratio_value": ratio,
            "target": target_text,
            "met": {True: "yes", False: "NO", None: "—"}[met],
            "note": note,
        })

    def smk_missing(self, case: str, drypipe: Measure, baseline: str, kind: str, target: float | None) -> None:
        self.row(case, drypipe, baseline, self.snakemake_reason, kind, target)

    # -- case 1: throughput --------------------------------------------------------------------

    def case_throughput(self) -> None:
        small, large = self.sizes["throughput"]
        for n in (small, large):
            self.log(f"throughput, N={n}")
            d = self.case_dir(f"throughput-{n}")
            inst = d / "dp-instance"
            dp = self.measure_throughput(f"throughput-{n}-drypipe", n, d)
            if dp.ok and not dp.capped:
                self.completed_instances[n] = inst
                self.throughput_walls[n] = dp.wall
            floor_dir = d / "floor"
            commands = d / "commands.txt"
            floor_dir.mkdir(parents=True, exist_ok=True)
            commands.write_text("".join(f"touch {floor_dir}/t{i}\n" for i in range(n)))
            floor = self.measure(f"throughput-{n}-floor",
                                 ["bash", "-c", f"xargs -P 2 -d '\\n' -n 1 bash -c < {commands}"],
                                 cwd=d, setup=self.fresh(floor_dir))
            label = f"throughput {_size(n)}"
            self.row(label, dp, "floor: xargs -P 2 bash -c", floor, "le", 1.5 if n == small else 2.0)
            self.orchestrator_cpu_row(label, dp, n, 0.5)
            if self.snakemake is None:
                self.smk_missing(label, dp, "snakemake --scheduler greedy", "speedup", 7 if n == small else 10)
                self.smk_missing(label, dp, "snakemake (default scheduler)", "speedup", 10 if n == small else None)
                continue
            smk_dir = d / "snakemake-greedy"
            greedy = self.measure(f"throughput-{n}-snakemake-greedy", self.smk("throughput.smk", n, "--scheduler", "greedy"),
                                  cwd=smk_dir, setup=self.fresh(smk_dir))
            if greedy.ok and not greedy.capped:
                self.completed_smk[n] = smk_dir
            self.row(label, dp, "snakemake --scheduler greedy", greedy, "speedup", 7 if n == small else 10)
            smk_dir = d / "snakemake-default"
            if n == small:
                default = self.measure(f"throughput-{n}-snakemake-default", self.smk("throughput.smk", n),
                                       cwd=smk_dir, setup=self.fresh(smk_dir))
                self.row(label, dp, "snakemake (default scheduler)", default, "speedup", 10)
            else:
                cap = self.caps["snakemake_default_large"]
                default = self.measure(f"throughput-{n}-snakemake-default", self.smk("throughput.smk", n),
                                       cwd=smk_dir, setup=self.fresh(smk_dir), timeout=cap, runs=1)
                self.row(label, dp, f"snakemake (default scheduler, cap {cap} s)", default, "speedup", None,
                         note="one run; a lower bound" if default.capped else "one run")

    def measure_throughput(self, name: str, n: int, d: Path, runs: int | None = None,
                           timeout: float | None = None) -> Measure:
        """`drypipe run` of N independent tasks into d/dp-instance (emptied before each run),
        through bench/self_usage.py: the wall time as before, plus the orchestrator's own usage."""
        inst = d / "dp-instance"
        return self.measure(name, self.drypipe_self("run", "-p", "bench_pipelines:throughput", "-i", str(inst),
                                                    "--max-local-jobs", "2"),
                            cwd=d, setup=self.fresh(inst), env={**self.env, "BENCH_N": str(n)}, runs=runs,
                            timeout=timeout, self_usage=True)

    def orchestrator_cpu_row(self, label: str, dp: Measure, n: int, target: float | None) -> None:
        cpu = dp.self_cpu
        if cpu is None:
            self.row(f"{label}: orchestrator CPU", dp, "—", None, "info", None, note="no usage report (failed run)")
            return
        self.row(f"{label}: orchestrator CPU", dp, "—", None, "abs_le" if target is not None else "info", target,
                 value=cpu / n * 1000, unit="ms/task",
                 note=f"user+system of the drypipe process and its threads, not its tasks: {cpu:.2f} s; "
                      f"its peak RSS {dp.self_maxrss_mb:.0f} MiB")

    # -- case 3b: scale ------------------------------------------------------------------------

    def case_scale(self) -> None:
        """100k independent tasks really run: the orchestrator's peak RSS, and the wall time per
        task against the largest throughput run (measured here, once, if case 1 did not run)."""
        n = self.sizes["scale"]
        ref_n = self.sizes["throughput"][-1]
        self.log(f"scale, N={n}")
        d = self.case_dir(f"scale-{n}")
        dp = self.measure_throughput(f"scale-{n}-drypipe", n, d, runs=1, timeout=self.caps["scale"])
        label = f"throughput {_size(n)}"
        self.orchestrator_cpu_row(label, dp, n, None)
        rss = dp.self_maxrss_mb
        self.row(f"{label}: orchestrator peak RSS", dp, "—", None, "abs_le" if rss is not None else "info",
                 1024 if rss is not None else None, value=rss, unit="MiB",
                 note="RUSAGE_SELF of the drypipe process (timed.py's peak is of every process, tasks included)")
        ref = self.throughput_walls.get(ref_n)
        if ref is None:
            self.log(f"  measuring the {_size(ref_n)} reference once (case throughput did not run)")
            m = self.measure_throughput(f"scale-{ref_n}-reference", ref_n, self.case_dir(f"scale-{ref_n}"), runs=1)
            ref = m.wall if m.ok and not m.capped else None
        if dp.ok and ref is not None:
            self.row(f"throughput {_size(ref_n)}→{_size(n)}: growth", dp, f"throughput {_size(ref_n)}", ref, "abs_le",
                     1.2, value=(dp.wall / n) / (ref / ref_n), unit="× per task",
                     note="wall time per task, large/small (1 = linear)"
                     + ("; capped: a lower bound" if dp.capped else ""))

    # -- case 3c: files per task ---------------------------------------------------------------

    def case_files(self) -> None:
        """The files and directories a throughput run creates under the instance, from an strace
        of it (bench/file_census.py): per task, and instance-wide apart."""
        n = self.sizes["files"]
        label = f"files per task ({_size(n)} tasks)"
        self.log(f"files per task, N={n} (strace)")
        strace = shutil.which("strace")
        if strace is None:
            self.row(label, None, "—", None, "info", None, note="n/a: strace is not installed")
            return
        d = self.case_dir(f"files-{n}")
        inst = d / "dp-instance"
        prefix = d / "trace" / "strace"
        prefix.parent.mkdir()
        m = self.measure(f"files-{n}-drypipe-strace",
                         [strace, "-o", str(prefix), *file_census.STRACE_ARGS,
                          *self.drypipe("run", "-p", "bench_pipelines:throughput", "-i", str(inst),
                                        "--max-local-jobs", "2")],
                         cwd=d, setup=self.fresh(inst), env={**self.env, "BENCH_N": str(n)}, runs=1)
        if not m.ok or m.capped:
            self.row(label, m, "—", None, "info", None, note="the traced run failed or was capped")
            return
        keys = {p.name for p in (inst / ".drypipe").iterdir() if p.is_dir() and not p.name.startswith(".")}
        c = file_census.census(file_census.created_files(prefix, str(d)), inst, keys)
        self.raw["files"] = {"tasks": n, **c}
        self.log(f"  {c['task_files'] / n:.2f} files per task ({c['task_files']} for {n} tasks), "
                 f"{c['instance_files']} instance-wide; per task, by the name each was created under:")
        for pattern, count in c["per_task"].items():
            self.log(f"    {count / n:5.2f}  {pattern}")
        self.log("  instance-wide:")
        for pattern, count in c["instance"].items():
            self.log(f"    {count:5d}  {pattern}")
        self.row(label, m, "—", None, "abs_le", 5, value=c["task_files"] / n, unit="files/task",
                 note=f"files and directories under .drypipe/<key>/ and output/<key>/ (both dirs counted), "
                      f"temporaries included, a file renamed or linked counted once; "
                      f"plus {c['instance_files']} instance-wide; wall time under strace")

    # -- case 3d: cycle cost -------------------------------------------------------------------

    def case_cycle(self) -> None:
        """bench/cycle_probe.py at each N: the median scheduler cycle should not grow with N."""
        medians: dict[int, float] = {}
        for n in self.sizes["cycle"]:
            self.log(f"cycle probe, N={n}")
            # The smallest run takes about a second: a burst of other work on the machine can
            # double its median, so it is run at least 3 times.
            count = max(self.runs, 3) if n == min(self.sizes["cycle"]) else self.runs
            runs = [self.cycle_probe(n, i) for i in range(count)]
            label = f"cycle probe {_size(n)}"
            if any(isinstance(r, str) for r in runs):
                self.row(label, None, "—", None, "info", None, note=next(r for r in runs if isinstance(r, str)))
                continue
            self.raw[f"cycle-{n}"] = runs
            r = sorted(runs, key=lambda r: r["median_ms"])[(len(runs) - 1) // 2]  # the run of the median median
            medians[n] = r["median_ms"]
            capped = f", stopped at the {self.caps['cycle']} s cap" if r["capped"] else ""
            self.row(label, r["wall"], "—", None, "info", None, value=r["median_ms"], unit="ms median cycle",
                     note=f"p90 {r['p90_ms']:.3g} ms, {r['cycles']} cycles, {r['completed']} of {n} tasks done"
                          f"{capped}; the median of {len(runs)} run(s); in process, fake executor, 2 tasks in flight")
        small, large = min(self.sizes["cycle"]), max(self.sizes["cycle"])
        if small in medians and large in medians:
            self.row(f"cycle probe {_size(small)}→{_size(large)}: growth", None, "—", None, "abs_le", 2,
                     value=medians[large] / medians[small], unit="× median cycle",
                     note="median cycle time, large/small (1 = a cycle costs what changed, not the total)")

    def cycle_probe(self, n: int, i: int) -> dict | str:
        """One run of bench/cycle_probe.py: its JSON report, or why there is none."""
        cap = self.caps["cycle"]
        d = self.case_dir(f"cycle-{n}")
        log_file = self.logs / f"cycle-{n}.{i}.log"
        try:
            done = subprocess.run([sys.executable, str(BENCH_DIR / "cycle_probe.py"), str(n), str(d / "instance"),
                                   str(cap)], cwd=d, env=self.env, capture_output=True, text=True,
                                  timeout=2 * cap + 300, check=False)
        except subprocess.TimeoutExpired:
            return f"no answer in {2 * cap + 300} s"
        log_file.write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            self.log(f"  cycle probe failed: {done.stderr.strip()[-300:]}")
            return f"failed (exit {done.returncode}), see {log_file}"
        r = json.loads(done.stdout.strip().splitlines()[-1])
        self.log(f"  run {i + 1}: {r['cycles']} cycles, {r['completed']} tasks completed in {r['wall']:.1f} s: "
                 f"median {r['median_ms']:.3f} ms, p90 {r['p90_ms']:.3f} ms, max {r['max_ms']:.1f} ms"
                 + (f" (stopped at the {cap} s cap)" if r["capped"] else ""))
        return r

    # -- case 2: chain -------------------------------------------------------------------------

    def case_chain(self) -> None:
        n = self.sizes["chain"]
        self.log(f"chain, N={n}")
        d = self.case_dir(f"chain-{n}")
        inst = d / "dp-instance"
        dp = self.measure(f"chain-{n}-drypipe",
                          self.drypipe("run", "-p", "bench_pipelines:chain", "-i", str(inst), "--max-local-jobs", "2"),
                          cwd=d, setup=self.fresh(inst), env={**self.env, "BENCH_N": str(n)})
        floor_dir = d / "floor"
        commands = d / "commands.txt"
        floor_dir.mkdir(parents=True, exist_ok=True)
        commands.write_text("".join(f"touch {floor_dir}/c{i}\n" for i in range(n)))
        floor = self.measure(f"chain-{n}-floor", ["bash", "-c", f'while IFS= read -r c; do bash -c "$c"; done < {commands}'],
                             cwd=d, setup=self.fresh(floor_dir))
        self.row(f"chain {n}", dp, "floor: bash -c, one after another", floor, "le", 2.0)
        if self.snakemake is None:
            self.smk_missing(f"chain {n}", dp, "snakemake (default scheduler)", "speedup", None)
            return
        smk_dir = d / "snakemake"
        smk = self.measure(f"chain-{n}-snakemake", self.smk("chain.smk", n), cwd=smk_dir, setup=self.fresh(smk_dir))
        self.row(f"chain {n}", dp, "snakemake (default scheduler)", smk, "speedup", None)

    # -- case 3: no-op rerun -------------------------------------------------------------------

    def case_noop(self) -> None:
        n = self.sizes["noop"]
        self.log(f"no-op rerun, N={n}")
        startup = self.measure("noop-interpreter-startup", [sys.executable, "-c", "import drypipe.cli"],
                               cwd=self.work, runs=max(3, self.runs))
        inst = self.completed_instances.get(n)
        if inst is None:
            inst = self.case_dir(f"noop-{n}") / "dp-instance"
            self.log(f"  building a completed instance of {n} tasks first (not timed)")
            m = self.measure(f"noop-{n}-drypipe-build",
                             self.drypipe("run", "-p", "bench_pipelines:throughput", "-i", str(inst), "--max-local-jobs", "2"),
                             cwd=inst.parent, setup=self.fresh(inst), env={**self.env, "BENCH_N": str(n)}, runs=1)
            if not m.ok or m.capped:
                self.row(f"no-op rerun {_size(n)}", m, "—", None, "info", None, note="could not build the instance")
                return
        dp = self.measure(f"noop-{n}-drypipe",
                          self.drypipe("run", "-p", "bench_pipelines:throughput", "-i", str(inst), "--max-local-jobs", "2"),
                          cwd=inst.parent, env={**self.env, "BENCH_N": str(n)})
        label = f"no-op rerun {_size(n)}"
        if self.snakemake is None:
            self.smk_missing(label, dp, "snakemake no-op rerun", "speedup", 5)
        else:
            smk_dir = self.completed_smk.get(n)
            if smk_dir is None:
                smk_dir = self.work / f"noop-{n}" / "snakemake"
                self.log(f"  building a completed Snakemake workdir of {n} jobs first (not timed)")
                self.measure(f"noop-{n}-snakemake-build", self.smk("throughput.smk", n, "--scheduler", "greedy"),
                             cwd=smk_dir, setup=self.fresh(smk_dir), runs=1)
            smk = self.measure(f"noop-{n}-snakemake", self.smk("throughput.smk", n), cwd=smk_dir)
            self.row(label, dp, "snakemake no-op rerun", smk, "speedup", 5)
        if dp.ok and startup.ok:
            beyond = dp.wall - startup.wall
            self.row(label, dp, "interpreter start-up (import drypipe.cli)", startup, "abs_le", 0.5,
                     value=beyond, note="value: drypipe minus start-up")

    # -- case 4: DAG build ---------------------------------------------------------------------

    def case_dagbuild(self) -> None:
        per_task: dict[int, float] = {}
        for n in self.sizes["dagbuild"]:
            self.log(f"DAG build, N={n}")
            d = self.case_dir(f"dagbuild-{n}")
            inst = d / "dp-instance"
            env = {**self.env, "BENCH_N": str(n)}
            label = f"DAG build {_size(n)}"
            ev_runs = []
            for i in range(self.runs):
                done = subprocess.run([sys.executable, str(BENCH_DIR / "evaluate_dag.py"), "bench_pipelines:fanout_gather",
                                       str(inst)], cwd=d if d.exists() else self.work, env=env, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    ev_runs = []
                    self.log(f"  evaluate failed: {done.stderr.strip()[-300:]}")
                    break
                ev_runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                self.log(f"  evaluate run {i + 1}: {ev_runs[-1]['seconds']:.2f} s for {ev_runs[-1]['tasks']} tasks")
            self.raw[f"dagbuild-{n}-evaluate"] = ev_runs
            if ev_runs:
                ev = statistics.median(r["seconds"] for r in ev_runs)
                tasks = ev_runs[0]["tasks"]
                self.row(f"{label}: generator evaluation", ev, "—", None, "abs_le", 0.1, value=ev / tasks * 1000,
                         unit="ms/task")
            prep = self.measure(f"dagbuild-{n}-drypipe-prepare",
                                self.drypipe("prepare", "-p", "bench_pipelines:fanout_gather", "-i", str(inst)),
                                cwd=d, setup=self.fresh(inst), env=env)
            if prep.ok:
                per_task[n] = prep.wall / (n + 2)
                self.row(f"{label}: drypipe prepare", prep, "—", None, "info", None, value=per_task[n] * 1000,
                         unit="ms/task")
                self.row(f"{label}: prepare peak RSS", prep, "—", None, "abs_le" if n == self.sizes["dagbuild"][-1] else "info",
                         1024 if n == self.sizes["dagbuild"][-1] else None, value=prep.maxrss_mb, unit="MiB")
            else:
                self.row(f"{label}: drypipe prepare", prep, "—", None, "info", None, note="failed or capped")
            if self.snakemake is None:
                self.smk_missing(f"{label}: drypipe prepare", prep, "snakemake -n (dry run)", "speedup", None)
                continue
            smk_dir = d / "snakemake"
            cap = self.caps["snakemake_dry_large"] if n == self.sizes["dagbuild"][-1] else self.caps["default"]
            smk = self.measure(f"dagbuild-{n}-snakemake-dry", self.smk("fanout_gather.smk", n, "-n"), cwd=smk_dir,
                               setup=self.fresh(smk_dir), timeout=cap,
                               runs=1 if n == self.sizes["dagbuild"][-1] else None)
            self.row(f"{label}: drypipe prepare", prep, f"snakemake -n (dry run, cap {cap} s)", smk, "speedup", None,
                     note="snakemake peak RSS "
                     + (f"{smk.maxrss_mb:.0f} MiB" if smk.maxrss_mb is not None else "?"))
        small, large = self.sizes["dagbuild"]
        if small in per_task and large in per_task:
            self.row(f"DAG build {_size(small)}→{_size(large)}: growth", None, "—", None, "abs_le", 1.2,
                     value=per_task[large] / per_task[small], unit="× per task",
                     note="prepare time per task, large/small (1 = linear)")

    # -- case 5: dynamic DAG -------------------------------------------------------------------

    def case_dynamic(self) -> None:
        n = self.sizes["dynamic"]
        self.log(f"dynamic DAG, {n} chunks")
        d = self.case_dir(f"dynamic-{n}")
        env = {**self.env, "BENCH_N": str(n)}
        results = {}
        for kind in ("static", "dynamic"):
            inst = d / kind
            results[kind] = self.measure(f"dynamic-{n}-{kind}",
                                         self.drypipe("run", "-p", f"bench_pipelines:{kind}", "-i", str(inst),
                                                      "--max-local-jobs", "2"),
                                         cwd=d, setup=self.fresh(inst), env=env)
        self.row(f"dynamic DAG {n} chunks", results["dynamic"], "same tasks as a static DAG", results["static"], "le", 1.2)

    # -- case 6: Slurm -------------------------------------------------------------------------

    def case_slurm(self) -> None:
        n = self.sizes["slurm"]
        env = dict(self.env)
        started_dir = None
        if self.args.start_slurm:
            started_dir = self.work / "slurm-state"
            self.log(f"starting a single-node Slurm in {started_dir} (tests/services/slurm.sh)")
            done = subprocess.run(["bash", str(REPO / "tests/services/slurm.sh"), "start", str(started_dir)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                self.row(f"slurm {n}", None, "—", None, "info", None, note=f"slurm.sh start failed: {done.stderr.strip()[-120:]}")
                return
            env.update(_read_env_sh(started_dir / "env.sh"))
            time.sleep(4)  # slurmctld starts no job in its first ~3 s
        try:
            probe = subprocess.run(["sinfo", "-h"], env=env, capture_output=True, text=True, timeout=20, check=False)
            if probe.returncode != 0:
                raise OSError(probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "sinfo failed")
        except (OSError, subprocess.TimeoutExpired) as e:
            reason = f"skipped: no Slurm is up (sinfo: {str(e)[:70]}); --start-slurm starts one"
            self.log(reason)
            self.row("slurm", None, "—", None, "info", None, note=reason)
            return
        try:
            self._slurm(n, env)
        finally:
            if started_dir is not None:
                subprocess.run(["bash", str(REPO / "tests/services/slurm.sh"), "stop", str(started_dir)],
                               capture_output=True, text=True, check=False)

    def _slurm(self, n: int, env: dict) -> None:
        self.log(f"slurm, N={n}")
        d = self.work / f"slurm-{n}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        wrappers = d / "wrappers"
        wrappers.mkdir()
        calls = d / "calls.log"
        for command in ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo"):
            real = shutil.which(command, path=env.get("PATH"))
            if real is None:
                continue
            script = wrappers / command
            script.write_text(f'#!/bin/bash\nprintf "%s %s\\n" "$EPOCHREALTIME" "{command} $*" >> {calls}\nexec {real} "$@"\n')
            script.chmod(0o755)
        wenv = {**env, "PATH": f"{wrappers}:{env.get('PATH', '')}", "BENCH_N": str(n)}
        max_array = 1001
        config = subprocess.run(["scontrol", "show", "config"], env=env, capture_output=True, text=True, check=False)
        m = re.search(r"MaxArraySize\s*=\s*(\d+)", config.stdout)
        if m:
            max_array = int(m.group(1))
        inst = d / "dp-instance"
        dp = self.measure(f"slurm-{n}-drypipe",
                          self.drypipe("-vv", "run", "-p", "bench_pipelines:slurm_throughput", "-i", str(inst)),
                          cwd=d, setup=lambda: (shutil.rmtree(inst, ignore_errors=True), calls.unlink(missing_ok=True)),
                          env=wenv, runs=1)
        counts: dict[str, int] = {}
        for line in calls.read_text().splitlines() if calls.exists() else []:
            counts[line.split()[1]] = counts.get(line.split()[1], 0) + 1
        polls = 0
        log_text = Path(dp.runs[-1]["log"]).read_text(errors="replace") if dp.runs else ""
        polls = len(re.findall(r"slurm poll \d+:", log_text))
        self.raw["slurm_calls"] = {"counts": counts, "poll_cycles": polls, "max_array_size": max_array}
        # the hand-written array: one sbatch --array, squeue polled once a second
        hand = d / "hand"
        hand.mkdir()
        (hand / "commands.txt").write_text("".join(f"touch {hand}/out/s{i}\n" for i in range(n)))
        (hand / "array.sh").write_text(
            "#!/bin/bash\n"
            f'mapfile -t -s "$SLURM_ARRAY_TASK_ID" -n 1 line < {hand}/commands.txt\n'
            'bash -c "${line[0]}"\n'
        )
        chunks = [(s, min(n, s + max_array) - 1) for s in range(0, n, max_array)]
        submit = " ; ".join(
            f"ids+=($(sbatch --parsable --array=0-{b - a} -o /dev/null -J drypipe-bench-hand {hand}/array.sh))"
            if a == 0 else
            f"ids+=($(sbatch --parsable --array={a}-{b} -o /dev/null -J drypipe-bench-hand {hand}/array.sh))"
            for a, b in chunks
        )
        script = (
            f"ids=(); {submit}; ids=$(IFS=,; echo \"${{ids[*]}}\")\n"
            "while [[ -n $(squeue -h -r -j \"$ids\" -t PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED -o %i) ]]; do sleep 1; done\n"
        )
        base = self.measure(f"slurm-{n}-hand-array", ["bash", "-c", script], cwd=hand,
                            setup=lambda: (shutil.rmtree(hand / "out", ignore_errors=True), (hand / "out").mkdir()),
                            env=env, runs=1)
        label = f"slurm {n}"
        self.row(label, dp, "hand-written sbatch --array + squeue each 1 s", base, "le", 1.5)
        sbatch_target = math.ceil(n / max_array) + 1
        self.row(label, None, "—", None, "abs_le", sbatch_target, value=counts.get("sbatch", 0), unit="sbatch calls")
        self.row(label, None, "—", None, "abs_le", polls, value=counts.get("squeue", 0), unit="squeue calls",
                 note=f"target = poll cycles ({polls}); sacct {counts.get('sacct', 0)}, scontrol {counts.get('scontrol', 0)}")

    # -- output --------------------------------------------------------------------------------

    def table(self) -> str:
        headers = ["case", "drypipe", "baseline", "baseline time", "ratio", "target", "met"]
        keys = ["case", "drypipe", "baseline", "baseline_time", "ratio", "target", "met"]
        rows = [[str(r[k]) for k in keys] for r in self.rows]
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
        lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
                 "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        for r, full in zip(rows, self.rows):
            lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        notes = [f"- {r['case']} / {r['baseline']}: {r['note']}" for r in self.rows if r["note"]]
        return "\n".join(lines + ([""] + notes if notes else []))

    def machine(self) -> dict:
        cpu = "?"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
                "platform": platform.platform(), "commit": self.commit}


def _commit(repo: Path) -> str:
    """`abc1234`, `abc1234+changes` when drypipe/ or executors/ differ from it, or `?`."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return "?"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "drypipe", "executors"], cwd=repo,
                           capture_output=True, text=True, check=False).stdout.strip()
    return head.stdout.strip() + ("+changes" if dirty else "")


def _size(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _wall(x) -> tuple[float | None, bool, str | None]:
    if x is None:
        return None, False, None
    if isinstance(x, str):
        return None, False, x
    if isinstance(x, (int, float)):
        return float(x), False, None
    if x.error:
        return x.wall, x.capped, f"error ({x.error[:60]})"
    return x.wall, x.capped, None


def _seconds(wall: float | None, capped: bool) -> str:
    if wall is None:
        return "—"
    return (f"> {wall:.0f} s (cap)" if capped else f"{wall:.2f} s") if wall >= 0.1 else f"{wall * 1000:.0f} ms"


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def _read_env_sh(path: Path) -> dict:
    env = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m:
            value = m.group(2).strip()
            if value[:1] in "'\"" and value[-1:] == value[:1]:
                value = value[1:-1]
            env[m.group(1)] = value
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 run per measurement and smaller N")
    parser.add_argument("--only", action="append", default=[], metavar="CASE",
                        help=f"run only these cases ({', '.join(CASES)}); repeat or comma-separate")
    parser.add_argument("--runs", type=int, help="runs per measurement (default 3, --quick 1); the median is reported")
    parser.add_argument("--workdir", default=os.environ.get("DRYPIPE_BENCH_WORKDIR", "/tmp/drypipe-bench-work"),
                        help="scratch directory for instances and logs (default /tmp/drypipe-bench-work)")
    parser.add_argument("--pythonpath", help="put this directory first on PYTHONPATH (measure a patched copy of the repo)")
    parser.add_argument("--size", action="append", default=[], metavar="CASE=N[/N]",
                        help="override a case's size, e.g. throughput=500/5000 or chain=50")
    parser.add_argument("--no-snakemake", action="store_true", help="skip every Snakemake measurement")
    parser.add_argument("--start-slurm", action="store_true",
                        help="for the slurm case, start a single-node Slurm with tests/services/slurm.sh (root)")
    parser.add_argument("--output", default=str(BENCH_DIR / "results" / "latest.json"), help="where to write the JSON results")
    args = parser.parse_args()
    only = [c for arg in args.only for c in arg.split(",") if c]
    unknown = [c for c in only if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    bench = Bench(args)
    started = time.time()
    cases = only or list(CASES)
    if any(c != "slurm" for c in cases):
        bench.ensure_snakemake()
    for case in CASES:
        if case in cases:
            getattr(bench, f"case_{case}")()
    elapsed = time.time() - started
    machine = bench.machine()
    header = (f"drypipe bench {'--quick ' if args.quick else ''}({bench.runs} run{'s' if bench.runs > 1 else ''} each, median), "
              f"{datetime.datetime.now().isoformat(timespec='seconds')}, {machine['nproc']} CPUs {machine['cpu']}, "
              f"Python {machine['python']}, commit {machine['commit']}"
              + (f", PYTHONPATH={args.pythonpath}" if args.pythonpath else "")
              + (f", Snakemake {bench.raw.get('snakemake_version')}" if bench.snakemake else ""))
    print(header)
    print(bench.table())
    print(f"\n(total {elapsed / 60:.1f} min; raw results: {args.output})")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "quick": args.quick,
        "runs": bench.runs,
        "cases": cases,
        "pythonpath": args.pythonpath,
        "snakemake": bench.raw.get("snakemake_version") or bench.snakemake_reason,
        "elapsed_seconds": elapsed,
        "rows": bench.rows,
        "raw": bench.raw,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
