"""One CLI: options checked, -v anywhere, tasks chosen with -k/--state in every command, one
error prefix, the exit codes of docs/cli.md, sectioned help, completion of task keys and
states, running tasks shown with their step and time, `./task tail` that returns."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, drypipe, state_of, wait_until, write_module
from tests.ux.pipelines import failing_pipeline

TWO = '''
def gen(dsl):
    a = dsl.task(key="a").outputs(f=dsl.file("f.txt")).calls("echo one > $f\\n")()
    yield a
    yield dsl.task(key="b").inputs(a.outputs.f).calls("cat $f\\n")()
'''

# Three steps; the second waits for the file `go` in the instance dir (the steps run in
# output/slow/), so the test sees it running.
STEPS = '''
def gen(dsl):
    yield dsl.task(key="slow").calls("echo first\\n").calls("""
    echo second
    while [ ! -e ../../go ]; do sleep 0.05; done
    """).calls("echo third\\n")()
'''


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """An instance whose two tasks a and b completed."""
    root = tmp_path_factory.mktemp("done")
    write_module(root, "two", TWO)
    drypipe("run", "-p", "two:gen", "-i", str(root / "i"), cwd=root, check=True)
    return root


@pytest.fixture(scope="module")
def failed(tmp_path_factory) -> Path:
    """An instance with a failed task, a waiting one and four completed (tests.ux.pipelines)."""
    root = tmp_path_factory.mktemp("failed")
    drypipe("run", "-p", failing_pipeline(root), "-i", str(root / "i"), cwd=root)
    return root


def _one_error_line(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("drypipe: error: "), result.stderr
    assert "Error:" not in result.stderr and "Usage:" not in result.stderr
    return lines[0]


def _table_keys(stdout: str) -> set[str]:
    return {line.split()[0] for line in stdout.splitlines()[1:] if line and not re.match(r"\d+ tasks: ", line)}


# -- options are checked -------------------------------------------------------------------------

def test_status_options_are_checked(failed):
    i = str(failed / "i")
    bogus = drypipe("status", "-i", i, "--state", "bogus", cwd=failed)
    assert bogus.returncode == 2
    assert "Invalid value for '--state': 'bogus' is not one of 'waiting', " in _one_error_line(bogus)

    stale = drypipe("status", "-i", i, "--state", "stale", cwd=failed)
    assert stale.returncode == 2 and stale.stdout == ""
    assert "--state stale needs the pipeline" in _one_error_line(stale) and "pass -p" in stale.stderr

    for option in ("--filter", "-k"):
        nomatch = drypipe("status", "-i", i, option, "nomatch*", cwd=failed)
        assert nomatch.returncode == 1 and nomatch.stdout == ""  # 1: an error (docs/cli.md)
        assert _one_error_line(nomatch) == f"drypipe: error: no task matches 'nomatch*' in {i}"


# -- -v anywhere ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["-vv", "status"], ["status", "-vv"], ["status", "-v", "-v"],
                                  ["-v", "status", "-v"], ["--vv", "status"], ["status", "--vv"]])
def test_verbosity_before_or_after_the_command(tmp_path, args):
    result = drypipe(*args, "-i", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr  # -vv: the traceback
    assert result.stderr.splitlines()[-1] == f"drypipe: error: {tmp_path} is not a pipeline instance (no .drypipe/)"


def test_one_v_gives_no_traceback_and_help_shows_no_old_spellings(tmp_path):
    result = drypipe("status", "-v", "-i", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    for args in ([], ["status"]):
        help_text = drypipe(*args, "--help", cwd=tmp_path, check=True).stdout
        assert "-v, --verbose" in help_text
        assert "--vv" not in help_text and "--v " not in help_text and "--v," not in help_text


# -- one way to choose tasks ---------------------------------------------------------------------

def test_every_command_chooses_tasks_with_k_and_state(failed):
    i = str(failed / "i")
    listed = drypipe("list-states", "-i", i, "-k", "ok.*", "--key", "bad", "--state", "completed", cwd=failed)
    assert listed.stdout.splitlines() == [f"ok.{n}\tcompleted" for n in range(4)], listed.stderr
    failures = drypipe("list-states", "-i", i, "--state", "failed", cwd=failed, check=True)
    assert failures.stdout == "bad\tfailed.0\n"

    status = drypipe("status", "-i", i, "-k", "ok.1", "-k", "after", cwd=failed)
    assert _table_keys(status.stdout) == {"ok.1", "after"} and status.returncode == 3

    report = drypipe("report-execution-times", "-i", i, "-k", "ok.1", "-k", "ok.2", cwd=failed, check=True)
    assert {line.split()[0] for line in report.stdout.splitlines()[1:3]} == {"ok.1", "ok.2"}
    completed = drypipe("report-execution-times", "-i", i, "--state", "completed", cwd=failed, check=True)
    assert "bad" not in completed.stdout and "ok.3" in completed.stdout

    kill = drypipe("kill", "-i", i, "-k", "ok.*", "-k", "bad", cwd=failed, check=True)
    assert kill.stdout == "no running task matches\n"

    why = drypipe("why", "-i", i, "-p", "failing:gen", "-k", "ok.0", "-k", "bad", cwd=failed, check=True)
    assert why.stdout.splitlines()[0].startswith("bad is failed.0")
    assert why.stdout.splitlines()[1].startswith("ok.0 is up to date: signature ")
    only_failed = drypipe("why", "-i", i, "-p", "failing:gen", "--state", "failed", cwd=failed, check=True)
    assert len(only_failed.stdout.splitlines()) == 1 and only_failed.stdout.startswith("bad is failed.0")


def test_old_spellings_still_work_and_are_hidden(failed):
    i = str(failed / "i")
    assert _table_keys(drypipe("status", "-i", i, "--filter", "ok.*", cwd=failed).stdout) == {f"ok.{n}" for n in range(4)}
    assert drypipe("list-states", "-i", i, "--task-key", "bad", cwd=failed).stdout == "bad\tfailed.0\n"
    report = drypipe("report-execution-times", "-i", i, "--task-key", "bad", "--filter", "ok.0", cwd=failed, check=True)
    assert {line.split()[0] for line in report.stdout.splitlines()[1:3]} == {"bad", "ok.0"}
    why = drypipe("why", "-i", i, "-p", "failing:gen", "bad", cwd=failed, check=True)
    assert len(why.stdout.splitlines()) == 1 and why.stdout.startswith("bad is failed.0")
    for command in ("status", "list-states", "kill", "report-execution-times", "why"):
        help_text = drypipe(command, "--help", cwd=failed, check=True).stdout
        assert "-k, --key GLOB" in help_text and "--state STATE" in help_text, command
        assert "--filter" not in help_text and "--task-key" not in help_text, command
        assert "TASK_KEY" not in help_text.splitlines()[0], command


# -- one error prefix ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["status", "-i", "{t}"], "{t} is not a pipeline instance (no .drypipe/)"),  # was a ClickException
    (["nosuch"], "No such command 'nosuch'. (see 'drypipe --help')"),
    (["--bogus"], "No such option '--bogus'"),
    (["status", "--bogus"], "No such option '--bogus'"),
    (["run", "-i", "{t}"], "Missing option '--generator' / '-p' / '--pipeline'."),
    (["status", "-i", "{t}", "--state"], "Option '--state' requires an argument."),
    # click lists the choices one a line
    (["completion"], "Missing argument '{{bash|zsh|fish}}'. Choose from: bash, zsh, fish (see 'drypipe completion"),
])
def test_errors_have_one_prefix(tmp_path, args, message):
    result = drypipe(*[a.format(t=tmp_path) for a in args], cwd=tmp_path)
    assert result.returncode in (1, 2)
    line = _one_error_line(result)
    assert message.format(t=tmp_path) in line
    if result.returncode == 2:  # a usage error says where to read the usage
        assert re.search(r"\(see 'drypipe( \w+)? --help'\)$", line), line


# -- exit codes, as documented -------------------------------------------------------------------

def _documented_exit_codes() -> dict[int, str]:
    page = (REPO / "docs/cli.md").read_text()
    section = page.split("## Errors and exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(code): text for code, text in re.findall(r"^\| (\d+) \| (.+) \|$", section, re.M)}


def test_status_exits_with_each_documented_code(tmp_path, failed, done):
    codes = _documented_exit_codes()
    assert set(codes) == {0, 1, 2, 3, 130}
    assert "status" in codes[0] and "status" in codes[1] and "status" in codes[3]
    write_module(tmp_path, "two", TWO)
    drypipe("prepare", "-p", "two:gen", "-i", str(tmp_path / "i"), cwd=tmp_path, check=True)
    observed = {
        0: drypipe("status", "-i", str(done / "i"), cwd=done),  # every task completed
        1: drypipe("status", "-i", str(failed / "i"), cwd=failed),  # a task failed
        2: drypipe("status", "-i", str(done / "i"), "--state", "bogus", cwd=done),  # a wrong command line
        3: drypipe("status", "-i", str(tmp_path / "i"), cwd=tmp_path),  # tasks still waiting
    }
    for code, result in observed.items():
        assert result.returncode == code, (code, result.stdout, result.stderr)
    error = drypipe("status", "-i", str(tmp_path / "nothing"), cwd=tmp_path)  # an error: code 1 too
    assert error.returncode == 1 and "not a pipeline instance" in codes[1]


# -- help ----------------------------------------------------------------------------------------

# the core's sections, then the plugins' (by entry-point name: dendro, executors), then Plumbing
SECTION_TITLES = ["Running", "Inspecting", "Setting up", "Dendro", "Slurm", "SSH", "Plumbing"]


def test_help_lists_commands_in_sections_with_examples(tmp_path):
    text = drypipe("--help", cwd=tmp_path, check=True).stdout
    titles = [line.rstrip(":").split(" (")[0] for line in text.splitlines() if re.match(r"^[A-Z][\w ]*( \(.*\))?:$", line)]
    assert titles == ["Usage", "Options", *SECTION_TITLES] or titles == ["Options", *SECTION_TITLES], titles
    assert not re.search(r"\w\.\.\.$", text, re.M)  # full descriptions, not cut to "..."
    assert text.count("\n  e.g. drypipe ") == len(SECTION_TITLES)
    assert text.index("\n  run ") < text.index("\n  status ") < text.index("\n  array-submit ") \
        < text.index("\n  remote-exec ") < text.index("\n  array-upload ")
    assert "Other:" not in text  # every command has its section
    from click import Context

    from drypipe.cli import cli
    for name in cli.list_commands(Context(cli)):
        assert re.search(rf"^  {re.escape(name)}( |$)", text, re.M), name
    assert "  report-execution-times  Duration (and CPU time, when recorded) of each" in text
    assert "(task-for-chunk.*)" in text  # the description goes on past click's 45 characters


def test_help_does_not_import_the_dendro_group(tmp_path):
    code = ("import sys\nfrom drypipe.cli import cli\ntry:\n    cli.main(['--help'], prog_name='drypipe')\n"
            "except SystemExit:\n    pass\nprint('dendro_bridge.cli' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "  dendro  " in result.stdout
    assert result.stderr.strip() == "False"


# -- completion ----------------------------------------------------------------------------------

def _complete(line: str, cwd: Path, env: dict | None = None) -> list[str]:
    words = line.split(" ")
    full_env = dict(os.environ, COMP_WORDS=line, COMP_CWORD=str(len(words) - 1), _DRYPIPE_COMPLETE="bash_complete",
                    PYTHONPATH=str(REPO), **(env or {}))
    drypipe_bin = shutil.which("drypipe")
    assert drypipe_bin, "the drypipe entry point is installed by pip install -e ."
    out = subprocess.run([drypipe_bin], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=60).stdout
    return [item.split(",", 1)[1] for item in out.splitlines()]


def test_completion_of_task_keys_and_states(done, failed, tmp_path):
    assert _complete(f"drypipe status -i {failed / 'i'} -k ok", tmp_path) == [f"ok.{n}" for n in range(4)]
    assert _complete(f"drypipe kill -pid {done / 'i'} --key ", tmp_path) == ["a", "b"]
    assert _complete("drypipe task -k ", done / "i") == ["a", "b"]  # the current directory's instance
    assert _complete("drypipe list-states -k ", tmp_path, {"DRYPIPE_PIPELINE_INSTANCE_DIR": str(done / "i")}) == ["a", "b"]
    assert _complete("drypipe status --state ti", tmp_path) == ["timed-out"]
    assert "stale" in _complete("drypipe why --state ", tmp_path)


# -- running tasks in status ---------------------------------------------------------------------

def test_status_shows_the_step_and_time_of_a_running_task(tmp_path):
    write_module(tmp_path, "steps", STEPS)
    instance = tmp_path / "i"
    drypipe("prepare", "-p", "steps:gen", "-i", str(instance), cwd=tmp_path, check=True)
    try:
        drypipe("task", "-i", str(instance), "-k", "slow", cwd=tmp_path, check=True)
        wait_until(lambda: state_of(instance, "slow") == "step-started.1", what="the second step")
        time.sleep(1.1)
        result = drypipe("status", "-i", str(instance), cwd=tmp_path)
        assert result.returncode == 3
        row = result.stdout.splitlines()[1]
        assert re.match(r"slow +running \(step 2/3, 0:00:0[1-9]\) +process +\d+ +\d+\.\ds$", row), row
        assert "step-started" not in result.stdout
        assert "1 task: 1 running" in result.stdout
    finally:
        (instance / "go").touch()
    wait_until(lambda: state_of(instance, "slow") == "completed", what="the task's end")


# -- ./task tail ---------------------------------------------------------------------------------

def test_task_tail_returns_when_the_task_is_not_running_and_follows_while_it_runs(tmp_path, done):
    finished = subprocess.run([str(done / "i/.drypipe/a/task"), "tail"], capture_output=True, text=True, timeout=10)
    assert finished.returncode == 0
    assert "state.completed" in finished.stdout and "out.log" in finished.stdout

    write_module(tmp_path, "steps", STEPS)
    instance = tmp_path / "i"
    drypipe("prepare", "-p", "steps:gen", "-i", str(instance), cwd=tmp_path, check=True)
    drypipe("task", "-i", str(instance), "-k", "slow", cwd=tmp_path, check=True)
    wait_until(lambda: state_of(instance, "slow") == "step-started.1", what="the second step")
    tail = subprocess.Popen([str(instance / ".drypipe/slow/task"), "tail"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert tail.poll() is None  # following: the task runs
        (instance / "go").touch()
        out, _ = tail.communicate(timeout=10)  # returns once the task has ended
    finally:
        tail.kill()
    assert tail.returncode == 0
    assert "second" in out and "state.completed" in out  # followed to the end


def test_task_tail_follows_a_slurm_job_until_it_ends(slurm_cluster, tmp_path):
    """A Slurm job has no process on this host: `./task tail` follows while its marker says it
    runs and Slurm knows the job, and returns once it ended (here: killed while pending)."""
    from tests.slurm import slurm_helpers as slurm

    env = slurm.slurm_test_env(slurm_cluster)
    instance = tmp_path / "i"
    prepared = slurm.drypipe("prepare", "-p", "tests.slurm.pipelines:chunks", "-i", str(instance), env=env)
    assert prepared.returncode == 0, prepared.stderr
    submitted = slurm.drypipe("sbatch", "-i", str(instance), "-k", "held.1", env=env)  # sbatch --hold: pending
    assert submitted.returncode == 0, submitted.stderr
    assert state_of(instance, "held.1") == "launched"
    tail = subprocess.Popen([str(instance / ".drypipe/held.1/task"), "tail"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(3)
        assert tail.poll() is None  # following: the job is pending
        killed = slurm.drypipe("kill", "-i", str(instance), "-k", "held.1", env=env)
        assert killed.returncode == 0 and state_of(instance, "held.1") == "killed.0", killed.stderr
        out, _ = tail.communicate(timeout=15)
    finally:
        tail.kill()
    assert tail.returncode == 0
    assert "state.killed.0" in out
