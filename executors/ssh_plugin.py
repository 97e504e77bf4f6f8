"""The SSH executor's descriptor: a task with `ssh_specs` runs on that host (as its
executer_type says: a process or a Slurm job there); its handle is the host (and job)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drypipe.plugins import ExecutorPlugin, handle_from_json

if TYPE_CHECKING:
    from drypipe.task_record import TaskRecord

RECORD_FILE = "ssh_launch"  # the local record of a launch (executors/ssh.py)


@dataclass
class SshSettings:
    ssh_specs: str | None = field(default=None, metadata={
        "help": 'the host: "user@host[:port][:/path/to/private_key]" (user, port and key may come from ~/.ssh/config)'})
    remote_base_dir: str | None = field(default=None, metadata={
        "help": "where instances live on that host (default: the path in ssh_specs, else ~/.drypipe-remote)"})
    remote_containers_dir: str | None = field(default=None, metadata={
        "help": "where relative container images are found on that host"})


def launch_handle(record: TaskRecord) -> str | None:
    return handle_from_json(record, RECORD_FILE, "host", "job_id")


PLUGIN: ExecutorPlugin[SshSettings] = ExecutorPlugin(
    name="ssh",
    executor="executors.ssh:SshExecutor",
    settings=SshSettings,
    aliases={"ssh_remote_dest": "ssh_specs"},  # the original DryPipe's spelling
    selected_by=("ssh_specs",),
    handle=launch_handle,
)
