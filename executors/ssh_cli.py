"""The SSH executor's commands, for tasks that run on remote hosts (`TaskConf(ssh_specs=...)`):
remote-exec, fetch-remote-state, upload-task-inputs, upload-drypipe-for-remote-instance,
array-upload, array-download, array-submit-from-remote, array-watch-from-remote,
array-rsync-list, and the handler of `drypipe task --ssh-remote-dest` (listed in
executors/commands.py).

They work on a prepared instance with or without an orchestrator (`drypipe run` adopts what
they start): every start claims the task by an atomic rename of its marker.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import click

from drypipe import state as st
from drypipe.cli import DryPipeCommand
from drypipe.cli.options import instance_dir_option, key_option, open_instance, task_key_option
from drypipe.errors import UserError
from drypipe.executor import EndWatch, ExecutorContext, TaskRun, outcome_state
from drypipe.instance import Instance
from drypipe.task_conf import TaskConf
from drypipe.task_record import TaskRecord
from executors.slurm_api import resolve_keys
from executors.ssh import SshExecutor

group_key_option = key_option("A task key, a glob over task keys, or a parent key (see array-create-parent).",
                              "KEY|GLOB")
wait_option = click.option("--wait", is_flag=True,
                           help="Wait until the task(s) end; exit code 0 only if all completed.")


def _ssh(instance: Instance) -> SshExecutor:
    return SshExecutor(ExecutorContext(instance.root))


def _conf(instance: Instance, ssh: SshExecutor, key: str) -> TaskConf:
    instance.existing_control_dir(key)
    conf = TaskRecord(instance.root, key).task_conf()
    record = ssh.read_record(key) or {}
    if not conf.ssh_specs and record.get("ssh_remote_dest"):  # started by `task --ssh-remote-dest`
        conf = ssh.with_remote_dest(conf, record["ssh_remote_dest"])
    return conf


def _run(instance: Instance, ssh: SshExecutor, key: str) -> TaskRun:
    conf = _conf(instance, ssh, key)
    if not conf.ssh_specs:
        raise UserError(f"task {key} does not run over ssh (its TaskConf has no ssh_specs)")
    state = st.read_state(str(instance.control_dir(key)))
    return TaskRun(key, instance.root, conf, st.step_of(state) if st.is_failure(state) else 0)


def _runs(instance: Instance, ssh: SshExecutor, pattern: str) -> list[TaskRun]:
    runs = []
    for key in resolve_keys(instance, pattern):
        conf = _conf(instance, ssh, key)
        if conf.ssh_specs:
            state = st.read_state(str(instance.control_dir(key)))
            runs.append(TaskRun(key, instance.root, conf, st.step_of(state) if st.is_failure(state) else 0))
    if not runs:
        raise UserError(f"no task of {pattern!r} runs over ssh (no ssh_specs in their TaskConf)")
    return runs


def _state(instance: Instance, key: str) -> str | None:
    return st.read_state(str(instance.control_dir(key)))


def _launch(instance: Instance, ssh: SshExecutor, runs: list[TaskRun],
            startable: Callable[[str | None], bool]) -> list[TaskRun]:
    """Claim (marker -> launched) the runs whose state `startable` accepts, and launch them."""
    claimed: list[tuple[TaskRun, str | None]] = []
    for run in runs:
        state = _state(instance, run.key)
        if not startable(state):
            click.echo(f"skipped {run.key}: {state or 'no state marker (run `drypipe prepare` first)'}", err=True)
            continue
        if TaskRecord.at(run.control_dir).claim(state):
            claimed.append((run, state))
        else:
            click.echo(f"skipped {run.key}: its state changed meanwhile ({_state(instance, run.key)})", err=True)
    if not claimed:
        return []
    try:
        handles = ssh.launch([run for run, _ in claimed])
    except UserError:  # nothing started: put the markers back
        for run, old in claimed:
            TaskRecord.at(run.control_dir).unclaim(old)
        raise
    for run, _ in claimed:
        run.handle = handles.get(run.key)
    return [run for run, _ in claimed]


def _wait(instance: Instance, ssh: SshExecutor, runs: list[TaskRun]) -> int:
    """Poll the hosts (one command each per round) until every task has a final state."""
    watch = EndWatch()
    pending = list(runs)
    while pending:
        liveness = ssh.sync(pending)
        now = time.monotonic()
        still = []
        for run in pending:
            state = _state(instance, run.key)
            if st.is_terminal(state):
                click.echo(f"{run.key}: {state}")
                continue
            lv = liveness.get(run.key)
            if lv is None or lv.certain or not watch.ended(run.key, lv, now):
                still.append(run)
                continue
            new = outcome_state(lv, state)
            TaskRecord.at(run.control_dir).move(state, new)
            click.echo(f"{run.key}: {new} ({lv.reason})", err=True)
        pending = still
        if pending:
            time.sleep(1.0)
    return 0 if all(_state(instance, r.key) == st.COMPLETED for r in runs) else 1


def _startable_one(state: str | None) -> bool:
    return state in (st.READY, st.WAITING) or st.is_failure(state) or state == st.COMPLETED


def task_on_remote_dest(ctx: click.Context, dest: str) -> None:
    """`drypipe task -k KEY --ssh-remote-dest user@host[:port]:/remote/base[:/path/to/key]`: run
    the task on that host instead (see `drypipe remote-exec`)."""
    instance = open_instance(ctx.params["instance_dir"])
    key: str = ctx.params["task_key"]
    wait: bool = ctx.params["wait"]
    ssh = _ssh(instance)
    conf = ssh.with_remote_dest(_conf(instance, ssh, key), dest)
    state = _state(instance, key)
    run = TaskRun(key, instance.root, conf, st.step_of(state) if st.is_failure(state) else 0)
    if st.is_in_flight(state):
        raise UserError(f"task {key} is already running ({state}); `drypipe kill -k {key}` stops it")
    if not _launch(instance, ssh, [run], _startable_one):
        raise UserError(f"task {key}: not started")
    record = ssh.read_record(key) or {}
    record["ssh_remote_dest"] = dest
    ssh.write_record(key, record)
    click.echo(f"task {key}: started on {record.get('host', '?')} in {record.get('remote_instance', '?')}")
    if wait:
        raise SystemExit(_wait(instance, ssh, [run]))
    click.echo(f"note: `drypipe fetch-remote-state -k {key}` brings its results back when it ends", err=True)


@click.command("remote-exec", cls=DryPipeCommand)
@instance_dir_option
@task_key_option
@wait_option
def remote_exec(instance_dir: str, task_key: str, wait: bool) -> None:
    """Run one ssh task on its host now: upload it and its inputs, start it there.

    A failed task restarts at the step that failed.  With --wait, its results are downloaded
    when it ends (else `fetch-remote-state` does it, or `drypipe run`, which adopts it)."""
    instance = open_instance(instance_dir)
    ssh = _ssh(instance)
    run = _run(instance, ssh, task_key)
    state = _state(instance, task_key)
    if st.is_in_flight(state):
        liveness = ssh.sync([run]).get(task_key)
        if liveness is None or liveness.alive or liveness.certain:
            raise UserError(f"task {task_key} is already running ({state}); `drypipe kill -k {task_key}` stops it")
        state = _state(instance, task_key)
    if state == st.WAITING:
        click.echo(f"note: task {task_key} was waiting for upstream tasks; their outputs may be missing", err=True)
    if not _launch(instance, ssh, [run], _startable_one):
        raise UserError(f"task {task_key}: not started")
    record = ssh.read_record(task_key) or {}
    click.echo(f"task {task_key}: started on {record.get('host', '?')} ({record.get('remote_instance', '?')})")
    if wait:
        raise SystemExit(_wait(instance, ssh, [run]))


@click.command("fetch-remote-state", cls=DryPipeCommand)
@instance_dir_option
@task_key_option
@wait_option
def fetch_remote_state(instance_dir: str, task_key: str, wait: bool) -> None:
    """Ask the task's host for its state; download its results if it has ended."""
    instance = open_instance(instance_dir)
    ssh = _ssh(instance)
    run = _run(instance, ssh, task_key)
    if wait:
        raise SystemExit(_wait(instance, ssh, [run]))
    if ssh.read_record(task_key) is None:
        raise UserError(f"task {task_key} was never launched on its host")
    liveness = ssh.sync([run]).get(task_key)
    state = _state(instance, task_key)
    note = "" if liveness is None or liveness.alive or st.is_terminal(state) else f" ({liveness.reason})"
    click.echo(f"{task_key}\t{st.text(state)}{note}")


@click.command("upload-task-inputs", cls=DryPipeCommand)
@instance_dir_option
@task_key_option
def upload_task_inputs(instance_dir: str, task_key: str) -> None:
    """Upload a task (control dir, task runtime, code) and exactly the inputs it consumes to its
    host, without starting it."""
    instance = open_instance(instance_dir)
    ssh = _ssh(instance)
    for key, where in ssh.upload([_run(instance, ssh, task_key)]).items():
        click.echo(f"{key}: uploaded to {where}")


@click.command("upload-drypipe-for-remote-instance", cls=DryPipeCommand)
@instance_dir_option
@task_key_option
def upload_drypipe_for_remote_instance(instance_dir: str, task_key: str) -> None:
    """Install drypipe (for python calls) in a venv on the task's host: a wheel of this drypipe,
    installed only if the version there differs."""
    instance = open_instance(instance_dir)
    ssh = _ssh(instance)
    click.echo(f"drypipe for python calls: {ssh.install_drypipe(_run(instance, ssh, task_key))}")


@click.command("array-upload", cls=DryPipeCommand)
@instance_dir_option
@group_key_option
def array_upload(instance_dir: str, task_key: str) -> None:
    """Upload many ssh tasks and their inputs (one rsync per host), without starting them."""
    instance = open_instance(instance_dir)
    ssh = _ssh(instance)
    placed = ssh.upload(_runs(instance, ssh, task_key))
    click.echo(f"uploaded {len(placed)} task(s)")


@click.command("array-download", cls=DryPipeCommand)
@instance_dir_option
@group_key_option
def array_download(instance_dir: str, task_key: str) -> None:
    """Download the outputs and logs of many ssh tasks (one rsync per host); the ones that
    ended there get their final state here too."""
    instance = open_instance(instance_dir)
    ssh = _ssh(instance)
    runs = _runs(instance, ssh, task_key)
    ssh.download(runs)
    in_flight = [r for r in runs if st.is_in_flight(_state(instance, r.key)) and ssh.read_record(r.key)]
    if in_flight:
        ssh.sync(in_flight)
    _print_counts(instance, runs)


@click.command("array-submit-from-remote", cls=DryPipeCommand)
@instance_dir_option
@group_key_option
@wait_option
def array_submit_from_remote(instance_dir: str, task_key: str, wait: bool) -> None:
    """Submit the ready ssh tasks of a parent (or glob) to their host's Slurm as job arrays
    (one per TaskConf); ssh tasks with executer_type="process" start as processes there."""
    instance = open_instance(instance_dir)
    ssh = _ssh(instance)
    runs = _runs(instance, ssh, task_key)
    ready = [r for r in runs if _state(instance, r.key) == st.READY]
    if not ready:
        click.echo(f"no ready task in {task_key}")
        return
    launched = _launch(instance, ssh, ready, lambda s: s == st.READY)
    jobs: dict[str, int] = {}
    for run in launched:
        job = str(run.handle).split("_")[0] if run.task_conf.executer_type == "slurm" else "process"
        jobs[job] = jobs.get(job, 0) + 1
    for job, count in jobs.items():
        click.echo(f"started {count} task(s) as processes" if job == "process"
                   else f"submitted {count} task(s) as Slurm job array {job}")
    if wait:
        raise SystemExit(_wait(instance, ssh, launched))


@click.command("array-watch-from-remote", cls=DryPipeCommand)
@instance_dir_option
@group_key_option
@wait_option
def array_watch_from_remote(instance_dir: str, task_key: str, wait: bool) -> None:
    """Poll the hosts of many ssh tasks (one command per host) and download the ended ones."""
    instance = open_instance(instance_dir)
    ssh = _ssh(instance)
    runs = _runs(instance, ssh, task_key)
    watched = [r for r in runs if st.is_in_flight(_state(instance, r.key)) and ssh.read_record(r.key)]
    if wait and watched:
        code = _wait(instance, ssh, watched)
        _print_counts(instance, runs)
        raise SystemExit(code)
    if watched:
        ssh.sync(watched)
    _print_counts(instance, runs)


@click.command("array-rsync-list", cls=DryPipeCommand)
@instance_dir_option
@group_key_option
@click.option("--download", is_flag=True, help="List what comes back when the tasks end instead.")
def array_rsync_list(instance_dir: str, task_key: str, download: bool) -> None:
    """Print the files an upload of the tasks sends (relative to the instance dir; for
    `rsync --files-from` or Globus), or with --download what comes back."""
    instance = open_instance(instance_dir)
    ssh = _ssh(instance)
    runs = _runs(instance, ssh, task_key)
    if download:
        paths = [p for run in runs for p in ssh.download_list(run.key)]
    else:
        paths = [p for listed in ssh.rsync_list(runs).values() for p in listed]
    for path in dict.fromkeys(paths):
        click.echo(path)


def _print_counts(instance: Instance, runs: list[TaskRun]) -> None:
    counts = Counter(st.name_of(_state(instance, run.key)) for run in runs)
    click.echo(f"{len(runs)} task(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
