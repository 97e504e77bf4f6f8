"""`drypipe run` and `drypipe prepare`."""
from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import time
from types import FrameType

import click

from drypipe import state as st
from drypipe.budget import machine_cores, mem_bytes
from drypipe.cache import CachePolicy
from drypipe.cli import cli
from drypipe.cli.options import (
    generator_option,
    instance_dir_option,
    parse_sleep_schedule,
    sleep_schedule_option,
)
from drypipe.config import Config, apply_to_pipeline, load_config
from drypipe.display import Commands, RunDisplay, make_display, tasks_text
from drypipe.dry_run import COUNTED, plan
from drypipe.dsl import Pipeline, load_pipeline
from drypipe.errors import UserError
from drypipe.instance import Instance
from drypipe.scheduler import RunOptions, Scheduler
from drypipe.text import first_of, plural

log = logging.getLogger("drypipe")

SECOND_CTRL_C_SECONDS = 3.0  # a second Ctrl-C within this time after the first stops the tasks too


def _options(until: str | None, restart_failed: bool, reset_failed: bool, sleep_schedule: str,
             max_local_jobs: int | None, *, keep_stale: bool = False, cache_url: str | None = None,
             skip_cache: bool = False, rerun_failing: bool = False, delete_failing: bool = False,
             retries: int | None = None, cores: int | None = None, mem: int | None = None) -> RunOptions:
    return RunOptions(
        keep_stale=keep_stale,
        cache_url=cache_url,
        cache_policy=CachePolicy(skip_cache, rerun_failing, delete_failing),
        until=until,
        restart_failed=restart_failed,
        reset_failed=reset_failed,
        max_local_jobs=max_local_jobs or os.cpu_count() or 1,
        sleep_schedule=parse_sleep_schedule(sleep_schedule),
        retries=retries or 0,
        # An explicit --max-local-jobs above the machine's cores still runs that many tasks that
        # declare no cpus (each counts as one core).
        cores=cores or (max(machine_cores(), max_local_jobs) if max_local_jobs else None),
        mem=mem,
    )


def _mem_budget(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    try:
        return None if value is None else mem_bytes(value, "--mem")
    except UserError as e:
        raise click.BadParameter(str(e)) from None


@cli.command()
@instance_dir_option
@generator_option
@click.option("--until", metavar="PATTERN", help="Tasks whose key matches this glob are not started.")
@click.option("--restart-failed", is_flag=True, help="Restart failed tasks at the step that failed.")
@click.option("--reset-failed", is_flag=True, help="Restart failed tasks from their first step.")
@click.option("--max-local-jobs", type=click.IntRange(min=1), envvar="DRYPIPE_MAX_LOCAL_JOBS",
              help="Most local task processes at once (default: number of CPUs).")
@click.option("--retries", type=click.IntRange(min=0), envvar="DRYPIPE_RETRIES", metavar="N",
              help="Run a failed task again up to N times, from its first step (TaskConf.retries wins; default 0).")
@click.option("--cores", type=click.IntRange(min=1), envvar="DRYPIPE_CORES", metavar="N",
              help="Cores local tasks may hold at once, by their TaskConf.cpus "
                   "(default: the CPUs this process may use).")
@click.option("--mem", metavar="SIZE", envvar="DRYPIPE_MEM", callback=_mem_budget,
              help="Memory local tasks may hold at once, by their TaskConf.mem, e.g. 30G (default: MemTotal).")
@click.option("--dry-run", is_flag=True,
              help="Print what run with the same options would do to each task, and why; change nothing.")
@click.option("--keep-stale", is_flag=True, help="Do not rerun completed tasks whose code or inputs changed.")
@click.option("--cache", "cache_url", envvar="DRYPIPE_CACHE", metavar="URL",
              help="Shared output cache: a directory or any fsspec URL such as s3://bucket/prefix (env DRYPIPE_CACHE).")
@click.option("--skip-cache", is_flag=True, help="Never restore from the cache (still publish to it).")
@click.option("--rerun-failing", is_flag=True, help="Run tasks whose cached outcome is a failure again.")
@click.option("--delete-failing", is_flag=True, help="Like --rerun-failing, and delete the failed cache entries.")
@sleep_schedule_option
@click.option("--quiet", "-q", is_flag=True,
              help="Print nothing while running; at the end only failures (stderr). Not with --json-log.")
@click.option("--json-log", is_flag=True,
              help="Print one JSON object per task state change, and a summary object at the end (stdout).")
@click.pass_context
def run(ctx: click.Context, instance_dir: str, generator: str, until: str | None, restart_failed: bool,
        reset_failed: bool, max_local_jobs: int | None, retries: int | None, cores: int | None, mem: int | None,
        dry_run: bool, keep_stale: bool, cache_url: str | None, skip_cache: bool, rerun_failing: bool,
        delete_failing: bool, sleep_schedule: str, quiet: bool, json_log: bool) -> None:
    """Generate tasks and run the pipeline until nothing more can run.

    Re-running is safe at any time: completed tasks are never run again, tasks still
    running from an earlier (killed) run are adopted, not started twice.

    On a terminal, a live panel shows tasks per state and per group of tasks, the tasks
    running longest, the last failures with their log, the time elapsed and left; otherwise
    one timestamped line per completed or failed task.  The summary names the first failures
    and the commands to go on; .drypipe/.orchestrator.log keeps every run's events.

    Ctrl-C stops the orchestrator and leaves the tasks running (exit code 130): the next run
    adopts them.  A second Ctrl-C within 3 seconds stops the tasks too.
    Defaults come from drypipe.yaml in the instance dir and ~/.config/drypipe/config.yaml
    (see `drypipe config show`).
    """
    if quiet and json_log:
        raise click.UsageError("--quiet and --json-log exclude each other (--json-log prints only JSON lines)")
    pipeline = load_pipeline(generator)
    instance = Instance(instance_dir)
    config = load_config(instance_dir)
    apply_to_pipeline(config, pipeline)
    cache_url, max_local_jobs, sleep_schedule = _configured(ctx, config, cache_url, max_local_jobs, sleep_schedule)
    options = _options(until, restart_failed, reset_failed, sleep_schedule, max_local_jobs,
                       keep_stale=keep_stale, cache_url=cache_url, skip_cache=skip_cache,
                       rerun_failing=rerun_failing, delete_failing=delete_failing,
                       retries=retries, cores=cores, mem=mem)
    if dry_run or ctx.obj["dry_run"]:
        _dry_run(pipeline, instance, options)
        return
    commands = Commands(shlex.join(["drypipe", "run", "-p", generator, "-i", instance_dir]),
                        shlex.join(["-i", instance_dir]))
    display = make_display(instance, "quiet" if quiet else "json" if json_log else None, ctx.obj["verbosity"] > 0,
                           commands)
    started = time.monotonic()
    scheduler = Scheduler(pipeline, instance, options, on_change=display.on_change)
    display.attach(scheduler)
    try:
        with display, Interrupts(scheduler, display):
            summary = scheduler.run()
    except KeyboardInterrupt:  # a third Ctrl-C, or one before the scheduler watched for it
        display.message("interrupted")
        ctx.exit(130)
    if scheduler.stop_requested:
        ctx.exit(130)
    notes = [f"{key} was stale ({', '.join(c[0] for c in changes)} changed): rerun"
             for key, changes in sorted(scheduler.stale.items())]
    if scheduler.from_cache and scheduler.cache is not None:
        notes.append(f"{len(scheduler.from_cache)} tasks restored from cache {scheduler.cache.url}")
    left_over = sorted(k for k in summary.not_yielded if summary.states.get(k) != st.COMPLETED)
    if left_over and not summary.unsatisfied_waits:
        notes.append(f"not yielded by the generator any more, ignored: {first_of(left_over)}")
    display.summary(summary, time.monotonic() - started, notes)
    ctx.exit(0 if summary.succeeded or (until and not summary.failed) else 1)


class Interrupts:
    """Ctrl-C during `drypipe run`: the first one stops the orchestrator at the end of its
    cycle, and the tasks keep running (the next run adopts them); a second one within
    SECOND_CTRL_C_SECONDS stops the tasks too, as `drypipe kill` does; a third one aborts."""

    def __init__(self, scheduler: Scheduler, display: RunDisplay):
        self.scheduler = scheduler
        self.display = display
        self.presses = 0
        scheduler.on_stop = self.on_stop

    def __enter__(self) -> Interrupts:
        self.previous = signal.signal(signal.SIGINT, self._pressed)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def _pressed(self, signum: int, frame: FrameType | None) -> None:
        self.presses += 1
        if self.presses > 2:
            raise KeyboardInterrupt
        self.scheduler.request_stop()

    def on_stop(self) -> None:
        """Called by the scheduler once stopped, still holding the instance lock."""
        self.display.stop(interrupted=True)
        running = [key for key, run in self.scheduler.in_flight.items()
                   if st.is_in_flight(st.read_state(str(run.control_dir)))]
        # Only a terminal gives a second Ctrl-C: a SIGINT from a script ends the run at once.
        wait = SECOND_CTRL_C_SECONDS if running and sys.stdin.isatty() else None
        self.display.interrupted(running, wait)
        deadline = time.monotonic() + (wait or 0)
        while self.presses < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        if running and self.presses >= 2:
            self.display.message(f"stopping {tasks_text(len(running))} ...")
            self.display.stopped(self.scheduler.kill_in_flight())


def _configured(ctx: click.Context, config: Config, cache_url: str | None, max_local_jobs: int | None,
                sleep_schedule: str) -> tuple[str | None, int | None, str]:
    """Command-line options and environment variables win; then the configuration files."""
    from click.core import ParameterSource

    if not cache_url and (found := config.run_value("cache")):
        cache_url = found[0]
    if max_local_jobs is None and (found := config.run_value("max_local_jobs")):
        max_local_jobs = found[0]
    if ctx.get_parameter_source("sleep_schedule") == ParameterSource.DEFAULT and (
            found := config.run_value("sleep_schedule")):
        sleep_schedule = found[0]
    return cache_url, max_local_jobs, sleep_schedule


@cli.command()
@instance_dir_option
@generator_option
@click.option("--until", metavar="PATTERN", help="Accepted for compatibility; prepare starts nothing.")
@sleep_schedule_option
def prepare(instance_dir: str, generator: str, until: str | None, sleep_schedule: str) -> None:
    """Generate the task scripts of the pipeline WITHOUT running anything."""
    pipeline = load_pipeline(generator)
    instance = Instance(instance_dir)
    apply_to_pipeline(load_config(instance_dir), pipeline)
    summary = Scheduler(pipeline, instance, _options(until, False, False, sleep_schedule, 1)).prepare()
    counts = summary.counts()
    click.echo(f"prepared {tasks_text(len(summary.states))} in {instance.root}: "
               + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


def _dry_run(pipeline: Pipeline, instance: Instance, options: RunOptions) -> None:
    """One line per task: key, what `run` with the same options would do, why."""
    predicted = plan(pipeline, instance, options)
    counts: dict[str, int] = {}
    for p in predicted.predictions.values():
        click.echo(f"{p.key}\t{p.action}" + (f"\t{p.detail}" if p.detail else ""))
        counts[p.action] = counts.get(p.action, 0) + 1
    for wait in predicted.waits:
        click.echo(f"(generator waits: {wait}; more tasks may appear)")
    click.echo("dry run, nothing changed: "
               + (", ".join(plural(n, a, COUNTED.get(a, a)) for a, n in counts.items()) or "no tasks"))
