"""sbatch options reach sbatch as given, never through a shell's evaluation, and
`drypipe sbatch-gen` prints exactly the argv that sbatch-launcher.sh passes.

Most tests need no Slurm: `sbatch` on PATH is a recorder script that writes its argv (one
NUL-ended word each) to a file and answers a job id, as `sbatch --parsable` does.  Everything
else is the real CLI, the real generated launcher and the real bash.  One test submits through
the test cluster's own sbatch (fixture `slurm_cluster`).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from executors import slurm_files as sf
from tests.helpers import drypipe, state_of, write_module

PIPELINE = '''
import json, os
from dry_pipe import TaskConf

def gen(dsl):
    for key, options in json.loads(os.environ["TEST_SBATCH_OPTIONS"]).items():
        conf = TaskConf(executer_type="slurm", slurm_account=os.environ.get("TEST_ACCOUNT"),
                        sbatch_options=options)
        yield dsl.task(key=key, task_conf=conf).calls(os.environ.get("TEST_CALL", "true") + "\\n")()
'''


class Recorder:
    """`sbatch` first on PATH: records each call's argv, prints a job id."""

    def __init__(self, directory: Path):
        self.bin = directory / "bin"
        self.calls_dir = directory / "calls"
        self.bin.mkdir(parents=True)
        self.calls_dir.mkdir()
        script = self.bin / "sbatch"
        script.write_text('#!/usr/bin/env bash\n'
                          f'printf "%s\\0" sbatch "$@" > "$(mktemp {shlex.quote(str(self.calls_dir))}/call.XXXXXX)"\n'
                          'echo 4242\n')
        script.chmod(0o755)

    def env(self, extra: dict | None = None) -> dict:
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", **(extra or {})}

    def calls(self) -> list[list[str]]:
        return [p.read_bytes().decode().split("\0")[:-1] for p in sorted(self.calls_dir.iterdir())]


def _prepare(tmp_path: Path, instance: Path, options: dict[str, list[str]], account: str | None = None,
             record: bool = True) -> tuple[Recorder, dict]:
    """`drypipe prepare` of one slurm task per key of `options`; with `record`, the env puts
    the recorder first on PATH, else (the real sbatch) each task writes $DP_LOGDIR to a file."""
    write_module(tmp_path, "sbatch_options_pipeline", PIPELINE)
    recorder = Recorder(tmp_path / "recorder")
    env = {"TEST_SBATCH_OPTIONS": json.dumps(options)}
    if record:
        env = recorder.env(env)
    else:
        env.update(DRYPIPE_LOST_GRACE_SECONDS="5",
                   TEST_CALL='echo "$DP_LOGDIR" > "$__pipeline_instance_dir/logdir.txt"')
    if account is not None:
        env["TEST_ACCOUNT"] = account
    drypipe("prepare", "-p", "sbatch_options_pipeline:gen", "-i", str(instance), cwd=tmp_path, env=env, check=True)
    return recorder, env


def _error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def test_sbatch_gen_prints_exactly_the_argv_sbatch_gets(tmp_path):
    # A directory name that shell quoting styles spell differently (printf %q vs shlex.quote).
    instance = tmp_path / "run 1 'x'"
    canary = tmp_path / "canary"
    control = f"{instance}/.drypipe/t"
    options = [
        f"--export=ALL,LOGDIR={control}",                  # holds the control dir, not at its start
        f"--error={control}/err.log",                      # a user's path to the control dir
        f"--comment=$(touch {canary}); `touch {canary}`",
        f"--job-name=a b 'c' \"d\" \\ $HOME {control}",
        "--time", "1:00:00",                               # an option and its value, two words
    ]
    recorder, env = _prepare(tmp_path, instance, {"t": options}, account=f"acct$(touch {canary})")
    gen = drypipe("sbatch-gen", "-i", str(instance), "-k", "t", cwd=tmp_path, env=env)
    assert gen.returncode == 0, gen.stderr
    printed = shlex.split(gen.stdout.strip())

    submitted = drypipe("sbatch", "-i", str(instance), "-k", "t", cwd=tmp_path, env=env)
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted as Slurm job 4242" in submitted.stdout
    [argv] = recorder.calls()
    assert argv == printed
    i = argv.index(options[0])
    assert argv[i:i + len(options)] == options  # the user's words, verbatim and in order
    assert f"--account=acct$(touch {canary})" in argv
    assert argv[-1] == f"--wrap=exec {shlex.quote(control + '/task')} --at-step 0"
    assert not canary.exists()


def test_real_sbatch_gets_an_export_holding_the_control_dir_as_written(slurm_cluster, tmp_path):
    """The same through the test cluster's sbatch: the job sees the variable the TaskConf set."""
    instance = tmp_path / "i"
    control = f"{instance}/.drypipe/t"
    _, env = _prepare(tmp_path, instance, {"t": [f"--export=ALL,DP_LOGDIR={control}"]}, record=False)
    done = drypipe("sbatch", "-i", str(instance), "-k", "t", "--wait", cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert state_of(instance, "t") == "completed"
    assert (instance / "logdir.txt").read_text() == control + "\n"


def test_moved_launcher_recomputes_only_drypipes_own_paths(tmp_path):
    """The launcher computes its control dir at run time (an instance may move); the user's
    options hold what the TaskConf says, wherever the launcher runs."""
    instance = tmp_path / "i"
    old_control = f"{instance}/.drypipe/t"
    options = [f"--export=ALL,LOGDIR={old_control}", f"--error={old_control}/err.log"]
    recorder, env = _prepare(tmp_path, instance, {"t": options})
    drypipe("sbatch-gen", "-i", str(instance), "-k", "t", cwd=tmp_path, env=env, check=True)
    moved = tmp_path / "moved"
    shutil.copytree(instance, moved, symlinks=True)
    launched = subprocess.run([str(moved / ".drypipe/t" / sf.LAUNCHER_FILE), "--at-step", "2"],
                              env=dict(os.environ, **env), capture_output=True, text=True, timeout=60)
    assert launched.returncode == 0, launched.stderr
    [argv] = recorder.calls()
    assert options == [a for a in argv if a.startswith(("--export=ALL,", "--error="))]
    assert f"--output={moved}/.drypipe/t/{sf.BATCH_LOG_FILE}" in argv
    assert argv[-1] == f"--wrap=exec {moved}/.drypipe/t/task --at-step 2"
    assert (moved / ".drypipe/t" / sf.JOB_ID_FILE).read_text() == "4242\n"


def test_launcher_refuses_a_step_that_is_not_a_number(tmp_path):
    instance = tmp_path / "i"
    canary = tmp_path / "canary"
    recorder, env = _prepare(tmp_path, instance, {"t": []})
    drypipe("sbatch-gen", "-i", str(instance), "-k", "t", cwd=tmp_path, env=env, check=True)
    launched = subprocess.run([str(instance / ".drypipe/t" / sf.LAUNCHER_FILE), "--at-step", f"0; touch {canary}"],
                              env=dict(os.environ, **env), capture_output=True, text=True, timeout=60)
    assert launched.returncode == 2
    assert "--at-step needs a step number" in launched.stderr
    assert recorder.calls() == []  # the job script (--wrap) never held it


NOT_AN_OPTION = "is not an sbatch option (-x, --name or --name=value, with a name of letters, digits and -)"
LINE_BREAK = "contains a NUL or a line break"


@pytest.mark.parametrize("option, why", [
    ("--error$(touch {canary})={instance}/.drypipe/bad/err.log", NOT_AN_OPTION),
    ("--mem=1G\n--wrap=touch {canary}", LINE_BREAK),
    ("--time 1:00:00", NOT_AN_OPTION),
    ("{canary}", NOT_AN_OPTION),  # a word sbatch would take as the batch script
    ("--", NOT_AN_OPTION),
])
def test_refused_option_names_the_task_and_submits_nothing(tmp_path, option, why):
    instance = tmp_path / "i"
    canary = tmp_path / "canary"
    option = option.format(canary=canary, instance=instance)
    recorder, env = _prepare(tmp_path, instance, {"bad": ["--mem=1G", option]})
    expected = f"drypipe: error: task bad: sbatch option {option!r} {why}"

    gen = drypipe("sbatch-gen", "-i", str(instance), "-k", "bad", cwd=tmp_path, env=env)
    assert (gen.returncode, _error_line(gen), gen.stdout) == (1, expected, "")
    assert not (instance / ".drypipe/bad" / sf.LAUNCHER_FILE).exists()

    submitted = drypipe("sbatch", "-i", str(instance), "-k", "bad", cwd=tmp_path, env=env)
    assert (submitted.returncode, _error_line(submitted)) == (1, expected)
    assert state_of(instance, "bad") == "ready"
    assert not (instance / ".drypipe/bad" / sf.LAUNCHER_FILE).exists()

    array = drypipe("array-submit", "-i", str(instance), "-k", "bad", cwd=tmp_path, env=env)
    assert (array.returncode, _error_line(array)) == (1, expected)
    assert state_of(instance, "bad") == "ready"
    assert not list((instance / ".drypipe/.slurm").glob("array-*.tasks"))  # no list never submitted

    assert recorder.calls() == []
    assert not canary.exists()


def test_run_refuses_the_task_before_any_sbatch_and_puts_markers_back(tmp_path):
    """The orchestrator's job arrays: a refused option of one task stops the launch before any
    array goes out (nothing to cancel), and every marker is back where it was."""
    instance = tmp_path / "i"
    canary = tmp_path / "canary"
    option = f"--error$(touch {canary})=x"
    recorder, env = _prepare(tmp_path, instance, {"good": ["--mem=1G"], "bad": [option]})
    run = drypipe("run", "-p", "sbatch_options_pipeline:gen", "-i", str(instance), "--sleep-schedule", "0",
                  cwd=tmp_path, env=env, timeout=60)
    assert run.returncode == 1
    assert _error_line(run) == f"drypipe: error: task bad: sbatch option {option!r} {NOT_AN_OPTION}"
    assert state_of(instance, "bad") == "ready" and state_of(instance, "good") == "ready"
    assert recorder.calls() == []
    assert not canary.exists()


def test_array_submit_refuses_before_any_array_then_passes_options_verbatim(tmp_path):
    """One refused task stops the whole array-submit before any sbatch (arrays of other
    TaskConfs included); the valid tasks then go out with their options word for word."""
    instance = tmp_path / "i"
    canary = tmp_path / "canary"
    options = [f"--comment=$(touch {canary})", f"--export=ALL,LOGDIR={instance}/.drypipe/a.1", "-t", "5"]
    bad = f"--comment=x\n--wrap=touch {canary}"
    recorder, env = _prepare(tmp_path, instance, {"a.1": options, "a.2": options, "b": [bad]})
    refused = drypipe("array-submit", "-i", str(instance), "-k", "*", cwd=tmp_path, env=env)
    expected = f"drypipe: error: task b: sbatch option {bad!r} {LINE_BREAK}"
    assert (refused.returncode, _error_line(refused)) == (1, expected)
    assert recorder.calls() == []
    assert [state_of(instance, k) for k in ("a.1", "a.2", "b")] == ["ready"] * 3

    submitted = drypipe("array-submit", "-i", str(instance), "-k", "a.*", cwd=tmp_path, env=env)
    assert submitted.returncode == 0, submitted.stderr
    [argv] = recorder.calls()
    i = argv.index(options[0])
    assert argv[i:i + len(options)] == options
    assert argv[-2:] == [f"{instance}/.drypipe/.slurm/array-launcher.sh", f"{instance}/.drypipe/.slurm/array-0.tasks"]
    assert "--array=0-1" in argv
    assert not canary.exists()


@pytest.mark.parametrize("options", [
    [], ["--mem=4G"], ["-t", "1:00:00"], ["--time", "1:00:00", "--hold"], ["-p", "debug", "-N2"],
    ["--export=ALL,LOGDIR=/a b/$x"], ["--comment=line; $(x) `y`"], ["--nice=-5"], ["-J", "-x-"],
])
def test_accepted_options(options):
    assert sf.sbatch_option_problem(options) is None


@pytest.mark.parametrize("options, refused", [
    (["--me m=4G"], "--me m=4G"), (["--mem;x=1"], "--mem;x=1"), (["-"], "-"), (["---x"], "---x"),
    (["--mem=4G", "1:00"], "1:00"),  # a value only after a bare option
    (["--time", "1:00", "2:00"], "2:00"), (["-t1:00:00"], "-t1:00:00"), (["--é=1"], "--é=1"),
    (["--time", "1\n"], "1\n"), (["--comment=a\0b"], "--comment=a\0b"), ([""], ""),
])
def test_refused_options(options, refused):
    assert sf.sbatch_option_problem(options)[0] == refused
