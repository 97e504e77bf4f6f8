"""The executor interface (the plugins that provide executors: drypipe.plugins).

The scheduler loop decides what runs; executors only run it.  Every method takes a
batch of tasks so that a plugin can make one call to its backend per cycle (one
`squeue`, one remote command per host, one HTTP request).
"""
from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from drypipe import plugins
from drypipe import state as st
from drypipe.errors import UserError

if TYPE_CHECKING:
    from drypipe.budget import Budget
    from drypipe.task_conf import TaskConf

# What the loop records for a task its executor reports gone (see Liveness).
Outcome = Literal["lost", "failed", "killed", "timed-out", "ready"]


@dataclass
class TaskRun:
    """What an executor needs to know about one task of the instance."""

    key: str
    instance_dir: Path
    task_conf: TaskConf
    start_step: int = 0
    # Executor-specific handle (pid, Slurm job id, remote id ...), persisted by the executor
    # beside the state marker so that a restarted orchestrator can adopt the task.
    handle: str | None = None

    @property
    def control_dir(self) -> Path:
        return self.instance_dir / ".drypipe" / self.key

    @property
    def output_dir(self) -> Path:
        return self.instance_dir / "output" / self.key

    @property
    def script(self) -> Path:
        return self.control_dir / "task"


@dataclass
class Liveness:
    """An executor's view of one in-flight task, returned by `poll`.

    `alive` False means the process or job no longer exists.  If the task's marker is not
    terminal by then, the loop records `outcome` (`lost`, `failed`, `killed`, `timed-out`;
    the step number is added to the last three), with `reason` in drypipe.log.  It waits
    its grace period first (NFS attribute caches may hide a marker the task did write),
    unless `certain` (e.g. the loop's own child process exited).  The outcome `ready` means
    the task provably never started: it is launched again.
    """

    alive: bool
    outcome: Outcome = "lost"
    reason: str | None = None
    certain: bool = False


def lost_grace_seconds() -> float:
    """How long a task its executor reports gone may take to show its final marker
    (DRYPIPE_LOST_GRACE_SECONDS, default 30: above a network file system's attribute cache)."""
    try:
        return float(os.environ.get("DRYPIPE_LOST_GRACE_SECONDS", "30"))
    except ValueError:
        value = os.environ["DRYPIPE_LOST_GRACE_SECONDS"]
        raise UserError(f"DRYPIPE_LOST_GRACE_SECONDS={value!r} is not a number") from None


class EndWatch:
    """Decides when tasks whose executor reports them gone have ended without recording an
    outcome: at once when the executor is certain, else after the grace period (a marker the
    task did write may show late; the caller re-reads it first, and the marker wins)."""

    def __init__(self, grace_seconds: float | None = None):
        self.grace_seconds = lost_grace_seconds() if grace_seconds is None else grace_seconds
        self.dead_since: dict[str, float] = {}

    def ended(self, key: str, liveness: Liveness, now: float) -> bool:
        if liveness.alive:
            self.dead_since.pop(key, None)
            return False
        if liveness.certain:
            return True
        return now - self.dead_since.setdefault(key, now) >= self.grace_seconds

    def forget(self, key: str) -> None:
        self.dead_since.pop(key, None)


def outcome_state(liveness: Liveness, marker: str | None) -> str:
    """The state recorded for a task that ended as `liveness` says, from marker `marker`."""
    if liveness.outcome in (st.READY, st.LOST):
        return liveness.outcome
    return f"{liveness.outcome}.{st.step_of(marker)}"


@dataclass
class ExecutorContext:
    """Run-wide settings and the loop's wake-up event, shared with every executor."""

    instance_dir: Path
    max_local_jobs: int = 1
    wakeup: threading.Event = field(default_factory=threading.Event)
    options: dict[str, Any] = field(default_factory=dict)
    local_budget: Budget | None = None  # cores and memory of `drypipe run --cores/--mem`


class Executor(ABC):
    """One backend that runs tasks, provided by an executor plugin (drypipe.plugins)."""

    name: str = ""
    # True when the executor wakes the loop itself as tasks end (no need to poll on a timer).
    event_driven: bool = False

    def __init__(self, context: ExecutorContext):
        self.context = context

    def prepare(self, tasks: list[TaskRun]) -> None:  # noqa: B027  (optional: most executors stage nothing)
        """Stage what the tasks need before launch (upload inputs, write launcher files)."""

    def max_in_flight(self) -> int | None:
        """How many of this executor's tasks may be in flight at once; None means no limit."""
        return None

    def resource_budget(self) -> Budget | None:
        """The cores and memory its tasks (TaskConf.cpus, mem) may hold at once, which the loop
        never exceeds when it launches; None: the backend allocates them itself (Slurm)."""
        return None

    @abstractmethod
    def launch(self, tasks: list[TaskRun]) -> dict[str, str]:
        """Start a batch of ready tasks; return a handle per task key."""

    @abstractmethod
    def poll(self, tasks: list[TaskRun]) -> dict[str, Liveness]:
        """One batched status query for all in-flight tasks of this executor."""

    @abstractmethod
    def kill(self, tasks: list[TaskRun]) -> None:
        """Stop the given tasks."""

    def close(self) -> None:  # noqa: B027  (optional)
        """Release connections and threads at the end of a run."""


def executor_class(name: str) -> type[Executor]:
    """The executor class of the plugin named `name` (imported now)."""
    return plugins.plugin(name).executor_class()
