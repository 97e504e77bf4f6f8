"""Slurm executor: runs tasks as Slurm jobs from a login node (`executer_type="slurm"`).

- launch: the ready tasks of one launch call that share a TaskConf (`TaskConf.batch_key()`)
  go out as ONE job array (`sbatch --array=0-(n-1)%N`), split at the cluster's MaxArraySize.
  Element i finds its task on line i of `.drypipe/.slurm/array-<n>.tasks`; the job id of each
  task is recorded atomically in `.drypipe/<key>/slurm_job_id`, so a restarted orchestrator
  adopts the job instead of submitting it again.
- poll: ONE `squeue` per poll cycle for all in-flight tasks, plus one `sacct` (where the
  cluster has accounting) for jobs `squeue` no longer lists and for jobs that ended.  The task
  script records its own states; Slurm's view only matters when a job ended without the task
  recording a final state.  The peak RSS and CPU time sacct reports for an ended job go to the
  task's drypipe.log (`TaskRecord.record_usage`), after its outcome, as the process executor's.
- kill: one `scancel` for all the given tasks.

The task's scratch directory is `$SLURM_TMPDIR` (see task-env.sh); `--signal=B:USR1@60`
makes the task record `timed-out.N` shortly before the time limit.
"""
from __future__ import annotations

import logging
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from drypipe import state as st
from drypipe.errors import UserError
from drypipe.executor import Executor, ExecutorContext, Liveness, TaskRun
from drypipe.task_record import TaskRecord
from drypipe.text import first_of
from executors import slurm_client as sc
from executors import slurm_files as sf

log = logging.getLogger("drypipe.slurm")

# How long after its task ended sacct may take to show a job's usage before none is recorded
# (the accounting database lags a little behind the controller), while the run goes on and
# when it ends (close).
USAGE_GIVE_UP_SECONDS = 120.0
USAGE_WAIT_AT_CLOSE_SECONDS = 5.0


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
        self._listed: dict[str, tuple[int, int]] = {}
        self._listed_numbers: set[int] | None = None
        self._never_submitted: set[int] = set()
        self._watched: dict[str, tuple[str, TaskRun]] = {}  # polled task key -> (its job, the task)
        self._ended: dict[str, tuple[TaskRun, float]] = {}  # job -> (its task, give up at): usage to record
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
        """Write the shared array launcher and each task's sbatch-launcher.sh.

        A task whose sbatch options drypipe refuses gets no launcher (an older one is removed):
        `launch` then refuses it, where the loop can put its marker back."""
        sf.write_array_launcher(self.root)
        for task in tasks:
            if task.key not in self._prepared:
                try:
                    sf.check_sbatch_options(task.task_conf, task.key)
                except UserError:
                    (task.control_dir / sf.LAUNCHER_FILE).unlink(missing_ok=True)
                    continue
                sf.write_task_launcher(self.root, task.key, task.task_conf)
                self._prepared.add(task.key)

    def launch(self, tasks: list[TaskRun]) -> dict[str, str]:
        """One job array per TaskConf (split at MaxArraySize); a handle `<job>_<i>` per task.

        If sbatch refuses a group (bad option, unknown account ...), the arrays already
        submitted by this call are cancelled and a UserError carries sbatch's message: the loop
        then puts the tasks back in their previous state."""
        for task in tasks:  # before any sbatch: a refused option leaves nothing to cancel
            sf.check_sbatch_options(task.task_conf, task.key)
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
                except (UserError, sc.SlurmUnavailable) as e:
                    if submitted:  # all or nothing: the loop restores every task's marker
                        self._roll_back(submitted, [t for t in tasks if t.key in handles])
                    if isinstance(e, sc.SlurmUnavailable):
                        raise  # the loop tries again later
                    keys = [t.key for t in part]
                    raise UserError(f"task{'s' if len(keys) > 1 else ''} {first_of(keys)}: {e}") from None
                submitted.append(job_id)
                for i, task in enumerate(part):
                    handles[task.key] = f"{job_id}_{i}"
        return handles

    def _roll_back(self, job_ids: list[str], tasks: list[TaskRun]) -> None:
        """Cancel arrays submitted by a launch call that then failed, and forget their ids."""
        error = sc.scancel(job_ids)
        if error:
            log.warning("scancel: %s", error)
        for task in tasks:
            handle = self._job_ids.pop(task.key, None)
            if handle and sf.read_job_id(task.control_dir) == handle:
                (task.control_dir / sf.JOB_ID_FILE).unlink(missing_ok=True)

    def submit_array(self, tasks: list[TaskRun]) -> str:
        """Submit tasks (same TaskConf, at most MaxArraySize) as one job array; its job id."""
        if len(tasks) > self.config.max_array_size:
            raise ValueError("array larger than MaxArraySize")
        sf.check_sbatch_options(tasks[0].task_conf, tasks[0].key)  # before a list file exists
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

    # -- single jobs and parents (the `drypipe sbatch` / `array-*` commands) ------------------

    def sbatch_command(self, task: TaskRun) -> list[str]:
        """The sbatch command line that submits one task (what sbatch-launcher.sh runs)."""
        return sf.single_sbatch_args(task.task_conf, self.root, task.key, task.start_step)

    def submit_one(self, task: TaskRun, extra_options: tuple[str, ...] = ()) -> str:
        """Submit one task as a plain job through its sbatch-launcher.sh; its job id."""
        launcher = sf.write_task_launcher(self.root, task.key, task.task_conf)
        self._prepared.add(task.key)
        args = [str(launcher), "--at-step", str(task.start_step), *extra_options]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=sc.COMMAND_TIMEOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise UserError(f"{launcher} did not finish within {sc.COMMAND_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            raise UserError(f"sbatch failed (exit code {done.returncode}): {sc.error_text(done.stderr)}")
        job_id = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        if not sc.is_job_id(job_id):
            raise UserError(f"{launcher} printed no job id: {done.stdout.strip()!r}")
        self._job_ids[task.key] = job_id
        return job_id

    def create_parent(self, parent: str, keys: list[str]) -> Path:
        return sf.write_parent(self.root, parent, keys)

    # -- poll ----------------------------------------------------------------------------------

    def poll(self, tasks: list[TaskRun]) -> dict[str, Liveness]:
        self.poll_count += 1
        ids, unsubmitted, result = self._resolve_job_ids(tasks)
        self._watch(tasks, ids)
        log.debug("slurm poll %d: %d task(s), %d job id(s)", self.poll_count, len(tasks), len(ids))
        try:
            statuses = sc.squeue(_array_ids(ids.values())) if ids else {}
            gone = {j for j in ids.values() if j not in statuses and j.split("_")[0] not in statuses}
            for job_id, status in self._sacct(gone).items():
                statuses.setdefault(job_id, status)  # squeue's answer is fresher
        except sc.SlurmUnavailable as e:
            log.warning("slurm: %s; job states unknown this cycle", e)
            return {**result, **{key: Liveness(alive=True) for key in ids}}
        by_key = {t.key: t for t in tasks}
        for key, job_id in ids.items():
            # An array cancelled before any element started is listed as the array job alone.
            found = statuses.get(job_id) or statuses.get(job_id.split("_")[0])
            if found is not None and found.alive:
                result[key] = Liveness(alive=True)
            elif key in unsubmitted:
                result[key] = Liveness(False, st.READY, "its last job array was never submitted")
            elif (newer := sf.read_job_id(by_key[key].control_dir)) and newer != job_id:
                self._job_ids[key] = newer  # resubmitted meanwhile (e.g. `drypipe sbatch`)
                result[key] = Liveness(alive=True)
            else:
                result[key] = _ended(job_id, found)
        return result

    def _accounting_available(self) -> bool:
        if self._accounting is None:
            _ = self.config
        return bool(self._accounting)

    # -- usage of ended jobs (sacct) -----------------------------------------------------------

    def _watch(self, tasks: list[TaskRun], ids: dict[str, str]) -> None:
        """Note the jobs of tasks the loop no longer polls (their markers became terminal):
        their usage is asked of sacct from now on."""
        polled = {t.key for t in tasks}
        for key, (job_id, task) in list(self._watched.items()):
            if key not in polled:
                del self._watched[key]
                self._await_usage(job_id, task)
        by_key = {t.key: t for t in tasks}
        self._watched.update({key: (job_id, by_key[key]) for key, job_id in ids.items()})

    def _await_usage(self, job_id: str, task: TaskRun) -> None:
        if self._accounting_available():
            self._ended[job_id] = (task, time.monotonic() + USAGE_GIVE_UP_SECONDS)

    def _sacct(self, gone: set[str]) -> dict[str, sc.JobStatus]:
        """One `sacct`, where the cluster has accounting, for the jobs squeue no longer lists
        and the ended jobs whose usage is not recorded yet; records that usage and returns
        the states of the first.  (Asked by array, the second also bring lines such as `123`
        for an element whose array index the database does not show yet: not the array's.)"""
        if not (gone or self._ended) or not self._accounting_available():
            return {}
        try:
            found = sc.sacct(gone | _array_ids(self._ended))  # `-j 123`: all its elements
        except sc.AccountingDisabled as e:
            log.info("slurm: sacct unusable (%s); relying on squeue only", e)
            self._accounting = False
            self._ended.clear()
            return {}
        except sc.SlurmUnavailable as e:
            if gone:
                raise
            log.warning("slurm: %s; usage of ended jobs not read this cycle", e)
            return {}
        now = time.monotonic()
        for job_id, (task, give_up_at) in list(self._ended.items()):
            status = found.get(job_id)
            if status is not None and status.usage is not None:
                _record_usage(task, job_id, status.usage)
            elif (status is None or status.alive) and now < give_up_at:
                continue  # not in the database yet, or still ending
            else:  # ended without accounted steps (cancelled while pending, no jobacct_gather)
                log.info("slurm: sacct shows no usage of job %s (task %s): none recorded", job_id, task.key)
            del self._ended[job_id]
        return {job_id: status for job_id, status in found.items() if job_id in gone}

    def close(self) -> None:
        """Record the usage of the jobs that ended last, which no poll followed: sacct is asked
        for up to USAGE_WAIT_AT_CLOSE_SECONDS.  Jobs still running (a stopped run) are left."""
        for job_id, task in self._watched.values():
            if st.is_terminal(st.read_state(str(task.control_dir))):
                self._await_usage(job_id, task)
        self._watched.clear()
        deadline = time.monotonic() + USAGE_WAIT_AT_CLOSE_SECONDS
        while self._ended and time.monotonic() < deadline:
            self._sacct(set())
            if self._ended:
                time.sleep(0.25)
        self._ended.clear()
        super().close()

    # -- which job is a task's (adoption) ------------------------------------------------------

    def _resolve_job_ids(self, tasks: list[TaskRun]) -> tuple[dict[str, str], set[str], dict[str, Liveness]]:
        """The job of each task: from this executor's memory, else (a task adopted from an
        earlier orchestrator) from its slurm_job_id checked against the array lists.

        Returns (job ids to ask Slurm about, keys whose newest array was never submitted,
        outcomes already known)."""
        ids: dict[str, str] = {}
        unsubmitted: set[str] = set()
        known: dict[str, Liveness] = {}
        lookup: dict[str, tuple[int, int, str | None]] = {}
        for task in tasks:
            job_id = self._job_ids.get(task.key)
            if job_id is None and sc.is_job_id(task.handle):
                job_id = self._job_ids[task.key] = task.handle
            if job_id:
                ids[task.key] = job_id
                continue
            control = task.control_dir
            recorded = sf.read_job_id(control)
            if st.read_state(str(control)) != st.LAUNCHED:
                # The task started: the array launcher recorded its job before running it.
                if recorded:
                    ids[task.key] = self._job_ids[task.key] = recorded
                else:
                    known[task.key] = _started_without_job(task)
                continue
            # Still `launched`: the orchestrator may have died between writing the array list
            # and recording job ids, and slurm_job_id may name the job of an earlier attempt.
            listed = self._listing().get(task.key)
            if listed is None:
                if recorded:
                    ids[task.key] = self._job_ids[task.key] = recorded
                else:
                    known[task.key] = Liveness(False, st.READY, "no Slurm job was ever submitted for it")
                continue
            number, index = listed
            job = self.arrays.job_of(number)
            if job is None:
                lookup[task.key] = (number, index, recorded)
            else:
                ids[task.key] = self._adopt_id(task, recorded, f"{job}_{index}")
        if lookup:
            found = self._find_arrays({number for number, _, _ in lookup.values()})
            for key, (number, index, recorded) in lookup.items():
                task = next(t for t in tasks if t.key == key)
                if number in found:
                    ids[key] = self._adopt_id(task, recorded, f"{found[number]}_{index}")
                elif recorded:  # unless that earlier job still runs, the task never started
                    ids[key] = recorded
                    unsubmitted.add(key)
                else:
                    known[key] = Liveness(False, st.READY, "its job array was never submitted")
        return ids, unsubmitted, known

    def _adopt_id(self, task: TaskRun, recorded: str | None, listed: str) -> str:
        """The newer of the recorded job id and the one of the newest array listing the task
        (Slurm job ids only grow: a later `drypipe sbatch` wins over an older array)."""
        if recorded and recorded != listed and _job_number(recorded) > _job_number(listed):
            chosen = recorded
        else:
            chosen = listed
            if recorded != listed:
                sf.write_job_id(task.control_dir, listed)
        self._job_ids[task.key] = chosen
        return chosen

    def _listing(self) -> dict[str, tuple[int, int]]:
        """key -> (array number, index) of the newest array list naming it; rebuilt only when
        array lists appeared (read for adopted tasks, not in steady state)."""
        numbers = set(self.arrays.numbers())
        if numbers != self._listed_numbers:
            self._listed = self.arrays.index(None)
            self._listed_numbers = numbers
        return self._listed

    def _find_arrays(self, numbers: set[int]) -> dict[int, str]:
        """Job ids of arrays whose sbatch returned but was never recorded: one `squeue` by the
        instance's job name, matching each array's `--comment=drypipe array-<n>`."""
        todo = numbers - self._never_submitted
        found: dict[int, str] = {}
        if todo:
            rows = sc.squeue_by_name(self.job_name, "%F|%k")
            for row in rows or []:
                if len(row) == 2 and row[1].startswith("drypipe array-"):
                    number = row[1][len("drypipe array-"):]
                    if number.isdigit() and int(number) in todo:
                        found[int(number)] = row[0]
                        self.arrays.record_job(int(number), row[0])
            if rows is not None:
                self._never_submitted |= todo - set(found)
        return found

    # -- kill ----------------------------------------------------------------------------------

    def kill(self, tasks: list[TaskRun], wait_seconds: float = 20.0) -> None:
        """One `scancel` for all the tasks' jobs.  Running tasks record killed.N themselves
        (SIGTERM); this waits up to `wait_seconds` for that.  A task whose job was still pending
        never ran: it is marked killed.0 here, since no task script will do it."""
        ids, _, _ = self._resolve_job_ids(tasks)
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
            # None: Slurm did not answer; the next round asks again
            if launched and (statuses := self._statuses([ids[k] for k in launched])) is not None:
                for key in launched:
                    status = statuses.get(ids[key]) or statuses.get(ids[key].split("_")[0])
                    if status is None or not status.alive:
                        reason = f"slurm job {ids[key]} cancelled before it started"
                        TaskRecord.at(by_key[key].control_dir).record_state(st.LAUNCHED, st.killed(0), reason,
                                                                            by="drypipe kill")
                        pending.discard(key)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.25)

    def _statuses(self, job_ids: list[str]) -> dict[str, sc.JobStatus] | None:
        try:
            return sc.squeue(_array_ids(job_ids))
        except sc.SlurmUnavailable:
            return None


def _array_ids(job_ids: Iterable[str]) -> set[str]:
    """`123_4` -> `123`: squeue -r -j 123 lists every element of array 123."""
    return {j.split("_")[0] for j in job_ids}


def _job_number(job_id: str) -> int:
    head = job_id.split("_")[0]
    return int(head) if head.isdigit() else -1


def _started_without_job(task: TaskRun) -> Liveness:
    """A task that started though no job id was recorded: run by hand, or `drypipe sbatch`
    died before recording.  Alive while its process (on this host) is."""
    if TaskRecord(task.instance_dir, task.key).running_pid() is not None:
        return Liveness(alive=True)
    return Liveness(False, st.LOST, "started, but no Slurm job id was recorded and its process is not on this host")


def _record_usage(task: TaskRun, job_id: str, usage: sc.Usage) -> None:
    """The job's usage in the task's drypipe.log, unless a retry took its place meanwhile
    (a new job id, its marker no longer terminal): its lines would follow the new attempt's."""
    control = task.control_dir
    if sf.read_job_id(control) not in (None, job_id) or not st.is_terminal(st.read_state(str(control))):
        return
    try:
        TaskRecord(task.instance_dir, task.key).record_usage(usage.cpu_seconds, usage.max_rss_kib)
    except OSError as e:
        log.warning("slurm: cannot record the usage of task %s: %s", task.key, e)


def _ended(job_id: str, status: sc.JobStatus | None) -> Liveness:
    if status is None:
        return Liveness(False, st.LOST, f"slurm job {job_id} is no longer known to Slurm")
    outcome = sc.ENDED_STATES.get(status.state, "failed")
    reason = f"slurm job {job_id} {status.state}" + (f" ({status.reason})" if status.reason else "")
    return Liveness(False, outcome, reason)
