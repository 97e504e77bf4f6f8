"""The Slurm executor's commands: `drypipe sbatch`, sbatch-gen, array-submit,
array-create-parent, restart-failed-array-tasks (listed in executors/commands.py).

They work on a prepared instance with no orchestrator running (`drypipe prepare`, then submit
by hand), and stay safe beside one: every claim of a task is an atomic rename of its state
marker, so a task is never submitted twice.
"""
from __future__ import annotations

import fnmatch
import shlex
import time
from collections.abc import Sequence

import click

from drypipe import state as st
from drypipe.cli import DryPipeCommand
from drypipe.cli.options import instance_dir_option, key_option, open_instance, task_key_option
from drypipe.errors import UserError
from drypipe.executor import EndWatch, ExecutorContext, TaskRun
from drypipe.instance import Instance
from drypipe.keys import check_task_key
from drypipe.task_conf import TaskConf
from drypipe.task_record import TaskRecord
from drypipe.text import first_of
from executors.slurm import SlurmExecutor
from executors.slurm_api import resolve_keys

Claimed = list[tuple[TaskRun, str | None]]  # tasks claimed (marked launched), with their earlier state


def _slurm(instance: Instance) -> SlurmExecutor:
    return SlurmExecutor(ExecutorContext(instance.root))


def _conf(instance: Instance, key: str) -> TaskConf:
    instance.existing_control_dir(key)
    return TaskRecord(instance.root, key).task_conf()


def _note_non_slurm(runs: list[TaskRun]) -> None:
    others = [r.key for r in runs if r.task_conf.executer_type != "slurm"]
    if others:
        click.echo(f"note: {first_of(others)}: executer_type is not slurm, so `drypipe run` will not watch "
                   "the Slurm job", err=True)


def _state(instance: Instance, key: str) -> str | None:
    return st.read_state(str(instance.control_dir(key)))


def _start_step(state: str | None) -> int:
    return st.step_of(state) if st.is_failure(state) else 0


def _claim(instance: Instance, keys_and_states: Sequence[tuple[str, str | None]]) -> Claimed:
    """Mark tasks launched (atomic renames); tasks whose marker moved meanwhile are skipped."""
    claimed: Claimed = []
    for key, state in keys_and_states:
        if state is None:
            click.echo(f"skipped {key}: it has no state marker (run `drypipe prepare` first)", err=True)
            continue
        run = TaskRun(key, instance.root, _conf(instance, key), _start_step(state))
        if TaskRecord(instance.root, key).claim(state):
            claimed.append((run, state))
        else:
            click.echo(f"skipped {key}: its state changed meanwhile ({_state(instance, key)})", err=True)
    return claimed


def unclaim(claimed: Claimed) -> None:
    """Put back the markers of claimed tasks that were not launched after all."""
    for run, old in claimed:
        TaskRecord.at(run.control_dir).unclaim(old)


def _submit_arrays(slurm: SlurmExecutor, claimed: Claimed) -> None:
    runs = [run for run, _ in claimed]
    _note_non_slurm(runs)
    slurm.prepare(runs)
    try:
        handles = slurm.launch(runs)
    except UserError:
        unclaim(claimed)
        raise
    jobs: dict[str, int] = {}
    for handle in handles.values():
        job = handle.split("_")[0]
        jobs[job] = jobs.get(job, 0) + 1
    for job, count in jobs.items():
        click.echo(f"submitted {count} task(s) as Slurm job array {job}")


@click.command("sbatch", cls=DryPipeCommand)
@instance_dir_option
@task_key_option
@click.option("--wait", is_flag=True, help="Wait for the task to end; exit code 0 only if it completed.")
def sbatch_command(instance_dir: str, task_key: str, wait: bool) -> None:
    """Submit one task to Slurm as a job (runs its sbatch-launcher.sh).

    A failed, killed or timed-out task restarts at the step that did not complete.
    """
    instance = open_instance(instance_dir)
    slurm = _slurm(instance)
    state = _state(instance, task_key)
    conf = _conf(instance, task_key)
    if st.is_in_flight(state):
        liveness = slurm.poll([TaskRun(task_key, instance.root, conf)])[task_key]
        if liveness.alive:
            raise UserError(f"task {task_key} is already submitted or running ({state}); "
                            f"`drypipe kill -k {task_key}` stops it")
    claimed = _claim(instance, [(task_key, state)])
    if not claimed:
        raise UserError(f"task {task_key}: not submitted")
    run, old = claimed[0]
    _note_non_slurm([run])
    if old == st.WAITING:
        click.echo(f"note: task {task_key} was waiting for upstream tasks; their outputs may be missing", err=True)
    try:
        job_id = slurm.submit_one(run)
    except UserError as e:
        unclaim(claimed)
        message = str(e)  # a refused sbatch option already names the task
        prefix = f"task {task_key}: "
        raise UserError(message if message.startswith(prefix) else prefix + message) from None
    click.echo(f"task {task_key}: submitted as Slurm job {job_id} (log: {run.control_dir / 'out.log'})")
    if wait:
        raise SystemExit(_wait(instance, slurm, run))


def _wait(instance: Instance, slurm: SlurmExecutor, run: TaskRun) -> int:
    """Until the task records a final state, or its job is gone without one (after a grace period)."""
    watch = EndWatch()
    next_poll = 0.0
    while True:
        state = _state(instance, run.key)
        if st.is_terminal(state):
            click.echo(f"task {run.key}: {state}")
            return 0 if state == st.COMPLETED else 1
        now = time.monotonic()
        if now >= next_poll:
            liveness = slurm.poll([run])[run.key]
            next_poll = now + 2.0
            if watch.ended(run.key, liveness, now) and not st.is_terminal(_state(instance, run.key)):
                click.echo(f"task {run.key}: its job ended without a final state ({liveness.reason})", err=True)
                return 1
        time.sleep(0.5)


@click.command("sbatch-gen", cls=DryPipeCommand)
@instance_dir_option
@task_key_option
def sbatch_gen(instance_dir: str, task_key: str) -> None:
    """Print the sbatch command that submits a task, without running it."""
    instance = open_instance(instance_dir)
    slurm = _slurm(instance)
    state = _state(instance, task_key)
    run = TaskRun(task_key, instance.root, _conf(instance, task_key), _start_step(state))
    slurm.prepare([run])
    click.echo(shlex.join(slurm.sbatch_command(run)))


@click.command("array-submit", cls=DryPipeCommand)
@instance_dir_option
@key_option("A parent key (see array-create-parent) or a glob over task keys.", "KEY|GLOB")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Submit at most N tasks.")
def array_submit(instance_dir: str, task_key: str, limit: int | None) -> None:
    """Submit the ready tasks of a parent key (or matching a glob) as one Slurm job array.

    Tasks with different TaskConfs go out as one array per TaskConf; arrays larger than the
    cluster's MaxArraySize are split.
    """
    instance = open_instance(instance_dir)
    slurm = _slurm(instance)
    candidates = [(k, _state(instance, k)) for k in resolve_keys(instance, task_key)]
    ready = [(k, s) for k, s in candidates if s == st.READY][:limit]
    if not ready:
        counts: dict[str, int] = {}
        for _, s in candidates:
            counts[st.text(s)] = counts.get(st.text(s), 0) + 1
        click.echo(f"no ready task in {task_key} (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")")
        return
    claimed = _claim(instance, ready)
    if claimed:
        _submit_arrays(slurm, claimed)


@click.command("array-create-parent", cls=DryPipeCommand)
@instance_dir_option
@task_key_option
@click.argument("glob", required=False)
@click.option("--filter", "filter_glob", metavar="GLOB", help="The children: tasks whose key matches GLOB.")
def array_create_parent(instance_dir: str, task_key: str, glob: str | None, filter_glob: str | None) -> None:
    """Create a parent key naming the tasks that match a glob, for array-submit and
    restart-failed-array-tasks (as in `drypipe array-create-parent -k all-chunks 'chunk.*'`)."""
    instance = open_instance(instance_dir)
    slurm = _slurm(instance)
    check_task_key(task_key)
    pattern = filter_glob or glob
    if not pattern:
        raise UserError("array-create-parent: give the children's glob (GLOB or --filter GLOB)")
    if (instance.control_dir(task_key) / "task").exists():
        raise UserError(f"{task_key!r} is a task key; choose another name for the parent")
    keys = sorted(k for k in instance.task_keys() if fnmatch.fnmatchcase(k, pattern))
    if not keys:
        raise UserError(f"no task matches {pattern!r} in {instance.root}")
    path = slurm.create_parent(task_key, keys)
    click.echo(f"parent {task_key}: {len(keys)} task(s) ({path})")


@click.command("restart-failed-array-tasks", cls=DryPipeCommand)
@instance_dir_option
@key_option("A parent key or a glob over task keys.", "KEY|GLOB")
@click.option("--include-pre-launch", is_flag=True,
              help="Also restart tasks submitted but never started whose job is gone "
                   "(e.g. scancel of a pending array).")
def restart_failed_array_tasks(instance_dir: str, task_key: str, include_pre_launch: bool) -> None:
    """Resubmit the failed, killed, timed-out and lost tasks of a parent (or glob) as one job
    array; each restarts at the step that did not complete."""
    instance = open_instance(instance_dir)
    slurm = _slurm(instance)
    candidates = [(k, _state(instance, k)) for k in resolve_keys(instance, task_key)]
    chosen = [(k, s) for k, s in candidates if st.is_failure(s)]
    if include_pre_launch:
        launched = [TaskRun(k, instance.root, _conf(instance, k)) for k, s in candidates if s == st.LAUNCHED]
        if launched:
            liveness = slurm.poll(launched)
            chosen += [(r.key, st.LAUNCHED) for r in launched if not liveness[r.key].alive]
    if not chosen:
        click.echo(f"no failed task in {task_key}")
        return
    claimed = _claim(instance, chosen)
    if claimed:
        _submit_arrays(slurm, claimed)
