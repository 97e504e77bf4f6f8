"""A `ProcessorRunner` that runs each processor command through a drypipe executor: the
command becomes the single bash step of a one-task drypipe instance in the job's working
directory (`<work dir>/drypipe/`), launched, polled and killed by the executor (`process`:
a local process; `slurm`: a Slurm job with the job's resources).  Selected by
`start-compute-resource --runner drypipe:process|drypipe:slurm`.

Slurm needs the compute resource's work dir on a file system the nodes share.  drypipe is
imported only when this runner is used: the rest of dendro_bridge does not depend on it.
"""
from __future__ import annotations

import math
import os
import re
import shlex
import threading
import time
from pathlib import Path
from typing import Any

from dendro_bridge.compute.runner import ProcessorCommand, RunOutcome

_EXIT_CODE = re.compile(r"state\.failed\.\d+ exit code (\d+)")
# Executors that can run a command on this host or a cluster; `dendro` would submit it back.
_UNSUITABLE = {"dendro"}


class DrypipeRunner:
    def __init__(self, executor: str = "process", *, slurm_account: str | None = None,
                 sbatch_options: tuple[str, ...] = (), poll_interval_sec: float | None = None,
                 lost_grace_sec: float = 10.0, kill_wait_sec: float = 30.0):
        from drypipe.executor import executor_class

        if executor in _UNSUITABLE:
            raise ValueError(f"drypipe executor {executor!r} cannot run processors")
        executor_class(executor)  # unknown names fail now, not at the first job
        self.executor = executor
        self.slurm_account = slurm_account
        self.sbatch_options = tuple(sbatch_options)
        # Local processes report their exit at once; batch systems are asked every few seconds.
        self.poll_interval_sec = poll_interval_sec or (0.2 if executor == "process" else 2.0)
        self.lost_grace_sec = lost_grace_sec
        self.kill_wait_sec = kill_wait_sec

    def task_conf(self, command: ProcessorCommand) -> Any:
        from drypipe.task_conf import TaskConf

        options = list(self.sbatch_options)
        if self.executor == "slurm":
            resources = command.required_resources or {}
            if resources.get("numCpus"):
                options.append(f"--cpus-per-task={int(resources['numCpus'])}")
            if resources.get("numGpus"):
                options.append(f"--gres=gpu:{int(resources['numGpus'])}")
            if resources.get("memoryGb"):
                options.append(f"--mem={math.ceil(float(resources['memoryGb']) * 1024)}M")
            if command.timeout_sec:  # a minute of margin: this runner enforces the limit itself
                options.append(f"--time={math.ceil(command.timeout_sec / 60) + 1}")
        return TaskConf(executer_type=self.executor, slurm_account=self.slurm_account, sbatch_options=options)

    def run(self, command: ProcessorCommand, cancel: threading.Event) -> RunOutcome:
        from drypipe import state as st
        from drypipe.dsl import DSL, Pipeline
        from drypipe.executor import ExecutorContext, TaskRun, executor_class
        from drypipe.instance import Instance
        from drypipe.task_script import (
            task_conf_document,
            write_task_files,
            write_task_lib,
        )

        instance = Instance(Path(command.cwd) / "drypipe")
        instance.create()
        os.chmod(instance.root, 0o700)  # the step holds the job's private key
        key = command.env.get("JOB_ID") or "processor"
        conf = self.task_conf(command)
        dsl = DSL(Pipeline(_no_tasks, pipeline_code_dir=str(command.cwd)), str(instance.root), lambda k: False)
        task = dsl.task(key=key, task_conf=conf).calls(self._step(command))()
        write_task_lib(instance)
        write_task_files(instance, task_conf_document(task, conf.resolved_python_bin(), str(command.cwd), None))
        control = instance.control_dir(key)
        context = ExecutorContext(instance.root, max_local_jobs=1)
        executor = executor_class(self.executor)(context)
        run = TaskRun(key, instance.root, conf)
        st.transition(str(control), None, st.LAUNCHED)
        try:
            executor.prepare([run])
            run.handle = executor.launch([run]).get(key)
            stopped = self._wait(executor, run, command, cancel, context.wakeup)
        except Exception as e:  # noqa: BLE001 - e.g. sbatch refused the job: the job fails with this
            with open(command.console_path, "a") as f:
                f.write(f"drypipe {self.executor} executor: {e}\n")
            return RunOutcome(exit_code=None)
        finally:
            executor.close()
        self._copy_console(control, key, command.console_path)
        marker = st.read_state(str(control))
        if stopped:
            return RunOutcome(exit_code=None, timed_out=stopped == "timed_out", canceled=stopped == "canceled")
        if marker == st.COMPLETED:
            return RunOutcome(exit_code=0)
        return RunOutcome(exit_code=_exit_code(control, marker))

    @staticmethod
    def _step(command: ProcessorCommand) -> str:
        """A bash step: cd to the job's directory, export the job's variables, run argv."""
        lines = ["#!/usr/bin/env bash", f"cd {shlex.quote(str(command.cwd))} || exit 1"]
        for name, value in sorted(command.env.items()):
            if os.environ.get(name) != value and name.isidentifier():
                lines.append(f"export {name}={shlex.quote(value)}")
        lines.append(shlex.join(command.argv))
        return "\n".join(lines) + "\n"

    def _wait(self, executor: Any, run: Any, command: ProcessorCommand, cancel: threading.Event,
              wakeup: threading.Event) -> str | None:
        """Until the task's marker is terminal; kill it on cancel or timeout ('canceled' /
        'timed_out' is returned then)."""
        from drypipe import state as st
        from drypipe.executor import EndWatch

        control = str(run.control_dir)
        deadline = None if command.timeout_sec is None else time.monotonic() + command.timeout_sec
        watch = EndWatch(self.lost_grace_sec)
        while not st.is_terminal(st.read_state(control)):
            stop = "canceled" if cancel.is_set() else (
                "timed_out" if deadline is not None and time.monotonic() > deadline else None)
            if stop:
                executor.kill([run])
                end = time.monotonic() + self.kill_wait_sec
                while not st.is_terminal(st.read_state(control)) and time.monotonic() < end:
                    time.sleep(0.1)
                return stop
            liveness = executor.poll([run]).get(run.key)
            if liveness is not None and not liveness.alive:
                if st.is_terminal(st.read_state(control)):
                    break
                if watch.ended(run.key, liveness, time.monotonic()):
                    with open(command.console_path, "a") as f:
                        f.write(f"drypipe {self.executor} executor: {liveness.reason or 'the task ended'}\n")
                    break
            wakeup.wait(self.poll_interval_sec)
            wakeup.clear()
        return None

    @staticmethod
    def _copy_console(control: Path, key: str, console_path: Path) -> None:
        """The task's out.log is the processor's console output (minus drypipe's own trailer)."""
        try:
            lines = (control / "out.log").read_bytes().splitlines(keepends=True)
        except FileNotFoundError:
            return
        trailer = f"drypipe: task {key}: ".encode()
        while lines and lines[-1].startswith(trailer):
            lines.pop()
        with open(console_path, "ab") as f:
            f.writelines(lines)


def _no_tasks(dsl: Any) -> list[Any]:
    return []


def _exit_code(control: Path, marker: str | None) -> int | None:
    """The exit code the task runtime recorded (drypipe.log: 'state.failed.0 exit code N')."""
    from drypipe.task_record import TaskRecord

    found = _EXIT_CODE.match(TaskRecord.at(control).failure_reason() or "")
    if found and marker and marker.startswith("failed."):
        return int(found.group(1))
    return 1 if marker else None
