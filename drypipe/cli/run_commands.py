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
from drypipe.config import apply_to_pipeline, load_config
from drypipe.display import make_display
from drypipe.dsl import evaluate, load_pipeline
from drypipe.executor import lost_grace_seconds
from drypipe.instance import Instance
from drypipe.scheduler import RunOptions, Scheduler

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
        lost_grace_seconds=lost_grace_seconds(),
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
@click.option("--quiet", "-q", is_flag=True, help="Print nothing while running; at the end only failures (stderr).")
@click.option("--json-log", is_flag=True,
              help="Print one JSON object per task state change, and a summary object at the end (stdout).")
@click.pass_context
def run(ctx, instance_dir, generator, until, restart_failed, reset_failed, max_local_jobs, dry_run, keep_stale,
        cache_url, skip_cache, rerun_failing, delete_failing, sleep_schedule, quiet, json_log):
    """Generate tasks and run the pipeline until nothing more can run.

    Re-running is safe at any time: completed tasks are never run again, tasks still
    running from an earlier (killed) run are adopted, not started twice.

    On a terminal, a live panel shows tasks per state and executor, the time elapsed and
    left, and the last failures; otherwise one timestamped line per completed or failed task.
    Defaults come from drypipe.yaml in the instance dir and ~/.config/drypipe/config.yaml
    (see `drypipe config show`).
    """
    pipeline = load_pipeline(generator)
    instance = Instance(instance_dir)
    if dry_run or ctx.obj["dry_run"]:
        _dry_run(pipeline, instance)
        return
    config = load_config(instance_dir)
    apply_to_pipeline(config, pipeline)
    cache_url, max_local_jobs, sleep_schedule = _configured(ctx, config, cache_url, max_local_jobs, sleep_schedule)
    options = _options(until, restart_failed, reset_failed, sleep_schedule, max_local_jobs,
                       keep_stale=keep_stale, cache_url=cache_url, skip_cache=skip_cache,
                       rerun_failing=rerun_failing, delete_failing=delete_failing)
    display = make_display(instance, "quiet" if quiet else "json" if json_log else None, ctx.obj["verbosity"] > 0)
    started = time.monotonic()
    scheduler = Scheduler(pipeline, instance, options, on_change=display.on_change)
    display.attach(scheduler)
    with display:
        summary = scheduler.run()
    notes = [f"{key} was stale ({', '.join(c[0] for c in changes)} changed): rerun"
             for key, changes in sorted(scheduler.stale.items())]
    if scheduler.from_cache:
        notes.append(f"{len(scheduler.from_cache)} tasks restored from cache {scheduler.cache.url}")
    left_over = sorted(k for k in summary.not_yielded if summary.states.get(k) != st.COMPLETED)
    if left_over and not summary.unsatisfied_waits:
        shown = ", ".join(left_over[:5]) + (f" and {len(left_over) - 5} more" if len(left_over) > 5 else "")
        notes.append(f"not yielded by the generator any more, ignored: {shown}")
    display.summary(summary, time.monotonic() - started, notes)
    ctx.exit(0 if summary.succeeded or (until and not summary.failed) else 1)


def _configured(ctx, config, cache_url, max_local_jobs, sleep_schedule):
    """Command-line options and environment variables win; then the configuration files."""
    from click.core import ParameterSource

    if not cache_url and config.run_value("cache"):
        cache_url = config.run_value("cache")[0]
    if max_local_jobs is None and config.run_value("max_local_jobs"):
        max_local_jobs = config.run_value("max_local_jobs")[0]
    if ctx.get_parameter_source("sleep_schedule") == ParameterSource.DEFAULT and config.run_value("sleep_schedule"):
        sleep_schedule = config.run_value("sleep_schedule")[0]
    return cache_url, max_local_jobs, sleep_schedule


@cli.command()
@instance_dir_option
@generator_option
@click.option("--until", metavar="PATTERN", help="Accepted for compatibility; prepare starts nothing.")
@sleep_schedule_option
def prepare(instance_dir, generator, until, sleep_schedule):
    """Generate the task scripts of the pipeline WITHOUT running anything."""
    pipeline = load_pipeline(generator)
    instance = Instance(instance_dir)
    apply_to_pipeline(load_config(instance_dir), pipeline)
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
