"""Slurm executor: runs tasks as Slurm jobs from a login node (`executer_type="slurm"`).

- launch: the ready tasks of one launch call that share a TaskConf (`TaskConf.batch_key()`)
  go out as ONE job array (`sbatch --array=0-(n-1)%N`), split at the cluster's MaxArraySize.
  Element i finds its task on line i of `.drypipe/.slurm/array-<n>.tasks`; the job id of each
  task is recorded atomically in `.drypipe/<key>/slurm_job_id`, so a restarted orchestrator
  adopts the job instead of submitting it again.
- poll: ONE `squeue` per poll cycle for all in-flight tasks, plus one `sacct` (where the
  cluster has accounting) for jobs `squeue` no longer lists.  The task script records its own
  states; Slurm's view only matters when a job ended without the task recording a final state.
- kill: one `scancel` for all the given tasks.

The task's scratch directory is `$SLURM_TMPDIR` (see task-env.sh); `--signal=B:USR1@60`
makes the task record `timed-out.N` shortly before the time limit.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path

from drypipe import state as st
from drypipe.errors import UserError
from drypipe.executor import Executor, ExecutorContext, Liveness, TaskRun
from executors import slurm_client as sc
from executors import slurm_files as sf

log = logging.getLogger("drypipe.slurm")


class SlurmExecutor(Executor):
    name = "slurm"
    event_driven = False  # polled on the loop's --sleep-schedule back-off

    def __init__(self, context: ExecutorContext):
        super().__init__(context)
        self.root = Path(context.instance_dir)
        self.job_name = sf.job_name(self.root)
        self.arrays = sf.ArrayFiles(self.root)
        self._config: sc.ClusterConfig | None = None
        self._accounting: bool | None = None
        self._job_ids: dict[str, str] = {}  # task key -> job id, a cache of slurm_job_id
        self._prepared: set[str] = set()
        self.poll_count = 0

    # -- cluster facts, read once --------------------------------------------------------------

    @property
    def config(self) -> sc.ClusterConfig:
        if self._config is None:
            self._config = sc.read_config()
            self._accounting = self._config.accounting
            log.debug("slurm: MaxArraySize=%d, accounting %s", self._config.max_array_size,
                      "available" if self._accounting else "disabled (sacct not used)")
        return self._config

    # -- prepare / launch ----------------------------------------------------------------------

    def prepare(self, tasks: list[TaskRun]) -> None:
        """Write the shared array launcher and each task's sbatch-launcher.sh."""
        sf.write_array_launcher(self.root)
        for task in tasks:
            if task.key not in self._prepared:
                sf.write_task_launcher(self.root, task.key, task.task_conf)
                self._prepared.add(task.key)

    def launch(self, tasks: list[TaskRun]) -> dict[str, str]:
        """One job array per TaskConf (split at MaxArraySize); a handle `<job>_<i>` per task.

        If sbatch refuses a group (bad option, unknown account ...), the arrays already
        submitted by this call are cancelled and a UserError carries sbatch's message: the loop
        then puts the tasks back in their previous state."""
        groups: dict[str, list[TaskRun]] = defaultdict(list)
        for task in tasks:
            groups[task.task_conf.batch_key()].append(task)
        chunk = self.config.max_array_size
        handles: dict[str, str] = {}
        submitted: list[str] = []
        for group in groups.values():
            for start in range(0, len(group), chunk):
                part = group[start:start + chunk]
                try:
                    job_id = self.submit_array(part)
                except UserError as e:
                    if submitted:  # all or nothing: the loop restores every task's marker
                        sc.scancel(submitted)
                        for key in handles:
                            self._job_ids.pop(key, None)
                    keys = [t.key for t in part]
                    shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
                    raise UserError(f"{e} (submitting {shown})") from None
                submitted.append(job_id)
                for i, task in enumerate(part):
                    handles[task.key] = f"{job_id}_{i}"
        return handles

    def submit_array(self, tasks: list[TaskRun]) -> str:
        """Submit tasks (same TaskConf, at most MaxArraySize) as one job array; its job id."""
        if len(tasks) > self.config.max_array_size:
            raise ValueError("array larger than MaxArraySize")
        sf.write_array_launcher(self.root)
        number, _ = self.arrays.create((t.key, t.start_step) for t in tasks)
        args = sf.array_sbatch_args(tasks[0].task_conf, self.root, number, len(tasks))
        job_id = sc.submit(args)
        self.arrays.record_job(number, job_id)
        for i, task in enumerate(tasks):
            handle = f"{job_id}_{i}"
            sf.write_job_id(task.control_dir, handle)
            self._job_ids[task.key] = handle
        log.info("slurm: submitted %d task(s) as job array %s (array-%d)", len(tasks), job_id, number)
        return job_id

    # -- poll ----------------------------------------------------------------------------------

    def poll(self, tasks: list[TaskRun]) -> dict[str, Liveness]:
        self.poll_count += 1
        result: dict[str, Liveness] = {}
        ids: dict[str, str] = {}
        without_id: list[TaskRun] = []
        for task in tasks:
            job_id = self._job_id(task)
            if job_id:
                ids[task.key] = job_id
            else:
                without_id.append(task)
        if without_id:
            result.update(self._recover(without_id, ids))
        log.debug("slurm poll %d: %d task(s), %d job id(s)", self.poll_count, len(tasks), len(ids))
        if not ids:
            return result
        try:
            statuses = sc.squeue(_array_ids(ids.values()))
            gone = [j for j in ids.values() if j not in statuses]
            if gone and self._accounting_available():
                try:
                    statuses.update(sc.sacct(gone))
                except sc.AccountingDisabled as e:
                    log.info("slurm: sacct unusable (%s); relying on squeue only", e)
                    self._accounting = False
        except sc.SlurmUnavailable as e:
            log.warning("slurm: %s; job states unknown this cycle", e)
            return {**result, **{key: Liveness(alive=True) for key in ids}}
        for key, job_id in ids.items():
            status = statuses.get(job_id)
            if status is not None and status.alive:
                result[key] = Liveness(alive=True)
                continue
            task = next(t for t in tasks if t.key == key)
            newer = sf.read_job_id(task.control_dir)
            if newer and newer != job_id:  # resubmitted meanwhile (e.g. `drypipe sbatch`)
                self._job_ids[key] = newer
                result[key] = Liveness(alive=True)
                continue
            result[key] = _ended(job_id, status)
        return result

    def _accounting_available(self) -> bool:
        if self._accounting is None:
            _ = self.config
        return bool(self._accounting)

    def _job_id(self, task: TaskRun) -> str | None:
        job_id = self._job_ids.get(task.key)
        if job_id is None:
            if sc.is_job_id(task.handle):
                job_id = task.handle
            else:
                job_id = sf.read_job_id(task.control_dir)
            if job_id:
                self._job_ids[task.key] = job_id
        return job_id

    def _recover(self, tasks: list[TaskRun], ids: dict[str, str]) -> dict[str, Liveness]:
        """Tasks marked launched without a recorded job id: the orchestrator stopped between
        writing the array list and recording the job ids (or before sbatch ever ran).  Find the
        array they were listed in and its job; tasks in no submitted array were never started."""
        where = self.arrays.index({t.key for t in tasks})
        unknown_arrays = {where[t.key][0] for t in tasks if t.key in where and self.arrays.job_of(where[t.key][0]) is None}
        found_jobs: dict[int, str] = {}
        if unknown_arrays:
            rows = sc.squeue_by_name(self.job_name, "%F|%k") or []
            for row in rows:
                if len(row) == 2 and row[1].startswith("drypipe array-"):
                    number = row[1][len("drypipe array-"):]
                    if number.isdigit() and int(number) in unknown_arrays:
                        found_jobs[int(number)] = row[0]
                        self.arrays.record_job(int(number), row[0])
        result = {}
        for task in tasks:
            number, index = where.get(task.key, (None, None))
            job = None if number is None else (self.arrays.job_of(number) or found_jobs.get(number))
            if job:
                job_id = f"{job}_{index}"
                sf.write_job_id(task.control_dir, job_id)
                self._job_ids[task.key] = job_id
                ids[task.key] = job_id
            else:
                result[task.key] = Liveness(False, st.READY, "no Slurm job was ever submitted for it")
        return result

    # -- kill ----------------------------------------------------------------------------------

    def kill(self, tasks: list[TaskRun], wait_seconds: float = 20.0) -> None:
        """One `scancel` for all the tasks' jobs.  Running tasks record killed.N themselves
        (SIGTERM); this waits up to `wait_seconds` for that.  A task whose job was still pending
        never ran: it is marked killed.0 here, since no task script will do it."""
        ids = {t.key: self._job_id(t) for t in tasks}
        ids = {k: v for k, v in ids.items() if v}
        if not ids:
            return
        error = sc.scancel(ids.values())
        if error:
            log.warning("scancel: %s", error)
        by_key = {t.key: t for t in tasks}
        deadline = time.monotonic() + wait_seconds
        pending = set(ids)
        while pending:
            launched = []
            for key in list(pending):
                marker = st.read_state(str(by_key[key].control_dir))
                if st.is_terminal(marker) or marker is None:
                    pending.discard(key)
                elif marker == st.LAUNCHED:
                    launched.append(key)
            if launched:
                statuses = self._statuses([ids[k] for k in launched])
                for key in launched if statuses is not None else ():
                    status = statuses.get(ids[key])
                    if status is None or not status.alive:
                        control = by_key[key].control_dir
                        if st.transition(str(control), st.LAUNCHED, "killed.0"):
                            _append_log(control, f"state.killed.0 slurm job {ids[key]} cancelled before it started")
                        pending.discard(key)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.25)

    def _statuses(self, job_ids: list[str]) -> dict[str, sc.JobStatus] | None:
        try:
            return sc.squeue(_array_ids(job_ids))
        except sc.SlurmUnavailable:
            return None


def _array_ids(job_ids) -> set[str]:
    """`123_4` -> `123`: squeue -r -j 123 lists every element of array 123."""
    return {j.split("_")[0] for j in job_ids}


def _ended(job_id: str, status: sc.JobStatus | None) -> Liveness:
    if status is None:
        return Liveness(False, st.LOST, f"slurm job {job_id} is no longer known to Slurm")
    outcome = sc.ENDED_STATES.get(status.state, "failed")
    reason = f"slurm job {job_id} {status.state}" + (f" ({status.reason})" if status.reason else "")
    return Liveness(False, outcome, reason)


def _append_log(control_dir: Path, message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(control_dir / "drypipe.log", "a") as f:
        f.write(f"{stamp} {time.time():.6f} {message} (recorded by drypipe kill)\n")

