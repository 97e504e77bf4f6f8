"""The HTML report of `drypipe report-execution-times` for a real run of 1,000 tasks with
failures, opened in headless Chromium: the summary and the failures are above the fold, the
timeline has one lane per group of tasks, the page's height stays bounded; groups' statistics
are over completed runs; each task's CPU time and peak memory are measured by wait4."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.helpers import drypipe, write_module
from tests.ux.pipelines import require_program

PIPELINE = '''
def gen(dsl):
    for i in range(400):  # 6 failures; a failure takes longer than any completed task
        yield dsl.task(key=f"fetch.{i}").calls("sleep 0.4; exit 1\\n" if i % 67 == 7 else "true\\n")()
    for i in range(550):  # 6 failures
        yield dsl.task(key=f"align-{i}").calls("sleep 0.4; exit 2\\n" if i % 92 == 11 else "true\\n")()
    yield dsl.task(key="report-0.summary").calls(
        "python3 -c 'x = bytearray(150 * 1024 * 1024); x[::4096] = b\\"1\\" * len(x[::4096])'\\n")()
    for i in range(1, 50):
        yield dsl.task(key=f"report-{i}.summary").calls("true\\n")()
'''
FAILED = {f"fetch.{i}" for i in range(400) if i % 67 == 7} | {f"align-{i}" for i in range(550) if i % 92 == 11}

# Measures the page as a user sees it (1280x800), then writes them into the DOM for --dump-dom.
PROBE = """<script>
const box = e => { const b = e.getBoundingClientRect(); return {top: b.top + scrollY, bottom: b.bottom + scrollY,
                                                             width: b.width}; };
const found = {
  viewport: innerHeight,
  height: document.documentElement.scrollHeight,
  summary: box(document.querySelector('.summary li.bad')),
  shown: [...document.querySelectorAll('#failures tbody tr')].filter(tr => tr.checkVisibility())
           .map(tr => Object.assign({key: tr.cells[0].textContent}, box(tr))),
  listed: [...document.querySelectorAll('#failures tbody tr')].map(tr => tr.cells[0].textContent),
  bars: [...document.querySelectorAll('rect.bar.state-failed')]
          .map(e => Object.assign({key: e.getAttribute('data-key')}, box(e))),
  lanes: [...document.querySelectorAll('g.lane')].map(g => g.getAttribute('data-group')),
  timeline: box(document.querySelector('svg.timeline')),
};
const pre = document.createElement('pre');
pre.id = 'probe';
pre.textContent = JSON.stringify(found);
document.body.appendChild(pre);
</script>"""


@pytest.fixture(scope="module")
def thousand(tmp_path_factory):
    """An instance where a real pipeline of 1,000 tasks ran, 12 of them failing."""
    code = tmp_path_factory.mktemp("scale")
    write_module(code, "many", PIPELINE)
    instance = code / "i"
    # each task script a process of its own: its peak memory is measured (workers cannot)
    result = drypipe("run", "-p", "many:gen", "-i", str(instance), "-q", cwd=code, timeout=300,
                     env={"DRYPIPE_PROCESS_WORKERS": "0"})
    assert result.returncode == 1, result.stderr[-2000:]
    return code, instance


def _table(text):
    return {line.split()[0]: line.split() for line in text.splitlines()[1:]}


def test_group_statistics_are_over_completed_runs_and_memory_is_measured(thousand):
    code, instance = thousand
    out = drypipe("report-execution-times", "-i", str(instance), cwd=code, check=True).stdout
    tasks, groups = (_table(part) for part in out.split("\n\n"))
    assert {k for k, row in tasks.items() if row[1].startswith("failed")} == FAILED
    seconds = lambda text: float(text[:-1])  # noqa: E731 ("0.004s"; every task here takes under a minute)
    fetch = groups["fetch.*"]
    assert fetch[1] == "394" and fetch[-2:] == ["6", "400"]  # completed ... failed, count
    completed = [seconds(row[3]) for key, row in tasks.items() if key.startswith("fetch.") and key not in FAILED]
    assert seconds(fetch[4]) == pytest.approx(max(completed), abs=1e-3)  # max over completed runs only
    assert min(seconds(tasks[k][3]) for k in FAILED) > max(completed)  # ... which the failures would change
    assert groups["align-*"][1] == "544" and groups["align-*"][-2:] == ["6", "550"]

    rss = {key: row[5] for key, row in tasks.items()}
    assert all(re.fullmatch(r"\d+\.\dMiB", v) for v in rss.values()), set(rss.values())
    assert float(rss["report-0.summary"][:-3]) >= 150  # the task's own 150 MiB, measured
    assert float(rss["report-1.summary"][:-3]) < 150
    cpus = [round(seconds(row[4]) * 1000) for row in tasks.values()]
    assert sum(1 for ms in cpus if ms % 10) > len(cpus) / 2  # finer than the 10 ms of clock ticks


def test_1000_task_report_shows_failures_above_the_fold(thousand, tmp_path):
    code, instance = thousand
    report = tmp_path / "report.html"
    drypipe("report-execution-times", "-i", str(instance), "--html", str(report), cwd=code, check=True)
    text = report.read_text()
    assert "<script" not in text  # the report itself runs nothing; the probe is added to a copy
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", PROBE + "</body>"))

    chromium = require_program("chromium")
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
         "--window-size=1280,800", "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000",
         "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, dom.stdout[-2000:]
    found = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))

    fold = found["viewport"]
    assert fold >= 600, found["viewport"]  # 800 less the window's own bars
    assert found["summary"]["bottom"] < fold  # "12 failed"
    assert len(found["shown"]) == 10 and all(row["bottom"] < fold for row in found["shown"]), found["shown"]
    assert set(found["listed"]) == FAILED  # the 2 others one click away (<details>)
    assert found["height"] < 2500, found["height"]  # one row per task would be over 16,000 px
    assert found["lanes"] == ["fetch.*", "align-*", "report-*.summary"]
    assert found["timeline"]["bottom"] - found["timeline"]["top"] < 150
    assert {bar["key"] for bar in found["bars"]} == FAILED  # every failure drawn in the timeline...
    assert all(bar["width"] >= 2 for bar in found["bars"])  # ... wide enough to see
    assert "12</b>failed" in text.replace("\n", "")
