"""What other executors may use of the Slurm executor: the SSH executor submits job arrays to
a remote host's Slurm exactly as the Slurm executor does here (same batch script, same sbatch
options, same files), and reads that Slurm's answers the same way.

This module is the Slurm package's public interface to them; everything else in
executors/slurm*.py is the Slurm executor's own and may change.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path, PurePath

from drypipe.errors import UserError
from drypipe.executor import Outcome
from drypipe.instance import Instance
from drypipe.keys import check_task_key
from drypipe.task_conf import TaskConf
from executors import slurm_client as _client
from executors import slurm_files as _files
from executors.slurm_client import JobStatus, error_text
from executors.slurm_files import array_comment
from executors.slurm_plugin import JOB_ID_FILE

__all__ = ["BATCH_LOG_FILE", "JOB_ID_FILE", "JobArray", "JobStatus", "array_comment", "ended_outcome",
           "error_text", "job_array", "job_name", "parse_squeue", "record_job_id", "resolve_keys", "squeue_args"]

BATCH_LOG_FILE = _files.BATCH_LOG_FILE  # in a task's control dir: what its batch script printed


@dataclass(frozen=True)
class JobArray:
    """One job array to submit: write `files` (name -> (text, octal mode)) into `directory`,
    then run `sbatch_args` in the instance dir; its job id goes to `<directory>/<name>.job`."""

    name: str  # "array-<number>"
    directory: str
    files: dict[str, tuple[str, str]]
    sbatch_args: list[str]
    job_name: str  # shared by every job of the instance (squeue --name finds them)


def job_array(conf: TaskConf, instance_root: PurePath, number: str, tasks: list[tuple[str, int]]) -> JobArray:
    """The job array of `tasks` ((key, start step) each, one TaskConf) of the instance at
    `instance_root` (a path on the host that submits it); `number` is unique in the instance."""
    name = f"array-{number}"
    listing = "".join(f"{key} {step}\n" for key, step in tasks)
    return JobArray(
        name=name,
        directory=str(instance_root / _files.SLURM_DIR),
        files={"array-launcher.sh": (_files.ARRAY_LAUNCHER, "755"), f"{name}.tasks": (listing, "644")},
        sbatch_args=_files.array_sbatch_args(conf, instance_root, number, len(tasks)),
        job_name=_files.job_name(instance_root),
    )


def resolve_keys(instance: Instance, key: str) -> list[str]:
    """The tasks a KEY|GLOB argument of the array commands names: a parent key (see
    `drypipe array-create-parent`), a glob over task keys, or one task key."""
    if not any(c in key for c in "*?["):
        check_task_key(key)
        children = _files.read_parent(instance.root, key)
        if children is not None:
            return children
        instance.existing_control_dir(key)
        return [key]
    keys = sorted(k for k in instance.task_keys() if fnmatch.fnmatchcase(k, key))
    if not keys:
        raise UserError(f"no task matches {key!r} in {instance.root}")
    return keys


def job_name(instance_root: PurePath) -> str:
    return _files.job_name(instance_root)


def record_job_id(control_dir: Path, job_id: str) -> None:
    """Record a task's job (`123_4`) where the Slurm executor and `drypipe status` read it."""
    _files.write_job_id(control_dir, job_id)


def squeue_args(job_ids: list[str]) -> list[str] | None:
    """The squeue command (an argv) whose output parse_squeue reads, for these jobs (arrays
    whole: `123` for `123_4`); None for no job."""
    return _client.squeue_args(job_id.split("_")[0] for job_id in job_ids)


def parse_squeue(returncode: int, output: str) -> dict[str, JobStatus] | None:
    """The jobs' statuses from squeue_args' output (stdout and stderr), by `123` or `123_4`;
    None when squeue failed (their states are unknown this time)."""
    return _client.parse_squeue(returncode, output, output)


def ended_outcome(status: JobStatus) -> Outcome:
    """What a job that ended means for its task when the task recorded no final state itself
    (killed, timed-out, failed or lost)."""
    return _client.ENDED_STATES.get(status.state, "failed")
