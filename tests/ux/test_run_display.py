"""What `drypipe run` shows: a live panel on a terminal (tested in a real pseudo-terminal, with
tmux and with script), plain timestamped lines without one, JSON lines, or nothing (--quiet).
Each mode must show the same counts for a pipeline with a failing task: 4 completed, 1 failed,
1 waiting on the failed one."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

from tests.helpers import REPO, drypipe, write_module
from tests.ux.pipelines import ANSI, control_characters, failing_pipeline, require_program

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def _terminal_env(**extra: str) -> dict[str, str]:
    """The environment for a run in a pseudo-terminal, without variables that make rich treat it
    as something else."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "FORCE_COLOR", "TERM", "TMUX")}
    return {**env, **extra}


def _command(tmp_path, spec: str, *extra: str) -> str:
    env = f"PYTHONPATH={shlex.quote(f'{tmp_path}{os.pathsep}{REPO}')}"
    args = " ".join(shlex.quote(a) for a in ("-m", "drypipe", "run", "-p", spec, "-i", str(tmp_path / "i"), *extra))
    return f"cd {shlex.quote(str(tmp_path))} && {env} {shlex.quote(sys.executable)} {args}"


def test_plain_lines_without_terminal(tmp_path):
    spec = failing_pipeline(tmp_path)
    result = drypipe("run", "-p", spec, "-i", str(tmp_path / "i"), cwd=tmp_path)
    assert result.returncode == 1
    assert not control_characters(result.stdout), repr(result.stdout)
    assert not control_characters(result.stderr), repr(result.stderr)
    lines = result.stdout.splitlines()
    events = [line for line in lines if STAMP.match(line)]
    assert len(events) == 5, result.stdout  # 4 completions and 1 failure
    assert any(re.search(r" bad: failed\.0 \(exit code 3\); log: \S+/\.drypipe/bad/out\.log  \[", e) for e in events), events
    # each line carries the counts at that moment: the last one has the final counts
    assert "[4/6 completed, 1 waiting, 1 failed; 0:00:0" in events[-1], events[-1]
    assert lines[-1].startswith("6 tasks in ") and lines[-1].endswith(": 4 completed, 1 failed, 1 waiting")
    assert "FAILED bad: failed.0 (exit code 3); log: " in result.stderr
    assert "    colored tool output" in result.stderr  # the log tail, escape codes removed
    assert "waiting after: upstream not completed: bad" in result.stderr


def test_live_display_in_tmux(tmp_path):
    tmux = require_program("tmux")
    spec = failing_pipeline(tmp_path)
    socket = f"drypipe-test-{os.getpid()}"
    done = tmp_path / "exit-code"
    command = f"{_command(tmp_path, spec)}; echo $? > {shlex.quote(str(done))}; sleep 120"
    subprocess.run([tmux, "-L", socket, "-f", "/dev/null", "new-session", "-d", "-x", "110", "-y", "45",
                    command], check=True, env=_terminal_env(TERM="xterm"))
    try:
        deadline = time.monotonic() + 60
        while not done.exists() or not done.read_text().strip():
            assert time.monotonic() < deadline, "drypipe run did not finish in tmux"
            time.sleep(0.2)
        screen = subprocess.run([tmux, "-L", socket, "capture-pane", "-p", "-t", "0"], capture_output=True,
                                text=True, check=True).stdout
    finally:
        subprocess.run([tmux, "-L", socket, "kill-server"], capture_output=True)
    assert done.read_text().strip() == "1"
    lines = screen.splitlines()
    header = next(i for i, line in enumerate(lines) if re.search(r"waiting\s+ready\s+running\s+completed", line))
    names = re.findall(r"[a-z]+", lines[header])
    numbers = [int(n) for n in re.findall(r"\d+", lines[header + 1])]
    assert dict(zip(names, numbers)) == {"waiting": 1, "ready": 0, "running": 0, "completed": 4, "failed": 1,
                                         "cached": 0}, screen
    assert "4/6 tasks  finished in 0:00:0" in screen, screen
    # a row per group of tasks (key patterns): done, failed, running, total
    assert re.search(r"│ ok\.\*\s+4\s+0\s+0\s+4\s+│", screen) and re.search(r"│ bad\s+0\s+1\s+0\s+1\s+│", screen), screen
    assert "failed (1), last first" in screen and "bad: failed.0 (exit code 3)" in screen, screen
    assert "log: i/.drypipe/bad/out.log" in screen, screen  # relative to the current directory
    assert "the reason it broke" in screen and "colored tool output" in screen, screen
    assert "6 tasks in " in screen, screen  # the summary, after the panel


def test_live_display_under_script(tmp_path):
    """`script` gives the run a pseudo-terminal too: the output is drawn with escape codes
    (a live display), and its last frame has the final counts."""
    script = require_program("script")
    spec = failing_pipeline(tmp_path)
    result = subprocess.run([script, "-qec", _command(tmp_path, spec), "/dev/null"], capture_output=True,
                            timeout=120, env=_terminal_env(COLUMNS="100", LINES="40", TERM="xterm"))
    out = result.stdout.decode("utf-8", "replace")
    assert result.returncode == 1, out
    assert "\x1b[" in out  # cursor movements and colors: the live display, not plain lines
    plain = ANSI.sub("", out).replace("\r", "")
    final = plain[plain.rindex("waiting  ready  running"):]
    assert re.search(r"\n\S*\s+1\s+0\s+0\s+4\s+1\s+0\s", final), final
    assert "FAILED bad: failed.0 (exit code 3)" in plain


def test_json_log(tmp_path):
    spec = failing_pipeline(tmp_path)
    result = drypipe("run", "-p", spec, "-i", str(tmp_path / "i"), "--json-log", cwd=tmp_path)
    assert result.returncode == 1
    objects = [json.loads(line) for line in result.stdout.splitlines()]  # every line is JSON
    *events, summary = objects
    assert {e["event"] for e in events} == {"state"}
    assert all(e["executor"] == "process" for e in events)
    failure = next(e for e in events if e["new"] == "failed.0")
    assert failure["task"] == "bad" and failure["reason"] == "state.failed.0 exit code 3"
    assert failure["log"].endswith("/.drypipe/bad/out.log")
    assert events[-1]["counts"] == {"waiting": 1, "ready": 0, "running": 0, "completed": 4, "failed": 1, "cached": 0}
    assert summary["event"] == "summary" and summary["succeeded"] is False
    assert summary["counts"] == {"completed": 4, "failed": 1, "waiting": 1}
    assert list(summary["failed"]) == ["bad"] and summary["blocked"] == {"after": ["bad"]}


def test_quiet(tmp_path):
    spec = failing_pipeline(tmp_path)
    result = drypipe("run", "-p", spec, "-i", str(tmp_path / "i"), "--quiet", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("FAILED bad: failed.0 (exit code 3)")


# Four failing tasks numbered so that text order is not natural order, and one downstream of all.
NUMBERED = """
def gen(dsl):
    upstream = {}
    for n in (17, 3, 10, 4):
        upstream[f"n{n}"] = dsl.task(key=f"call-S{n}").outputs(n=int).calls("exit 2\\n")()
        yield upstream[f"n{n}"]
    yield dsl.task(key="report").inputs(**{k: t.outputs.n for k, t in upstream.items()}).calls("true\\n")()
"""


def test_keys_in_natural_order_and_counts_in_agreement(tmp_path):
    write_module(tmp_path, "numbered", NUMBERED)
    instance = str(tmp_path / "i")
    natural = "call-S3, call-S4, call-S10, call-S17"
    dry = drypipe("run", "-p", "numbered:gen", "-i", instance, "--dry-run", cwd=tmp_path, check=True)
    assert f"report\twould run\tafter {natural}" in dry.stdout.splitlines(), dry.stdout
    assert dry.stdout.splitlines()[-1] == "dry run, nothing changed: 5 would run", dry.stdout

    result = drypipe("run", "-p", "numbered:gen", "-i", instance, cwd=tmp_path)
    assert result.returncode == 1
    assert f"waiting report: upstream not completed: {natural}" in result.stderr, result.stderr
    assert re.findall(r"^FAILED (\S+):", result.stderr, re.M) == natural.split(", "), result.stderr

    dry = drypipe("run", "-p", "numbered:gen", "-i", instance, "--dry-run", cwd=tmp_path, check=True)
    assert dry.stdout.splitlines()[-1] == "dry run, nothing changed: 4 stay failed, 1 would wait", dry.stdout
    why = drypipe("why", "-p", "numbered:gen", "-i", instance, "-k", "call-*", cwd=tmp_path, check=True)
    assert re.findall(r"^(call-S\d+) is ", why.stdout, re.M) == natural.split(", "), why.stdout
