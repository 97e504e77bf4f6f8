"""The `drypipe` command line (click).  Each module adds one family of subcommands."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem

from drypipe.cli.plugin_commands import CommandSpec, command_specs, load_command
from drypipe.errors import UserError


def _add_verbosity(ctx: click.Context, amount: int) -> None:
    """-v/-vv anywhere on the command line (before or after the subcommand) adds up."""
    if not amount or ctx.resilient_parsing:
        return
    obj = ctx.find_root().ensure_object(dict)
    obj["verbosity"] = obj.get("verbosity", 0) + amount
    logging.getLogger().setLevel(_log_level(obj["verbosity"]))


def _log_level(verbosity: int) -> int:
    return logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity else logging.WARNING


def _verbosity_params() -> list[click.Option]:
    def adder(weight: int) -> Callable[[click.Context, click.Parameter, Any], None]:
        return lambda ctx, param, value: _add_verbosity(ctx, weight * int(value or 0))

    return [
        click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=adder(1),
                     help="Verbose: log each task state change; -vv: debug logging and tracebacks."),
        # the original DryPipe's spellings
        click.Option(["--v"], is_flag=True, expose_value=False, hidden=True, callback=adder(1)),
        click.Option(["--vv"], is_flag=True, expose_value=False, hidden=True, callback=adder(2)),
    ]


class _Verbose(click.Command):
    """Every command and group takes -v, so it may follow the subcommand (`drypipe run -vv ...`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_verbosity_params())


class _UsageErrorsNameTheCommand(click.Command):
    """click's parser leaves some usage errors without their command (`--state` with no value):
    give them theirs, so the error line says which command's usage to read."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            e.ctx = e.ctx or ctx
            raise


class DryPipeCommand(_UsageErrorsNameTheCommand, _Verbose, click.Command):
    pass


class DryPipeSubGroup(_UsageErrorsNameTheCommand, _Verbose, click.Group):
    command_class = DryPipeCommand
    group_class = type  # nested groups are of this class too


# `drypipe --help` lists the commands in these sections, with an example each: the core's
# first, then the plugins' sections (CommandSpec.section) in their order, then PLUMBING.  A
# command in none lands in a last section "Other" (tests check none does).
SECTIONS: list[tuple[str, str, list[str]]] = [
    ("Running", "drypipe run -p mypipeline:gen -i /data/run1",
     ["run", "prepare", "task", "restart", "kill", "call", "service"]),
    ("Inspecting", "drypipe status -i /data/run1 --state failed",
     ["status", "why", "graph", "report-execution-times", "list-states", "poll-task", "dump-env"]),
    ("Setting up", "drypipe config show -i /data/run1",
     ["config", "executors", "cache", "completion", "upgrade-drypipe"]),
]
PLUMBING = "Plumbing"
PLUMBING_TITLE = "Plumbing (used by drypipe itself and by scripts)"


class DryPipeGroup(_UsageErrorsNameTheCommand, _Verbose, click.Group):
    """Turns every error into one line `drypipe: error: ...` on stderr (traceback with -vv):
    UserError and OSError exit with code 1, bad arguments (click's usage errors) with 2.

    The commands of other packages (`drypipe.commands` entry points, see plugin_commands) are
    imported only when used: `drypipe --help` and `drypipe run` load none of them."""

    command_class = DryPipeCommand
    group_class = DryPipeSubGroup

    _specs: dict[str, CommandSpec] | None = None

    def _all_specs(self) -> dict[str, CommandSpec]:
        """The plugins' commands, read once (after the core's own are registered)."""
        if self._specs is None:
            self._specs = command_specs(set(self.commands))
        return self._specs

    def _plugin_specs(self) -> dict[str, CommandSpec]:
        """The plugins' commands not loaded yet."""
        return {name: spec for name, spec in self._all_specs().items() if name not in self.commands}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugin_specs()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        spec = self._plugin_specs().get(name)
        if spec is not None:
            self.add_command(load_command(spec), name=name)
        return super().get_command(ctx, name)

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as e:  # "did you mean": click looks at the loaded commands only
            raise click.exceptions.NoSuchCommand(e.command_name, possibilities=self.list_commands(ctx),
                                                 ctx=e.ctx) from None

    def _short_help(self, ctx: click.Context, name: str) -> str | None:
        """The command's first sentence, whole; None for a hidden command."""
        spec = self._plugin_specs().get(name)
        if spec is not None:
            return spec.short_help
        command = self.get_command(ctx, name)
        if command is None or command.hidden:
            return None
        return command.get_short_help_str(limit=1000)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Completing a command name lists the plugins' commands without importing them
        (click's Group.shell_complete would load every command to read its short help)."""
        specs = self._plugin_specs()
        items = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if not name.startswith(incomplete) or (command is not None and command.hidden):
                continue
            help_text = specs[name].short_help if command is None else command.get_short_help_str()
            items.append(CompletionItem(name, help=help_text))
        return items + click.Command.shell_complete(self, ctx, incomplete)  # the options

    def _sections(self, names: list[str]) -> list[tuple[str, list[str], list[str]]]:
        """(title, examples, commands) of each section of `drypipe --help`."""
        sections = {title: ([example], list(commands)) for title, example, commands in SECTIONS}
        plugin_sections: dict[str, tuple[list[str], list[str]]] = {}
        for spec in self._all_specs().values():
            examples, commands = sections.get(spec.section) or plugin_sections.setdefault(spec.section, ([], []))
            commands.append(spec.name)
            if spec.example:
                examples.append(spec.example)
        plumbing = plugin_sections.pop(PLUMBING, ([], []))
        ordered = [*sections.items(), *plugin_sections.items(), (PLUMBING_TITLE, plumbing)]
        listed = {n for _, (_, commands) in ordered for n in commands}
        ordered.append(("Other", ([], [n for n in names if n not in listed])))
        return [(title, [e for e in examples if e], commands) for title, (examples, commands) in ordered]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        for title, examples, section in self._sections(names):
            rows = [(n, help_text) for n in section if n in names
                    for help_text in [self._short_help(ctx, n)] if help_text is not None]
            if not rows:
                continue
            with formatter.section(title):
                formatter.write_dl(rows)
                for example in examples:
                    formatter.write_paragraph()
                    formatter.write_text(f"e.g. {example}")

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        """click's own errors of `drypipe` itself (an unknown option, no command) in our one-line
        form too (the subcommands' are caught by invoke)."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as e:
            click.echo(f"drypipe: error: {_click_message(e)}", err=True)
            sys.exit(e.exit_code)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as e:
            _fail(ctx, str(e), 1)
        except click.ClickException as e:  # a bad argument of a subcommand: one line too, not click's three
            _fail(ctx, _click_message(e), e.exit_code)
        except OSError as e:  # e.g. a full disk or an unwritable instance dir
            if isinstance(e, BrokenPipeError):
                raise
            _fail(ctx, os_error_message(e), 1)
        except KeyboardInterrupt:  # Ctrl-C: tasks already started keep running
            click.echo("drypipe: interrupted", err=True)
            sys.exit(130)


def _click_message(e: click.ClickException) -> str:
    """click's message on one line (a choice's "Choose from:" lists one choice a line), and for
    a usage error where to read the command's usage."""
    ctx = getattr(e, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if isinstance(e, click.UsageError) and ctx is not None else ""
    return " ".join(line.strip() for line in e.format_message().splitlines() if line.strip()) + where


def os_error_message(e: OSError) -> str:
    """One line that names the file: "<file>: <reason>", without the "[Errno N]" prefix.

    An OSError of os.write (a full disk) names no file: then the file is the `path` that the
    innermost frame of the traceback was writing (the write helpers of drypipe.instance)."""
    reason = e.strerror or str(e)
    filename = e.filename
    if filename is None:
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        path = tb.tb_frame.f_locals.get("path") if tb is not None else None
        filename = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if filename is None or str(filename) in reason:
        return reason
    if e.filename2 is not None:
        return f"{filename} -> {e.filename2}: {reason}"
    return f"{filename}: {reason}"


def _fail(ctx: click.Context, message: str, code: int) -> None:
    if ctx.obj and ctx.obj.get("verbosity", 0) >= 2:
        import traceback

        traceback.print_exc()
    click.echo(f"drypipe: error: {message}", err=True)
    sys.exit(code)


@click.group(cls=DryPipeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dry-run", is_flag=True, help="Print what would run without running it (same as run --dry-run).")
@click.version_option(package_name="drypipe")
@click.pass_context
def cli(ctx: click.Context, dry_run: bool) -> None:
    """drypipe: a file-system-native DAG orchestrator for scientific pipelines.

    All state lives under the pipeline instance directory (-pid): task scripts, state
    markers and logs in .drypipe/<task>/, outputs in output/<task>/.
    """
    obj = ctx.ensure_object(dict)
    obj.setdefault("verbosity", 0)
    obj["dry_run"] = dry_run
    logging.basicConfig(
        level=_log_level(obj["verbosity"]),
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main() -> None:
    cli(prog_name="drypipe")


from drypipe.cli import cache_commands, executor_commands, run_commands, task_commands, ux_commands  # noqa: E402,F401  (registers subcommands)
