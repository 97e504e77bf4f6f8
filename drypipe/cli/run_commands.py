"""`drypipe run` and `drypipe prepare`."""
from __future__ import annotations

import logging
import os
import time

import click

from drypipe import state as st
from drypipe.cache import CachePolicy
from drypipe.cli import cli
from drypipe.cli.options import (
    generator_option,
    instance_dir_option,
    parse_sleep_schedule,
    sleep_schedule_option,
)
from drypipe.dsl import evaluate, load_pipeline
from drypipe.instance import Instance
from drypipe.scheduler import RunOptions, RunSummary, Scheduler
from drypipe.task_info import failure_reason, log_tail

log = logging.getLogger("drypipe")


def _options(until, restart_failed, reset_failed, sleep_schedule, max_local_jobs, **cache) -> RunOptions:
    return RunOptions(
        keep_stale=cache.get("keep_stale", False),
        cache_url=cache.get("cache_url"),
        cache_policy=CachePolicy(cache.get("skip_cache", False), cache.get("rerun_failing", False),
                                 cache.get("delete_failing", False)),
        until=until,
        restart_failed=restart_failed,
        reset_failed=reset_failed,
        max_local_jobs=max_local_jobs or os.cpu_count() or 1,
        sleep_schedule=parse_sleep_schedule(sleep_schedule),
        lost_grace_seconds=float(os.environ.get("DRYPIPE_LOST_GRACE_SECONDS", "30")),
    )


@cli.command()
@instance_dir_option
@generator_option
@click.option("--until", metavar="PATTERN", help="Tasks whose key matches this glob are not started.")
@click.option("--restart-failed", is_flag=True, help="Restart failed tasks at the step that failed.")
@click.option("--reset-failed", is_flag=True, help="Restart failed tasks from their first step.")
@click.option("--max-local-jobs", type=click.IntRange(min=1), envvar="DRYPIPE_MAX_LOCAL_JOBS",
              help="Most local task processes at once (default: number of CPUs).")
@click.option("--dry-run", is_flag=True, help="Print what would run, change nothing.")
@click.option("--keep-stale", is_flag=True, help="Do not rerun completed tasks whose code or inputs changed.")
@click.option("--cache", "cache_url", envvar="DRYPIPE_CACHE", metavar="URL",
              help="Shared output cache: a directory or any fsspec URL such as s3://bucket/prefix (env DRYPIPE_CACHE).")
@click.option("--skip-cache", is_flag=True, help="Never restore from the cache (still publish to it).")
@click.option("--rerun-failing", is_flag=True, help="Run tasks whose cached outcome is a failure again.")
@click.option("--delete-failing", is_flag=True, help="Like --rerun-failing, and delete the failed cache entries.")
@sleep_schedule_option
@click.pass_context
def run(ctx, instance_dir, generator, until, restart_failed, reset_failed, max_local_jobs, dry_run, keep_stale,
        cache_url, skip_cache, rerun_failing, delete_failing, sleep_schedule):
    """Generate tasks and run the pipeline until nothing more can run.

    Re-running is safe at any time: completed tasks are never run again, tasks still
    running from an earlier (killed) run are adopted, not started twice.
    """
    pipeline = load_pipeline(generator)
    instance = Instance(instance_dir)
    if dry_run or ctx.obj["dry_run"]:
        _dry_run(pipeline, instance)
        return
    options = _options(until, restart_failed, reset_failed, sleep_schedule, max_local_jobs,
                       keep_stale=keep_stale, cache_url=cache_url, skip_cache=skip_cache,
                       rerun_failing=rerun_failing, delete_failing=delete_failing)
    verbose = ctx.obj["verbosity"] > 0
    started = time.monotonic()
    scheduler = Scheduler(pipeline, instance, options, on_change=_printer(verbose))
    summary = scheduler.run()
    for key, changes in sorted(scheduler.stale.items()):
        click.echo(f"{key} was stale ({', '.join(c[0] for c in changes)} changed): rerun")
    if scheduler.from_cache:
        click.echo(f"{len(scheduler.from_cache)} tasks restored from cache {cache_url}")
    _print_summary(instance, summary, time.monotonic() - started)
    ctx.exit(0 if summary.succeeded or (until and not summary.failed) else 1)


@cli.command()
@instance_dir_option
@generator_option
@click.option("--until", metavar="PATTERN", help="Accepted for compatibility; prepare starts nothing.")
@sleep_schedule_option
def prepare(instance_dir, generator, until, sleep_schedule):
    """Generate the task scripts of the pipeline WITHOUT running anything."""
    pipeline = load_pipeline(generator)
    instance = Instance(instance_dir)
    summary = Scheduler(pipeline, instance, _options(until, False, False, sleep_schedule, 1)).prepare()
    counts = summary.counts()
    click.echo(f"prepared {len(summary.states)} tasks in {instance.root}: "
               + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


def _dry_run(pipeline, instance: Instance) -> None:
    states = {k: st.read_state(str(instance.control_dir(k))) for k in instance.task_keys()}
    evaluation = evaluate(pipeline, str(instance.root), lambda k: states.get(k) == st.COMPLETED)
    for key, task in evaluation.tasks.items():
        state = states.get(key)
        if state == st.COMPLETED:
            what = "completed"
        elif st.is_in_flight(state):
            what = f"running ({state})"
        else:
            pending = [u for u in sorted(task.upstream_keys) if states.get(u) != st.COMPLETED]
            what = f"would wait for {', '.join(pending)}" if pending else "would run"
        click.echo(f"{key}\t{what}")
    for wait in evaluation.waits:
        click.echo(f"(generator waits: {wait}; more tasks may appear)")


def _printer(verbose: bool):
    def on_change(key: str, old, new) -> None:
        if new == st.COMPLETED or st.is_failure(new) or (verbose and new in (st.LAUNCHED, st.READY)):
            click.echo(f"{time.strftime('%H:%M:%S')} {key}: {new}")

    return on_change


def _print_summary(instance: Instance, summary: RunSummary, seconds: float) -> None:
    counts = summary.counts()
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    click.echo(f"{len(summary.states)} tasks in {seconds:.1f}s: {parts}")
    for key in summary.failed:
        reason = failure_reason(instance, key) or summary.states[key]
        click.echo(f"FAILED {key}: {reason} (log: {instance.control_dir(key) / 'out.log'})", err=True)
        for line in log_tail(instance, key):
            click.echo(f"    {line}", err=True)
    for key, upstreams in sorted(summary.blocked.items())[:20]:
        click.echo(f"waiting {key}: upstream not completed: {', '.join(upstreams)}", err=True)
    for wait in summary.unsatisfied_waits:
        click.echo(f"generator still waits: {wait}", err=True)
