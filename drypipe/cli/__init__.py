"""The `drypipe` command line (click).  Each module adds one family of subcommands."""
from __future__ import annotations

import logging
import os
import sys

import click

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
    def adder(weight: int):
        return lambda ctx, param, value: _add_verbosity(ctx, weight * int(value or 0))

    return [
        click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=adder(1),
                     help="Verbose: log each task state change; -vv: debug logging and tracebacks."),
        # the original DryPipe's spellings
        click.Option(["--v"], is_flag=True, expose_value=False, hidden=True, callback=adder(1)),
        click.Option(["--vv"], is_flag=True, expose_value=False, hidden=True, callback=adder(2)),
    ]


class _Verbose:
    """Every command and group takes -v, so it may follow the subcommand (`drypipe run -vv ...`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.params.extend(_verbosity_params())


class _UsageErrorsNameTheCommand:
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


# `drypipe --help` lists the commands in these sections, with an example each.  A command that
# is not listed here lands in a last section "other" (tests check none does).
SECTIONS: list[tuple[str, str, list[str]]] = [
    ("Running", "drypipe run -p mypipeline:gen -i /data/run1",
     ["run", "prepare", "task", "restart", "kill", "call", "service"]),
    ("Inspecting", "drypipe status -i /data/run1 --state failed",
     ["status", "why", "graph", "report-execution-times", "list-states", "poll-task", "dump-env"]),
    ("Setting up", "drypipe config show -i /data/run1",
     ["config", "cache", "completion", "upgrade-drypipe"]),
    ("Slurm", "drypipe sbatch -i /data/run1 -k align.3 --wait",
     ["sbatch", "sbatch-gen", "array-create-parent", "array-submit", "restart-failed-array-tasks"]),
    ("SSH", "drypipe remote-exec -i /data/run1 -k fetch --wait",
     ["remote-exec", "fetch-remote-state", "array-submit-from-remote", "array-watch-from-remote"]),
    ("Dendro", "drypipe dendro serve --data-dir /srv/dendro",
     ["dendro"]),
    ("Plumbing (used by drypipe itself and by scripts)", "drypipe array-rsync-list -i /data/run1 -k 'align.*'",
     ["upload-task-inputs", "upload-drypipe-for-remote-instance", "array-upload", "array-download",
      "array-rsync-list"]),
]


class DryPipeGroup(_UsageErrorsNameTheCommand, _Verbose, click.Group):
    """Turns every error into one line `drypipe: error: ...` on stderr (traceback with -vv):
    UserError and OSError exit with code 1, bad arguments (click's usage errors) with 2.

    Command groups of other packages are imported only when used (`drypipe dendro ...`
    loads the Dendro service code; `drypipe run` and `drypipe --help` do not)."""

    command_class = DryPipeCommand
    group_class = DryPipeSubGroup
    lazy_groups = {"dendro": ("dendro_bridge.cli", "dendro")}
    # `drypipe --help` must not import a lazy group to show its one line
    lazy_short_help = {"dendro": "Self-hosted Dendro service and compute resource: serve, admin, compute."}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_groups])

    def get_command(self, ctx: click.Context, name: str):
        if name in self.lazy_groups and name not in self.commands:
            import importlib

            module, attr = self.lazy_groups[name]
            self.add_command(getattr(importlib.import_module(module), attr), name=name)
        return super().get_command(ctx, name)

    def _short_help(self, ctx: click.Context, name: str) -> str | None:
        """The command's first sentence, whole; None for a hidden command."""
        if name in self.lazy_groups and name not in self.commands:
            return self.lazy_short_help[name]
        command = self.get_command(ctx, name)
        if command is None or command.hidden:
            return None
        return command.get_short_help_str(limit=1000)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = [n for n in self.list_commands(ctx)]
        listed = {n for _, _, section in SECTIONS for n in section}
        sections = [*SECTIONS, ("Other", "", [n for n in names if n not in listed])]
        for title, example, section in sections:
            rows = [(n, help_text) for n in section if n in names
                    for help_text in [self._short_help(ctx, n)] if help_text is not None]
            if not rows:
                continue
            with formatter.section(title):
                formatter.write_dl(rows)
                if example:
                    formatter.write_paragraph()
                    formatter.write_text(f"e.g. {example}")

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        """click's own errors of `drypipe` itself (an unknown option, no command) in our one-line
        form too (the subcommands' are caught by invoke)."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as e:
            click.echo(f"drypipe: error: {_click_message(e)}", err=True)
            sys.exit(e.exit_code)

    def invoke(self, ctx: click.Context):
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
    """click's message, and for a usage error where to read the command's usage."""
    ctx = getattr(e, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if isinstance(e, click.UsageError) and ctx is not None else ""
    return e.format_message() + where


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


from drypipe.cli import cache_commands, remote_commands, run_commands, slurm_commands, task_commands, ux_commands  # noqa: E402,F401  (registers subcommands)
