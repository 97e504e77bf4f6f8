"""Commands that other packages add to `drypipe` (executor plugins, the Dendro service).

A package lists them in the entry-point group `drypipe.commands`: each entry names a tuple of
CommandSpec (and OptionSpec) in a module that imports nothing heavy, because every `drypipe`
command reads them (`drypipe --help` lists them).  A command's `target` is imported only when
the command runs, shows its help or completes its options.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

import click

from drypipe.errors import UserError

ENTRY_POINT_GROUP = "drypipe.commands"
_GIVEN = "drypipe.plugin_options"  # ctx.meta key: the plugin options given on the command line

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CommandSpec:
    """A `drypipe NAME` command of a plugin: what `drypipe --help` shows, and where the command is.

    `section` is the title of the help section that lists it ("Slurm"; "Plumbing" joins the
    core's last section); `example` is one `drypipe ...` line shown under the section (give it
    on one command of the section)."""

    name: str
    target: str  # "module:attribute" of the click.Command (or click.Group)
    section: str
    short_help: str
    example: str = ""


@dataclass(frozen=True)
class OptionSpec:
    """A hidden option that a plugin adds to a core command (`drypipe task --ssh-remote-dest`).

    When it is given, `target` ("module:function") runs instead of the command, as
    `function(ctx, value)`: `ctx.params` holds the command's other options."""

    command: str
    name: str  # "--ssh-remote-dest"
    target: str


Contribution = CommandSpec | OptionSpec


def _warn(message: str) -> None:
    # a broken plugin must not stop drypipe itself: its commands are left out
    click.echo(f"drypipe: warning: {message}", err=True)


@functools.cache
def contributions() -> tuple[Contribution, ...]:
    """Every installed package's CommandSpec and OptionSpec, by entry-point name."""
    found: list[Contribution] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            specs = ep.load()
        except Exception as e:  # any error of a third-party module: name it, go on
            _warn(f"{ENTRY_POINT_GROUP} entry point {ep.name} ({ep.value}) cannot load: {e}")
            continue
        if not isinstance(specs, tuple) or not all(isinstance(s, (CommandSpec, OptionSpec)) for s in specs):
            _warn(f"{ENTRY_POINT_GROUP} entry point {ep.name} ({ep.value}) is not a tuple of CommandSpec")
            continue
        found.extend(specs)
    return tuple(found)


def command_specs(taken: set[str]) -> dict[str, CommandSpec]:
    """The plugins' commands by name; a name already taken (a core command, an earlier
    plugin's) stays with its first owner."""
    specs: dict[str, CommandSpec] = {}
    for spec in contributions():
        if not isinstance(spec, CommandSpec):
            continue
        if spec.name in taken or spec.name in specs:
            _warn(f"command {spec.name} of {spec.target} ignored: another command has that name")
            continue
        specs[spec.name] = spec
    return specs


def load_target(target: str) -> Any:
    module, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as e:
        raise UserError(f"{target}: cannot load it: {e}") from e


def load_command(spec: CommandSpec) -> click.Command:
    command = load_target(spec.target)
    if not isinstance(command, click.Command):
        raise UserError(f"command {spec.name}: {spec.target} is not a click command")
    return command


def plugin_options(command: str) -> Callable[[F], F]:
    """Decorator of a core command: adds the hidden options plugins contribute to it (see
    OptionSpec); the command's body calls `run_plugin_option(ctx)` first."""

    def decorate(f: F) -> F:
        for spec in contributions():
            if isinstance(spec, OptionSpec) and spec.command == command:
                f = click.option(spec.name, hidden=True, expose_value=False,
                                 callback=functools.partial(_remember, spec))(f)
        return f

    return decorate


def _remember(spec: OptionSpec, ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta.setdefault(_GIVEN, []).append((spec, value))


def run_plugin_option(ctx: click.Context) -> bool:
    """Run the handler of the plugin option given on the command line, if any (True then)."""
    given: list[tuple[OptionSpec, str]] = ctx.meta.get(_GIVEN, [])
    if not given:
        return False
    if len(given) > 1:
        raise click.UsageError(f"{given[0][0].name} and {given[1][0].name} cannot be combined", ctx)
    spec, value = given[0]
    load_target(spec.target)(ctx, value)
    return True
