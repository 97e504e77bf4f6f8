"""Whole pipelines on the real Slurm test cluster: same outputs as local processes, job arrays,
one squeue per poll cycle, adoption after the orchestrator is killed, sbatch errors."""
import re
import shutil
import signal

import pytest

from tests.helpers import REPO, output_vars, state_of
from tests.slurm.slurm_helpers import (
    FAST,
    CallLog,
    drypipe,
    job_id,
    slurm_test_env,
    squeue_state,
    start_drypipe,
    wait_until,
)


def _outputs(instance):
    """Every file under output/ (scratch dirs aside) with its content, the instance's own path
    replaced (the two runs have different instance directories)."""
    root = instance / "output"
    return {
        str(p.relative_to(root)): p.read_bytes().replace(bytes(instance), b"<instance>")
        for p in sorted(root.rglob("*"))
        if p.is_file() and "scratch" not in p.relative_to(root).parts
    }


@pytest.mark.parametrize("pipeline, final, seed", [
    ("t1_t2_t3", "t3/pipeline-result.tsv", None),
    ("fan_out", "sum/total.txt", None),
    ("chunked_fasta", "analyze-all-work-pieces/final-result-file", "chimp.fasta"),
])
def test_examples_give_the_same_outputs_under_slurm(slurm_cluster, tmp_path, pipeline, final, seed):
    env = slurm_test_env(slurm_cluster)
    local, slurm = tmp_path / "local", tmp_path / "slurm"
    for instance in (local, slurm):
        instance.mkdir()
        if seed:
            shutil.copy(REPO / "examples" / "data" / seed, instance / seed)
    result = drypipe("run", "-p", f"tests.slurm.pipelines:{pipeline}_process", "-i", str(local), env=env)
    assert result.returncode == 0, result.stderr
    result = drypipe("run", "-p", f"tests.slurm.pipelines:{pipeline}", "-i", str(slurm), *FAST, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (slurm / "output" / final).exists()
    assert _outputs(slurm) == _outputs(local)
    keys = sorted(p.name for p in (slurm / ".drypipe").iterdir() if not p.name.startswith("."))
    assert len(keys) >= 3
    for key in keys:
        assert state_of(slurm, key) == "completed"
        assert re.fullmatch(r"\d+_\d+", job_id(slurm, key)), key  # it ran as a Slurm array element
        assert f"task {key} from step 0" in (slurm / ".drypipe" / key / "slurm.log").read_text()
        if (local / ".drypipe" / key / "output_vars").exists():
            assert output_vars(slurm, key) == output_vars(local, key)
    if pipeline == "fan_out":  # the 6 count tasks became ready together: one array
        arrays = {job_id(slurm, k).split("_")[0] for k in keys if k.startswith("count.")}
        assert len(arrays) == 1
        assert (slurm / "output/sum/total.txt").read_text().strip() == str(sum(i * 10 for i in range(1, 7)))


def test_200_tasks_go_out_as_one_array_and_each_poll_is_one_squeue(slurm_cluster, tmp_path):
    calls = CallLog(tmp_path / "bin")
    env = calls.env(slurm_test_env(slurm_cluster, {"DRYPIPE_TEST_TASK_COUNT": "200"}))
    instance = tmp_path / "i"
    result = drypipe("-vv", "run", "-p", "tests.slurm.pipelines:many", "-i", str(instance), *FAST,
                     env=env, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "200 completed" in result.stdout
    sbatch = calls.calls("sbatch")
    assert 1 <= len(sbatch) <= 2, sbatch
    assert "--array=0-199" in sbatch[0]
    polls = re.findall(r"slurm poll \d+:", result.stderr)
    squeue = calls.calls("squeue")
    assert polls and len(squeue) == len(polls), (len(squeue), len(polls))
    assert all("-j" in line for line in squeue)  # by job id, never one call per task
    assert output_vars(instance, "t0199") == {"y": "398"}
    print(f"\n200 tasks: {len(sbatch)} sbatch call(s), {len(squeue)} squeue call(s) for {len(polls)} poll cycles")


def test_killed_orchestrator_is_replaced_and_adopts_running_jobs(slurm_cluster, tmp_path):
    calls = CallLog(tmp_path / "bin")
    env = calls.env(slurm_test_env(slurm_cluster))
    instance = tmp_path / "i"
    args = ("run", "-p", "tests.slurm.pipelines:adopt", "-i", str(instance), *FAST)
    first = start_drypipe(*args, env=env, log=tmp_path / "run1.log")
    try:
        wait_until(lambda: state_of(instance, "quick") == "completed" and state_of(instance, "slow") == "step-started.0",
                   60, "quick completed and slow running")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    slow_job = job_id(instance, "slow")
    assert len(calls.calls("sbatch")) == 1  # quick and slow: one array
    polled = len(calls.calls("squeue"))
    second = start_drypipe(*args, env=env, log=tmp_path / "run2.log")
    try:
        wait_until(lambda: len(calls.calls("squeue")) >= polled + 3, 30, "the second run polling")  # it watches slow
        assert len(calls.calls("sbatch")) == 1  # ... without submitting it again
        (instance / "release").touch()
        assert second.wait(timeout=60) == 0, (tmp_path / "run2.log").read_text()
    finally:
        if second.poll() is None:
            second.kill()
    log2 = (tmp_path / "run2.log").read_text()
    assert len(calls.calls("sbatch")) == 2, calls.calls("sbatch")  # the second one: `after`
    assert job_id(instance, "slow") == slow_job
    for key in ("quick", "slow", "after"):
        assert state_of(instance, key) == "completed", log2
        starts = (instance / ".drypipe" / key / "drypipe.log").read_text().count("state.step-started.0")
        assert starts == 1, key  # nothing ran twice
    assert (instance / "output/after/after.txt").read_text() == "slow-done\nafter\n"


@pytest.mark.parametrize("option, message", [
    ("--time=abc", "Invalid --time specification"),
    ("--partition=no-such-partition", "invalid partition"),
    ("--account=no-such-account", "Invalid account"),
])
def test_refused_sbatch_option_is_an_error_naming_the_task_and_changes_no_marker(
        slurm_cluster, tmp_path, option, message):
    # This cluster accepts any account (no accounting); the wrapper refuses this one exactly
    # as sbatch does on a cluster with accounting.
    calls = CallLog(tmp_path / "bin", fail_account="no-such-account")
    env = calls.env(slurm_test_env(slurm_cluster, {"DRYPIPE_TEST_BAD_OPTION": option}))
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "tests.slurm.pipelines:bad_options", "-i", str(instance), *FAST, env=env)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("drypipe: error: task ") and "task bad: sbatch failed" in error, result.stderr
    assert message.lower() in error.lower(), error
    # All or nothing: the valid task's array (submitted first) was cancelled, every marker
    # is back where it was, and no job id was left behind for the refused task.
    assert state_of(instance, "bad") == "ready"
    assert state_of(instance, "pending-ok") == "ready"
    assert state_of(instance, "downstream") == "waiting"
    assert job_id(instance, "bad") is None and job_id(instance, "pending-ok") is None
    sbatch = calls.calls("sbatch")
    assert len(sbatch) == 2  # pending-ok went out first: its array must have been cancelled
    ok_array = (instance / ".drypipe/.slurm/array-0.job").read_text().strip()
    assert squeue_state(f"{ok_array}_0") == "CANCELLED"
    # A second run fails the same way: nothing half-written confuses it.
    again = drypipe("run", "-p", "tests.slurm.pipelines:bad_options", "-i", str(instance), *FAST, env=env)
    assert again.returncode == 1 and message.lower() in again.stderr.lower()


def test_unreachable_controller_at_submission_is_retried_not_fatal(slurm_cluster, tmp_path):
    """sbatch failing with "Unable to contact slurm controller" leaves the tasks ready; the
    loop submits them again after its back-off and the run completes."""
    calls = CallLog(tmp_path / "bin")
    counter = tmp_path / "sbatch-failures"
    sbatch = calls.directory / "sbatch"
    real = sbatch.read_text()
    sbatch.write_text(real.replace(
        "exec ",
        f'n=$(cat {counter} 2>/dev/null || echo 0); if [ "$n" -lt 2 ]; then echo $((n + 1)) > {counter}\n'
        '  echo "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)" >&2\n'
        "  exit 1\nfi\nexec ", 1))
    env = calls.env(slurm_test_env(slurm_cluster, {"DRYPIPE_TEST_TASK_COUNT": "3"}))
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "tests.slurm.pipelines:many", "-i", str(instance), "--sleep-schedule", "0,0.5",
                     env=env, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "slurm unavailable" in result.stderr and "stay ready" in result.stderr
    assert len(calls.calls("sbatch")) == 3  # two refused, then one array
    assert output_vars(instance, "t0002") == {"y": "4"}
