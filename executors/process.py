"""Local process executor: runs task scripts on this machine, at most `max_local_jobs` at once
and within the local budget of cores and memory (the loop admits them, see
drypipe.budget.Admission), and wakes the scheduler loop the moment one exits.

By default each slot is a long-lived bash worker (resources/worker.sh) that runs one task
script at a time in a forked subshell: no exec of bash and no parsing of the task runtime per
task, and no process spawned by the orchestrator.  `DRYPIPE_PROCESS_WORKERS=0` starts each task
script as a process of its own instead, whose resources (CPU time, peak memory) the executor
then measures with wait4; a worker cannot measure a subshell's peak memory.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from drypipe import state as st
from drypipe.budget import Budget
from drypipe.errors import BackendUnavailable
from drypipe.executor import Executor, ExecutorContext, Liveness, Outcome, TaskRun
from drypipe.proc import process_matches, stop_orphans
from drypipe.task_record import TaskRecord
from drypipe.task_script import LIB_RELATIVE_PATH, WORKER_RELATIVE_PATH

# The task script's shebang is `/usr/bin/env bash`; naming bash directly saves an exec per task.
_BASH = shutil.which("bash") or "bash"


def _uses_workers() -> bool:
    return os.environ.get("DRYPIPE_PROCESS_WORKERS", "1") != "0"


def _spawn(args: list[str], file_actions: list[tuple[Any, ...]]) -> int:
    """Start a process in a new session: it survives the orchestrator, and a Ctrl-C in its
    terminal does not reach it.  posix_spawn (vfork) is several times cheaper than fork for a
    large orchestrator process.  The signals Python ignores are the defaults again, as for any
    program started from a shell (`yes | head` ends by SIGPIPE)."""
    return os.posix_spawn(args[0], args, os.environ, setsid=True, file_actions=file_actions,
                          setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))


def _spawn_task(args: list[str], log_path: str) -> int:
    """A task script of its own, stdout and stderr appended to its drypipe.log."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        return _spawn(args, [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                             (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)])
    finally:
        os.close(log)


class _Worker:
    """One bash worker: task scripts go in through a pipe, one at a time; a reader thread hears
    when each ends.  The worker is its own session; each task a process group in it."""

    def __init__(self, instance_root: str, on_end: Callable[[str, int | None, int], None],
                 idle: threading.Condition):
        self._on_end = on_end
        self._idle = idle  # notified when a task ends
        task_in, self._to_worker = os.pipe()  # not inherited: only dup2 copies reach the worker
        self._from_worker, worker_out = os.pipe()
        try:
            self.pid = _spawn([_BASH, os.path.join(instance_root, WORKER_RELATIVE_PATH),
                               os.path.join(instance_root, LIB_RELATIVE_PATH)],
                              [(os.POSIX_SPAWN_DUP2, task_in, 0), (os.POSIX_SPAWN_DUP2, worker_out, 1),
                               (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
        finally:
            os.close(task_in)
            os.close(worker_out)
        self.task: str | None = None  # the key of the task it runs
        self.alive = True
        threading.Thread(target=self._read, daemon=True, name=f"drypipe worker {self.pid}").start()

    def run(self, run: TaskRun) -> None:
        """Hand a task script to the worker."""
        with self._idle:
            self.task = run.key
        os.write(self._to_worker, f"{run.control_dir}\0{run.start_step}\0".encode())

    def _read(self) -> None:
        with os.fdopen(self._from_worker, "rb") as lines:
            for line in lines:  # "ended PID EXIT_CODE"
                _, pid, code = line.decode().split()
                with self._idle:
                    key, self.task = self.task, None
                    self._idle.notify_all()
                if key is not None:
                    self._on_end(key, int(pid), _exit_code(int(code)))
        try:
            os.waitpid(self.pid, 0)  # it ends once its input is closed, or killed
        except ChildProcessError:
            pass
        with self._idle:
            self.alive = False
            key, self.task = self.task, None
            self._idle.notify_all()
        if key is not None:  # the worker was killed while its task ran: the task may go on
            self._on_end(key, None, 0)

    @property
    def idle(self) -> bool:
        return self.alive and self.task is None

    def close(self) -> None:
        """The worker ends after its current task (which goes on: a later run adopts it)."""
        try:
            os.close(self._to_worker)
        except OSError:
            pass


def _exit_code(status: int) -> int:
    """bash's $? of a job (128 + N: killed by signal N) as os.waitstatus_to_exitcode gives it."""
    return -(status - 128) if 128 < status < 128 + signal.NSIG else status


class ProcessExecutor(Executor):
    name = "process"
    event_driven = True

    def __init__(self, context: ExecutorContext):
        super().__init__(context)
        self._children: dict[str, int] = {}  # task key -> pid of its task script (subshell); 0: not known yet
        self._exit_codes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._reapers: dict[str, threading.Thread] = {}
        self._workers: list[_Worker] = []
        self._worker_idle = threading.Condition()
        self._uses_workers = _uses_workers()

    def max_in_flight(self) -> int:
        return self.context.max_local_jobs

    def resource_budget(self) -> Budget | None:
        return self.context.local_budget

    def launch(self, tasks: list[TaskRun]) -> dict[str, str]:
        handles = {}
        for task in tasks:
            task.output_dir.mkdir(parents=True, exist_ok=True)  # saves the task script a mkdir
            if self._uses_workers:
                self._run_in_worker(task)
            else:
                handles[task.key] = str(self._spawn_reaped(task))
        return handles

    def _run_in_worker(self, task: TaskRun) -> None:
        with self._lock:  # an earlier attempt's exit is history
            self._children[task.key] = 0
            self._exit_codes.pop(task.key, None)
        try:
            self._worker().run(task)
        except OSError as e:  # its worker died: the task never started
            with self._lock:
                del self._children[task.key]
            raise BackendUnavailable(f"cannot hand task {task.key} to a worker: {e}") from e

    def _worker(self) -> _Worker:
        """An idle worker.  A task that recorded its outcome (so the loop launches the next) may
        still be exiting: its worker is waited for a moment rather than another one started."""
        with self._worker_idle:
            self._worker_idle.wait_for(lambda: len(self._workers) < self.max_in_flight() or any(
                w.idle or not w.alive for w in self._workers), timeout=1)
            self._workers = [w for w in self._workers if w.alive]
            for worker in self._workers:
                if worker.idle:
                    return worker
        worker = _Worker(str(self.context.instance_dir), self._ended, self._worker_idle)
        self._workers.append(worker)
        return worker

    def _ended(self, key: str, pid: int | None, code: int) -> None:
        """`pid` None: its worker died while it ran; it is then watched through its pid file,
        as a task an earlier orchestrator started is."""
        with self._lock:
            if pid is None:
                self._children.pop(key, None)
            else:
                self._children[key] = pid
                self._exit_codes[key] = code
        self.context.wakeup.set()

    def _spawn_reaped(self, task: TaskRun) -> int:
        self._await_reaper(task.key)
        pid = _spawn_task([_BASH, str(task.script), "--at-step", str(task.start_step)],
                          str(task.control_dir / "drypipe.log"))
        reaper = threading.Thread(target=self._reap, args=(task, pid), daemon=True)
        with self._lock:
            self._children[task.key] = pid
            self._exit_codes.pop(task.key, None)
            self._reapers[task.key] = reaper
        reaper.start()
        return pid

    def _reap(self, task: TaskRun, pid: int) -> None:
        key = task.key
        _, status, usage = os.wait4(pid, 0)
        try:  # before the loop hears of the exit (Linux: ru_maxrss in KiB, the steps' included)
            TaskRecord(task.instance_dir, key).record_usage(usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
        except OSError:
            pass  # the measure is lost, not the exit
        with self._lock:
            if self._reapers.get(key) is threading.current_thread():
                del self._reapers[key]
            current = self._children.get(key) == pid  # not a retry's earlier attempt
        if current:
            self._ended(key, pid, os.waitstatus_to_exitcode(status))

    def _await_reaper(self, key: str) -> None:
        """A retry launches a task whose last attempt has recorded its outcome but may still be
        exiting: its usage line goes to drypipe.log before the new attempt's lines."""
        with self._lock:
            reaper = self._reapers.get(key)
        if reaper is not None:
            reaper.join(timeout=10)

    def poll(self, tasks: list[TaskRun]) -> dict[str, Liveness]:
        result = {}
        for task in tasks:
            with self._lock:
                pid = self._children.get(task.key)
                code = self._exit_codes.get(task.key)
            if pid is None:
                result[task.key] = self._poll_adopted(task)
            elif code is None:
                result[task.key] = Liveness(alive=True)
            else:
                with self._lock:
                    del self._children[task.key]
                    del self._exit_codes[task.key]
                outcome: Outcome = "killed" if code < 0 else "failed"
                if code < 0:
                    reason = f"task script killed by {_signal_name(-code)}"
                else:
                    reason = f"task script exited with code {code} without recording a final state"
                self._stop_leftovers(task, pid)
                result[task.key] = Liveness(False, outcome, reason, certain=True)
        return result

    def _stop_leftovers(self, task: TaskRun, pid: int) -> None:
        """The task script died without recording an outcome (SIGKILL): stop its steps, which
        would otherwise run on unrecorded."""
        if st.is_terminal(st.read_state(str(task.control_dir))):
            return
        stopped = stop_orphans(pid)
        if stopped:
            TaskRecord(task.instance_dir, task.key).log(
                f"task script {pid} is dead: stopped its leftover processes {' '.join(map(str, stopped))}")

    def _poll_adopted(self, task: TaskRun) -> Liveness:
        """A task started by an earlier orchestrator (or by hand): identified by its pid file."""
        record = TaskRecord(task.instance_dir, task.key).pid()
        if record is None:  # claimed, then the orchestrator died before the process started
            return Liveness(False, "ready", "launched but never started")
        if not record.valid:  # a write cut short: dead unless it is rewritten within the grace period
            return Liveness(False, "lost", "its pid file is unreadable")
        if process_matches(record.pid, record.start_time):
            return Liveness(alive=True)
        if record.host in (None, socket.gethostname()):  # its processes are on this host
            self._stop_leftovers(task, record.pid)
        return Liveness(False, "lost", f"process {record.pid} is gone")

    def kill(self, tasks: list[TaskRun]) -> None:
        for task in tasks:
            subprocess.run([str(task.script), "kill"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close(self) -> None:
        """Tasks keep running: a later `drypipe run` adopts them (each worker ends once its task
        has).  Spawned tasks that have recorded their outcome are exiting: their reapers get a
        moment to record the usage."""
        for worker in self._workers:
            worker.close()
        with self._lock:
            reapers = list(self._reapers.items())
        for key, reaper in reapers:
            if reaper.is_alive() and st.is_terminal(TaskRecord(self.context.instance_dir, key).state()):
                reaper.join(timeout=2)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
