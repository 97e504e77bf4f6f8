"""Commands on individual tasks of an instance: status, task, restart, kill, dump-env,
list-states, poll-task, call, report-execution-times."""
from __future__ import annotations

import os
import subprocess
import sys

import click

from drypipe import state as st
from drypipe.cli import cli
from drypipe.cli.options import (
    TaskSelection,
    instance_dir_option,
    open_instance,
    task_key_option,
    task_selection_options,
)
from drypipe.cli.plugin_commands import plugin_options, run_plugin_option
from drypipe.errors import UserError
from drypipe.executor import ExecutorContext, TaskRun, executor_class
from drypipe.instance import Instance
from drypipe.task_record import TaskRecord, log_path


def in_state(state: str | None, wanted: str | None) -> bool:
    """Whether a task in `state` is selected by `--state wanted` (None: any state)."""
    return wanted is None or st.matches(state, wanted)


force_option = click.option("--force", is_flag=True,
                            help="Start the task even if an upstream task has not completed.")


@cli.command()
@instance_dir_option
@task_selection_options
@click.option("--generator", "-p", "--pipeline", "generator", envvar="DRYPIPE_PIPELINE_GENERATOR",
              help="<module>:<function>: also mark completed tasks that are stale (would rerun).")
def status(instance_dir: str, selection: TaskSelection, generator: str | None) -> None:
    """Show each task's state, executor, job id and duration.

    The summary line and the exit code are about the tasks that -k and --state select: 0 when
    every one has completed (and, with -p, none is stale), 1 when one failed, 3 when one is still
    waiting or running, or is stale (with -p: completed, but `drypipe run` would run it again),
    or when --state selects no task.
    """
    from drypipe.status_table import print_status

    if selection.state == "stale" and not generator:
        raise click.UsageError("--state stale needs the pipeline to compare with: pass -p <module>:<function>",
                               click.get_current_context())
    instance = open_instance(instance_dir)
    states = selection.states(instance)
    stale: set[str] = set()
    if generator:
        from drypipe.cli.cache_commands import current_signer, is_stale

        signer = current_signer(instance, generator)
        stale = {key for key, state in states.items() if is_stale(instance, signer, key, state)}
    sys.exit(print_status(instance, states, selection.state, stale))


@cli.command()
@instance_dir_option
@task_key_option
@click.option("--wait", is_flag=True, help="Run in the foreground and exit with the task's exit code.")
@click.option("--tail", is_flag=True, help="Follow the task's out.log while it runs.")
@force_option
@click.option("--by-runner", is_flag=True, hidden=True)
@click.option("--from-remote", is_flag=True, hidden=True)
@plugin_options("task")  # e.g. the SSH executor's --ssh-remote-dest: run it on a host
def task(instance_dir: str, task_key: str, wait: bool, tail: bool, force: bool, by_runner: bool,
         from_remote: bool) -> None:
    """Run one task by hand (as its ./task script would), even with no orchestrator running.

    It refuses to start while an upstream task has not completed (--force starts it anyway)."""
    if run_plugin_option(click.get_current_context()):
        return
    instance = open_instance(instance_dir)
    if from_remote:  # started over ssh by an orchestrator: the task must outlive that session
        for name in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "SSH_AUTH_SOCK"):
            os.environ.pop(name, None)
    _run_task_script(instance, task_key, ["--force"] if force else [], wait, tail)


@cli.command()
@instance_dir_option
@task_key_option
@click.option("--at-step", type=click.IntRange(min=0), help="Restart at this step (zero based).")
@click.option("--reset", is_flag=True,
              help="Clear the task's results (output dir, output variables), then restart it from the first step.")
@click.option("--wait", is_flag=True, help="Wait for the task to complete before exiting.")
@force_option
@click.option("--from-remote", is_flag=True, hidden=True)
def restart(instance_dir: str, task_key: str, at_step: int | None, reset: bool, wait: bool, force: bool,
            from_remote: bool) -> None:
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
    click.echo(f"task {key} started (pid {child.pid}); log: {log_path(instance, key)}")
    if tail:
        (control / "out.log").touch()
        sys.exit(subprocess.call(["tail", "-n", "+1", "-F", f"--pid={child.pid}", str(control / "out.log")]))


@cli.command()
@instance_dir_option
@task_selection_options
def kill(instance_dir: str, selection: TaskSelection) -> None:
    """Stop running tasks (SIGTERM locally, scancel under Slurm): they end in state killed.N
    (and are not retried by --retries)."""
    instance = open_instance(instance_dir)
    matching = selection.states(instance)
    running = [k for k, s in matching.items() if st.is_in_flight(s) and in_state(s, selection.state)]
    if not running:
        click.echo("no running task matches")
        return
    by_executor: dict[str, list[TaskRun]] = {}
    for key in running:
        record = TaskRecord(instance.root, key)
        conf = record.task_conf()
        record.request_kill("drypipe kill")  # first: a killed task with retries left is then not retried
        by_executor.setdefault(conf.executor_name(), []).append(TaskRun(key, instance.root, conf))
    context = ExecutorContext(instance.root)
    for name, runs in by_executor.items():
        executor_class(name)(context).kill(runs)
    for key in running:
        click.echo(f"{key}: {st.read_state(str(instance.control_dir(key)))}")


@cli.command("dump-env")
@instance_dir_option
@task_key_option
def dump_env(instance_dir: str, task_key: str) -> None:
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
@task_selection_options
@click.option("--gen-rsync-list", is_flag=True, hidden=True)
def list_states(instance_dir: str, selection: TaskSelection, gen_rsync_list: bool) -> None:
    """Print `<task key> <state>` for every task (one line each, for scripts)."""
    if selection.state == "stale":
        raise click.UsageError("list-states cannot tell stale tasks: use `drypipe status --state stale -p ...`",
                               click.get_current_context())
    instance = open_instance(instance_dir)
    for key, state in selection.states(instance).items():
        if in_state(state, selection.state):
            click.echo(f"{key}\t{st.text(state)}")


@cli.command("poll-task")
@instance_dir_option
@task_key_option
def poll_task(instance_dir: str, task_key: str) -> None:
    """Print the state of one task."""
    instance = open_instance(instance_dir)
    click.echo(st.text(st.read_state(str(instance.existing_control_dir(task_key)))))


@cli.command()
@instance_dir_option
@task_key_option
@click.argument("module_function")
def call(instance_dir: str, task_key: str, module_function: str) -> None:
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
@task_selection_options
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True),
              help="Also write a self-contained HTML report with a timeline chart to this file.")
def report_execution_times(instance_dir: str, selection: TaskSelection, html_file: str | None) -> None:
    """Duration (and CPU time, when recorded) of each task and its peak memory, then
    min/median/max/total per group of tasks whose keys differ only by numbers
    (task-for-chunk.*) and over all matching tasks, over their completed runs (failures are
    counted apart)."""
    from drypipe import report
    from drypipe.display import columns, natural_key

    if selection.state == "stale":
        raise click.UsageError("report-execution-times cannot tell stale tasks", click.get_current_context())
    instance = open_instance(instance_dir)
    keys = [k for k, s in selection.states(instance).items() if in_state(s, selection.state)]
    if not keys:
        raise UserError(f"no task matches {selection.describe()}"
                        f"{f' in state {selection.state}' if selection.state else ''} in {instance.root}")
    times = report.collect(instance, keys=sorted(keys, key=natural_key))
    pattern = selection.globs[0] if len(selection.globs) == 1 else "*"
    tasks, groups = report.text_tables(times, pattern)
    for line in columns(tasks, right=report.TASK_NUMERIC):
        click.echo(line)
    click.echo()
    for line in columns(groups, right=report.GROUP_NUMERIC):
        click.echo(line)
    if html_file:
        from drypipe.instance import write_atomic

        write_atomic(html_file, report.html_report(instance, times, pattern))
        click.echo(f"HTML report: {os.path.abspath(html_file)}")
