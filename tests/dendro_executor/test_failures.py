"""Failures and interruptions of Dendro tasks: a failing processor fails its task and the
Dendro tasks submitted ahead downstream; a killed orchestrator adopts the jobs it submitted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

from tests.dendro_executor.conftest import (
    REPO,
    SLEEP_SCHEDULE,
    logs,
    run_pipeline,
    state_of,
    wait_for,
)
from tests.dendro_executor.test_mixed import DENDRO_TASKS, SPEC, check_outputs

FAILING = """
    import os

    from dry_pipe import DryPipe, TaskConf
    from executors.dendro import dendro_call


    def testing(processor):
        return TaskConf(executer_type="dendro", dendro_service=os.environ["DENDRO_SERVICE_NAME"], dendro_app="testing",
                        dendro_processor=processor, required_resources={"memoryGb": 1, "timeSec": 60})


    def gen(dsl):
        bad = dsl.task(key="bad", task_conf=testing("fail")).inputs(tag="boom").outputs(
            output=dsl.file("out.txt")).calls(dendro_call(testing("fail")))()
        yield bad
        after = dsl.task(key="after", task_conf=testing("copy")).inputs(input=bad.outputs.output).outputs(
            output=dsl.file("copy.txt")).calls(dendro_call(testing("copy")))()
        yield after
        yield dsl.task(key="local_after").inputs(f=after.outputs.output).outputs(r=dsl.file("r.txt")).calls(
            "#!/usr/bin/env bash\\ncp \\"$f\\" \\"$r\\"\\n")()
        yield dsl.task(key="independent").outputs(x=int).calls("#!/usr/bin/env bash\\nexport x=7\\n")()


    def pipeline():
        return DryPipe.create_pipeline(gen)
"""


def test_failing_processor_fails_the_task_and_its_dendro_dependents(tenant, tmp_path):
    tenant.start_compute()
    (tmp_path / "failing_pipeline.py").write_text(textwrap.dedent(FAILING))
    env = tenant.env(PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    instance = tmp_path / "instance"
    result = run_pipeline("failing_pipeline:pipeline", instance, env, expect=1)

    assert state_of(instance, "bad") == "failed.0"
    bad_log = (instance / ".drypipe" / "bad" / "out.log").read_text()
    assert "failing on purpose (boom)" in bad_log  # the job's console output
    bad_job = json.loads((instance / ".drypipe" / "bad" / "dendro_job").read_text())
    assert f"dendro job {bad_job['job_id']} failed: processor exited with code 3" in bad_log
    # `after` was submitted with `bad`; the service failed its job, drypipe records it.
    assert state_of(instance, "after") == "failed.0", logs(instance)
    assert f"upstream job {bad_job['job_id']} failed" in (instance / ".drypipe" / "after" / "out.log").read_text()
    assert state_of(instance, "local_after") == "waiting"
    assert state_of(instance, "independent") == "completed"
    assert "FAILED bad:" in result.stderr, result.stderr
    assert "failing on purpose (boom)" in result.stderr
    assert "FAILED after:" in result.stderr
    assert "waiting local_after: upstream not completed: after" in result.stderr

    # Running again does not resubmit failed tasks; --restart-failed asks for new jobs
    # (without it the service would return the failed job from its cache).
    created = tenant.server.requests("createJob")
    run_pipeline("failing_pipeline:pipeline", instance, env, expect=1)
    assert tenant.server.requests("createJob") == created
    result = subprocess.run([sys.executable, "-m", "drypipe", "run", "-p", "failing_pipeline:pipeline", "-i",
                             str(instance), "--restart-failed", "--sleep-schedule", SLEEP_SCHEDULE],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    again = json.loads((instance / ".drypipe" / "bad" / "dendro_job").read_text())
    assert again["job_id"] != bad_job["job_id"] and not again["cache_hit"]
    assert state_of(instance, "bad") == "failed.0"


def test_killed_orchestrator_restarts_and_adopts_the_submitted_jobs(tenant, tmp_path):
    tenant.start_compute()
    server = tenant.server
    env = tenant.env(DRYPIPE_DEMO_DELAY_SEC="3")
    instance = tmp_path / "instance"
    created_before = server.requests("createJob")
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "drypipe", "run", "-p", SPEC, "-i", str(instance), "--sleep-schedule", SLEEP_SCHEDULE],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        control = instance / ".drypipe"
        # shout's job runs on the compute resource; chars and stats were submitted with it.
        wait_for(lambda: state_of(instance, "shout") == "step-started.0", what="shout's job to run")
        assert all((control / key / "dendro_job").exists() for key in DENDRO_TASKS)
    finally:
        os.kill(orchestrator.pid, signal.SIGKILL)
        orchestrator.wait()
    assert server.requests("createJob") - created_before == len(DENDRO_TASKS)
    assert state_of(instance, "chars") == "waiting"

    run_pipeline(SPEC, instance, env)
    check_outputs(instance)
    # No duplicate submission: the restarted orchestrator adopted all three jobs.
    assert server.requests("createJob") - created_before == len(DENDRO_TASKS)
    assert len(server.jobs(tenant.service)) == len(DENDRO_TASKS)
    assert tenant.claimed() == len(DENDRO_TASKS)
    for key in ("chars", "stats"):
        assert "adopted (submitted ahead)" in (control / key / "drypipe.log").read_text()


def test_drypipe_kill_cancels_the_running_job(tenant, tmp_path):
    tenant.start_compute()
    env = tenant.env(DRYPIPE_DEMO_DELAY_SEC="60")
    instance = tmp_path / "instance"
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "drypipe", "run", "-p", SPEC, "-i", str(instance), "--sleep-schedule", SLEEP_SCHEDULE],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: state_of(instance, "shout") == "step-started.0", what="shout's job to run")
        result = subprocess.run([sys.executable, "-m", "drypipe", "kill", "-i", str(instance), "-k", "shout"],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        assert state_of(instance, "shout") == "killed.0"
        output, _ = orchestrator.communicate(timeout=30)
        assert orchestrator.returncode == 1, output
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()
            orchestrator.wait()
    record = json.loads((instance / ".drypipe" / "shout" / "dendro_job").read_text())
    job = tenant.client().get_job(record["job_id"])
    assert job.status == "failed" and job.canceled
    assert "dendro job" in (instance / ".drypipe" / "shout" / "drypipe.log").read_text().splitlines()[-1]
