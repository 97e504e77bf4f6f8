"""What `drypipe run` shows while it runs, and at the end.

- On a terminal (stderr): a live `rich` panel: tasks per state, a row per group of tasks (the
  key patterns of `drypipe graph`) with its counts and longest running time, the longest
  running tasks, the last failures with their log, elapsed time and an estimate of the time left.
- Otherwise: plain timestamped lines on stdout, one per task that completes or fails (and with
  -v, per launch), each with the running counts; no control characters.
- `--json-log`: one JSON object per state change on stdout, and a summary object at the end.
- `--quiet`: nothing while running.

The scheduler calls `on_change(key, old, new)` for every state change; counts are read from the
scheduler's in-memory index of states, so tasks already completed by an earlier run count too.
The summary at the end lists the first failures in natural order, and the commands to go on.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from drypipe import state as st
from drypipe.graph import numbered_pattern
from drypipe.instance import Instance, shown_path
from drypipe.task_record import TaskRecord, log_path
from drypipe.text import first_of, plural

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.panel import Panel
    from rich.table import Table

    from drypipe.scheduler import RunSummary, Scheduler

GROUPS = (*st.GROUPS, "cached")
# The failures as `drypipe status` and the summary name them (st.name_of), and a failed task
# that runs again: counted and shown apart from `failed` when there are any.
FAILURES = ("failed", "killed", "timed-out", "lost")
EXTRA = ("retrying", *FAILURES[1:])
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")


def clean(text: str) -> str:
    """Text safe to print on one line: escape sequences removed, other control characters as '?'."""
    text = _ANSI.sub("", text)
    return "".join(c if c.isprintable() or c == "\t" else "?" for c in text)


def failure_text(instance: Instance, key: str, state: str | None) -> str:
    """`failed.0 (exit code 3)`: the state and the reason drypipe.log gives for it."""
    reason = TaskRecord(instance.root, key).failure_reason()
    if not reason:
        return st.text(state)
    marker, _, detail = reason.partition(" ")
    marker = marker.removeprefix("state.")
    return clean(f"{marker} ({detail})" if detail else marker)


def executor_of(conf: Any) -> str:
    """The executor that runs a task, from its TaskConf or the task_conf dict of task-conf.json."""
    if conf is None:
        return "?"
    if isinstance(conf, dict):
        from drypipe.task_conf import TaskConf

        try:
            conf = TaskConf.from_dict(conf)
        except Exception:  # written by another version: its executer_type is the best guess
            return conf.get("executer_type") or "process"
    name = getattr(conf, "executor_name", None)
    executor: str = name() if callable(name) else conf.executer_type
    return executor


def duration_text(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def natural_key(key: str) -> list[int | str]:
    """Sort key that puts chunk.2 before chunk.10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def columns(rows: list[list[str]], right: Set[int] = frozenset()) -> list[str]:
    """Rows of cells as aligned text lines (the first row is the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        lines.append("  ".join(cells).rstrip())
    return lines


FAILURES_SHOWN = 10  # in the summary at the end; the rest is counted
FAILURE_LOGS_SHOWN = 3  # failures whose log excerpt the summary shows
BLOCKED_SHOWN = 5
PANEL_GROUPS = 8  # rows of task groups in the live panel
PANEL_RUNNING = 5  # running tasks named in the live panel
PANEL_WIDTH = 100  # at most: the panel keeps its width from one frame to the next


def tasks_text(count: int) -> str:
    return plural(count, "task")


def run_log_path(instance: Instance) -> str:
    from drypipe.run_log import RUN_LOG_FILE  # run_log imports this module

    return shown_path(instance.drypipe_dir / RUN_LOG_FILE)


def log_excerpt(instance: Instance, key: str, lines: int) -> list[str]:
    """The end of a task's out.log; for a Python exception, from the start of its traceback
    (its middle elided when it is long)."""
    tail = [clean(line) for line in TaskRecord(instance.root, key).tail(max(lines, 40))]
    starts = [i for i, line in enumerate(tail) if line.startswith("Traceback (most recent call last)")]
    if not starts or lines < 5:  # too few lines for a head: the end has the exception
        return tail[-lines:]
    body = tail[starts[-1]:]
    return body if len(body) <= lines else [body[0], "  ..."] + body[-(lines - 2):]


@dataclass
class Commands:
    """The command lines that go on from this run, as the user typed its arguments."""

    run: str  # e.g. `drypipe run -p my.pipeline:gen -i run1`
    instance: str  # e.g. `-i run1`

    def restart_failed(self) -> str:
        return f"{self.run} --restart-failed"

    def status(self, state: str) -> str:
        return f"drypipe status {self.instance} --state {state}"

    def kill(self) -> str:
        return f"drypipe kill {self.instance}"


@dataclass
class View:
    """What the live panel draws, copied from the Progress under its lock."""

    counts: Counter[str]
    executors: dict[str, Counter[str]]
    patterns: dict[str, Counter[str]]
    total: int
    running: dict[str, tuple[float, str]]  # key -> (epoch it was launched, its pattern)
    failures: list[tuple[str, str, list[str]]] = field(default_factory=list)


class Progress:
    """Counts, throughput, running tasks and recent failures of one run, from the scheduler's
    view of states.

    Counts are taken in full from the scheduler at the first state change, then updated from
    each change (a run of 10,000 tasks costs no more per change than a run of 10)."""

    def __init__(self, instance: Instance, scheduler: Scheduler | None = None, failures_shown: int = 3):
        self.instance = instance
        self.scheduler = scheduler
        self.started = time.monotonic()
        self.finished_here = 0  # tasks that completed or failed during this run
        self.failures: deque[tuple[str, str, list[str]]] = deque(maxlen=failures_shown)
        self.lock = threading.Lock()
        self._counts: Counter[str] | None = None
        self._executors: dict[str, Counter[str]] = {}
        self._patterns: dict[str, Counter[str]] = {}
        self._group: dict[str, tuple[str, str, str]] = {}  # key -> (group, executor, pattern) as counted
        self._running: dict[str, tuple[float, str]] = {}
        self._cached: set[str] = set()

    def _classify(self, scheduler: Scheduler, key: str, state: str | None) -> tuple[str, str, str]:
        conf = scheduler.confs.get(key)
        if state == st.COMPLETED and key in self._cached:
            group = "cached"
        elif st.is_failure(state) and key in scheduler.retrying:
            group = "retrying"
        else:
            group = st.name_of(state)
        return group, executor_of(conf), numbered_pattern(key)

    def _add(self, scheduler: Scheduler, key: str, state: str | None, counts: Counter[str],
             executors: dict[str, Counter[str]], patterns: dict[str, Counter[str]],
             groups: dict[str, tuple[str, str, str]]) -> None:
        group, executor, pattern = groups[key] = self._classify(scheduler, key, state)
        counts[group] += 1
        executors.setdefault(executor, Counter())[group] += 1
        patterns.setdefault(pattern, Counter())[group] += 1

    def _count_all(self, scheduler: Scheduler) -> tuple[Counter[str], dict[str, Counter[str]], dict[str, Counter[str]],
                                                        dict[str, tuple[str, str, str]], dict[str, tuple[float, str]]]:
        """Counts, groups and running tasks from every state the scheduler knows."""
        counts: Counter[str] = Counter()
        executors: dict[str, Counter[str]] = {}
        patterns: dict[str, Counter[str]] = {}
        groups: dict[str, tuple[str, str, str]] = {}
        running = {}
        for key, state in dict(scheduler.states).items():  # dict copies are atomic under the GIL
            self._add(scheduler, key, state, counts, executors, patterns, groups)
            if st.is_in_flight(state):
                if key not in self._running:  # adopted: running since its first step (read once)
                    since = TaskRecord(self.instance.root, key).timing().started or time.time()
                    self._running[key] = (since, groups[key][2])
                running[key] = self._running[key]
        return counts, executors, patterns, groups, running

    def view(self) -> View:
        """A copy of the counts, running tasks and recent failures."""
        if self.scheduler is None:
            return View(Counter(), {}, {}, 0, {})
        with self.lock:
            if self._counts is None:  # before the first change: count afresh
                counts, executors, patterns, groups, running = self._count_all(self.scheduler)
                failures = self._listed_failures(self.scheduler, counts, groups)
                return View(counts, executors, patterns, len(groups), running, failures)
            failures = self._listed_failures(self.scheduler, self._counts, self._group)
            return View(Counter(self._counts), {n: Counter(c) for n, c in self._executors.items()},
                        {p: Counter(c) for p, c in self._patterns.items()}, len(self._group),
                        dict(self._running), failures)

    def snapshot(self) -> tuple[Counter[str], dict[str, Counter[str]], int]:
        """(tasks per group, tasks per executor and group, total)."""
        view = self.view()
        return view.counts, view.executors, view.total

    def note(self, key: str, old: str | None, new: str | None) -> None:
        """Called by the scheduler's thread for every state change, after the change."""
        if self.scheduler is None:
            return
        with self.lock:
            if new == st.COMPLETED and key in self.scheduler.from_cache:
                self._cached.add(key)
            if self._counts is None:
                self._counts, self._executors, self._patterns, self._group, self._running = self._count_all(
                    self.scheduler)
            else:
                before = self._group.get(key)
                if before is not None:
                    self._counts[before[0]] -= 1
                    self._executors[before[1]][before[0]] -= 1
                    self._patterns[before[2]][before[0]] -= 1
                self._add(self.scheduler, key, new, self._counts, self._executors, self._patterns, self._group)
            if st.is_in_flight(new):
                self._running.setdefault(key, (time.time(), self._group[key][2]))
            else:
                self._running.pop(key, None)
            failed = self._group[key][0] in FAILURES  # not when it runs again
            if new == st.COMPLETED or failed:
                self.finished_here += 1
        if failed:
            failure = self._failure(key, st.text(new))
            with self.lock:
                self.failures = deque((f for f in self.failures if f[0] != key), maxlen=self.failures.maxlen)
                self.failures.append(failure)

    def _failure(self, key: str, state: str) -> tuple[str, str, list[str]]:
        return key, failure_text(self.instance, key, state), log_excerpt(self.instance, key, 3)

    def _listed_failures(self, scheduler: Scheduler, counts: Counter[str],
                         groups: dict[str, tuple[str, str, str]]) -> list[tuple[str, str, list[str]]]:
        """The failures the panel lists: not those running again; failures from before this run
        (read at its start, or of tasks it adopted) too, while this run has not failed as many
        (the last in natural order come last)."""
        self.failures = deque((f for f in self.failures if groups[f[0]][0] in FAILURES), maxlen=self.failures.maxlen)
        room = (self.failures.maxlen or 0) - len(self.failures)
        if room <= 0 or sum(counts[g] for g in FAILURES) <= len(self.failures):
            return list(self.failures)  # every state is scanned only while the list is short
        listed = {f[0] for f in self.failures}
        known = sorted((k for k, g in groups.items() if g[0] in FAILURES and k not in listed), key=natural_key)
        for key in reversed(known[-room:]):
            self.failures.appendleft(self._failure(key, st.text(scheduler.states.get(key))))
        return list(self.failures)

    def retry(self, key: str) -> tuple[int, int] | None:
        """(attempt, of attempts) when a task that failed runs again."""
        planned = self.scheduler.retrying.get(key) if self.scheduler is not None else None
        return planned[:2] if planned else None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self, counts: Counter[str]) -> float | None:
        """Seconds left for the known tasks at this run's pace; None before anything finished."""
        remaining = counts["waiting"] + counts["ready"] + counts["running"] + counts["retrying"]
        with self.lock:
            done = self.finished_here
        if not remaining:
            return 0.0
        if not done:
            return None
        return remaining * self.elapsed() / done


def counts_text(counts: Counter[str], total: int) -> str:
    done = counts["completed"] + counts["cached"]
    parts = [f"{done}/{total} completed"]
    if counts["cached"]:
        parts[0] += f" ({counts['cached']} cached)"
    parts += [f"{counts[g]} {g}" for g in ("running", "ready", "waiting", "retrying", *FAILURES) if counts[g]]
    return ", ".join(parts)


class RunDisplay:
    """Base: the `on_change` callback for the scheduler, and the end-of-run summary."""

    def __init__(self, instance: Instance, verbose: bool = False, commands: Commands | None = None):
        self.instance = instance
        self.verbose = verbose
        self.commands = commands or Commands("drypipe run", f"-i {shown_path(instance.root)}")
        self.progress = Progress(instance)

    def attach(self, scheduler: Scheduler) -> None:
        self.progress.scheduler = scheduler

    def on_change(self, key: str, old: str | None, new: str | None) -> None:
        self.progress.note(key, old, new)

    def __enter__(self) -> RunDisplay:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def stop(self, interrupted: bool = False) -> None:
        """Stop drawing (the run is over, or stopped by Ctrl-C)."""

    def retry_text(self, key: str) -> str:
        """`, retrying: attempt 2 of 3` after a failure when the task runs again, else ''."""
        retry = self.progress.retry(key)
        return f", retrying: attempt {retry[0]} of {retry[1]}" if retry else ""

    def message(self, text: str) -> None:
        """A line for the user outside the live display (stderr)."""
        click.echo(text, err=True)

    def summary(self, summary: RunSummary, seconds: float, notes: list[str]) -> None:
        """Counts, then the first failures with their reason and log, and what to do next."""
        for note in notes:
            click.echo(note)
        counts = summary.counts()
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        click.echo(f"{tasks_text(len(summary.states))} in {seconds:.1f}s: {parts}")
        self.failure_details(summary)

    def failure_details(self, summary: RunSummary) -> None:
        """On stderr: the first failures in natural order (the first few with the end of their
        log), what waits on them, and the commands that go on."""
        failed = sorted(summary.failed, key=natural_key)
        for i, key in enumerate(failed[:FAILURES_SHOWN]):
            state = summary.states[key]
            reason = failure_text(self.instance, key, state)
            click.echo(f"{st.name_of(state).upper()} {key}: {reason}; log: {log_path(self.instance, key)}", err=True)
            if i < FAILURE_LOGS_SHOWN:
                for line in log_excerpt(self.instance, key, 6):
                    click.echo(f"    {line}", err=True)
        if len(failed) > FAILURES_SHOWN:
            click.echo(f"+{len(failed) - FAILURES_SHOWN} more failed ({self.commands.status('failed')})", err=True)
        blocked = sorted(summary.blocked.items(), key=lambda item: natural_key(item[0]))
        for key, upstreams in blocked[:BLOCKED_SHOWN]:
            click.echo(f"waiting {key}: upstream not completed: {', '.join(upstreams)}", err=True)
        if len(blocked) > BLOCKED_SHOWN:
            click.echo(f"+{len(blocked) - BLOCKED_SHOWN} more waiting ({self.commands.status('waiting')})",
                       err=True)
        for wait in summary.unsatisfied_waits:
            click.echo(f"generator still waits: {wait}", err=True)
        if failed:
            click.echo(f"next: fix the cause, then  {self.commands.restart_failed()}", err=True)
            click.echo(f"      every failure:        {self.commands.status('failed')}", err=True)
            click.echo(f"      the run log:          {run_log_path(self.instance)}", err=True)

    def interrupted(self, running: list[str], wait: float | None) -> None:
        """After Ctrl-C: which tasks keep running, and how to adopt or stop them (stderr).
        `wait`: seconds a second Ctrl-C has to stop them too (None: no second chance)."""
        if not running:
            self.message("interrupted: no task was running")
            return
        shown = first_of(sorted(running, key=natural_key))
        verb = "keeps" if len(running) == 1 else "keep"
        self.message(f"interrupted: {tasks_text(len(running))} {verb} running ({shown})")
        self.message(f"  adopt them:  {self.commands.run}  (run it again)")
        self.message(f"  stop them:   {self.commands.kill()}")
        self.message(f"  what ran:    {run_log_path(self.instance)}")
        if wait is not None:
            self.message(f"Press Ctrl-C again within {wait:.0f} s to stop them now.")

    def stopped(self, states: dict[str, str | None]) -> None:
        """After the second Ctrl-C: what became of the tasks it stopped."""
        self.message(f"second Ctrl-C: stopped {tasks_text(len(states))}")
        for key in sorted(states, key=natural_key):
            self.message(f"  {key}: {states[key]}")


class PlainDisplay(RunDisplay):
    """Timestamped lines, for logs and pipes."""

    def on_change(self, key: str, old: str | None, new: str | None) -> None:
        super().on_change(key, old, new)
        failure = st.is_failure(new)
        if not (new == st.COMPLETED or failure or (self.verbose and new in (st.LAUNCHED, st.READY))):
            return
        counts, _, total = self.progress.snapshot()
        what = f"{failure_text(self.instance, key, new)}; log: {log_path(self.instance, key)}" if failure else new
        if failure and self.progress.retry(key):
            what = f"{failure_text(self.instance, key, new)}{self.retry_text(key)}"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{stamp} {key}: {what}  [{counts_text(counts, total)}; "
                   f"{duration_text(self.progress.elapsed())} elapsed]")


class QuietDisplay(RunDisplay):
    """Nothing while running; at the end only the failures, on stderr."""

    def summary(self, summary: RunSummary, seconds: float, notes: list[str]) -> None:
        self.failure_details(summary)


class JsonDisplay(RunDisplay):
    """One JSON object per line on stdout: an event per state change, a summary at the end."""

    def on_change(self, key: str, old: str | None, new: str | None) -> None:
        super().on_change(key, old, new)
        counts, _, total = self.progress.snapshot()
        scheduler = self.progress.scheduler
        conf = scheduler.confs.get(key) if scheduler is not None else None
        retry = self.progress.retry(key) if st.is_failure(new) else None
        event: dict[str, Any] = {
            "event": "state", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "epoch": round(time.time(), 3),
            "task": key, "old": old, "new": new, "group": "retrying" if retry else st.name_of(new),
            "executor": executor_of(conf) if conf is not None else None,
            "counts": {g: counts[g] for g in (*GROUPS, *EXTRA) if g in GROUPS or counts[g]}, "total": total,
        }
        if retry:
            event["retry"] = {"attempt": retry[0], "of": retry[1]}
        if st.is_failure(new):
            event["reason"] = TaskRecord(self.instance.root, key).failure_reason()
            event["log"] = str(self.instance.control_dir(key) / "out.log")
        click.echo(json.dumps(event))

    def summary(self, summary: RunSummary, seconds: float, notes: list[str]) -> None:
        click.echo(json.dumps({
            "event": "summary", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 3),
            "tasks": len(summary.states), "counts": summary.counts(), "succeeded": summary.succeeded,
            "failed": {k: {"state": summary.states[k], "reason": TaskRecord(self.instance.root, k).failure_reason(),
                           "log": str(self.instance.control_dir(k) / "out.log")} for k in summary.failed},
            "blocked": summary.blocked, "unsatisfied_waits": summary.unsatisfied_waits, "notes": notes,
        }))

    def interrupted(self, running: list[str], wait: float | None) -> None:
        click.echo(json.dumps({"event": "interrupted", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "running": sorted(running, key=natural_key)}))
        super().interrupted(running, wait)

    def stopped(self, states: dict[str, str | None]) -> None:
        click.echo(json.dumps({"event": "stopped", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "states": states}))
        super().stopped(states)


_STYLES = {"waiting": "dim", "ready": "cyan", "running": "blue", "completed": "green",
           "failed": "bold red", "cached": "magenta", "retrying": "yellow", "killed": "red", "timed-out": "red",
           "lost": "red"}


class LiveDisplay(RunDisplay):
    """A rich Live panel on stderr, redrawn twice a second (and once more at the end)."""

    def __init__(self, instance: Instance, console: Console, verbose: bool = False,
                 commands: Commands | None = None):
        super().__init__(instance, verbose, commands)
        self.console = console
        self.live: Live | None = None
        self._moved: list[logging.Handler] = []  # the stderr handlers moved aside while the panel shows
        self._handler: logging.Handler | None = None
        self.ended: float | None = None
        self.was_interrupted = False

    def __enter__(self) -> LiveDisplay:
        from rich.live import Live

        self.live = Live(console=self.console, get_renderable=self.render, refresh_per_second=2,
                         transient=False, redirect_stdout=True, redirect_stderr=True)
        self.live.start()
        self._route_logging()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(interrupted=exc[0] is not None and issubclass(exc[0], KeyboardInterrupt))

    def stop(self, interrupted: bool = False) -> None:
        if self.live is not None:
            self.ended = self.progress.elapsed()
            self.was_interrupted = interrupted
            self.live.stop()  # draws the final state once more
            self.live = None
        self._restore_logging()

    def _route_logging(self) -> None:
        """Log records (warnings, -v) are printed above the panel instead of through it."""
        root = logging.getLogger()
        self._moved = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                       and getattr(h, "stream", None) in (sys.__stderr__, sys.stderr)]
        if not self._moved:
            return
        console = self.console  # the one the Live panel draws on

        class AbovePanel(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    console.print(clean(self.format(record)), markup=False, highlight=False)
                except Exception:
                    self.handleError(record)

        above = self._handler = AbovePanel(self._moved[0].level)
        above.setFormatter(self._moved[0].formatter)
        for handler in self._moved:
            root.removeHandler(handler)
        root.addHandler(above)

    def _restore_logging(self) -> None:
        root = logging.getLogger()
        if self._handler is not None:
            root.removeHandler(self._handler)
            self._handler = None
        for handler in self._moved:
            root.addHandler(handler)
        self._moved = []

    def on_change(self, key: str, old: str | None, new: str | None) -> None:
        super().on_change(key, old, new)
        if self.live is not None and self.verbose and (new == st.COMPLETED or st.is_failure(new)):
            text = f"{time.strftime('%H:%M:%S')} {key}: {new}{self.retry_text(key) if st.is_failure(new) else ''}"
            self.live.console.print(text, markup=False, highlight=False)

    def render(self) -> Panel:
        from rich.console import Group
        from rich.panel import Panel

        view = self.progress.view()
        width = min(self.console.width, PANEL_WIDTH)
        inner = width - 4  # borders and padding
        parts: list[RenderableType] = [self._states(view), self._bar(view, inner)]
        if len(view.executors) > 1:
            parts += self._executors(view)
        parts += self._groups(view, inner)
        parts += self._longest_running(view, inner)
        parts += self._failures(view, inner)
        title = f"drypipe run  {shown_path(self.instance.root)}"
        return Panel(Group(*parts), title=title, title_align="left", border_style="blue", width=width)

    @staticmethod
    def _states(view: View) -> Table:
        from rich.table import Table
        from rich.text import Text

        shown = [*GROUPS, *(g for g in EXTRA if view.counts[g])]
        states = Table.grid(padding=(0, 2))
        for _ in shown:
            states.add_column(justify="right")
        states.add_row(*[Text(g, style=_STYLES[g]) for g in shown])
        states.add_row(*[Text(str(view.counts[g]), style=_STYLES[g] if view.counts[g] else "dim") for g in shown])
        return states

    def _bar(self, view: View, inner: int) -> Table:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        done = view.counts["completed"] + view.counts["cached"]
        if self.ended is not None:
            how = "stopped (Ctrl-C) after" if self.was_interrupted else "finished in"
            times = f"{how} {duration_text(self.ended)}"
        else:
            eta = self.progress.eta(view.counts)
            left = "-" if eta is None else duration_text(eta)
            times = f"elapsed {duration_text(self.progress.elapsed())}  ETA {left}"
        text = f"{done}/{view.total} tasks  {times}"
        bar = Table.grid(padding=(0, 1))
        width = max(10, min(40, inner - len(text) - 1))  # the text stays on the line at 80 columns
        bar.add_row(ProgressBar(total=max(view.total, 1), completed=done, width=width), Text(text))
        return bar

    @staticmethod
    def _executors(view: View) -> list[RenderableType]:
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for name, c in sorted(view.executors.items()):
            table.add_row(name, ", ".join(f"{c[g]} {g}" for g in GROUPS if c[g]) or "-")
        return [Text("executors", style="bold underline"), table]

    @staticmethod
    def _groups(view: View, inner: int) -> list[RenderableType]:
        """A row per key pattern: done, failed, running of total, and its longest running task."""
        from rich.table import Table
        from rich.text import Text

        if not view.patterns:
            return []
        now = time.time()
        longest: dict[str, float] = {}
        for since, pattern in view.running.values():
            longest[pattern] = max(longest.get(pattern, 0.0), now - since)
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True, overflow="ellipsis", max_width=max(12, inner - 48))
        for _ in range(5):
            table.add_column(justify="right", no_wrap=True)
        table.add_row(*[Text(h, style="bold") for h in ("group", "done", "failed", "running", "total", "longest")])
        patterns = sorted(view.patterns, key=natural_key)
        for pattern in patterns[:PANEL_GROUPS]:
            c = view.patterns[pattern]
            failed = sum(c[g] for g in FAILURES)  # killed and the like too: the column is narrow
            table.add_row(pattern, str(c["completed"] + c["cached"]),
                          Text(str(failed), style="bold red" if failed else ""),
                          Text(str(c["running"]), style="blue" if c["running"] else ""), str(sum(c.values())),
                          duration_text(longest[pattern]) if pattern in longest else "")
        parts: list[RenderableType] = [table]
        if len(patterns) > PANEL_GROUPS:
            parts.append(Text(f"+{len(patterns) - PANEL_GROUPS} more groups", style="dim"))
        return parts

    @staticmethod
    def _longest_running(view: View, inner: int) -> list[RenderableType]:
        """The tasks running longest, with the time since their launch."""
        from rich.table import Table
        from rich.text import Text

        if not view.running:
            return []
        now = time.time()
        oldest = sorted(view.running.items(), key=lambda item: (item[1][0], natural_key(item[0])))
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True, overflow="ellipsis", max_width=max(12, inner - 12))
        table.add_column(justify="right", no_wrap=True)
        for key, (since, _) in oldest[:PANEL_RUNNING]:
            table.add_row(f"  {key}", duration_text(now - since))
        title = Text(f"running, longest first ({len(oldest)})", style="bold blue underline")
        parts: list[RenderableType] = [title, table]
        if len(oldest) > PANEL_RUNNING:
            parts.append(Text(f"  +{len(oldest) - PANEL_RUNNING} more", style="dim"))
        return parts

    def _failures(self, view: View, inner: int) -> list[RenderableType]:
        """The last failures of this run with their log and its end; how many more."""
        from rich.text import Text

        failed = sum(view.counts[g] for g in FAILURES)
        if not failed:
            return []
        heading = ", ".join(f"{g} ({view.counts[g]})" for g in FAILURES if view.counts[g])
        parts: list[RenderableType] = [Text(f"{heading}, last first", style="bold red underline")]
        for key, reason, tail in reversed(view.failures):
            parts.append(Text.assemble(("  " + key, "bold red"), f": {reason}", no_wrap=True, overflow="ellipsis"))
            parts.append(Text(f"    log: {log_path(self.instance, key)}", no_wrap=True, overflow="ellipsis"))
            for line in tail:
                parts.append(Text(f"    {line}", style="dim", no_wrap=True, overflow="ellipsis"))
        more = failed - len(view.failures)
        if more > 0:
            parts.append(Text(f"  +{more} more ({self.commands.status('failed')})", no_wrap=True, overflow="ellipsis"))
        return parts


def make_display(instance: Instance, mode: str | None = None, verbose: bool = False,
                 commands: Commands | None = None) -> RunDisplay:
    """`mode`: "quiet", "json", or None to pick live on a terminal and plain otherwise."""
    if mode == "quiet":
        return QuietDisplay(instance, verbose, commands)
    if mode == "json":
        return JsonDisplay(instance, verbose, commands)
    from rich.console import Console

    console = Console(stderr=True)
    # FORCE_COLOR (set by some CI systems) makes rich call a log file a terminal: a live panel
    # there would fill the log with redraws, so a real terminal is required too.
    if console.is_terminal and not console.is_dumb_terminal and sys.stderr.isatty():
        return LiveDisplay(instance, console, verbose, commands)
    return PlainDisplay(instance, verbose, commands)
