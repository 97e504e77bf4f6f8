"""`drypipe report-execution-times`: per-task and per-group durations and CPU time, and the
self-contained HTML report, opened in headless Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess

from tests.helpers import REPO, drypipe
from tests.ux.pipelines import failing_pipeline, require_program


def _run_chunked(tmp_path, env: dict | None = None):
    instance = tmp_path / "chimp"
    instance.mkdir()
    shutil.copy(REPO / "examples/data/chimp.fasta", instance)
    drypipe("run", "-p", "examples.chunked_fasta:pipeline", "-i", str(instance), cwd=REPO, check=True, env=env)
    return instance


def test_text_report(tmp_path):
    """Peak memory is measured (wait4) where each task script is a process of its own."""
    instance = _run_chunked(tmp_path, env={"DRYPIPE_PROCESS_WORKERS": "0"})
    result = drypipe("report-execution-times", "-i", str(instance), cwd=REPO, check=True)
    tasks, groups = result.stdout.split("\n\n")
    rows = {line.split()[0]: line.split() for line in tasks.splitlines()[1:]}
    assert set(rows) == {"prepare-chunks", "task-for-chunk.0", "task-for-chunk.1", "task-for-chunk.2",
                         "analyze-all-work-pieces"}
    for key, (_, state, executor, duration, cpu, rss) in rows.items():
        assert (state, executor) == ("completed", "process")
        assert re.fullmatch(r"\d+\.\d{3}s", duration) and re.fullmatch(r"\d+\.\d{3}s", cpu), rows[key]
        assert re.fullmatch(r"\d+\.\dMiB", rss) and float(rss[:-3]) > 1, rows[key]  # measured by wait4
    group_rows = {line.split()[0]: line.split() for line in groups.splitlines()[1:]}
    assert group_rows["task-for-chunk.*"][1] == "3"  # min, median, max, total, cpu follow
    assert group_rows["*"][1:3] == ["(all)", "5"]
    durations = sorted(float(rows[f"task-for-chunk.{i}"][3][:-1]) for i in range(3))
    assert group_rows["task-for-chunk.*"][2:5] == [f"{durations[0]:.3f}s", f"{durations[1]:.3f}s",
                                                   f"{durations[2]:.3f}s"]
    filtered = drypipe("report-execution-times", "-i", str(instance), "--filter", "task-for-chunk.*", cwd=REPO,
                       check=True)
    assert "prepare-chunks" not in filtered.stdout and "task-for-chunk.* (all)" in filtered.stdout


def test_tasks_run_by_workers_report_cpu_and_no_memory(tmp_path):
    """The process executor's workers (the default) cannot measure a task's peak memory: the
    report says it is unknown, and shows the CPU time the task runtime recorded."""
    instance = _run_chunked(tmp_path)
    result = drypipe("report-execution-times", "-i", str(instance), cwd=REPO, check=True)
    rows = [line.split() for line in result.stdout.split("\n\n")[0].splitlines()[1:]]
    assert len(rows) == 5 and all(row[5] == "-" and re.fullmatch(r"\d+\.\d{3}s", row[4]) for row in rows), rows
    missing = drypipe("report-execution-times", "-i", str(instance), "--filter", "nothing*", cwd=REPO)
    assert missing.returncode == 1 and "no task matches 'nothing*'" in missing.stderr


def test_html_report_in_headless_chromium(tmp_path):
    instance = _run_chunked(tmp_path)
    report = tmp_path / "report.html"
    drypipe("report-execution-times", "-i", str(instance), "--html", str(report), cwd=REPO, check=True)
    text = report.read_text()
    assert "<script" not in text and " src=" not in text and "<link" not in text  # nothing to fetch
    assert re.findall(r"https?://[^\s\"']+", text) == ["http://www.w3.org/2000/svg"]  # the SVG namespace only

    chromium = require_program("chromium")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    bars = re.findall(r'<rect class="bar state-(\w+)" data-key="([^"]+)"', dom.stdout)
    assert sorted(k for _, k in bars) == ["analyze-all-work-pieces", "prepare-chunks", "task-for-chunk.0",
                                          "task-for-chunk.1", "task-for-chunk.2"]
    assert {s for s, _ in bars} == {"completed"}
    screenshot = tmp_path / "report.png"
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1300,800", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_and_unstarted_tasks(tmp_path):
    spec = failing_pipeline(tmp_path)
    instance = tmp_path / "i"
    drypipe("run", "-p", spec, "-i", str(instance), cwd=tmp_path)
    report = tmp_path / "r.html"
    result = drypipe("report-execution-times", "-i", str(instance), "--html", str(report), cwd=tmp_path, check=True)
    rows = {line.split()[0]: line.split() for line in result.stdout.split("\n\n")[0].splitlines()[1:]}
    assert rows["after"][1:] == ["waiting", "process", "-", "-", "-"]  # never ran: no duration
    assert rows["bad"][1] == "failed.0" and float(rows["bad"][3][:-1]) >= 0.6
    html = report.read_text()
    assert html.count('<rect class="bar ') == 5  # one bar per task that ran
    assert html.count('class="bar state-failed"') == 1
