"""The Slurm executor's descriptor: its TaskConf settings, the job id as its handle, Slurm's
node-local scratch directory `$SLURM_TMPDIR`, and how `./task tail` tells a job still runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drypipe.errors import UserError
from drypipe.plugins import ExecutorPlugin

if TYPE_CHECKING:
    from drypipe.task_record import TaskRecord

JOB_ID_FILE = "slurm_job_id"  # "<job id>" or "<array job id>_<index>", written by the job's launcher


@dataclass
class SlurmSettings:
    slurm_account: str | None = field(default=None, metadata={
        "help": "the account jobs are charged to (sbatch --account)"})
    sbatch_options: list[str] = field(default_factory=list, metadata={
        "help": 'more sbatch options, after drypipe\'s own (e.g. ["--partition=debug", "--time=0:5:00"])'})
    max_simultaneous_jobs: int | None = field(default=None, metadata={
        "help": "throttle of a job array (%N): at most N of its tasks run at once; None: no throttle"})

    def validate(self) -> None:
        if self.max_simultaneous_jobs is not None and self.max_simultaneous_jobs < 1:
            raise UserError("TaskConf: max_simultaneous_jobs must be a positive integer, "
                            f"got {self.max_simultaneous_jobs!r}")


def job_id(record: TaskRecord) -> str | None:
    """The task's Slurm job id, from the file its job's launcher writes."""
    try:
        return record.path(JOB_ID_FILE).read_text().split()[0]
    except (OSError, IndexError):
        return None


# While its marker says it runs: a job that Slurm, when its squeue is here, still knows.
_RUNNING_ELSEWHERE = f"""local job
read -r job _ < "$__control_dir/{JOB_ID_FILE}" 2>/dev/null || return 1
! command -v squeue > /dev/null || [[ -n $(squeue -h -j "$job" -o %i 2>/dev/null) ]]"""

PLUGIN: ExecutorPlugin[SlurmSettings] = ExecutorPlugin(
    name="slurm",
    executor="executors.slurm:SlurmExecutor",
    settings=SlurmSettings,
    aliases={"slurm_options": "sbatch_options"},  # the original DryPipe's spelling
    handle=job_id,
    scratch_dir_variable="SLURM_TMPDIR",
    running_elsewhere=_RUNNING_ELSEWHERE,
)
