"""Local process executor: runs task scripts as child processes, at most `max_local_jobs`
at once and within the local budget of cores and memory (the loop admits them, see
drypipe.budget.Admission), and wakes the scheduler loop the moment one exits."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading

from drypipe import state as st
from drypipe.budget import Budget
from drypipe.executor import Executor, ExecutorContext, Liveness, Outcome, TaskRun
from drypipe.proc import process_matches, stop_orphaned_session
from drypipe.task_record import TaskRecord

# The task script's shebang is `/usr/bin/env bash`; naming bash directly saves an exec per task.
_BASH = shutil.which("bash") or "bash"


def _spawn(args: list[str], log_path: str) -> int:
    """Start a task script in a new session (it survives the orchestrator; `task kill` stops it),
    stdout and stderr appended to its drypipe.log.  posix_spawn (vfork) is several times
    cheaper than fork for a large orchestrator process."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        return os.posix_spawn(args[0], args, os.environ, setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
        ])
    finally:
        os.close(log)


class ProcessExecutor(Executor):
    name = "process"
    event_driven = True

    def __init__(self, context: ExecutorContext):
        super().__init__(context)
        self._children: dict[str, int] = {}  # task key -> pid of its task script
        self._exit_codes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._reapers: dict[str, threading.Thread] = {}

    def max_in_flight(self) -> int:
        return self.context.max_local_jobs

    def resource_budget(self) -> Budget | None:
        return self.context.local_budget

    def launch(self, tasks: list[TaskRun]) -> dict[str, str]:
        handles = {}
        for task in tasks:
            self._await_reaper(task.key)
            task.output_dir.mkdir(parents=True, exist_ok=True)  # saves the task script a mkdir
            pid = _spawn([_BASH, str(task.script), "--at-step", str(task.start_step)],
                         str(task.control_dir / "drypipe.log"))
            reaper = threading.Thread(target=self._reap, args=(task, pid), daemon=True)
            with self._lock:
                self._children[task.key] = pid
                self._exit_codes.pop(task.key, None)
                self._reapers[task.key] = reaper
            reaper.start()
            handles[task.key] = str(pid)
        return handles

    def _reap(self, task: TaskRun, pid: int) -> None:
        key = task.key
        _, status, usage = os.wait4(pid, 0)
        try:  # before the loop hears of the exit (Linux: ru_maxrss in KiB, the steps' included)
            TaskRecord(task.instance_dir, key).record_usage(usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
        except OSError:
            pass  # the measure is lost, not the exit
        code = os.waitstatus_to_exitcode(status)
        with self._lock:
            if self._children.get(key) == pid:  # not a retry's earlier attempt
                self._exit_codes[key] = code
            if self._reapers.get(key) is threading.current_thread():
                del self._reapers[key]
        self.context.wakeup.set()

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
        run in their own process groups of its session and would otherwise run on unrecorded."""
        if st.is_terminal(st.read_state(str(task.control_dir))):
            return
        stopped = stop_orphaned_session(pid)
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
        """Children keep running: a later `drypipe run` adopts them.  Those that have recorded
        their outcome are exiting: their reapers get a moment to record the usage."""
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
