"""The Slurm executor in-process: arrays split at MaxArraySize, recovery of tasks whose job id
was never recorded, sacct where accounting exists, and how Slurm states map to outcomes."""
import json
import os
import subprocess

import pytest

from drypipe import state as st
from drypipe.executor import ExecutorContext, TaskRun
from drypipe.task_conf import TaskConf
from executors import slurm_client as sc
from executors.slurm import SlurmExecutor, _ended
from tests.helpers import state_of
from tests.slurm.slurm_helpers import drypipe, job_id, slurm_test_env, wait_until


def _prepare(slurm_cluster, tmp_path, pipeline, **env):
    env = slurm_test_env(slurm_cluster, env)
    instance = tmp_path / "i"
    result = drypipe("prepare", "-p", f"tests.slurm.pipelines:{pipeline}", "-i", str(instance), env=env)
    assert result.returncode == 0, result.stderr
    return instance


def _claim(instance, key):
    """What the loop does before launch: ready -> launched."""
    conf = json.loads((instance / ".drypipe" / key / "task-conf.json").read_text())["task_conf"]
    assert st.transition(str(instance / ".drypipe" / key), st.READY, st.LAUNCHED)
    return TaskRun(key, instance, TaskConf.from_dict(conf))


def test_arrays_are_split_at_max_array_size(slurm_cluster, tmp_path):
    instance = _prepare(slurm_cluster, tmp_path, "many", DRYPIPE_TEST_TASK_COUNT="7")
    executor = SlurmExecutor(ExecutorContext(instance))
    executor._config = sc.ClusterConfig(max_array_size=3, accounting=False)
    runs = [_claim(instance, f"t{i:04d}") for i in range(7)]
    executor.prepare(runs)
    handles = executor.launch(runs)
    arrays = {}
    for handle in handles.values():
        arrays.setdefault(handle.split("_")[0], []).append(handle.split("_")[1])
    assert sorted(len(v) for v in arrays.values()) == [1, 3, 3]
    assert all(job_id(instance, k) == h for k, h in handles.items())
    wait_until(lambda: all(state_of(instance, r.key) == "completed" for r in runs), 60, "7 tasks completed")


def test_adoption_finds_the_right_job_whatever_moment_the_orchestrator_died(slurm_cluster, tmp_path):
    instance = _prepare(slurm_cluster, tmp_path, "chunks")
    held_1 = _claim(instance, "held.1")
    _claim(instance, "held.2")
    conf = held_1.task_conf

    def adopt(key="held.1"):
        """What a restarted orchestrator sees on its first poll."""
        return SlurmExecutor(ExecutorContext(instance)).poll([TaskRun(key, instance, conf)])[key]

    executor = SlurmExecutor(ExecutorContext(instance))
    executor.prepare([held_1])
    first = executor.submit_array([held_1])  # held: stays pending
    jobs = [first]
    try:
        # 1. Died right after sbatch returned: neither array-0.job nor slurm_job_id written.
        (instance / ".drypipe/held.1/slurm_job_id").unlink()
        (instance / ".drypipe/.slurm/array-0.job").unlink()
        assert adopt().alive  # found by the instance's job name and the array's comment
        assert job_id(instance, "held.1") == f"{first}_0"

        # 2. A relaunch (the first job is over) died after writing its array list, before sbatch:
        #    slurm_job_id still names the old job; the task never started -> ready again.
        subprocess.run(["scancel", first], check=True)
        wait_until(lambda: not adopt().alive, 10, "the first job cancelled")
        executor.arrays.create([("held.1", 0)])
        liveness = adopt()
        assert (liveness.alive, liveness.outcome) == (False, st.READY)

        # 3. A relaunch died after sbatch, before recording anything: the new job is adopted.
        second = SlurmExecutor(ExecutorContext(instance)).submit_array([held_1])
        jobs.append(second)
        (instance / ".drypipe/held.1/slurm_job_id").write_text(f"{first}_0\n")
        (instance / f".drypipe/.slurm/array-{max(executor.arrays.numbers())}.job").unlink()
        assert adopt().alive
        assert job_id(instance, "held.1") == f"{second}_0"

        # 4. Never listed in any array and no job id: the task never reached Slurm.
        liveness = adopt("held.2")
        assert (liveness.alive, liveness.outcome) == (False, st.READY)
    finally:
        subprocess.run(["scancel", *jobs], check=False)


def test_jobs_gone_from_squeue_are_looked_up_with_sacct_where_accounting_exists(slurm_cluster, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sacct"  # as on a cluster with slurmdbd
    fake.write_text('#!/bin/sh\necho "$*" >> "$0.calls"\necho "999999_0|TIMEOUT|0:15"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    control = tmp_path / "i" / ".drypipe" / "t"
    control.mkdir(parents=True)
    (control / "slurm_job_id").write_text("999999_0\n")
    run = TaskRun("t", tmp_path / "i", TaskConf(executer_type="slurm"))

    executor = SlurmExecutor(ExecutorContext(tmp_path / "i"))
    executor._config = sc.ClusterConfig(1001, accounting=True)
    executor._accounting = True
    liveness = executor.poll([run])["t"]
    assert (liveness.alive, liveness.outcome) == (False, "timed-out")
    assert "TIMEOUT" in liveness.reason
    assert "-j 999999_0" in (bin_dir / "sacct.calls").read_text()

    # As sacct answers on a cluster without slurmdbd.
    fake.write_text('#!/bin/sh\necho "sacct: error: Slurm accounting storage is disabled" >&2\nexit 1\n')
    executor = SlurmExecutor(ExecutorContext(tmp_path / "i"))
    executor._config = sc.ClusterConfig(1001, accounting=True)
    executor._accounting = True
    liveness = executor.poll([run])["t"]
    assert (liveness.alive, liveness.outcome) == (False, "lost")
    assert executor._accounting is False  # detected once, not asked again


def test_cluster_config_is_read_once(slurm_cluster):
    config = sc.read_config()
    assert config.max_array_size == 1001 and config.accounting is True  # slurmdbd runs


@pytest.mark.parametrize("state, outcome", [
    ("CANCELLED", "killed"), ("TIMEOUT", "timed-out"), ("FAILED", "failed"), ("OUT_OF_MEMORY", "failed"),
    ("NODE_FAIL", "lost"), ("PREEMPTED", "lost"), ("COMPLETED", "lost"), (None, "lost"),
])
def test_ended_job_states_map_to_outcomes(state, outcome):
    liveness = _ended("12_3", None if state is None else sc.JobStatus(state, "r"))
    assert (liveness.alive, liveness.outcome, liveness.certain) == (False, outcome, False)
    assert "12_3" in liveness.reason


def test_alive_states_and_array_ids_parse():
    for state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED"):
        assert sc.JobStatus(state).alive
    statuses = sc._parse_status_lines("5_[2-3%1]|PENDING|JobArrayTaskLimit\n5_1|RUNNING|None\n6|CANCELLED|x\n", "|")
    assert set(statuses) == {"5_1", "5_2", "5_3", "6"}
    assert statuses["5_1"].reason == "" and statuses["5_2"].reason == "JobArrayTaskLimit"


def test_unknown_job_ids_are_simply_absent(slurm_cluster):
    assert sc.squeue(["999998", "999999"]) == {}
