"""Jobs stopped from outside while the orchestrator watches: scancel, the time-limit signal,
SIGKILL of the task, scancel of a job still pending.  One run covers all four."""
import os
import signal
import subprocess

from tests.helpers import state_of
from tests.slurm.slurm_helpers import (
    FAST,
    job_id,
    slurm_test_env,
    start_drypipe,
    wait_until,
)


def test_cancel_timeout_sigkill_and_pending_cancel_are_recorded(slurm_cluster, tmp_path):
    env = slurm_test_env(slurm_cluster)
    instance = tmp_path / "i"
    run = start_drypipe("run", "-p", "tests.slurm.pipelines:signals", "-i", str(instance), *FAST,
                        env=env, log=tmp_path / "run.log")
    try:
        running = ("to-cancel", "to-timeout", "to-sigkill")
        wait_until(lambda: all(state_of(instance, k) == "step-started.0" for k in running)
                   and (instance / ".drypipe/to-sigkill/pid").exists() and job_id(instance, "held"),
                   60, "three tasks running and one submitted")
        assert state_of(instance, "held") == "launched"  # --hold: pending, never started

        subprocess.run(["scancel", job_id(instance, "to-cancel")], check=True)
        # What Slurm sends before the time limit (--signal=B:USR1@60), sent now.
        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id(instance, "to-timeout")], check=True)
        pid = int((instance / ".drypipe/to-sigkill/pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)  # the task script dies without recording anything
        subprocess.run(["scancel", job_id(instance, "held")], check=True)

        assert run.wait(timeout=60) == 1
    finally:
        if run.poll() is None:
            run.kill()
    log = (tmp_path / "run.log").read_text()
    assert state_of(instance, "to-cancel") == "killed.0", log
    assert state_of(instance, "to-timeout") == "timed-out.0", log
    # Recorded by the orchestrator from Slurm's view (FAILED) after the grace period.
    assert state_of(instance, "to-sigkill") in ("failed.0", "lost"), log
    assert "slurm job" in (instance / ".drypipe/to-sigkill/drypipe.log").read_text()
    # Cancelled while pending: no task script ever ran to record it.
    assert state_of(instance, "held") == "killed.0", log
    assert "CANCELLED" in (instance / ".drypipe/held/drypipe.log").read_text()
    assert "1 failed, 2 killed, 1 timed-out" in log or "2 killed" in log, log
