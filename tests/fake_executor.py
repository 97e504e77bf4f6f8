"""A fake executor for fast, in-process tests of the scheduler loop.

It runs nothing: the test scripts what each task does (complete with output variables and
files, fail at step N, hang, vanish, show its outcome late) and when the backend is
unreachable.  Time is counted in polls: each poll of a job is one tick of the backend, so a
test is as fast as the loop can cycle (run it with a sleep schedule of zeros).  A job makes
its transitions through the task record, in the order the task runtime makes them, so the
scheduler sees exactly the files a real task would leave.  Every call is counted.

The scripted backend (`FakeBackend`) outlives the orchestrator, like a real cluster: a new
Scheduler on the same instance finds the jobs of the last one still there.  The executor finds
its backend in the run-wide executor options under its name:

    for plugin in PLUGINS:
        drypipe.plugins.register(plugin)
    backend = FakeBackend()
    backend.script("align-*", Script(ticks=2, outputs={"n": 3}))
    RunOptions(executor_options={"fake": backend}, sleep_schedule=(0,))
"""
from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drypipe import state as st
from drypipe.errors import BackendUnavailable
from drypipe.executor import Executor, ExecutorContext, Liveness, TaskRun
from drypipe.plugins import ExecutorPlugin
from drypipe.task_record import TaskRecord


@dataclass(frozen=True)
class Script:
    """What one launch of a task does."""

    queued: int = 0  # polls its job waits before its first step starts (at the next poll)
    ticks: int = 1  # polls from the start of its first step until it ends
    outputs: dict[str, Any] = field(default_factory=dict)  # output variables it records
    files: dict[str, str] = field(default_factory=dict)  # files it writes in its output dir
    fail_at: int | None = None  # the step that exits non-zero: failed.N
    hang: bool = False  # runs until it is killed
    vanish: bool = False  # its job disappears when it ends, and it records no outcome
    late: int = 0  # its outcome shows this many polls after its job is gone (a file system cache)
    dropped: bool = False  # the backend drops its job before it starts (it provably never ran)


@dataclass
class Job:
    """One launch of a task on the fake backend."""

    run: TaskRun
    script: Script
    ticks: int = 0
    ended_at: int | None = None  # the tick its job went away
    recorded: bool = False  # its outcome is on disk

    @property
    def record(self) -> TaskRecord:
        return TaskRecord(self.run.instance_dir, self.run.key)

    @property
    def alive(self) -> bool:
        return self.ended_at is None

    @property
    def started(self) -> bool:
        return self.ticks > self.script.queued

    def tick(self, backend: FakeBackend) -> None:
        self.ticks += 1
        if self.ticks == self.script.queued + 1:
            self._move(st.step_started(self.run.start_step))
        if self.alive and not self.script.hang and self.ticks - self.script.queued >= self.script.ticks:
            self.ended_at = self.ticks
        if (not self.alive and not self.recorded and not self.script.vanish
                and self.ticks - (self.ended_at or 0) >= self.script.late):
            self._finish(backend)

    def kill(self) -> None:
        """SIGTERM: a running task records killed.N at its step; a job that had not started is
        recorded killed at its start step by the executor (no task script will do it)."""
        if self.alive:
            marker = self.record.state()
            if self.started:
                self.record.record_state(marker, st.killed(st.step_of(marker)), "received SIGTERM")
            else:
                self.record.record_state(marker, st.killed(self.run.start_step), "cancelled before it started",
                                         by="the fake executor")
            self.ended_at, self.recorded = self.ticks, True

    def _move(self, new: str, reason: str = "") -> None:
        marker = self.record.state()
        assert self.record.record_state(marker, new, reason), f"{self.run.key}: marker moved under the fake task"

    def _finish(self, backend: FakeBackend) -> None:
        """The steps from the start step on, as the task runtime records them."""
        self.recorded = True
        steps = self.record.step_count() or 1
        for step in range(self.run.start_step, steps):
            if step > self.run.start_step:
                self._move(st.step_started(step))
            backend.steps_run.append((self.run.key, step))
            if self.script.fail_at == step:
                self._move(st.failed(step), "exit code 1")
                return
            if step + 1 < steps:
                self._move(f"step-completed.{step}")
        out = self.record.output_dir
        for name, content in self.script.files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(content)
        if self.script.outputs:
            self.record.write_output_vars({k: str(v) for k, v in self.script.outputs.items()})
        # as the task runtime: a declared file that the steps did not make fails the task
        missing = [spec["path"] for spec in self.record.conf_document()["outputs"]
                   if spec["kind"] == "file" and spec.get("path") and not (out / spec["path"]).exists()]
        if missing:
            self._move(st.failed(steps - 1), f"missing output(s): {' '.join(missing)}")
            return
        self._move(st.COMPLETED)


class FakeBackend:
    """The scripted backend, and what the executor was asked (read these in assertions)."""

    def __init__(self, max_in_flight: int | None = None):
        self.max_in_flight = max_in_flight
        self.scripts: list[tuple[str, list[Script]]] = []
        self.jobs: dict[str, Job] = {}
        self.launched: list[tuple[str, int]] = []  # (key, start step) per launch
        self.polls: list[list[str]] = []  # the keys asked about, per poll call
        self.kills: list[list[str]] = []
        self.prepared: list[list[str]] = []
        self.steps_run: list[tuple[str, int]] = []  # (key, step) per step that ran
        self.unavailable_polls = 0  # the next N polls raise BackendUnavailable
        self.unavailable_launches = 0  # the next N launches raise BackendUnavailable
        self.before_poll: Callable[[FakeBackend], None] | None = None  # the test acts between cycles
        self.closed = 0
        self._handles = itertools.count(1)

    def script(self, pattern: str, *launches: Script) -> FakeBackend:
        """What the tasks matching `pattern` do: the Nth launch runs the Nth script, the last
        one repeats.  Later calls take precedence; unscripted tasks complete at their first poll."""
        self.scripts.insert(0, (pattern, list(launches)))
        return self

    def launches_of(self, key: str) -> list[int]:
        """The start step of each launch of `key`."""
        return [start for k, start in self.launched if k == key]

    def _script_for(self, key: str) -> Script:
        launch = len(self.launches_of(key))
        for pattern, scripts in self.scripts:
            if fnmatch.fnmatchcase(key, pattern):
                return scripts[min(launch, len(scripts) - 1)]
        return Script()


class FakeExecutor(Executor):
    """Runs tasks on the FakeBackend found in the executor options under its name."""

    name = "fake"

    def __init__(self, context: ExecutorContext):
        super().__init__(context)
        self.backend: FakeBackend = context.options[self.name]

    def max_in_flight(self) -> int | None:
        return self.backend.max_in_flight

    def prepare(self, tasks: list[TaskRun]) -> None:
        self.backend.prepared.append([t.key for t in tasks])

    def launch(self, tasks: list[TaskRun]) -> dict[str, str]:
        backend = self.backend
        if backend.unavailable_launches > 0:
            backend.unavailable_launches -= 1
            raise BackendUnavailable("fake backend down")
        handles = {}
        for task in tasks:
            backend.jobs[task.key] = Job(task, backend._script_for(task.key))
            backend.launched.append((task.key, task.start_step))
            task.output_dir.mkdir(parents=True, exist_ok=True)
            handles[task.key] = f"{self.name}-{next(backend._handles)}"
        return handles

    def poll(self, tasks: list[TaskRun]) -> dict[str, Liveness]:
        backend = self.backend
        if backend.before_poll is not None:
            backend.before_poll(backend)
        backend.polls.append([t.key for t in tasks])
        if backend.unavailable_polls > 0:
            backend.unavailable_polls -= 1
            raise BackendUnavailable("fake backend down")
        result = {}
        for task in tasks:
            job = backend.jobs.get(task.key)
            if job is None:
                result[task.key] = Liveness(False, "lost", "no such job on the fake backend")
                continue
            if job.script.dropped:
                result[task.key] = Liveness(False, "ready", "job dropped before it started", certain=True)
                continue
            job.tick(backend)
            result[task.key] = Liveness(True) if job.alive else Liveness(False, "lost", "job gone")
        return result

    def kill(self, tasks: list[TaskRun]) -> None:
        self.backend.kills.append([t.key for t in tasks])
        for task in tasks:
            job = self.backend.jobs.get(task.key)
            if job is not None:
                job.kill()

    def close(self) -> None:
        self.backend.closed += 1


class OtherFakeExecutor(FakeExecutor):
    """A second fake backend, for runs that use two executors."""

    name = "fake2"


# Registered in-process by the tests (drypipe.plugins.register), never installed.
PLUGINS: tuple[ExecutorPlugin[Any], ...] = tuple(
    ExecutorPlugin(name=cls.name, executor=f"tests.fake_executor:{cls.__name__}")
    for cls in (FakeExecutor, OtherFakeExecutor))
