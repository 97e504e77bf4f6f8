"""Execution times of an instance's tasks, read from the timestamps of each drypipe.log: per
task, per group of tasks whose keys differ only by numbers (`task-for-chunk.*`), and a
self-contained HTML report with a timeline (Gantt) chart in inline SVG and CSS, which opens
offline (no script, no CDN)."""
from __future__ import annotations

import fnmatch
import html
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

from drypipe import state as st
from drypipe.display import executor_of, natural_key
from drypipe.graph import numbered_pattern
from drypipe.errors import UserError
from drypipe.instance import Instance
from drypipe.task_record import TaskRecord



@dataclass
class TaskTime:
    key: str
    state: str | None
    executor: str
    started: float | None  # epoch seconds of the last run's first step
    ended: float | None
    cpu: float | None  # user + system seconds of the steps, when the task runtime recorded them

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


def _executor(instance: Instance, key: str) -> str:
    try:
        return executor_of(TaskRecord(instance.root, key).conf_document()["task_conf"])
    except (UserError, KeyError, AttributeError, TypeError):
        return "?"


def collect(instance: Instance, pattern: str = "*", keys: list[str] | None = None) -> list[TaskTime]:
    """Times of the tasks matching `pattern` (or exactly `keys`), in natural order of keys."""
    if keys is None:
        keys = sorted((k for k in instance.task_keys() if fnmatch.fnmatchcase(k, pattern)), key=natural_key)
    times = []
    for key in keys:
        timing = TaskRecord(instance.root, key).timing()
        started, ended, cpu = timing.started, timing.ended, timing.cpu
        state = st.read_state(str(instance.control_dir(key)))
        times.append(TaskTime(key, state, _executor(instance, key), started, ended, cpu))
    return times


@dataclass
class Stats:
    name: str
    count: int  # tasks in the group
    timed: int  # of which with a duration
    min: float | None
    median: float | None
    max: float | None
    total: float | None
    cpu: float | None


def stats(name: str, times: list[TaskTime]) -> Stats:
    durations = [t.seconds for t in times if t.seconds is not None]
    cpus = [t.cpu for t in times if t.cpu is not None]
    if not durations:
        return Stats(name, len(times), 0, None, None, None, None, sum(cpus) if cpus else None)
    return Stats(name, len(times), len(durations), min(durations), statistics.median(durations), max(durations),
                 sum(durations), sum(cpus) if cpus else None)


def group_stats(times: list[TaskTime], pattern: str = "*") -> list[Stats]:
    """One row per group of at least two tasks whose keys differ only by numbers, then one for all
    (the tasks matching `pattern`)."""
    groups: dict[str, list[TaskTime]] = defaultdict(list)
    for t in times:
        groups[numbered_pattern(t.key)].append(t)
    rows = [stats(name, members) for name, members in sorted(groups.items())
            if len(members) > 1 and name != pattern]
    rows.append(stats(f"{pattern} (all)", times))
    return rows


def seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.3f}s"
    minutes, secs = divmod(value, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h{minutes:02d}m{secs:04.1f}s" if hours else f"{minutes}m{secs:04.1f}s"


def text_tables(times: list[TaskTime], pattern: str) -> tuple[list[list[str]], list[list[str]]]:
    """Rows (header first) of the per-task and per-group tables."""
    tasks = [["task", "state", "executor", "duration", "cpu"]]
    for t in times:
        tasks.append([t.key, t.state or "none", t.executor, seconds_text(t.seconds), seconds_text(t.cpu)])
    groups = [["tasks", "count", "min", "median", "max", "total", "cpu"]]
    for s in group_stats(times, pattern):
        groups.append([s.name, f"{s.timed}/{s.count}" if s.timed != s.count else str(s.count),
                       seconds_text(s.min), seconds_text(s.median), seconds_text(s.max),
                       seconds_text(s.total), seconds_text(s.cpu)])
    return tasks, groups


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2328; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.meta { color: #59636e; margin: 0; }
table { border-collapse: collapse; margin-top: 4px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #d1d9e0; text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; border-radius: 2px; }
svg.timeline { display: block; border: 1px solid #d1d9e0; border-radius: 4px; background: #fff; }
svg.timeline text { font: 11px system-ui, sans-serif; fill: #1f2328; }
svg.timeline .tick line { stroke: #eaeef2; } svg.timeline .tick text { fill: #59636e; }
svg.timeline .row:hover rect.bg { fill: #f6f8fa; }
.state-completed { fill: #2da44e; background: #2da44e; }
.state-failed { fill: #cf222e; background: #cf222e; }
.state-running { fill: #0969da; background: #0969da; }
.state-other { fill: #8c959f; background: #8c959f; }
"""

_ROW_HEIGHT = 16
_LABEL_WIDTH = 260
_CHART_WIDTH = 900


def _state_class(state: str | None) -> str:
    if state == st.COMPLETED:
        return "state-completed"
    if st.is_failure(state):
        return "state-failed"
    if st.is_in_flight(state):
        return "state-running"
    return "state-other"


def _tick_step(span: float) -> float:
    """A round step giving 5 to 10 ticks over `span` seconds."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400):
        if span / step <= 10:
            return step
    return span / 10


def _tick_label(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}" if not secs else f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m" if not secs else f"{minutes}m{secs:02d}s"


def timeline_svg(times: list[TaskTime], now: float | None = None) -> str:
    """One bar per task that started (a running task's bar ends now), ordered by start time."""
    now = time.time() if now is None else now
    rows = sorted((t for t in times if t.started is not None), key=lambda t: (t.started, t.key))
    if not rows:
        return '<p class="meta">No task has started yet: nothing to draw.</p>'
    origin = min(t.started for t in rows)
    end = max((t.ended if t.ended is not None else now) for t in rows)
    span = max(end - origin, 1e-3)
    scale = _CHART_WIDTH / span
    top = 22
    height = top + len(rows) * _ROW_HEIGHT + 6
    width = _LABEL_WIDTH + _CHART_WIDTH + 20
    out = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of {len(rows)} tasks">']
    step = _tick_step(span)
    out.append('<g class="axis">')
    for i in range(int(span / step + 1e-9) + 1):
        tick = i * step
        x = _LABEL_WIDTH + tick * scale
        out.append(f'<g class="tick"><line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{height}"/>'
                   f'<text x="{x + 2:.1f}" y="13">{_tick_label(round(tick, 6))}</text></g>')
    out.append("</g>")
    for i, t in enumerate(rows):
        y = top + i * _ROW_HEIGHT
        ended = t.ended if t.ended is not None else now
        x = _LABEL_WIDTH + (t.started - origin) * scale
        w = max(1.0, (ended - t.started) * scale)
        label = t.key if len(t.key) <= 40 else t.key[:39] + "\u2026"
        duration = seconds_text(t.seconds) if t.seconds is not None else f"running for {seconds_text(now - t.started)}"
        tip = f"{t.key}: {duration}, {t.state or 'none'}, {t.executor}" + (f", cpu {seconds_text(t.cpu)}" if t.cpu is not None else "")
        out.append(
            f'<g class="row"><rect class="bg" x="0" y="{y}" width="{width}" height="{_ROW_HEIGHT}" fill="transparent"/>'
            f'<text x="4" y="{y + 12}">{html.escape(label)}</text>'
            f'<rect class="bar {_state_class(t.state)}" data-key="{html.escape(t.key)}" x="{x:.2f}" y="{y + 3}" '
            f'width="{w:.2f}" height="{_ROW_HEIGHT - 6}" rx="2"><title>{html.escape(tip)}</title></rect></g>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _html_table(rows: list[list[str]], numeric_from: int) -> str:
    head, *body = rows
    cls = lambda i: ' class="num"' if i >= numeric_from else ""  # noqa: E731
    parts = ["<table><thead><tr>"]
    parts += [f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(head)]
    parts.append("</tr></thead><tbody>")
    for row in body:
        parts.append("<tr>" + "".join(f"<td{cls(i)}>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def html_report(instance: Instance, times: list[TaskTime], pattern: str = "*", now: float | None = None) -> str:
    now = time.time() if now is None else now
    tasks, groups = text_tables(times, pattern)
    started = [t for t in times if t.started is not None]
    wall = None
    if started:
        wall = max((t.ended if t.ended is not None else now) for t in started) - min(t.started for t in started)
    legend = "".join(f'<span><i class="{c}"></i>{n}</span>' for c, n in (
        ("state-completed", "completed"), ("state-failed", "failed, killed, timed out or lost"),
        ("state-running", "running"), ("state-other", "other")))
    generated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>drypipe execution times: {html.escape(str(instance.root))}</title>
<style>{_CSS}</style></head>
<body>
<h1>Execution times</h1>
<p class="meta">Pipeline instance {html.escape(str(instance.root))}; tasks matching {html.escape(pattern)}: {len(times)},
{len(started)} started; wall time {html.escape(seconds_text(wall))}; generated {generated} by drypipe report-execution-times.</p>
<h2>Timeline</h2>
<p class="legend">{legend}</p>
{timeline_svg(times, now)}
<h2>Groups of tasks</h2>
{_html_table(groups, 1)}
<h2>Tasks</h2>
{_html_table(tasks, 3)}
</body></html>
"""
