"""`drypipe status`: the table (task, state, executor, job id, duration), filters, stale tasks,
and its exit codes: 0 all completed, 1 a task failed, 3 tasks still waiting or running."""
from __future__ import annotations

import re

from tests.helpers import drypipe, write_module
from tests.ux.pipelines import failing_pipeline

TWO = '''
def gen(dsl):
    a = dsl.task(key="a").outputs(f=dsl.file("f.txt")).calls("""
    echo {text} > $f
    """)()
    yield a
    yield dsl.task(key="b").inputs(a.outputs.f).calls("cat $f\\n")()
'''


def _table(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines()[1:]:
        if re.match(r"^\d+ tasks?: ", line):
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def test_exit_codes_and_columns(tmp_path):
    spec = failing_pipeline(tmp_path)
    instance = str(tmp_path / "i")
    drypipe("prepare", "-p", spec, "-i", instance, cwd=tmp_path, check=True)
    prepared = drypipe("status", "-i", instance, cwd=tmp_path)
    assert prepared.returncode == 3, prepared.stdout  # nothing failed, nothing completed yet
    assert "6 tasks: 5 ready, 1 waiting" in prepared.stdout

    drypipe("run", "-p", spec, "-i", instance, cwd=tmp_path)
    result = drypipe("status", "-i", instance, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["task", "state", "executor", "job", "id", "duration"]
    rows = _table(result.stdout)
    assert rows["after"] == ["waiting", "process"]
    state, executor, pid, duration = rows["bad"]
    assert (state, executor) == ("failed.0", "process")
    assert pid.isdigit() and pid == (tmp_path / "i/.drypipe/bad/pid").read_text().split()[0]
    assert re.fullmatch(r"0\.[5-9]s|1\.\ds", duration), duration
    assert "6 tasks: 4 completed, 1 failed, 1 waiting" in result.stdout
    # the log as `drypipe run` shows it: relative to the current directory
    assert "bad: failed.0 (exit code 3); log: i/.drypipe/bad/out.log\n" in result.stdout
    assert "the reason it broke" in result.stdout

    only_ok = drypipe("status", "-i", instance, "--filter", "ok.*", cwd=tmp_path)
    assert only_ok.returncode == 0, only_ok.stdout  # the exit code is about the matching tasks
    assert set(_table(only_ok.stdout)) == {"ok.0", "ok.1", "ok.2", "ok.3"}

    failed = drypipe("status", "-i", instance, "--state", "failed", cwd=tmp_path)
    assert set(_table(failed.stdout)) == {"bad"} and failed.returncode == 1
    assert failed.stdout.splitlines()[2] == "1 task: 1 failed"
    # like -k, --state chooses what the summary counts and what the exit code is about
    waiting = drypipe("status", "-i", instance, "--state", "waiting", cwd=tmp_path)
    assert set(_table(waiting.stdout)) == {"after"}
    assert waiting.stdout.splitlines()[2:] == ["1 task: 1 waiting"] and waiting.returncode == 3
    completed = drypipe("status", "-i", instance, "--state", "completed", cwd=tmp_path)
    assert completed.stdout.splitlines()[-1] == "4 tasks: 4 completed" and completed.returncode == 0
    running = drypipe("status", "-i", instance, "--state", "running", cwd=tmp_path)
    assert running.stdout.splitlines() == ["no task is running"] and running.returncode == 3


def test_not_an_instance(tmp_path):
    result = drypipe("status", "-i", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"drypipe: error: {tmp_path} is not a pipeline instance (no .drypipe/)"


def test_stale_tasks_with_generator(tmp_path):
    write_module(tmp_path, "two", TWO.format(text="one"))
    instance = str(tmp_path / "i")
    drypipe("run", "-p", "two:gen", "-i", instance, cwd=tmp_path, check=True)
    fresh = drypipe("status", "-i", instance, "-p", "two:gen", cwd=tmp_path)
    assert fresh.returncode == 0 and "stale" not in fresh.stdout
    write_module(tmp_path, "two", TWO.format(text="two"))  # a's code changed: a and b are stale
    result = drypipe("status", "-i", instance, "-p", "two:gen", cwd=tmp_path)
    assert result.returncode == 3
    assert _table(result.stdout)["a"][:2] == ["completed", "(stale)"]
    assert _table(result.stdout)["b"][:2] == ["completed", "(stale)"]
    assert "2 tasks: 2 completed, 2 stale" in result.stdout
    only_stale = drypipe("status", "-i", instance, "-p", "two:gen", "--state", "stale", "-k", "a", cwd=tmp_path)
    assert only_stale.stdout.splitlines()[-1] == "1 task: 1 completed, 1 stale" and only_stale.returncode == 3
    assert drypipe("status", "-i", instance, cwd=tmp_path).returncode == 0  # without -p: not checked
