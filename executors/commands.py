"""The `drypipe` commands of the Slurm and SSH executors (entry point `drypipe.commands`).

Light on purpose: every `drypipe` command reads this tuple; the commands themselves are in
executors/slurm_cli.py and executors/ssh_cli.py, imported only when one of them runs.  The
short helps repeat the commands' first sentences (a test keeps them equal).
"""
from __future__ import annotations

from drypipe.cli.plugin_commands import CommandSpec, OptionSpec

_SLURM = "executors.slurm_cli"
_SSH = "executors.ssh_cli"

COMMANDS: tuple[CommandSpec | OptionSpec, ...] = (
    CommandSpec("sbatch", f"{_SLURM}:sbatch_command", "Slurm",
                "Submit one task to Slurm as a job (runs its sbatch-launcher.sh).",
                example="drypipe sbatch -i /data/run1 -k align.3 --wait"),
    CommandSpec("sbatch-gen", f"{_SLURM}:sbatch_gen", "Slurm",
                "Print the sbatch command that submits a task, without running it."),
    CommandSpec("array-create-parent", f"{_SLURM}:array_create_parent", "Slurm",
                "Create a parent key naming the tasks that match a glob, for array-submit and "
                "restart-failed-array-tasks (as in `drypipe array-create-parent -k all-chunks 'chunk.*'`)."),
    CommandSpec("array-submit", f"{_SLURM}:array_submit", "Slurm",
                "Submit the ready tasks of a parent key (or matching a glob) as one Slurm job array."),
    CommandSpec("restart-failed-array-tasks", f"{_SLURM}:restart_failed_array_tasks", "Slurm",
                "Resubmit the failed, killed, timed-out and lost tasks of a parent (or glob) as one job "
                "array; each restarts at the step that did not complete."),
    CommandSpec("remote-exec", f"{_SSH}:remote_exec", "SSH",
                "Run one ssh task on its host now: upload it and its inputs, start it there.",
                example="drypipe remote-exec -i /data/run1 -k fetch --wait"),
    CommandSpec("fetch-remote-state", f"{_SSH}:fetch_remote_state", "SSH",
                "Ask the task's host for its state; download its results if it has ended."),
    CommandSpec("array-submit-from-remote", f"{_SSH}:array_submit_from_remote", "SSH",
                "Submit the ready ssh tasks of a parent (or glob) to their host's Slurm as job arrays "
                "(one per TaskConf); ssh tasks with executer_type=\"process\" start as processes there."),
    CommandSpec("array-watch-from-remote", f"{_SSH}:array_watch_from_remote", "SSH",
                "Poll the hosts of many ssh tasks (one command per host) and download the ended ones."),
    CommandSpec("upload-task-inputs", f"{_SSH}:upload_task_inputs", "Plumbing",
                "Upload a task (control dir, task runtime, code) and exactly the inputs it consumes to its "
                "host, without starting it."),
    CommandSpec("upload-drypipe-for-remote-instance", f"{_SSH}:upload_drypipe_for_remote_instance", "Plumbing",
                "Install drypipe (for python calls) in a venv on the task's host: a wheel of this drypipe, "
                "installed only if the version there differs."),
    CommandSpec("array-upload", f"{_SSH}:array_upload", "Plumbing",
                "Upload many ssh tasks and their inputs (one rsync per host), without starting them."),
    CommandSpec("array-download", f"{_SSH}:array_download", "Plumbing",
                "Download the outputs and logs of many ssh tasks (one rsync per host); the ones that ended "
                "there get their final state here too."),
    CommandSpec("array-rsync-list", f"{_SSH}:array_rsync_list", "Plumbing",
                "Print the files an upload of the tasks sends (relative to the instance dir; for "
                "`rsync --files-from` or Globus), or with --download what comes back.",
                example="drypipe array-rsync-list -i /data/run1 -k 'align.*'"),
    # the original DryPipe's `drypipe task -k KEY --ssh-remote-dest user@host:/remote/base:/path/to/key`
    OptionSpec("task", "--ssh-remote-dest", f"{_SSH}:task_on_remote_dest"),
)
