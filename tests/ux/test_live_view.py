"""Watching a run in a terminal: the live panel (running tasks by name with their elapsed time,
a row per group of tasks, failures with their log), the capped summary at the end, Ctrl-C once
(the tasks keep running, the next run adopts them) and twice (the tasks are stopped), and the
run log.  Each test drives `drypipe run` in a real terminal (a tmux pane, 80 columns) and
asserts on the screen a user reads."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, drypipe, state_of, wait_until, write_module
from tests.ux.pipelines import require_program

# Runs until the file `release` appears next to the instance (60 s at most).
WAIT = 'for i in $(seq 600); do [ -e "$__pipeline_instance_dir/../release" ] && break; sleep 0.1; done'

# A task that waits for `release`; 12 failing `align-S<n>` tasks (one a Python call that
# raises); three that complete.
LIVE = f'''
from dry_pipe import DryPipe


@DryPipe.python_call()
def check_sample(sample_id: str) -> dict:
    return _validate(sample_id)


def _validate(sample_id):
    raise ValueError(f"sample {{sample_id}} has no reads")


def gen(dsl):
    yield dsl.task(key="slow-1").calls({WAIT!r} + "\\n")()
    yield dsl.task(key="align-S0").inputs(sample_id="S0").calls(check_sample)()
    for n in (1, 2, 3, 5, 7, 9, 12, 17, 23, 31, 40):
        yield dsl.task(key=f"align-S{{n}}").calls(f"echo 'no reads for S{{n}}' >&2; exit 2\\n")()
    for n in range(3):
        yield dsl.task(key=f"ok.{{n}}").calls("true\\n")()
'''

# Only the task that waits for `release`, and one downstream of it.
SLOW = f'''
def gen(dsl):
    slow = dsl.task(key="slow-1").outputs(n=int).calls("echo started >> started.txt; " + {WAIT!r} + "; export n=1\\n")()
    yield slow
    yield dsl.task(key="after").inputs(slow.outputs.n).calls("true\\n")()
'''


@pytest.fixture(autouse=True)
def release_at_the_end(tmp_path):
    """Whatever a test asserts, its waiting tasks end with it."""
    yield
    (tmp_path / "release").touch()


class Terminal:
    """`drypipe run` in a tmux pane of 80 columns: what the screen shows, keys sent to it."""

    def __init__(self, tmp_path: Path, *args: str):
        self.tmux = require_program("tmux")
        self.socket = f"drypipe-live-{os.getpid()}-{id(self)}"
        self.exit_file = tmp_path / "exit-code"
        env = {k: v for k, v in os.environ.items()
               if k not in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "FORCE_COLOR", "TMUX", "COLUMNS", "LINES")}
        env.update(TERM="xterm", PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
        command = (f"cd {shlex.quote(str(tmp_path))} && {shlex.join([sys.executable, '-m', 'drypipe', 'run', *args])}"
                   f"; echo $? > {shlex.quote(str(self.exit_file))}; sleep 300")
        subprocess.run([self.tmux, "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "60",
                        command], check=True, env=env)

    def screen(self) -> str:
        """The visible screen and the lines scrolled above it."""
        return subprocess.run([self.tmux, "-L", self.socket, "capture-pane", "-p", "-S", "-500", "-t", "0"],
                              capture_output=True, text=True, check=True).stdout

    def wait_for(self, *patterns: str, timeout: float = 30) -> str:
        """The screen once every pattern (a regular expression) is found on it."""
        def found() -> str | None:
            screen = self.screen()
            return screen if all(re.search(p, screen) for p in patterns) else None

        return wait_until(found, timeout, f"{patterns} on the screen")

    def ctrl_c(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "send-keys", "-t", "0", "C-c"], check=True)

    def exit_code(self, timeout: float = 60) -> int:
        return int(wait_until(lambda: self.exit_file.exists() and self.exit_file.read_text().strip(), timeout,
                              "drypipe run to exit"))

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], capture_output=True)
        socket = Path(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}", self.socket)
        socket.unlink(missing_ok=True)  # kill-server leaves it behind


def _natural(key: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


def _last_panel(screen: str) -> list[str]:
    lines = screen.splitlines()
    top = max(i for i, line in enumerate(lines) if line.startswith("╭─ drypipe run"))
    bottom = next(i for i in range(top, len(lines)) if lines[i].startswith("╰"))
    return lines[top:bottom + 1]


def _pid_alive(instance: Path, key: str) -> bool:
    pid = int((instance / ".drypipe" / key / "pid").read_text().split()[0])
    return subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0


def test_live_panel_and_summary(tmp_path):
    write_module(tmp_path, "live", LIVE)
    terminal = Terminal(tmp_path, "-p", "live:gen", "-i", "i")
    try:
        screen = terminal.wait_for(r"failed \(12\)", r"3/16 tasks", r"│\s+slow-1\s+0:00:0[1-9]")
        panel = _last_panel(screen)
        (tmp_path / "release").touch()
        assert terminal.exit_code() == 1
        final = terminal.screen()
    finally:
        terminal.close()
    text = "\n".join(panel)
    # readable at 80 columns: nothing wraps, every row sits between the borders
    assert all(len(line) <= 80 and line[0] in "╭│╰" and line[-1] in "╮│╯" for line in panel), text
    # a row per group of tasks: done, failed, running, total, longest running time
    assert re.search(r"│ align-S\*\s+0\s+12\s+0\s+12\s+│", text), text
    assert re.search(r"│ slow-\*\s+0\s+0\s+1\s+1\s+0:00:0\d\s+│", text), text
    assert re.search(r"│ ok\.\*\s+3\s+0\s+0\s+3\s+│", text), text
    # the running task by name, with its elapsed time
    assert "running, longest first (1)" in text and re.search(r"│\s+slow-1\s+0:00:0\d\s+│", text), text
    # the last failures with their log, relative to the current directory, and how many more
    assert "failed (12), last first" in text, text
    assert re.search(r"log: i/\.drypipe/align-S\d+/out\.log", text), text
    assert "+9 more (drypipe status -i i --state failed)" in text, text

    summary = final[final.index("16 tasks in "):]
    failed = re.findall(r"^FAILED (\S+): ", summary, re.M)
    assert failed == ["align-S0", "align-S1", "align-S2", "align-S3", "align-S5", "align-S7", "align-S9",
                      "align-S12", "align-S17", "align-S23"], summary  # the first 10, in natural order
    assert "FAILED align-S23: failed.0 (exit code 2); log: i/.drypipe/align-S23/out.log" in summary
    assert "+2 more failed (drypipe status -i i --state failed)" in summary, summary
    assert "next: fix the cause, then  drypipe run -p live:gen -i i --restart-failed" in summary, summary
    assert "drypipe status -i i --state failed" in summary
    # a Python call's failure: its traceback from the top, with the user's frames only
    excerpt = summary[summary.index("FAILED align-S0"):summary.index("FAILED align-S1:")]
    assert "    Traceback (most recent call last):" in excerpt, excerpt
    assert "ValueError: sample S0 has no reads" in excerpt, excerpt
    out_log = (tmp_path / "i/.drypipe/align-S0/out.log").read_text()
    frames = re.findall(r'File "([^"]+)"', out_log)
    assert frames and all(f.endswith("/live.py") for f in frames), out_log
    assert "in check_sample" in out_log and "in _validate" in out_log, out_log


def test_ctrl_c_once_leaves_the_tasks_running_and_the_next_run_adopts_them(tmp_path):
    write_module(tmp_path, "slow", SLOW)
    instance = tmp_path / "i"
    terminal = Terminal(tmp_path, "-p", "slow:gen", "-i", "i")
    try:
        terminal.wait_for(r"│\s+slow-1\s+0:00:0\d")
        terminal.ctrl_c()
        assert terminal.exit_code() == 130
        screen = terminal.screen()
    finally:
        terminal.close()
    assert "interrupted: 1 task keeps running (slow-1)" in screen, screen
    assert "adopt them:  drypipe run -p slow:gen -i i  (run it again)" in screen, screen
    assert "stop them:   drypipe kill -i i" in screen, screen
    assert "Press Ctrl-C again within 3 s to stop them now." in screen, screen
    assert re.search(r"stopped \(Ctrl-C\) after 0:00:0\d", screen), screen  # not "finished"
    assert "Aborted!" not in screen, screen
    assert state_of(instance, "slow-1") == "step-started.0" and _pid_alive(instance, "slow-1")

    # the next run adopts the task, still running, and goes on once it completes
    run_log_path = instance / ".drypipe/.orchestrator.log"
    second_run = subprocess.Popen([sys.executable, "-m", "drypipe", "-v", "run", "-p", "slow:gen", "-i", "i"],
                                  cwd=tmp_path, env=dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: run_log_path.read_text().count(" run started: ") == 2, what="the second run to start")
    (tmp_path / "release").touch()
    out, err = second_run.communicate(timeout=60)
    assert second_run.returncode == 0, out + err
    assert "task slow-1: adopted (step-started.0)" in err, err
    assert state_of(instance, "after") == "completed"
    assert (instance / "output/slow-1/started.txt").read_text() == "started\n"  # adopted, not started again

    # the run log: both runs, their events one line each, how each ended
    run_log = run_log_path.read_text().splitlines()
    starts = [i for i, line in enumerate(run_log) if " run started: pid " in line]
    assert len(starts) == 2 and run_log[starts[0]].endswith("drypipe run -p slow:gen -i i"), run_log
    first, second = run_log[:starts[1]], run_log[starts[1]:]
    assert any(line.endswith(" slow-1 ready -> launched") for line in first), first
    assert first[-1].endswith("run stopped (Ctrl-C); 2 tasks: 1 running, 1 waiting"), first
    assert any(line.endswith(" slow-1 step-started.0 -> completed") for line in second), second
    assert second[-1].endswith("run ended; 2 tasks: 2 completed"), second
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \d+\.\d{3} ", line) for line in run_log), run_log


def test_ctrl_c_twice_stops_the_tasks(tmp_path):
    write_module(tmp_path, "slow", SLOW)
    instance = tmp_path / "i"
    terminal = Terminal(tmp_path, "-p", "slow:gen", "-i", "i")
    try:
        terminal.wait_for(r"│\s+slow-1\s+0:00:0\d")
        terminal.ctrl_c()
        terminal.wait_for("Press Ctrl-C again within 3 s")
        terminal.ctrl_c()
        assert terminal.exit_code() == 130
        screen = terminal.screen()
    finally:
        terminal.close()
    assert "second Ctrl-C: stopped 1 task\n  slow-1: killed.0" in screen, screen
    assert "Aborted!" not in screen, screen
    assert state_of(instance, "slow-1") == "killed.0" and not _pid_alive(instance, "slow-1")
    run_log = (instance / ".drypipe/.orchestrator.log").read_text()
    assert "stopping the process tasks: slow-1" in run_log, run_log
    assert re.search(r" slow-1 \S+ -> killed\.0 \(received SIGTERM\); log: ", run_log), run_log


def test_quiet_and_json_log_exclude_each_other(tmp_path):
    write_module(tmp_path, "slow", SLOW)
    result = drypipe("run", "-p", "slow:gen", "-i", "i", "--quiet", "--json-log", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("drypipe: error: --quiet and --json-log exclude each other"), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "i").exists()


def test_sigint_without_a_terminal_ends_the_run_at_once(tmp_path):
    """A SIGINT from a script (no terminal): the same message without the second chance, exit 130."""
    write_module(tmp_path, "slow", SLOW)
    instance = tmp_path / "i"
    run = subprocess.Popen([sys.executable, "-m", "drypipe", "run", "-p", "slow:gen", "-i", "i"], cwd=tmp_path,
                           env=dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: state_of(instance, "slow-1") == "step-started.0", what="slow-1 to start")
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=2)  # no 3 s wait for a second Ctrl-C
    assert run.returncode == 130, out + err
    assert err.splitlines() == ["interrupted: 1 task keeps running (slow-1)",
                                "  adopt them:  drypipe run -p slow:gen -i i  (run it again)",
                                "  stop them:   drypipe kill -i i",
                                "  what ran:    i/.drypipe/.orchestrator.log"], err
    assert _pid_alive(instance, "slow-1")


# Four tasks that fail in a first run; in the second, one that fails once and then completes
# (a retry) and one that waits for `release` (killed by `drypipe kill`).
AGAIN = f'''
from dry_pipe import TaskConf
FLAKY = "n=$(( $(cat ../attempts 2>/dev/null || echo 0) + 1 )); echo $n > ../attempts; (( n > 1 ))\\n"

def gen(dsl):
    for n in (1, 2, 3, 4):
        yield dsl.task(key=f"bad-{{n}}").calls("echo 'no reads' >&2; exit 2\\n")()
    yield dsl.task(key="later-flaky", task_conf=TaskConf(retries=1)).calls(FLAKY)()
    yield dsl.task(key="later-slow").calls({WAIT!r} + "\\n")()
'''


def test_live_panel_lists_earlier_failures_shows_retries_apart_and_counts_killed_tasks_as_killed(tmp_path):
    write_module(tmp_path, "again", AGAIN)
    first = drypipe("run", "-p", "again:gen", "-i", "i", "--until", "later-*", cwd=tmp_path)
    assert first.returncode == 1 and "4 failed" in first.stdout, first.stdout
    terminal = Terminal(tmp_path, "-p", "again:gen", "-i", "i")
    try:
        running = _last_panel(terminal.wait_for(r"running, longest first \(1\)", r"5/6 tasks|1/6 tasks"))
        drypipe("kill", "-i", "i", cwd=tmp_path, check=True)
        assert terminal.exit_code() == 1
        screen = terminal.screen()
    finally:
        terminal.close()
    text = "\n".join(running)
    # the failures of the first run are listed, the last first, with their log
    assert "failed (4), last first" in text, text
    listed = re.findall(r"│\s+(bad-\d): failed\.0 \(exit code 2\)", text)
    assert listed == ["bad-4", "bad-3", "bad-2"] and "log: i/.drypipe/bad-4/out.log" in text, text
    assert "+1 more (drypipe status -i i --state failed)" in text, text
    # the retry is neither a failure nor a log line above the panel
    assert "WARNING" not in screen and "follows" not in screen, screen
    final = "\n".join(_last_panel(screen))
    assert re.search(r"│\s+waiting\s+ready\s+running\s+completed\s+failed\s+cached\s+killed\s+│", final), final
    assert re.search(r"│\s+0\s+0\s+0\s+1\s+4\s+0\s+1\s+│", final), final
    assert "failed (4), killed (1), last first" in final and "later-slow: killed.0" in final, final
    summary = screen[screen.index("6 tasks in "):]
    assert summary.splitlines()[0].endswith(": 1 completed, 4 failed, 1 killed"), summary
    assert re.search(r"^KILLED later-slow: killed\.0 \(received SIGTERM\)", summary, re.M), summary
    assert re.search(r"^6 tasks: 1 completed, 4 failed, 1 killed, 1 retry$",
                     drypipe("status", "-i", "i", cwd=tmp_path).stdout, re.M)
