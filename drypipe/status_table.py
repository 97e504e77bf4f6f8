"""The `drypipe status` table: task, state, executor, job id, duration; a summary line; the
failures with the tail of their logs.  Exit codes: 0 every task completed (and, with a
generator, none is stale), 1 some task failed, 3 otherwise (tasks waiting or running)."""
from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import click

from drypipe import plugins
from drypipe import state as st
from drypipe.display import clean, columns, duration_text, executor_of, failure_text, natural_key
from drypipe.errors import UserError
from drypipe.instance import Instance
from drypipe.task_record import TaskRecord, log_path
from drypipe.text import plural

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_UNFINISHED = 3


@dataclass
class Row:
    key: str
    state: str | None
    executor: str
    job_id: str
    seconds: float | None
    stale: bool = False
    cached: bool = False
    step: str = ""  # of a running task: "1/3"
    attempt: tuple[int, int | None] = (1, None)  # (attempt, of attempts): TaskRecord.attempt

    @property
    def state_text(self) -> str:
        text = st.text(self.state)
        if self.step:
            text = f"running (step {self.step}, {duration_text(self.seconds or 0)})"
        elif self.stale:
            text += " (stale)"
        elif self.cached:
            text += " (cached)"
        if self.attempt[0] > 1:
            text += f" (attempt {self.attempt[0]} of {self.attempt[1]})"
        return text

    def matches(self, state_filter: str | None) -> bool:
        if not state_filter:
            return True
        if state_filter == "stale":
            return self.stale
        return st.matches(self.state, state_filter)


def _executor_and_job(record: TaskRecord) -> tuple[str, str]:
    try:
        executor = executor_of(record.conf_document()["task_conf"])
    except (UserError, KeyError, AttributeError, TypeError):
        executor = "?"
    return executor, _job_id(record, executor)


def _job_id(record: TaskRecord, executor: str) -> str:
    """What identifies the task's process or job: its executor plugin's handle (a job id, a
    host ...), else the local pid the task runtime records for every executor."""
    found = plugins.plugins().get(executor)  # None: not installed here
    handle = found.handle(record) if found is not None and found.handle is not None else None
    if handle:
        return handle
    pid = record.pid()
    return str(pid.pid) if pid is not None and pid.valid else ""


def _running_step(record: TaskRecord, state: str | None) -> str:
    """"2/3" while a task runs its second step of three (step-completed.0 goes on to the second)."""
    if state is None or not state.startswith(("step-started.", "step-completed.")):
        return ""
    number = st.step_of(state) + (1 if state.startswith("step-started.") else 2)
    count = record.step_count()
    return f"{min(number, count)}/{count}" if count else str(number)


def rows(instance: Instance, states: dict[str, str | None], stale: AbstractSet[str] = frozenset()) -> list[Row]:
    result = []
    for key, state in sorted(states.items(), key=lambda item: natural_key(item[0])):
        record = TaskRecord(instance.root, key)
        executor, job = _executor_and_job(record)
        step = _running_step(record, state)
        seconds = None
        if state not in (None, st.WAITING, st.READY):
            timing = record.timing()
            seconds = timing.seconds
            if step and timing.started is not None:  # still running: the time since its first step
                seconds = max(0.0, time.time() - timing.started)
        cached = state == st.COMPLETED and record.cached_from() is not None
        result.append(Row(key, state, executor, job, seconds, key in stale, cached, step, record.attempt()))
    return result


def exit_code(all_rows: list[Row]) -> int:
    if any(st.is_failure(r.state) for r in all_rows):
        return EXIT_FAILED
    if all_rows and all(r.state == st.COMPLETED and not r.stale for r in all_rows):
        return EXIT_COMPLETED
    return EXIT_UNFINISHED


def summary_line(all_rows: list[Row]) -> str:
    counts = Counter(st.name_of(r.state) for r in all_rows)
    parts = [f"{n} {g}" for g, n in sorted(counts.items())]
    stale = sum(r.stale for r in all_rows)
    if stale:
        parts.append(f"{stale} stale")
    cached = sum(r.cached for r in all_rows)
    if cached:
        parts.append(f"{cached} restored from cache")
    retries = sum(r.attempt[0] - 1 for r in all_rows)
    if retries:
        parts.append(plural(retries, "retry", "retries"))
    return f"{plural(len(all_rows), 'task')}: " + ", ".join(parts)


def print_status(instance: Instance, states: dict[str, str | None], state_filter: str | None,
                 stale: AbstractSet[str] = frozenset()) -> int:
    """Print the table, the summary and the failures; return the exit code."""
    from rich.console import Console
    from rich.table import Table

    all_rows = rows(instance, states, stale)
    shown = [r for r in all_rows if r.matches(state_filter)]
    console = Console(highlight=False)
    cells = [[r.key, r.state_text, r.executor, r.job_id, "" if r.seconds is None else f"{r.seconds:.1f}s"]
             for r in shown]
    header = ["task", "state", "executor", "job id", "duration"]
    if console.is_terminal and sys.stdout.isatty():
        table = Table(box=None, pad_edge=False, header_style="bold")
        for i, name in enumerate(header):
            table.add_column(name, justify="right" if i == 4 else "left", no_wrap=i == 0)
        styles = {"completed": "green", "failed": "bold red", "running": "blue", "killed": "red",
                  "timed-out": "red", "lost": "red"}
        for r, row in zip(shown, cells, strict=True):
            table.add_row(*row, style=None if r.stale else styles.get(st.name_of(r.state)))
        if shown:
            console.print(table)
    else:
        for line in columns([header, *cells], right={4}) if shown else []:
            click.echo(line)
    # like -k, --state chooses the tasks the summary counts and the exit code is about
    click.echo(f"no task is {state_filter}" if state_filter and not shown else summary_line(shown))
    for r in shown:
        if st.is_failure(r.state):
            click.echo(f"{r.key}: {failure_text(instance, r.key, r.state)}; log: {log_path(instance, r.key)}")
            for line in TaskRecord(instance.root, r.key).tail():
                click.echo(f"    {clean(line)}")
    return exit_code(shown)
