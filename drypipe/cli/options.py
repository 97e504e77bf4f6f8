"""Options shared by subcommands, with the environment variables of the manual."""
from __future__ import annotations

import os

import click

from drypipe.instance import Instance

instance_dir_option = click.option(
    "--pipeline-instance-dir",
    "-pid",
    "--instance-dir",
    "-i",
    "instance_dir",
    envvar="DRYPIPE_PIPELINE_INSTANCE_DIR",
    default=".",
    show_default="current directory",
    type=click.Path(file_okay=False),
    help="Pipeline instance directory (env DRYPIPE_PIPELINE_INSTANCE_DIR).",
)

generator_option = click.option(
    "--generator",
    "-p",
    "--pipeline",
    "generator",
    envvar="DRYPIPE_PIPELINE_GENERATOR",
    required=True,
    help="<module>:<function>: a pipeline, a function returning one, or a generator gen(dsl) "
    "(env DRYPIPE_PIPELINE_GENERATOR).",
)

task_key_option = click.option("--task-key", "-k", "task_key", required=True, help="Task key.")


def sleep_schedule_option(f):
    return click.option(
        "--sleep-schedule",
        envvar="DRYPIPE_SERVICE_SLEEP_SCHEDULE",
        default="0,1,3,5,10,15,20",
        show_default=True,
        help="Back-off between polls of Slurm, SSH, Dendro, in seconds; resets when something changes "
        "(env DRYPIPE_SERVICE_SLEEP_SCHEDULE).",
    )(f)


def parse_sleep_schedule(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated seconds, like 0,1,3,5",
                                 param_hint="'--sleep-schedule'") from None
    if not values or any(v < 0 for v in values):
        raise click.BadParameter(f"{text!r}: expected non-negative seconds", param_hint="'--sleep-schedule'")
    return values


def open_instance(instance_dir: str, must_exist: bool = True) -> Instance:
    instance = Instance(instance_dir)
    if must_exist and not instance.drypipe_dir.is_dir():
        raise click.ClickException(f"{os.path.abspath(instance_dir)} is not a pipeline instance (no .drypipe/)")
    return instance
