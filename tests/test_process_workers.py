"""The process executor's workers: one long-lived bash per slot runs the task scripts, each in
a forked subshell that is a process group of its own.  The task script stays the file that
runs by hand; `task kill`, a task killed outright and a killed orchestrator behave as they do
for a task script started as a process of its own."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from drypipe.proc import start_time
from tests.helpers import REPO, drypipe, state_of, wait_until, write_module
from tests.reliability.support import start_run

MANY = '''
def gen(dsl):
    for i in range(20):
        yield dsl.task(key=f"t{i}").outputs(f=dsl.file("f")).calls("echo $__task_key > $f\\n")()
'''

SLEEPER = '''
def gen(dsl):
    yield dsl.task(key="sleeper").calls("""
        sleep 300 &
        echo $! > "$__task_output_dir/background.pid"
        sleep 301
    """)()
'''


def test_twenty_tasks_run_in_two_bash_processes(tmp_path):
    write_module(tmp_path, "many", MANY)
    instance = tmp_path / "i"
    log = tmp_path / "strace.log"
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(log), "python", "-m", "drypipe", "run",
                    "-p", "many:gen", "-i", str(instance), "--max-local-jobs", "2", "-q"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)
    programs = re.findall(r'execve\("([^"]+)"', log.read_text())
    assert sum(p.endswith("/bash") for p in programs) <= 2, programs
    assert all(state_of(instance, f"t{i}") == "completed" for i in range(20))
    assert (instance / "output/t7/f").read_text() == "t7\n"


def _group_members(pgid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] not in ("Z", "X") and fields[2] == str(pgid):
            members.append(int(name))
    return members


def _running_sleeper(tmp_path: Path) -> tuple[subprocess.Popen, Path, int]:
    write_module(tmp_path, "sleeper", SLEEPER)
    instance = tmp_path / "i"
    run = start_run(tmp_path, "run", "-p", "sleeper:gen", "-i", str(instance), "-q")
    background = instance / "output/sleeper/background.pid"
    wait_until(lambda: background.exists() and background.read_text().strip(), what="the step to start")
    pid = int((instance / ".drypipe/sleeper/pid").read_text().split()[0])
    assert _group_members(pid), "the task is not a process group of its own"
    return run, instance, pid


def test_task_kill_stops_every_process_of_the_task(tmp_path):
    run, instance, pid = _running_sleeper(tmp_path)
    background = int((instance / "output/sleeper/background.pid").read_text())
    killed = subprocess.run([str(instance / ".drypipe/sleeper/task"), "kill"], capture_output=True, text=True,
                            timeout=30)
    assert killed.returncode == 0 and "killed.0" in killed.stdout, killed
    assert run.wait(timeout=30) == 1
    assert state_of(instance, "sleeper") == "killed.0"
    wait_until(lambda: start_time(background) is None and not _group_members(pid), what="the steps to stop")


def test_a_task_killed_outright_leaves_no_process_behind(tmp_path):
    """SIGKILL of the task's subshell: the orchestrator hears it from the worker, records the
    task as killed, and stops the steps left in its process group."""
    run, instance, pid = _running_sleeper(tmp_path)
    os.kill(pid, signal.SIGKILL)
    assert run.wait(timeout=30) == 1
    assert state_of(instance, "sleeper") == "killed.0"
    assert not _group_members(pid)
    log = (instance / ".drypipe/sleeper/drypipe.log").read_text()
    assert "task script killed by SIGKILL" in log and f"task script {pid} is dead: stopped its leftover" in log, log


def test_tasks_outlive_a_killed_orchestrator_and_are_adopted(tmp_path):
    run, instance, pid = _running_sleeper(tmp_path)
    run.kill()
    run.wait(timeout=10)
    assert start_time(pid) is not None, "the task died with the orchestrator"
    again = start_run(tmp_path, "run", "-p", "sleeper:gen", "-i", str(instance), "-q")
    wait_until(lambda: f"run started: pid {again.pid}" in _run_log(instance), what="the second run to start")
    time.sleep(1)  # in its loop, watching the task
    subprocess.run([str(instance / ".drypipe/sleeper/task"), "kill"], capture_output=True, timeout=30)
    assert again.wait(timeout=30) == 1
    log = (instance / ".drypipe/sleeper/drypipe.log").read_text()
    assert log.count("state.step-started.0") == 1, log  # started once, never again


def _run_log(instance: Path) -> str:
    path = instance / ".drypipe/.orchestrator.log"
    return path.read_text() if path.exists() else ""


PIPE = '''
def gen(dsl):
    yield dsl.task(key="pipe").outputs(f=dsl.file("status")).calls("""
        yes | head -n 1 > /dev/null
        echo "${PIPESTATUS[0]}" > "$f"
    """)()
'''


def test_steps_get_the_default_signals_of_a_shell(tmp_path):
    """Python ignores SIGPIPE; a task started from it does not: `yes | head` ends by SIGPIPE
    (141), as on the command line, not by a write error."""
    write_module(tmp_path, "pipe", PIPE)
    instance = tmp_path / "i"
    drypipe("run", "-p", "pipe:gen", "-i", str(instance), cwd=tmp_path, check=True)
    assert (instance / "output/pipe/status").read_text() == "141\n"
    assert "Broken pipe" not in (instance / ".drypipe/pipe/out.log").read_text()
