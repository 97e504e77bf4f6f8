"""Peak memory and CPU time of Slurm tasks, from sacct: a real pipeline on the test cluster
(which has accounting) shows them in the task record and `drypipe report-execution-times`."""
import pytest

from dry_pipe import DryPipe, TaskConf
from drypipe import state as st
from drypipe.executor import ExecutorContext, TaskRun
from drypipe.task_record import TaskRecord
from executors import slurm_client as sc
from executors import slurm_files as sf
from executors.slurm import SlurmExecutor
from tests.slurm.slurm_helpers import FAST, drypipe, job_id, slurm_test_env, wait_until

SLURM = TaskConf(executer_type="slurm")


def usage_dag(dsl):
    # jobacct_gather samples once a second: the 200 MiB are held for 2 s so a sample sees them.
    yield dsl.task(key="big").calls("""
        #!/usr/bin/env bash
        python3 -c '
import time
b = bytearray(200 * 1024 * 1024)
end = time.time() + 1
while time.time() < end:  # about a second of CPU
    pass
time.sleep(2)'
    """)()
    yield dsl.task(key="small").calls("""
        #!/usr/bin/env bash
        sleep 1
    """)()


def usage_pipeline():
    return DryPipe.create_pipeline(usage_dag, task_conf=SLURM)


def _report_row(text: str, key: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.split()[:1] == [key])


def test_peak_rss_and_cpu_of_slurm_tasks_come_from_sacct(slurm_cluster, tmp_path):
    env = slurm_test_env(slurm_cluster)
    instance = tmp_path / "inst"
    instance.mkdir()
    result = drypipe("run", "-p", "tests.slurm.test_slurm_usage:usage_pipeline", "-i", str(instance), *FAST, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_id(instance, "big").split("_")[0] == job_id(instance, "small").split("_")[0]  # one array

    big = TaskRecord(str(instance), "big").timing()
    small = TaskRecord(str(instance), "small").timing()
    assert big.max_rss is not None and big.max_rss >= 150 * 1024, big
    assert big.cpu is not None and big.cpu > 0.5, big
    assert small.max_rss is not None and small.max_rss < 50 * 1024, small
    assert small.cpu is not None and small.cpu < big.cpu

    report = drypipe("report-execution-times", "-i", str(instance), env=env)
    assert report.returncode == 0, report.stderr
    rss = _report_row(report.stdout, "big")[5]
    assert rss.endswith("MiB") and float(rss[:-3]) >= 150, report.stdout
    assert _report_row(report.stdout, "small")[5].endswith("MiB"), report.stdout


def test_usage_waits_for_sacct_in_one_call_per_poll_and_skips_a_replaced_attempt(slurm_cluster, tmp_path, monkeypatch):
    """Two tasks whose jobs end: the loop stops polling them (terminal markers).  Each poll
    makes one sacct call for both; the usage is recorded once sacct has it, after the outcome,
    and not for a task whose job id changed meanwhile (a retry launched a new job)."""
    calls = []
    real_sacct = sc.sacct
    monkeypatch.setattr(sc, "sacct", lambda ids: calls.append(sorted(ids)) or real_sacct(ids))
    instance = tmp_path / "i"
    runs, jobs = [], {}
    for key in ("done", "retried"):
        control = instance / ".drypipe" / key
        control.mkdir(parents=True)
        jobs[key] = sc.submit(["sbatch", "--parsable", "-o", "/dev/null", "--wrap",
                               "python3 -c 'import time; b = bytearray(60 << 20); time.sleep(2)'"])
        sf.write_job_id(control, jobs[key])
        TaskRecord.at(control).move(None, st.LAUNCHED)
        runs.append(TaskRun(key, instance, SLURM))
    executor = SlurmExecutor(ExecutorContext(instance))
    assert all(liveness.alive for liveness in executor.poll(runs).values())
    assert calls == []  # nothing ended: squeue alone
    for run in runs:  # both tasks record their outcome; the loop polls them no more
        TaskRecord.at(run.control_dir).record_state(st.LAUNCHED, st.COMPLETED)
    sf.write_job_id(runs[1].control_dir, "999999")  # a retry's job replaced the ended one

    polls = []

    def recorded():
        polls.append(executor.poll([]))
        return TaskRecord(str(instance), "done").timing().max_rss
    assert wait_until(recorded, timeout=30, what="the usage of job " + jobs["done"]) >= 50 * 1024
    # One sacct per poll; the first asks about both jobs (later ones about those still due).
    assert len(calls) == len(polls) and calls[0] == sorted(jobs.values()), calls
    log = (runs[0].control_dir / "drypipe.log").read_text()
    assert log.index("state.completed") < log.index("usage cpu=")
    assert TaskRecord(str(instance), "retried").timing().max_rss is None
    assert "usage" not in (runs[1].control_dir / "drypipe.log").read_text(errors="replace")


@pytest.mark.parametrize("text, kib", [
    ("219928K", 219928), ("12M", 12 * 1024), ("1.50G", 1572864), ("2048", 2), ("0", 0),
])
def test_sacct_memory_units(text, kib):
    assert sc.parse_memory_kib(text) == kib


@pytest.mark.parametrize("text, seconds", [
    ("00:01.234", 1.234), ("12:34", 754), ("1:02:03", 3723), ("1-02:03:04", 93784), ("2-00:00:00.5", 172800.5),
])
def test_sacct_duration_units(text, seconds):
    assert sc.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "12", "1K", "a:b", "x-01:00:00", "1:2:3:4"])
def test_bad_sacct_durations_are_refused(text):
    with pytest.raises(ValueError, match="not a duration"):
        sc.parse_duration(text)


def test_sacct_lines_give_states_and_the_peak_of_the_steps():
    statuses = sc._parse_sacct(
        "7_0|COMPLETED|0:0||00:01.678\n7_0.batch|COMPLETED|0:0|219928K|00:01.600\n"
        "7_0.0|COMPLETED|0:0|300M|00:00.078\n"
        "7_1|RUNNING|0:0||00:00:00\n7_1.batch|RUNNING|0:0||00:00:00\n"
        "8|CANCELLED by 0|0:15||00:00:00\n"
    )
    assert statuses["7_0"] == sc.JobStatus("COMPLETED", "exit code 0:0", sc.Usage(1.678, 300 * 1024))
    assert statuses["7_1"].usage is None  # still running: nothing to record yet
    assert statuses["8"].state == "CANCELLED" and statuses["8"].usage is None  # never ran a step
    assert set(statuses) == {"7_0", "7_1", "8"}
