"""`drypipe graph`, `drypipe config show`, `drypipe completion`, `drypipe service` and
`drypipe upgrade-drypipe`."""
from __future__ import annotations

import copy
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import click

from drypipe import state as st
from drypipe.cli import cli
from drypipe.cli.options import (
    generator_option,
    instance_dir_option,
    open_instance,
    parse_sleep_schedule,
    sleep_schedule_option,
)
from drypipe.dsl import import_object
from drypipe.errors import UserError
from drypipe.text import plural

if TYPE_CHECKING:
    from drypipe.config import Config
    from drypipe.dsl import Pipeline
    from drypipe.scheduler import RunOptions, RunSummary

log = logging.getLogger("drypipe")


# -- graph --------------------------------------------------------------------------------------

@cli.command()
@instance_dir_option
@generator_option
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True,
              help="Mermaid (renders in GitHub, GitLab and mkdocs-material) or Graphviz dot.")
@click.option("--collapse", type=click.IntRange(min=0), default=3, show_default=True, metavar="N",
              help="Draw N or more tasks whose keys differ only by numbers, and that are wired alike, as "
                   "one node with a count; 0 draws every task.")
def graph(instance_dir: str, generator: str, fmt: str, collapse: int) -> None:
    """Print the DAG: one node per task, one edge per file or variable passed between tasks.

    The generator runs against the instance's current state, so tasks it yields only once
    others have completed (inside `dsl.wait_for_tasks`) appear once those have completed.
    """
    from drypipe.dsl import evaluate, load_pipeline
    from drypipe.graph import build_graph, to_dot, to_mermaid
    from drypipe.instance import Instance

    pipeline = load_pipeline(generator)
    instance = Instance(instance_dir)
    states = {k: st.read_state(str(instance.control_dir(k))) for k in instance.task_keys()}
    evaluation = evaluate(pipeline, str(instance.root), lambda k: states.get(k) == st.COMPLETED)
    dag = build_graph(evaluation.tasks, collapse, evaluation.waits)
    click.echo(to_mermaid(dag) if fmt == "mermaid" else to_dot(dag), nl=False)


# -- config -------------------------------------------------------------------------------------

@cli.group()
def config() -> None:
    """Configuration files: drypipe.yaml in the instance dir, ~/.config/drypipe/config.yaml."""


@config.command("show")
@instance_dir_option
@click.option("--generator", "-p", "--pipeline", "generator", envvar="DRYPIPE_PIPELINE_GENERATOR",
              help="<module>:<function>: include the pipeline's TaskConf.")
@click.option("--task-key", "-k", "task_key", help="Show the TaskConf of this task (needs -p).")
def config_show(instance_dir: str, generator: str | None, task_key: str | None) -> None:
    """Print each effective setting, its value, and where it came from.

    Precedence, highest first: the task's own TaskConf, the pipeline's TaskConf, the
    instance file, the user file ($DRYPIPE_CONFIG overrides its path), defaults.  For the run
    settings: command-line option, environment variable, instance file, user file, default.
    """
    from drypipe.config import INSTANCE_CONFIG_FILE, effective_settings, format_value, load_config, user_config_path
    from drypipe.display import columns

    cfg = load_config(instance_dir)
    pipeline = task_conf = None
    task_source = "task"
    if task_key and not generator:
        raise UserError("config show --task-key needs the pipeline: -p <module>:<function>")
    if generator:
        from drypipe.dsl import evaluate, load_pipeline
        from drypipe.instance import Instance

        pipeline = load_pipeline(generator)
        if task_key:
            instance = Instance(instance_dir)
            states = {k: st.read_state(str(instance.control_dir(k))) for k in instance.task_keys()}
            tasks = evaluate(pipeline, str(instance.root), lambda k: states.get(k) == st.COMPLETED).tasks
            if task_key not in tasks:
                raise UserError(f"the generator does not yield task {task_key!r} (now)")
            task = tasks[task_key]
            if task.task_conf is not pipeline.task_conf:
                task_conf, task_source = task.task_conf, f"task {task_key} ({task.source})"
    user = user_config_path()
    instance_file = os.path.join(os.path.abspath(instance_dir), INSTANCE_CONFIG_FILE)
    click.echo(f"user file:     {user}{'' if user.exists() else ' (none)'}")
    click.echo(f"instance file: {instance_file}{'' if os.path.exists(instance_file) else ' (none)'}")
    if generator:
        click.echo(f"pipeline:      {generator}")
    click.echo()
    rows = [["setting", "value", "source"]]
    for name, value, source in effective_settings(cfg, pipeline, f"pipeline {generator}", task_conf, task_source):
        rows.append([name, format_value(value), source])
    for line in columns(rows):
        click.echo(line)


# -- completion ---------------------------------------------------------------------------------

@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash: eval "$(drypipe completion bash)"   (in ~/.bashrc)
    zsh:  eval "$(drypipe completion zsh)"    (in ~/.zshrc)
    fish: drypipe completion fish > ~/.config/fish/completions/drypipe.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # click.Choice lets through only the shells click completes
        raise click.BadParameter(f"no completion for {shell!r}", param_hint="SHELL")
    click.echo(cls(cli, {}, "drypipe", "_DRYPIPE_COMPLETE").source())


# -- service ------------------------------------------------------------------------------------

def _as_pipeline(obj: object, where: str) -> Pipeline:
    """A pipeline from what a config generator yields: a pipeline, a `module:function`, a
    function returning a pipeline, or a generator `gen(dsl)`."""
    from drypipe.dsl import Pipeline, load_pipeline

    if isinstance(obj, Pipeline):
        return obj
    if isinstance(obj, str):
        return load_pipeline(obj)
    if callable(obj):
        if inspect.isgeneratorfunction(obj) or len(inspect.signature(obj).parameters) == 1:
            return Pipeline(obj)
        result = obj()
        if isinstance(result, Pipeline):
            return result
    raise UserError(f"{where}: expected a pipeline, a <module>:<function> or a generator, got {obj!r}")


def _load_config_generator(spec: str) -> Callable[[], Iterable[Any]]:
    func = import_object(spec, "--config-generator", "function")
    if not callable(func):
        raise UserError(f"--config-generator {spec!r} is not a function")
    generator: Callable[[], Iterable[Any]] = func
    return generator


def _instances(config_generator: Callable[[], Iterable[Any]], spec: str, base_dir: str) -> list[tuple[str, Pipeline]]:
    pairs = []
    try:
        items = list(config_generator())
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"--config-generator {spec!r} raised {type(e).__name__}: {e}") from e
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise UserError(f"--config-generator {spec!r} must yield (instance_dir, pipeline) pairs, got {item!r}")
        directory, pipeline = item
        directory = os.path.abspath(os.path.join(base_dir, os.fspath(directory)))
        pairs.append((directory, _as_pipeline(pipeline, f"--config-generator {spec!r} for {directory}")))
    return pairs


class _InstanceRun(threading.Thread):
    """Drives one instance until nothing more can run; prints one line per completion or failure."""

    def __init__(self, directory: str, pipeline: Pipeline, options_for: Callable[[Config], RunOptions]):
        super().__init__(name=f"drypipe {directory}", daemon=True)
        self.directory = directory
        self.pipeline = pipeline
        self.options_for = options_for
        self.summary: RunSummary | None = None
        self.error: str | None = None
        self.reported = False  # by _report, once it ended
        self.changes = 0

    def run(self) -> None:
        from drypipe.config import apply_to_pipeline, load_config
        from drypipe.display import failure_text
        from drypipe.instance import Instance
        from drypipe.scheduler import Scheduler

        instance = Instance(self.directory)

        def on_change(key: str, old: str | None, new: str | None) -> None:
            self.changes += 1
            if new == st.COMPLETED or st.is_failure(new):
                what = failure_text(instance, key, new) if st.is_failure(new) else new
                click.echo(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self.directory}: {key}: {what}")

        try:
            config = load_config(self.directory)
            pipeline = copy.copy(self.pipeline)  # one pipeline object may serve several instances
            apply_to_pipeline(config, pipeline)
            self.summary = Scheduler(pipeline, instance, self.options_for(config), on_change=on_change).run()
        except UserError as e:
            self.error = str(e)
        except Exception as e:  # one broken instance must not stop the service
            log.exception("instance %s", self.directory)
            self.error = f"{type(e).__name__}: {e}"


@cli.command()
@click.option("--pipeline-instance-dir", "-pid", "--instance-dir", "-i", "base_dir", default=".",
              envvar="DRYPIPE_PIPELINE_INSTANCE_DIR", type=click.Path(file_okay=False),
              show_default="current directory",
              help="Directory that relative instance dirs of the config generator are relative to.")
@click.option("--config-generator", envvar="DRYPIPE_SERVICE_CONFIG_GENERATOR", required=True,
              metavar="MODULE:FUNCTION",
              help="A function that yields (instance_dir, pipeline) pairs; the pipeline may be a pipeline "
                   "object, a <module>:<function> string or a generator (env DRYPIPE_SERVICE_CONFIG_GENERATOR).")
@sleep_schedule_option
@click.option("--log-conf", envvar="DRYPIPE_LOGGING_CONF", type=click.Path(exists=True, dir_okay=False),
              help="A logging configuration file (logging.config.fileConfig format; env DRYPIPE_LOGGING_CONF).")
@click.option("--max-local-jobs", type=click.IntRange(min=1), envvar="DRYPIPE_MAX_LOCAL_JOBS",
              help="Most local task processes at once, per instance (default: number of CPUs).")
@click.option("--once", is_flag=True, help="Drive every instance until nothing more can run, then exit.")
def service(base_dir: str, config_generator: str, sleep_schedule: str, log_conf: str | None,
            max_local_jobs: int | None, once: bool) -> None:
    """Run several pipeline instances, one thread each, in one long-running process.

    Each pass calls the config generator, and starts driving every instance it yields that is
    not being driven already (new instances, and idle ones whose inputs may have changed).
    Between passes it sleeps by the sleep schedule.  Stop it with Ctrl-C: tasks keep running,
    and the next `drypipe service` or `drypipe run` adopts them.
    """
    from drypipe.cli.run_commands import _options

    if log_conf:
        import logging.config

        logging.config.fileConfig(log_conf, disable_existing_loggers=False)
    schedule = parse_sleep_schedule(sleep_schedule)
    func = _load_config_generator(config_generator)

    def options_for(config: Config) -> RunOptions:
        jobs = max_local_jobs or (config.run_value("max_local_jobs") or (None,))[0]
        cache = config.run_value("cache")
        return _options(None, False, False, sleep_schedule, jobs, cache_url=cache[0] if cache else None)

    runs: dict[str, _InstanceRun] = {}
    index = 0
    try:
        while True:
            for run in runs.values():
                if not run.is_alive():
                    _report(run, quiet_when_idle=True)
            new = 0
            for directory, pipeline in _instances(func, config_generator, base_dir):
                current = runs.get(directory)
                if current is not None and current.is_alive():
                    continue
                new += current is None
                runs[directory] = _InstanceRun(directory, pipeline, options_for)
                runs[directory].start()
            if once:
                for run in runs.values():
                    run.join()
                break
            index = 0 if new else index + 1
            time.sleep(schedule[min(index, len(schedule) - 1)])
    except KeyboardInterrupt:
        click.echo("drypipe service: stopped; running tasks keep running and are adopted by the next run", err=True)
        raise SystemExit(130) from None
    ok = True
    for run in runs.values():
        ok &= _report(run, quiet_when_idle=False)
    raise SystemExit(0 if ok else 1)


def _report(run: _InstanceRun, quiet_when_idle: bool) -> bool:
    """One line per finished instance run; True when it completed every task."""
    summary = run.summary
    if run.reported:
        return run.error is None and summary is not None and summary.succeeded
    run.reported = True
    if run.error is not None or summary is None:
        click.echo(f"{run.directory}: error: {run.error}", err=True)
        return False
    if quiet_when_idle and not run.changes:
        return summary.succeeded
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts().items()))
    click.echo(f"{run.directory}: {plural(len(summary.states), 'task')}: {counts}")
    return summary.succeeded


# -- upgrade-drypipe ----------------------------------------------------------------------------

@cli.command("upgrade-drypipe")
@instance_dir_option
def upgrade_drypipe(instance_dir: str) -> None:
    """Regenerate the instance's task runtime (.drypipe/.lib/task-lib.sh) and the scripts of
    its tasks that have not completed, with this version of drypipe.

    Completed and running tasks are left as they are.  Refused while `drypipe run` drives
    the instance.
    """
    from drypipe.task_record import CONF_FILE, TaskRecord
    from drypipe.task_script import LIB_RELATIVE_PATH, write_task_files, write_task_lib

    instance = open_instance(instance_dir)
    instance.lock()
    try:
        lib = instance.root / LIB_RELATIVE_PATH
        before = lib.read_text() if lib.exists() else None
        write_task_lib(instance)
        lib_changed = lib.read_text() != before
        regenerated, kept, errors = 0, 0, []
        for key in sorted(instance.task_keys()):
            state = st.read_state(str(instance.control_dir(key)))
            if state == st.COMPLETED or st.is_in_flight(state):
                kept += 1
                continue
            record = TaskRecord(instance.root, key)
            try:
                write_task_files(instance, record.conf_document())
                regenerated += 1
            except UserError as e:
                errors.append(str(e))
            except (OSError, KeyError, TypeError) as e:
                errors.append(f"task {key}: cannot regenerate from {record.path(CONF_FILE)}: {type(e).__name__}: {e}")
    finally:
        instance.unlock()
    click.echo(f"{instance.root}: task-lib.sh {'updated' if lib_changed else 'already up to date'}; "
               f"{regenerated} task scripts regenerated; {kept} completed or running tasks left as they are")
    for line in errors:
        click.echo(line, err=True)
    if errors:
        raise SystemExit(1)
