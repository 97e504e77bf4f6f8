"""Options shared by subcommands, with the environment variables of the manual."""
from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

from drypipe import config
from drypipe.display import natural_key
from drypipe.errors import UserError
from drypipe.instance import Instance

FC = TypeVar("FC", bound=Callable[..., object])  # a function or click command being decorated

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


def complete_task_keys(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion: the task keys of the instance given by -i/-pid (or the current one)."""
    root = ctx.params.get("instance_dir") or os.environ.get("DRYPIPE_PIPELINE_INSTANCE_DIR") or "."
    keys = Instance(root).task_keys()
    return [CompletionItem(k) for k in sorted(keys) if k.startswith(incomplete)]


def key_option(help_text: str, metavar: str = "KEY") -> Callable[[FC], FC]:
    """`-k/--key` (and `--task-key`, the original's spelling) of the commands that take one key."""
    return click.option("--task-key", "-k", "--key", "task_key", required=True, metavar=metavar,
                        shell_complete=complete_task_keys, help=help_text)


task_key_option = key_option("Task key.")

# The states `--state` selects: the markers' names (failed also selects killed, timed-out and
# lost), `running` for a task between its launch and its end, and `stale` (needs -p).
STATE_CHOICES = ("waiting", "ready", "launched", "running", "completed", "failed", "killed", "timed-out",
                 "lost", "stale")


@dataclass(frozen=True)
class TaskSelection:
    """Which tasks a command works on: key globs (none: every task) and a state."""

    globs: tuple[str, ...] = ()
    state: str | None = None

    def describe(self) -> str:
        return ", ".join(repr(g) for g in self.globs) if self.globs else "'*'"

    def exact_keys(self) -> list[str]:
        return [g for g in self.globs if not any(c in g for c in "*?[")]

    def match(self, candidates: Iterable[str]) -> list[str]:
        """The candidate keys that the globs select, in natural order (every one without globs)."""
        return sorted((k for k in candidates if not self.globs or any(fnmatch.fnmatchcase(k, g) for g in self.globs)),
                      key=natural_key)

    def keys(self, instance: Instance) -> list[str]:
        """The matching keys, in natural order; a UserError when an exact key is not a task, or when no
        task matches the globs."""
        for key in self.exact_keys():
            instance.existing_control_dir(key)  # names the key when it is not a task
        keys = self.match(instance.task_keys())
        if self.globs and not keys:
            raise UserError(f"no task matches {self.describe()} in {instance.root}")
        return keys

    def states(self, instance: Instance) -> dict[str, str | None]:
        """Matching key -> state, by the globs only (the state filter is the caller's: `status`
        needs the pipeline to tell stale tasks)."""
        from drypipe import state as st

        return {k: st.read_state(str(instance.control_dir(k))) for k in self.keys(instance)}


class _HiddenArgument(click.Argument):
    """A positional argument left out of the usage line: an old spelling kept working."""

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:
        return []


# `drypipe why TASK_KEY`: the positional spelling of `-k`, for commands that had one.
legacy_key_argument = click.argument("legacy_args", nargs=-1, cls=_HiddenArgument, shell_complete=complete_task_keys)


def task_selection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """`-k/--key GLOB` (repeatable) and `--state STATE`; passes `selection: TaskSelection`.

    Hidden aliases keep the spellings of earlier versions working: `--task-key`, `--filter`
    (and, with `legacy_key_argument`, positional keys)."""

    @functools.wraps(f)
    def wrapper(*args: Any, keys: tuple[str, ...], legacy_keys: tuple[str, ...], state: str | None,
                **kwargs: Any) -> Any:
        globs = (*keys, *legacy_keys, *kwargs.pop("legacy_args", ()))
        return f(*args, selection=TaskSelection(tuple(dict.fromkeys(globs)), state), **kwargs)

    for decorator in reversed((
        click.option("--key", "-k", "keys", multiple=True, metavar="GLOB", shell_complete=complete_task_keys,
                     help="Only tasks whose key matches GLOB (repeatable; default: every task)."),
        click.option("--task-key", "--filter", "legacy_keys", multiple=True, hidden=True,
                     shell_complete=complete_task_keys),
        click.option("--state", type=click.Choice(STATE_CHOICES), metavar="STATE",
                     help=f"Only tasks in this state: {', '.join(STATE_CHOICES)} (stale needs -p); failed "
                          "includes killed, timed-out and lost."),
    )):
        wrapper = decorator(wrapper)
    return wrapper


def sleep_schedule_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--sleep-schedule",
        envvar="DRYPIPE_SERVICE_SLEEP_SCHEDULE",
        default=config.sleep_schedule_text(config.DEFAULT_SLEEP_SCHEDULE),
        show_default=True,
        help="Back-off between polls of the executors, in seconds; resets when something changes "
        "(env DRYPIPE_SERVICE_SLEEP_SCHEDULE).",
    )(f)


def parse_sleep_schedule(text: str) -> tuple[float, ...]:
    values = config.parse_sleep_schedule(text)
    if values is None:
        raise click.BadParameter(f"{text!r}: expected comma-separated non-negative seconds, like 0,1,3,5",
                                 param_hint="'--sleep-schedule'")
    return values


def open_instance(instance_dir: str, must_exist: bool = True) -> Instance:
    instance = Instance(instance_dir)
    if must_exist and not instance.drypipe_dir.is_dir():
        raise UserError(f"{os.path.abspath(instance_dir)} is not a pipeline instance (no .drypipe/)")
    return instance
