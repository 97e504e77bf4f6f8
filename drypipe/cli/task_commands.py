"""Commands on individual tasks of an instance: status, task, restart, kill, dump-env,
list-states, poll-task, call, report-execution-times."""
from __future__ import annotations

import fnmatch
import os
import subprocess
import sys

import click

from drypipe import state as st
from drypipe.cli import cli
from drypipe.cli.options import instance_dir_option, open_instance, task_key_option
from drypipe.errors import UserError
from drypipe.executor import ExecutorContext, TaskRun, executor_class
from drypipe.instance import Instance
from drypipe.task_record import TaskRecord


def _states(instance: Instance, pattern: str = "*") -> dict[str, str | None]:
    return {
        k: st.read_state(str(instance.control_dir(k)))
        for k in sorted(instance.task_keys())
        if fnmatch.fnmatchcase(k, pattern)
    }


force_option = click.option("--force", is_flag=True,
                            help="Start the task even if an upstream task has not completed.")


@cli.command()
@instance_dir_option
@click.option("--filter", "pattern", default="*", help="Only tasks whose key matches this glob.")
@click.option("--state", "state_filter",
              help="Only tasks in this state: waiting, ready, running, completed, failed (any failure), "
                   "killed, timed-out, lost, stale (with -p), or an exact marker such as failed.1.")
@click.option("--generator", "-p", "--pipeline", "generator", envvar="DRYPIPE_PIPELINE_GENERATOR",
              help="<module>:<function>: also mark completed tasks that are stale (would rerun).")
def status(instance_dir, pattern, state_filter, generator):
    """Show each task's state, executor, job id and duration.

    Exit code: 0 when every task has completed (and none is stale, with -p), 1 when a task
    failed, 3 when tasks are still waiting or running.
    """
    from drypipe.status_table import print_status

    instance = open_instance(instance_dir)
    states = _states(instance, pattern)
    stale: set[str] = set()
    if generator:
        from drypipe.cli.cache_commands import current_signer

        signer = current_signer(instance, generator)
        for key, state in states.items():
            if state == st.COMPLETED and key in signer.docs:
                record = TaskRecord(instance.root, key).signature_record()
                if record is not None and record.get("signature") != signer.signature(key):
                    stale.add(key)
    sys.exit(print_status(instance, states, state_filter, stale))


@cli.command()
@instance_dir_option
@task_key_option
@click.option("--wait", is_flag=True, help="Run in the foreground and exit with the task's exit code.")
@click.option("--tail", is_flag=True, help="Follow the task's out.log while it runs.")
@force_option
@click.option("--by-runner", is_flag=True, hidden=True)
@click.option("--from-remote", is_flag=True, hidden=True)
@click.option("--ssh-remote-dest", hidden=True)
def task(instance_dir, task_key, wait, tail, force, by_runner, from_remote, ssh_remote_dest):
    """Run one task by hand (as its ./task script would), even with no orchestrator running.

    It refuses to start while an upstream task has not completed (--force starts it anyway)."""
    instance = open_instance(instance_dir)
    if ssh_remote_dest:  # run it on that host instead (see `drypipe remote-exec`)
        from drypipe.cli.remote_commands import run_on_remote_dest

        run_on_remote_dest(instance, task_key, ssh_remote_dest, wait)
        return
    if from_remote:  # started over ssh by an orchestrator: the task must outlive that session
        for name in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "SSH_AUTH_SOCK"):
            os.environ.pop(name, None)
    _run_task_script(instance, task_key, ["--force"] if force else [], wait, tail)


@cli.command()
@instance_dir_option
@task_key_option
@click.option("--at-step", type=click.IntRange(min=0), help="Restart at this step (zero based).")
@click.option("--reset", is_flag=True, help="Clear the task's results (output dir, output variables), then restart it from the first step.")
@click.option("--wait", is_flag=True, help="Wait for the task to complete before exiting.")
@force_option
@click.option("--from-remote", is_flag=True, hidden=True)
def restart(instance_dir, task_key, at_step, reset, wait, force, from_remote):
    """Restart a task at its last unsuccessful step (a completed task restarts from step 0)."""
    instance = open_instance(instance_dir)
    instance.existing_control_dir(task_key)
    record = TaskRecord(instance.root, task_key)
    state = record.state()
    if at_step is None:
        at_step = 0 if reset or state == st.COMPLETED else st.step_of(state)
    steps = record.step_count()  # None when unreadable: the task script checks too
    if steps is not None and at_step >= steps:
        raise UserError(f"task {task_key}: --at-step {at_step}: it has {steps} step(s), numbered from 0")
    if reset:
        _reset(record, state)
    _run_task_script(instance, task_key, ["--at-step", str(at_step), *(["--force"] if force else [])], wait, False)


def _reset(record: TaskRecord, state: str | None) -> None:
    """--reset: clear the results of earlier runs (as the original's reset does), so steps that
    append to their outputs start from nothing.  A completed task's marker leaves `completed`
    first (the task record's rule), to `ready`: the task script moves it on from there."""
    _refuse_running(record)
    if st.is_in_flight(state) and record.task_conf().executor_name() != "process":
        # a Slurm job or a remote run may still be writing there: its results are not ours to clear
        raise UserError(f"task {record.key} is {state} ({record.task_conf().executor_name()}); "
                        f"stop it first (`drypipe kill -k {record.key}`), then reset it")
    if state == st.COMPLETED and not record.move(st.COMPLETED, st.READY):
        raise UserError(f"task {record.key}: its state changed while resetting it; try again")
    record.clear_results()


def _refuse_running(record: TaskRecord) -> None:
    pid = record.running_pid()
    if pid is not None:
        raise UserError(f"task {record.key} is already running (pid {pid}); `drypipe kill -k {record.key}` stops it")


def _run_task_script(instance: Instance, key: str, args: list[str], wait: bool, tail: bool) -> None:
    control = instance.existing_control_dir(key)
    _refuse_running(TaskRecord(instance.root, key))
    command = [str(control / "task"), *args]
    if wait:
        sys.exit(subprocess.call(command))
    with open(control / "drypipe.log", "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    click.echo(f"task {key} started (pid {child.pid}); log: {control / 'out.log'}")
    if tail:
        (control / "out.log").touch()
        sys.exit(subprocess.call(["tail", "-n", "+1", "-F", f"--pid={child.pid}", str(control / "out.log")]))


@cli.command()
@instance_dir_option
@click.option("--task-key", "-k", "pattern", default="*", help="Task key or glob (default: every running task).")
def kill(instance_dir, pattern):
    """Stop running tasks (SIGTERM locally, scancel under Slurm): they end in state killed.N."""
    instance = open_instance(instance_dir)
    if not any(c in pattern for c in "*?["):
        instance.existing_control_dir(pattern)  # an exact key: an error if there is no such task
    matching = _states(instance, pattern)
    if not matching:
        raise UserError(f"no task matches {pattern!r} in {instance.root}")
    running = [k for k, s in matching.items() if st.is_in_flight(s)]
    if not running:
        click.echo("no running task matches")
        return
    by_executor: dict[str, list[TaskRun]] = {}
    for key in running:
        conf = TaskRecord(instance.root, key).task_conf()
        by_executor.setdefault(conf.executor_name(), []).append(TaskRun(key, instance.root, conf))
    context = ExecutorContext(instance.root)
    for name, runs in by_executor.items():
        executor_class(name)(context).kill(runs)
    for key in running:
        click.echo(f"{key}: {st.read_state(str(instance.control_dir(key)))}")


@cli.command("dump-env")
@instance_dir_option
@task_key_option
def dump_env(instance_dir, task_key):
    """Print the environment variables a task's steps see."""
    instance = open_instance(instance_dir)
    control = instance.existing_control_dir(task_key)
    script = (
        'source "$__pipeline_instance_dir/.drypipe/.lib/task-lib.sh"; '
        'source "$__control_dir/task-env.sh" || { printf "%s\\n" "$__env_error" >&2; exit 1; }; env -0'
    )
    env = {"PATH": os.environ.get("PATH", ""), "__control_dir": str(control),
           "__pipeline_instance_dir": str(instance.root), "__task_key": task_key}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True)
    if result.returncode != 0:
        raise UserError(f"task {task_key}: cannot load task-env.sh: {result.stderr.decode().strip()}")
    for item in sorted(result.stdout.decode("utf-8", "replace").split("\0")):
        name = item.partition("=")[0]
        if item and name not in ("PATH", "PWD", "SHLVL", "_", "OLDPWD"):
            click.echo(item)


@cli.command("list-states")
@instance_dir_option
@click.option("--task-key", "-k", "pattern", default="*", help="Task key or glob.")
@click.option("--gen-rsync-list", is_flag=True, hidden=True)
def list_states(instance_dir, pattern, gen_rsync_list):
    """Print `<task key> <state>` for every task (one line each, for scripts)."""
    instance = open_instance(instance_dir)
    for key, state in _states(instance, pattern).items():
        click.echo(f"{key}\t{state or 'none'}")


@cli.command("poll-task")
@instance_dir_option
@task_key_option
def poll_task(instance_dir, task_key):
    """Print the state of one task."""
    instance = open_instance(instance_dir)
    click.echo(st.read_state(str(instance.existing_control_dir(task_key))) or "none")


@cli.command()
@instance_dir_option
@task_key_option
@click.argument("module_function")
def call(instance_dir, task_key, module_function):
    """Run a python call MODULE:FUNCTION in a task's environment (as the task script does)."""
    instance = open_instance(instance_dir)
    control = instance.existing_control_dir(task_key)
    script = (
        'source "$__pipeline_instance_dir/.drypipe/.lib/task-lib.sh"; __load_env && '
        'cd "$__task_output_dir" && exec "$__python_bin" -m drypipe call "$1"'
    )
    env = dict(os.environ, __control_dir=str(control), __pipeline_instance_dir=str(instance.root),
               __task_key=task_key)
    (instance.output_dir(task_key)).mkdir(parents=True, exist_ok=True)
    sys.exit(subprocess.call(["bash", "-c", script, "_", module_function], env=env))


@cli.command("report-execution-times")
@instance_dir_option
@click.option("--task-key", "-k", "task_key", help="One task only.")
@click.option("--filter", "pattern", default="*", show_default=True, help="Glob over task keys.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True),
              help="Also write a self-contained HTML report with a timeline chart to this file.")
def report_execution_times(instance_dir, task_key, pattern, html_file):
    """Duration (and CPU time, when recorded) of each task, then min/median/max/total per group
    of tasks whose keys differ only by numbers (task-for-chunk.*) and over all matching tasks."""
    from drypipe import report
    from drypipe.display import columns

    instance = open_instance(instance_dir)
    if task_key:
        instance.existing_control_dir(task_key)
    times = report.collect(instance, pattern, [task_key] if task_key else None)
    if not times:
        raise UserError(f"no task matches {pattern!r} in {instance.root}")
    tasks, groups = report.text_tables(times, task_key or pattern)
    for line in columns(tasks, right={3, 4}):
        click.echo(line)
    click.echo()
    for line in columns(groups, right={1, 2, 3, 4, 5, 6}):
        click.echo(line)
    if html_file:
        from drypipe.instance import write_atomic

        write_atomic(html_file, report.html_report(instance, times, task_key or pattern))
        click.echo(f"HTML report: {os.path.abspath(html_file)}")
