"""The compute resource's DrypipeRunner: processors run as one-task drypipe instances through a
drypipe executor (here the process executor), alone and behind a real compute resource."""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from dendro_bridge import (
    DendroJobDefinition,
    DendroJobOutputFile,
    DendroJobParameter,
    DendroJobRequiredResources,
)
from dendro_bridge.compute import DrypipeRunner, ProcessorCommand
from tests.dendro_executor.conftest import run_pipeline
from tests.dendro_executor.test_mixed import SPEC, check_outputs


def command(tmp_path, code: str, timeout: float | None = 30, **env: str) -> ProcessorCommand:
    cwd = tmp_path / "job"
    cwd.mkdir(exist_ok=True)
    return ProcessorCommand(argv=[sys.executable, "-c", code], cwd=cwd, env={**os.environ, "JOB_ID": "job1", **env},
                            console_path=cwd / "console.txt", timeout_sec=timeout)


def test_runs_the_command_in_its_directory_with_its_environment(tmp_path):
    cmd = command(tmp_path, "import os; print('hello from', os.getcwd()); print(os.environ['SECRET'])",
                  SECRET="it's $ecret")
    outcome = DrypipeRunner("process").run(cmd, threading.Event())
    assert outcome.succeeded
    assert cmd.console_path.read_text() == f"hello from {cmd.cwd}\nit's $ecret\n"
    assert (cmd.cwd / "drypipe" / ".drypipe" / "job1" / "state.completed").exists()


def test_exit_code_and_console_of_a_failing_command(tmp_path):
    cmd = command(tmp_path, "import sys; print('about to fail'); sys.exit(3)")
    outcome = DrypipeRunner("process").run(cmd, threading.Event())
    assert outcome.exit_code == 3 and not outcome.succeeded
    assert cmd.console_path.read_text() == "about to fail\n"  # drypipe's own trailer left out


@pytest.mark.parametrize("stop", ["cancel", "timeout"])
def test_cancel_and_timeout_stop_the_command(tmp_path, stop):
    cmd = command(tmp_path, "import time; print('sleeping', flush=True); time.sleep(60)",
                  timeout=0.5 if stop == "timeout" else 30)
    cancel = threading.Event()
    if stop == "cancel":
        threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    outcome = DrypipeRunner("process").run(cmd, cancel)
    assert time.monotonic() - started < 15
    assert (outcome.canceled, outcome.timed_out) == ((True, False) if stop == "cancel" else (False, True))
    assert (cmd.cwd / "drypipe" / ".drypipe" / "job1" / "state.killed.0").exists()


def test_unknown_or_unsuitable_executor_is_refused():
    with pytest.raises(Exception, match="unknown executer_type"):
        DrypipeRunner("no-such-executor")
    with pytest.raises(ValueError, match="cannot run processors"):
        DrypipeRunner("dendro")


def test_compute_resource_runs_the_mixed_pipeline_through_the_process_executor(tenant, tmp_path):
    tenant.start_compute("--runner", "drypipe:process", "--keep-work-dirs")
    instance = tmp_path / "instance"
    run_pipeline(SPEC, instance, tenant.env())
    check_outputs(instance)
    jobs = tenant.server.jobs(tenant.service)
    assert len(jobs) == 3
    for job_id, _, _ in jobs:  # each processor ran as a drypipe task in its job's directory
        assert (tmp_path / "jobs" / job_id / "drypipe" / ".drypipe" / job_id / "state.completed").exists()

    failing = tenant.client().submit_job(
        service_name=tenant.service, required_resources=DendroJobRequiredResources(
            numCpus=1, numGpus=0, memoryGb=1, timeSec=60),
        job_definition=DendroJobDefinition(
            appName="testing", processorName="fail", inputFiles=[],
            outputFiles=[DendroJobOutputFile(name="output", fileBaseName="output.txt")],
            parameters=[DendroJobParameter(name="tag", value="via drypipe")]))
    failing.wait_until_done(wait_sec=30)
    assert failing.status == "failed"
    assert failing.error == "processor exited with code 3: failing on purpose (via drypipe)"


def test_slurm_runner_asks_for_the_jobs_resources(tmp_path):
    cmd = command(tmp_path, "pass", timeout=600)
    cmd.required_resources = {"numCpus": 2, "numGpus": 1, "memoryGb": 1.5, "timeSec": 600}
    conf = DrypipeRunner("slurm", slurm_account="def-lab", sbatch_options=("--partition=debug",)).task_conf(cmd)
    assert conf.executer_type == "slurm" and conf.slurm_account == "def-lab"
    assert conf.sbatch_options == ["--partition=debug", "--cpus-per-task=2", "--gres=gpu:1", "--mem=1536M",
                                   "--time=11"]


def test_slurm_runner_runs_the_command_as_a_slurm_job(slurm_cluster, tmp_path):
    cmd = command(tmp_path, "import os; print('on slurm', os.environ['SLURM_JOB_ID'] != '')", timeout=120)
    cmd.required_resources = {"numCpus": 1, "numGpus": 0, "memoryGb": 0.25, "timeSec": 120}
    outcome = DrypipeRunner("slurm", poll_interval_sec=0.5).run(cmd, threading.Event())
    assert outcome.succeeded, cmd.console_path.read_text()
    assert cmd.console_path.read_text() == "on slurm True\n"
    assert (cmd.cwd / "drypipe" / ".drypipe" / "job1" / "slurm_job_id").exists()
