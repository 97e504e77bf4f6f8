"""Execution times of an instance's tasks, read from the timestamps of each drypipe.log: per
task, per group of tasks whose keys differ only by numbers (`task-for-chunk.*`), and a
self-contained HTML report (summary and failures first, then a timeline chart in inline SVG
and CSS, one lane per group past a few hundred tasks), which opens offline (no script, no CDN)."""
from __future__ import annotations

import fnmatch
import html
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from drypipe import state as st
from drypipe.display import executor_of, natural_key
from drypipe.errors import UserError
from drypipe.graph import numbered_pattern
from drypipe.instance import Instance
from drypipe.task_record import TaskRecord


@dataclass
class TaskTime:
    key: str
    state: str | None
    executor: str
    started: float | None  # epoch seconds of the last run's first step
    ended: float | None
    cpu: float | None  # user + system seconds, when recorded (see TaskRecord.timing)
    max_rss: int | None = None  # peak resident memory in KiB, when measured
    reason: str | None = None  # why a failed task failed, from the end of its drypipe.log
    attempts: int = 1  # its last attempt's number: 1 + the retries it took (TaskRecord.attempt)

    @property
    def start(self) -> float:
        """`started`, of a task known to have started (the timeline draws only those)."""
        if self.started is None:
            raise ValueError(f"task {self.key} has not started")
        return self.started

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
        record = TaskRecord(instance.root, key)
        timing = record.timing()
        state = st.read_state(str(instance.control_dir(key)))
        # "state.failed.0 exit code 3" -> "exit code 3" (the state has its own column)
        reason = (record.failure_reason() or "").partition(" ")[2] or None if st.is_failure(state) else None
        times.append(TaskTime(key, state, _executor(instance, key), timing.started, timing.ended, timing.cpu,
                              timing.max_rss, reason, record.attempt()[0]))
    return times


@dataclass
class Stats:
    """A group's figures over its completed runs; failed and other tasks are only counted."""

    name: str
    count: int  # tasks in the group
    completed: int
    failed: int
    min: float | None
    median: float | None
    max: float | None
    total: float | None
    cpu: float | None
    max_rss: int | None


def stats(name: str, times: list[TaskTime]) -> Stats:
    done = [t for t in times if t.state == st.COMPLETED]
    durations = [t.seconds for t in done if t.seconds is not None]
    cpus = [t.cpu for t in done if t.cpu is not None]
    rss = [t.max_rss for t in done if t.max_rss is not None]
    failed = sum(1 for t in times if st.is_failure(t.state))
    return Stats(name, len(times), len(done), failed, min(durations, default=None),
                 statistics.median(durations) if durations else None,
                 max(durations, default=None), sum(durations) if durations else None,
                 sum(cpus) if cpus else None, max(rss, default=None))


def groups_of(times: list[TaskTime]) -> dict[str, list[TaskTime]]:
    """Tasks by the glob of keys that differ only by numbers (`task-for-chunk.*`), as `graph` draws them."""
    groups: dict[str, list[TaskTime]] = defaultdict(list)
    for t in times:
        groups[numbered_pattern(t.key)].append(t)
    return groups


def group_stats(times: list[TaskTime], pattern: str = "*") -> list[Stats]:
    """One row per group of at least two tasks whose keys differ only by numbers, then one for all
    (the tasks matching `pattern`)."""
    rows = [stats(name, members) for name, members in sorted(groups_of(times).items())
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


def memory_text(kib: int | None) -> str:
    if kib is None:
        return "-"
    mib = kib / 1024
    return f"{mib / 1024:.2f}GiB" if mib >= 1024 else f"{mib:.1f}MiB"


# Right-aligned (numeric) columns of the text tables.
TASK_NUMERIC = {3, 4, 5}
GROUP_NUMERIC = {1, 2, 3, 4, 5, 6, 7, 8, 9}


def text_tables(times: list[TaskTime], pattern: str) -> tuple[list[list[str]], list[list[str]]]:
    """Rows (header first) of the per-task and per-group tables.  A group's durations, CPU and
    memory are over its completed tasks (`completed` of `count`); failures are counted apart."""
    retried = any(t.attempts > 1 for t in times)  # the attempts column only when some task was retried
    tasks = [["task", "state", "executor", "duration", "cpu", "peak rss"] + (["attempts"] if retried else [])]
    for t in times:
        tasks.append([t.key, st.text(t.state), t.executor, seconds_text(t.seconds), seconds_text(t.cpu),
                      memory_text(t.max_rss)] + ([str(t.attempts)] if retried else []))
    groups = [["tasks", "completed", "min", "median", "max", "total", "cpu", "peak rss", "failed", "count"]]
    for s in group_stats(times, pattern):
        groups.append([s.name, str(s.completed), seconds_text(s.min), seconds_text(s.median), seconds_text(s.max),
                       seconds_text(s.total), seconds_text(s.cpu), memory_text(s.max_rss), str(s.failed),
                       str(s.count)])
    return tasks, groups


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2328; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.meta { color: #59636e; margin: 0; }
.summary { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0 0; padding: 0; list-style: none; }
.summary li { border: 1px solid #d1d9e0; border-radius: 6px; padding: 6px 12px; }
.summary b { display: block; font-size: 18px; font-variant-numeric: tabular-nums; }
.summary li.bad { border-color: #cf222e; color: #cf222e; }
table { border-collapse: collapse; margin-top: 4px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #d1d9e0; text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
#failures td.reason { white-space: normal; max-width: 560px; }
details summary { cursor: pointer; color: #0969da; margin: 6px 0; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px;
           border-radius: 2px; }
svg.timeline { display: block; border: 1px solid #d1d9e0; border-radius: 4px; background: #fff; }
svg.timeline text { font: 11px system-ui, sans-serif; fill: #1f2328; }
svg.timeline .tick line { stroke: #eaeef2; } svg.timeline .tick text { fill: #59636e; }
svg.timeline .row:hover rect.bg { fill: #f6f8fa; }
svg.timeline .lane rect.bar { fill-opacity: 0.55; } svg.timeline .lane rect.bar.state-failed { fill-opacity: 1; }
.state-completed { fill: #2da44e; background: #2da44e; }
.state-failed { fill: #cf222e; background: #cf222e; }
.state-running { fill: #0969da; background: #0969da; }
.state-other { fill: #8c959f; background: #8c959f; }
"""

_ROW_HEIGHT = 16
_LANE_HEIGHT = 26
_LABEL_WIDTH = 260
_CHART_WIDTH = 900
ROWS_UP_TO = 300  # more tasks than this: one lane per group of tasks, not one row per task
MAX_LANES = 40  # past this many groups, the smallest share one lane
FAILURES_SHOWN = 10  # failures listed at the top; the others are one click away


def _state_class(state: str | None) -> str:
    group = st.group(state)
    return f"state-{group}" if group in ("completed", "failed", "running") else "state-other"


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


def _tip(t: TaskTime, now: float) -> str:
    duration = seconds_text(t.seconds) if t.seconds is not None else f"running for {seconds_text(now - t.start)}"
    extra = "".join([f", cpu {seconds_text(t.cpu)}" if t.cpu is not None else "",
                     f", peak rss {memory_text(t.max_rss)}" if t.max_rss is not None else ""])
    return f"{t.key}: {duration}, {st.text(t.state)}, {t.executor}{extra}"


def _bar(t: TaskTime, x: float, y: float, width: float, height: float, now: float) -> str:
    return (f'<rect class="bar {_state_class(t.state)}" data-key="{html.escape(t.key)}" x="{x:.2f}" y="{y}" '
            f'width="{width:.2f}" height="{height}" rx="2"><title>{html.escape(_tip(t, now))}</title></rect>')


def _lanes(rows: list[TaskTime]) -> list[tuple[str, list[TaskTime]]]:
    """(label, tasks) per lane: one per group of keys, in order of first start; past MAX_LANES
    groups the smallest share the last lane."""
    groups = sorted(groups_of(rows).items(), key=lambda item: min(t.start for t in item[1]))
    if len(groups) > MAX_LANES:
        by_size = sorted(groups, key=lambda item: -len(item[1]))
        kept = {name for name, _ in by_size[:MAX_LANES - 1]}
        rest = [t for name, members in groups if name not in kept for t in members]
        groups = [item for item in groups if item[0] in kept] + [(f"{len(groups) - len(kept)} other groups", rest)]
    return groups


def timeline_svg(times: list[TaskTime], now: float | None = None) -> str:
    """A bar per task that started (a running task's bar ends now): one row per task, ordered by
    start time, or past ROWS_UP_TO tasks one lane per group, its failures drawn on top."""
    now = time.time() if now is None else now
    rows = sorted((t for t in times if t.started is not None), key=lambda t: (t.started, t.key))
    if not rows:
        return '<p class="meta">No task has started yet: nothing to draw.</p>'
    origin = min(t.start for t in rows)
    end = max((t.ended if t.ended is not None else now) for t in rows)
    span = max(end - origin, 1e-3)
    scale = _CHART_WIDTH / span
    top = 22
    lanes = _lanes(rows) if len(rows) > ROWS_UP_TO else None
    height = top + (len(lanes) * _LANE_HEIGHT if lanes else len(rows) * _ROW_HEIGHT) + 6
    width = _LABEL_WIDTH + _CHART_WIDTH + 20
    what = f"{len(rows)} tasks in {len(lanes)} lanes" if lanes else f"{len(rows)} tasks"
    out = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of {what}">']
    step = _tick_step(span)
    out.append('<g class="axis">')
    for i in range(int(span / step + 1e-9) + 1):
        tick = i * step
        x = _LABEL_WIDTH + tick * scale
        out.append(f'<g class="tick"><line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{height}"/>'
                   f'<text x="{x + 2:.1f}" y="13">{_tick_label(round(tick, 6))}</text></g>')
    out.append("</g>")

    def x_and_width(t: TaskTime) -> tuple[float, float]:
        ended = t.ended if t.ended is not None else now
        return _LABEL_WIDTH + (t.start - origin) * scale, max(1.0, (ended - t.start) * scale)

    if lanes is None:
        for i, t in enumerate(rows):
            y = top + i * _ROW_HEIGHT
            label = t.key if len(t.key) <= 40 else t.key[:39] + "\u2026"
            x, w = x_and_width(t)
            out.append(f'<g class="row"><rect class="bg" x="0" y="{y}" width="{width}" height="{_ROW_HEIGHT}" '
                       f'fill="transparent"/><text x="4" y="{y + 12}">{html.escape(label)}</text>'
                       f'{_bar(t, x, y + 3, w, _ROW_HEIGHT - 6, now)}</g>')
    else:
        for i, (name, members) in enumerate(lanes):
            y = top + i * _LANE_HEIGHT
            failed = sum(1 for t in members if st.is_failure(t.state))
            label = f"{name if len(name) <= 28 else name[:27] + chr(0x2026)} ({len(members)}" + (
                f", {failed} failed)" if failed else ")")
            out.append(f'<g class="lane" data-group="{html.escape(name)}"><rect class="bg" x="0" y="{y}" '
                       f'width="{width}" height="{_LANE_HEIGHT}" fill="transparent"/>'
                       f'<text x="4" y="{y + 16}">{html.escape(label)}</text>')
            # failures last, so that they are drawn on top of the lane's other bars
            for t in sorted(members, key=lambda t: st.is_failure(t.state)):
                x, w = x_and_width(t)
                tall = st.is_failure(t.state)
                out.append(_bar(t, x, y + (2 if tall else 5), max(w, 2.0) if tall else w,
                                _LANE_HEIGHT - (4 if tall else 10), now))
            out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def _html_table(rows: list[list[str]], numeric: set[int], cells: dict[int, str] | None = None) -> str:
    """`cells`: column -> class of its cells."""
    head, *body = rows
    cells = cells or {}

    def cls(i: int) -> str:
        names = " ".join(filter(None, ["num" if i in numeric else "", cells.get(i, "")]))
        return f' class="{names}"' if names else ""

    parts = ["<table><thead><tr>"]
    parts += [f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(head)]
    parts.append("</tr></thead><tbody>")
    for row in body:
        parts.append("<tr>" + "".join(f"<td{cls(i)}>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _summary(times: list[TaskTime], wall: float | None) -> str:
    counts = Counter(st.name_of(t.state) for t in times)  # as the summary and `drypipe status` count them
    cpus = [t.cpu for t in times if t.cpu is not None]
    rss = [t.max_rss for t in times if t.max_rss is not None]
    bad = ("failed", "killed", "timed-out", "lost")
    groups = ("completed", *bad, "running", "ready", "waiting")
    items = [(str(len(times)), "tasks", ""), *((str(counts[n]), n, " bad" if n in bad else "")
                                               for n in groups if counts[n]),
             (seconds_text(wall), "wall time", ""), (seconds_text(sum(cpus) if cpus else None), "cpu time", ""),
             (memory_text(max(rss, default=None)), "largest peak rss", "")]
    retries = sum(t.attempts - 1 for t in times)
    if retries:
        items.append((str(retries), "retries", ""))
    return '<ul class="summary">' + "".join(
        f'<li class="{cls.strip()}"><b>{html.escape(v)}</b>{html.escape(n)}</li>' for v, n, cls in items) + "</ul>"


def _failures(times: list[TaskTime]) -> str:
    failed = sorted((t for t in times if st.is_failure(t.state)), key=lambda t: (t.ended or 0, t.key))
    if not failed:
        return '<section id="failures"><h2>Failures</h2><p class="meta">No task failed.</p></section>'
    rows = [[t.key, t.state or "", t.reason or "", f".drypipe/{t.key}/out.log"] for t in failed]

    def table(body: list[list[str]]) -> str:
        return _html_table([["task", "state", "reason", "log"], *body], set(), {2: "reason"})

    more = ""
    if len(rows) > FAILURES_SHOWN:
        more = (f"<details><summary>{len(rows) - FAILURES_SHOWN} more failures</summary>"
                f"{table(rows[FAILURES_SHOWN:])}</details>")
    return (f'<section id="failures"><h2>Failures: {len(failed)} of {len(times)} tasks</h2>'
            f"{table(rows[:FAILURES_SHOWN])}{more}</section>")


def html_report(instance: Instance, times: list[TaskTime], pattern: str = "*", now: float | None = None) -> str:
    """Summary and failures first, then the timeline, the groups and the tasks (folded away
    past ROWS_UP_TO tasks, so that the page's height does not grow with the task count)."""
    now = time.time() if now is None else now
    tasks, groups = text_tables(times, pattern)
    started = [t for t in times if t.started is not None]
    wall = None
    if started:
        wall = max((t.ended if t.ended is not None else now) for t in started) - min(t.start for t in started)
    legend = "".join(f'<span><i class="{c}"></i>{n}</span>' for c, n in (
        ("state-completed", "completed"), ("state-failed", "failed, killed, timed out or lost"),
        ("state-running", "running"), ("state-other", "other")))
    generated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    task_table = _html_table(tasks, TASK_NUMERIC)
    if len(times) > ROWS_UP_TO:
        task_table = f"<details><summary>Show all {len(times)} tasks</summary>{task_table}</details>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>drypipe execution times: {html.escape(str(instance.root))}</title>
<style>{_CSS}</style></head>
<body>
<h1>Execution times</h1>
<p class="meta">Pipeline instance {html.escape(str(instance.root))}; tasks matching {html.escape(pattern)};
generated {generated} by drypipe report-execution-times.</p>
{_summary(times, wall)}
{_failures(times)}
<h2>Timeline</h2>
<p class="legend">{legend}</p>
{timeline_svg(times, now)}
<h2>Groups of tasks</h2>
<p class="meta">Durations, cpu and peak rss are over each group's completed tasks; failed tasks are counted apart.</p>
{_html_table(groups, GROUP_NUMERIC)}
<h2>Tasks</h2>
{task_table}
</body></html>
"""
