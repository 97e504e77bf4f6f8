"""The Slurm commands of the CLI on a prepared instance, with no orchestrator running:
sbatch, sbatch-gen, array-create-parent, array-submit, restart-failed-array-tasks, kill."""
import re
import shlex
import subprocess

from tests.helpers import state_of
from tests.slurm.slurm_helpers import (
    CallLog,
    drypipe,
    job_id,
    slurm_test_env,
    squeue_state,
    wait_until,
)


def _prepared(slurm_cluster, tmp_path, calls=None):
    env = slurm_test_env(slurm_cluster)
    if calls is not None:
        env = calls.env(env)
    instance = tmp_path / "i"
    result = drypipe("prepare", "-p", "tests.slurm.pipelines:chunks", "-i", str(instance), env=env)
    assert result.returncode == 0, result.stderr
    return instance, env


def _ok(instance, *numbers):
    for i in numbers:
        (instance / f"ok-{i}").touch()


def _wait_states(instance, keys, states, timeout=60):
    wait_until(lambda: all(state_of(instance, k) in states for k in keys), timeout,
               f"{keys} in {states}: {[state_of(instance, k) for k in keys]}")


def test_sbatch_gen_prints_the_command_and_sbatch_wait_runs_one_task(slurm_cluster, tmp_path):
    instance, env = _prepared(slurm_cluster, tmp_path)
    _ok(instance, 1)
    gen = drypipe("sbatch-gen", "-pid", str(instance), "-k", "chunk.1", env=env)
    assert gen.returncode == 0, gen.stderr
    command = gen.stdout.strip()
    assert command.startswith("sbatch --parsable --job-name=drypipe-")
    assert "--signal=B:USR1@60" in command and "--export=ALL" in command
    assert f"--output={instance}/.drypipe/chunk.1/slurm.log" in command
    assert shlex.split(command)[-1] == f"--wrap=exec {instance}/.drypipe/chunk.1/task --at-step 0"
    launcher = instance / ".drypipe/chunk.1/sbatch-launcher.sh"
    assert launcher.stat().st_mode & 0o100
    assert state_of(instance, "chunk.1") == "ready"  # sbatch-gen submits nothing

    done = drypipe("sbatch", "-pid", str(instance), "-k", "chunk.1", "--wait", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stdout
    assert re.fullmatch(r"\d+", job_id(instance, "chunk.1"))  # a plain job, not an array
    assert (instance / "output/chunk.1/out.txt").read_text() == "chunk 1\n"

    failed = drypipe("sbatch", "-k", "chunk.2", "--wait", env=dict(env, DRYPIPE_PIPELINE_INSTANCE_DIR=str(instance)))
    assert failed.returncode == 1
    assert state_of(instance, "chunk.2") == "failed.0"
    assert "no ok-2" in (instance / ".drypipe/chunk.2/out.log").read_text()

    missing = drypipe("sbatch", "-pid", str(instance), "-k", "no-such-task", env=env)
    assert missing.returncode == 1 and "no-such-task" in missing.stderr


def test_array_submit_limit_and_restart_failed_array_tasks(slurm_cluster, tmp_path):
    calls = CallLog(tmp_path / "bin")
    instance, env = _prepared(slurm_cluster, tmp_path, calls)
    _ok(instance, 1, 2, 3)
    parent = drypipe("array-create-parent", "-pid", str(instance), "-k", "chunks", "chunk.*", env=env)
    assert parent.returncode == 0 and "5 task(s)" in parent.stdout, parent.stderr

    first = drypipe("array-submit", "-pid", str(instance), "-k", "chunks", "--limit", "3", env=env)
    assert first.returncode == 0, first.stderr
    assert re.search(r"submitted 3 task\(s\) as Slurm job array \d+", first.stdout)
    assert "--array=0-2%2" in calls.calls("sbatch")[-1]  # max_simultaneous_jobs=2
    chunks = [f"chunk.{i}" for i in range(1, 6)]
    _wait_states(instance, chunks[:3], {"completed"})
    assert [state_of(instance, k) for k in chunks[3:]] == ["ready", "ready"]

    rest = drypipe("array-submit", "-pid", str(instance), "-k", "chunks", env=env)
    assert "submitted 2 task(s)" in rest.stdout, rest.stderr
    _wait_states(instance, chunks[3:], {"failed.0"})

    _ok(instance, 4, 5)
    restart = drypipe("restart-failed-array-tasks", "-pid", str(instance), "-k", "chunks", env=env)
    assert "submitted 2 task(s)" in restart.stdout, restart.stderr
    _wait_states(instance, chunks, {"completed"})
    assert len(calls.calls("sbatch")) == 3  # one array per command

    nothing = drypipe("array-submit", "-pid", str(instance), "-k", "chunks", env=env)
    assert "no ready task in chunks (5 completed)" in nothing.stdout


def test_include_pre_launch_restarts_cancelled_pending_tasks_and_kill_uses_scancel(slurm_cluster, tmp_path):
    instance, env = _prepared(slurm_cluster, tmp_path)
    held = ["held.1", "held.2"]
    submit = drypipe("array-submit", "-pid", str(instance), "-k", "held.*", env=env)
    assert "submitted 2 task(s)" in submit.stdout, submit.stderr
    first_jobs = [job_id(instance, k) for k in held]
    subprocess.run(["scancel", first_jobs[0].split("_")[0]], check=True)  # behind drypipe's back
    assert [state_of(instance, k) for k in held] == ["launched", "launched"]

    plain = drypipe("restart-failed-array-tasks", "-pid", str(instance), "-k", "held.*", env=env)
    assert "no failed task" in plain.stdout
    again = drypipe("restart-failed-array-tasks", "-pid", str(instance), "-k", "held.*",
                    "--include-pre-launch", env=env)
    assert "submitted 2 task(s)" in again.stdout, again.stderr
    new_jobs = [job_id(instance, k) for k in held]
    assert new_jobs[0].split("_")[0] != first_jobs[0].split("_")[0]
    assert all(squeue_state(j) == "PENDING" for j in new_jobs)

    # drypipe kill: scancel; tasks that never started are recorded killed by the command.
    kill = drypipe("kill", "-pid", str(instance), "-k", "held.*", env=env)
    assert kill.returncode == 0, kill.stderr
    assert [state_of(instance, k) for k in held] == ["killed.0", "killed.0"]
    assert all(squeue_state(j) == "CANCELLED" for j in new_jobs)

    # ... and a running task records killed.0 itself (SIGTERM from scancel).
    drypipe("sbatch", "-pid", str(instance), "-k", "sleeper", env=env)
    _wait_states(instance, ["sleeper"], {"step-started.0"})
    kill = drypipe("kill", "-pid", str(instance), "-k", "sleeper", env=env)
    assert kill.returncode == 0, kill.stderr
    assert "sleeper: killed.0" in kill.stdout
    assert squeue_state(job_id(instance, "sleeper")) == "CANCELLED"
