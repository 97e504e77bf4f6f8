"""What `drypipe run` shows while it runs.

- On a terminal (stderr): a live `rich` panel: tasks per state, per executor, elapsed time and
  an estimate of the time left, and the last failures with the tail of their out.log.
- Otherwise: plain timestamped lines on stdout, one per task that completes or fails (and with
  -v, per launch), each with the running counts; no control characters.
- `--json-log`: one JSON object per state change on stdout, and a summary object at the end.
- `--quiet`: nothing while running.

The scheduler calls `on_change(key, old, new)` for every state change; counts are read from the
scheduler's in-memory index of states, so tasks already completed by an earlier run count too.
"""
from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import click

from drypipe import state as st
from drypipe.instance import Instance
from drypipe.task_record import TaskRecord

if TYPE_CHECKING:
    from drypipe.scheduler import RunSummary, Scheduler

GROUPS = ("waiting", "ready", "running", "completed", "failed", "cached")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")


def clean(text: str) -> str:
    """Text safe to print on one line: escape sequences removed, other control characters as '?'."""
    text = _ANSI.sub("", text)
    return "".join(c if c.isprintable() or c == "\t" else "?" for c in text)


def failure_text(instance: Instance, key: str, state: str | None) -> str:
    """`failed.0 (exit code 3)`: the state and the reason drypipe.log gives for it."""
    reason = TaskRecord(instance.root, key).failure_reason()
    if not reason:
        return state or "none"
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
    return name() if callable(name) else conf.executer_type


def group_of(state: str | None) -> str:
    """The display group of a state marker: waiting, ready, running, completed or failed."""
    if state is None or state == st.WAITING:
        return "waiting"
    if state == st.READY:
        return "ready"
    if st.is_in_flight(state):
        return "running"
    if state == st.COMPLETED:
        return "completed"
    return "failed"


def duration_text(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def natural_key(key: str) -> list:
    """Sort key that puts chunk.2 before chunk.10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def columns(rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    """Rows of cells as aligned text lines (the first row is the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return lines


class Progress:
    """Counts, throughput and recent failures of one run, from the scheduler's view of states.

    Counts are taken in full from the scheduler at the first state change, then updated from
    each change (a run of 10,000 tasks costs no more per change than a run of 10)."""

    def __init__(self, instance: Instance, scheduler: "Scheduler | None" = None, failures_shown: int = 3):
        self.instance = instance
        self.scheduler = scheduler
        self.started = time.monotonic()
        self.finished_here = 0  # tasks that completed or failed during this run
        self.failures: deque[tuple[str, str, list[str]]] = deque(maxlen=failures_shown)
        self.lock = threading.Lock()
        self._counts: Counter | None = None
        self._executors: dict[str, Counter] = {}
        self._group: dict[str, tuple[str, str]] = {}  # key -> (group, executor) as counted
        self._cached: set[str] = set()

    def _classify(self, key: str, state: str | None) -> tuple[str, str]:
        conf = self.scheduler.confs.get(key)
        group = "cached" if state == st.COMPLETED and key in self._cached else group_of(state)
        return group, executor_of(conf)

    def _count_all(self) -> tuple[Counter, dict[str, Counter], dict[str, tuple[str, str]]]:
        counts: Counter = Counter()
        executors: dict[str, Counter] = {}
        groups = {}
        for key, state in dict(self.scheduler.states).items():  # dict copies are atomic under the GIL
            group, executor = groups[key] = self._classify(key, state)
            counts[group] += 1
            executors.setdefault(executor, Counter())[group] += 1
        return counts, executors, groups

    def snapshot(self) -> tuple[Counter, dict[str, Counter], int]:
        """(tasks per group, tasks per executor and group, total)."""
        if self.scheduler is None:
            return Counter(), {}, 0
        with self.lock:
            if self._counts is not None:
                return (Counter(self._counts), {n: Counter(c) for n, c in self._executors.items()},
                        len(self._group))
            counts, executors, groups = self._count_all()  # before the first change: count afresh
        return counts, executors, len(groups)

    def note(self, key: str, old: str | None, new: str | None) -> None:
        """Called by the scheduler's thread for every state change, after the change."""
        if self.scheduler is None:
            return
        with self.lock:
            if new == st.COMPLETED and key in self.scheduler.from_cache:
                self._cached.add(key)
            if self._counts is None:
                self._counts, self._executors, self._group = self._count_all()
            else:
                before = self._group.get(key)
                if before is not None:
                    self._counts[before[0]] -= 1
                    self._executors[before[1]][before[0]] -= 1
                group, executor = self._group[key] = self._classify(key, new)
                self._counts[group] += 1
                self._executors.setdefault(executor, Counter())[group] += 1
            if new == st.COMPLETED or st.is_failure(new):
                self.finished_here += 1
        if st.is_failure(new):
            reason = failure_text(self.instance, key, new)
            tail = [clean(line) for line in TaskRecord(self.instance.root, key).tail(3)]
            with self.lock:
                self.failures.append((key, reason, tail))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self, counts: Counter) -> float | None:
        """Seconds left for the known tasks at this run's pace; None before anything finished."""
        remaining = counts["waiting"] + counts["ready"] + counts["running"]
        with self.lock:
            done = self.finished_here
        if not remaining:
            return 0.0
        if not done:
            return None
        return remaining * self.elapsed() / done


def counts_text(counts: Counter, total: int) -> str:
    done = counts["completed"] + counts["cached"]
    parts = [f"{done}/{total} completed"]
    if counts["cached"]:
        parts[0] += f" ({counts['cached']} cached)"
    parts += [f"{counts[g]} {g}" for g in ("running", "ready", "waiting", "failed") if counts[g]]
    return ", ".join(parts)


class RunDisplay:
    """Base: the `on_change` callback for the scheduler, and the end-of-run summary."""

    def __init__(self, instance: Instance, verbose: bool = False):
        self.instance = instance
        self.verbose = verbose
        self.progress = Progress(instance)

    def attach(self, scheduler: "Scheduler") -> None:
        self.progress.scheduler = scheduler

    def on_change(self, key: str, old: str | None, new: str | None) -> None:
        self.progress.note(key, old, new)

    def __enter__(self) -> "RunDisplay":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def summary(self, summary: "RunSummary", seconds: float, notes: list[str]) -> None:
        """Counts, then every failure with its reason and the tail of its log (stderr)."""
        for note in notes:
            click.echo(note)
        counts = summary.counts()
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        click.echo(f"{len(summary.states)} tasks in {seconds:.1f}s: {parts}")
        self.failure_details(summary)

    def failure_details(self, summary: "RunSummary") -> None:
        for key in summary.failed:
            reason = failure_text(self.instance, key, summary.states[key])
            click.echo(f"FAILED {key}: {reason}; log: {self.instance.control_dir(key) / 'out.log'}", err=True)
            for line in TaskRecord(self.instance.root, key).tail():
                click.echo(f"    {clean(line)}", err=True)
        for key, upstreams in sorted(summary.blocked.items())[:20]:
            click.echo(f"waiting {key}: upstream not completed: {', '.join(upstreams)}", err=True)
        if len(summary.blocked) > 20:
            click.echo(f"... and {len(summary.blocked) - 20} more tasks waiting (drypipe status --state waiting)",
                       err=True)
        for wait in summary.unsatisfied_waits:
            click.echo(f"generator still waits: {wait}", err=True)


class PlainDisplay(RunDisplay):
    """Timestamped lines, for logs and pipes."""

    def on_change(self, key: str, old: str | None, new: str | None) -> None:
        super().on_change(key, old, new)
        failure = st.is_failure(new)
        if not (new == st.COMPLETED or failure or (self.verbose and new in (st.LAUNCHED, st.READY))):
            return
        counts, _, total = self.progress.snapshot()
        what = failure_text(self.instance, key, new) if failure else new
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{stamp} {key}: {what}  [{counts_text(counts, total)}; "
                   f"{duration_text(self.progress.elapsed())} elapsed]")


class QuietDisplay(RunDisplay):
    """Nothing while running; at the end only the failures, on stderr."""

    def summary(self, summary: "RunSummary", seconds: float, notes: list[str]) -> None:
        self.failure_details(summary)


class JsonDisplay(RunDisplay):
    """One JSON object per line on stdout: an event per state change, a summary at the end."""

    def on_change(self, key: str, old: str | None, new: str | None) -> None:
        super().on_change(key, old, new)
        counts, _, total = self.progress.snapshot()
        scheduler = self.progress.scheduler
        conf = scheduler.confs.get(key) if scheduler is not None else None
        event: dict[str, Any] = {
            "event": "state", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "epoch": round(time.time(), 3),
            "task": key, "old": old, "new": new, "group": group_of(new),
            "executor": executor_of(conf) if conf is not None else None,
            "counts": {g: counts[g] for g in GROUPS}, "total": total,
        }
        if st.is_failure(new):
            event["reason"] = TaskRecord(self.instance.root, key).failure_reason()
            event["log"] = str(self.instance.control_dir(key) / "out.log")
        click.echo(json.dumps(event))

    def summary(self, summary: "RunSummary", seconds: float, notes: list[str]) -> None:
        click.echo(json.dumps({
            "event": "summary", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 3),
            "tasks": len(summary.states), "counts": summary.counts(), "succeeded": summary.succeeded,
            "failed": {k: {"state": summary.states[k], "reason": TaskRecord(self.instance.root, k).failure_reason(),
                           "log": str(self.instance.control_dir(k) / "out.log")} for k in summary.failed},
            "blocked": summary.blocked, "unsatisfied_waits": summary.unsatisfied_waits, "notes": notes,
        }))


class LiveDisplay(RunDisplay):
    """A rich Live panel on stderr, redrawn twice a second (and once more at the end)."""

    def __init__(self, instance: Instance, console, verbose: bool = False):
        super().__init__(instance, verbose)
        self.console = console
        self.live = None
        self.ended: float | None = None

    def __enter__(self) -> "LiveDisplay":
        from rich.live import Live

        self.live = Live(console=self.console, get_renderable=self.render, refresh_per_second=2,
                         transient=False, redirect_stdout=True, redirect_stderr=True)
        self.live.start()
        self._route_logging()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.ended = self.progress.elapsed()
            self.live.stop()  # draws the final state once more
            self.live = None
        self._restore_logging()

    def _route_logging(self) -> None:
        """Log records (warnings, -v) are printed above the panel instead of through it."""
        import logging

        root = logging.getLogger()
        self._moved = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                       and getattr(h, "stream", None) in (sys.__stderr__, sys.stderr)]
        if not self._moved:
            return
        live = self.live

        class AbovePanel(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    live.console.print(clean(self.format(record)), markup=False, highlight=False)
                except Exception:
                    self.handleError(record)

        self._handler = AbovePanel(self._moved[0].level)
        self._handler.setFormatter(self._moved[0].formatter)
        for handler in self._moved:
            root.removeHandler(handler)
        root.addHandler(self._handler)

    def _restore_logging(self) -> None:
        import logging

        root = logging.getLogger()
        if getattr(self, "_handler", None) is not None:
            root.removeHandler(self._handler)
            self._handler = None
        for handler in getattr(self, "_moved", []):
            root.addHandler(handler)
        self._moved = []

    def on_change(self, key: str, old: str | None, new: str | None) -> None:
        super().on_change(key, old, new)
        if self.live is not None and self.verbose and (new == st.COMPLETED or st.is_failure(new)):
            self.live.console.print(f"{time.strftime('%H:%M:%S')} {key}: {new}", markup=False, highlight=False)

    def render(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        progress = self.progress
        counts, executors, total = progress.snapshot()
        elapsed = progress.elapsed() if self.ended is None else self.ended
        done = counts["completed"] + counts["cached"]
        states = Table.grid(padding=(0, 2))
        styles = {"waiting": "dim", "ready": "cyan", "running": "blue", "completed": "green",
                  "failed": "bold red", "cached": "magenta"}
        for group in GROUPS:
            states.add_column(justify="right")
        states.add_row(*[Text(g, style=styles[g]) for g in GROUPS])
        states.add_row(*[Text(str(counts[g]), style=styles[g] if counts[g] else "dim") for g in GROUPS])
        eta = progress.eta(counts)
        if self.ended is not None:
            times = f"finished in {duration_text(elapsed)}"
        else:
            times = f"elapsed {duration_text(elapsed)}  ETA {'-' if eta is None else duration_text(eta)}"
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(total, 1), completed=done, width=40), Text(f"{done}/{total} tasks  {times}"))
        parts: list = [states, bar]
        if executors:
            table = Table.grid(padding=(0, 2))
            table.add_column(style="bold")
            table.add_column()
            for name, c in sorted(executors.items()):
                table.add_row(name, ", ".join(f"{c[g]} {g}" for g in GROUPS if c[g]) or "-")
            parts += [Text("executors", style="bold underline"), table]
        with progress.lock:
            failures = list(progress.failures)
        if failures:
            parts.append(Text("last failures", style="bold red underline"))
            for key, reason, tail in failures:
                parts.append(Text.assemble((key, "bold red"), f": {reason}"))
                for line in tail:
                    parts.append(Text(f"    {line}", style="dim", no_wrap=True, overflow="ellipsis"))
        title = f"drypipe run  {self.instance.root}"
        return Panel(Group(*parts), title=title, title_align="left", border_style="blue", expand=False)


def make_display(instance: Instance, mode: str | None = None, verbose: bool = False) -> RunDisplay:
    """`mode`: "quiet", "json", or None to pick live on a terminal and plain otherwise."""
    if mode == "quiet":
        return QuietDisplay(instance, verbose)
    if mode == "json":
        return JsonDisplay(instance, verbose)
    from rich.console import Console

    console = Console(stderr=True)
    # FORCE_COLOR (set by some CI systems) makes rich call a log file a terminal: a live panel
    # there would fill the log with redraws, so a real terminal is required too.
    if console.is_terminal and not console.is_dumb_terminal and sys.stderr.isatty():
        return LiveDisplay(instance, console, verbose)
    return PlainDisplay(instance, verbose)
