"""The `drypipe` command line (click).  Each module adds one family of subcommands."""
from __future__ import annotations

import logging
import os
import sys

import click

from drypipe.errors import UserError


class DryPipeGroup(click.Group):
    """Turns UserError, OSError (exit code 1) and bad arguments (exit code 2) into one clear line
    (traceback with -vv).

    Command groups of other packages are imported only when used (`drypipe dendro ...`
    loads the Dendro service code; `drypipe run` does not)."""

    lazy_groups = {"dendro": ("dendro_bridge.cli", "dendro")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_groups])

    def get_command(self, ctx: click.Context, name: str):
        if name in self.lazy_groups and name not in self.commands:
            import importlib

            module, attr = self.lazy_groups[name]
            self.add_command(getattr(importlib.import_module(module), attr), name=name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as e:
            _fail(ctx, str(e), 1)
        except click.UsageError as e:  # a bad argument of a subcommand: one line too, not click's three
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            _fail(ctx, e.format_message() + where, e.exit_code)
        except OSError as e:  # e.g. a full disk or an unwritable instance dir
            if isinstance(e, BrokenPipeError):
                raise
            _fail(ctx, os_error_message(e), 1)


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
@click.option("-v", "--v", "verbose", is_flag=True, help="Verbose: log each task state change.")
@click.option("-vv", "--vv", "very_verbose", is_flag=True, help="Very verbose: debug logging and tracebacks.")
@click.option("--dry-run", is_flag=True, help="Print what would run without running it (same as run --dry-run).")
@click.version_option(package_name="drypipe")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, very_verbose: bool, dry_run: bool) -> None:
    """drypipe: a file-system-native DAG orchestrator for scientific pipelines.

    All state lives under the pipeline instance directory (-pid): task scripts, state
    markers and logs in .drypipe/<task>/, outputs in output/<task>/.
    """
    verbosity = 2 if very_verbose else 1 if verbose else 0
    ctx.obj = {"verbosity": verbosity, "dry_run": dry_run}
    logging.basicConfig(
        level=logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main() -> None:
    cli(prog_name="drypipe")


from drypipe.cli import cache_commands, remote_commands, run_commands, slurm_commands, task_commands, ux_commands  # noqa: E402,F401  (registers subcommands)
