"""mkdocs hook: fills docs/cli.md with the reference of every `drypipe` command, generated
from the click commands themselves (usage, help, options with their environment variables
and defaults), so the page cannot fall behind the code.

Also: pages that other parts of the project own (ssh.md ...) are linked from the nav; while
one is not written yet, a short placeholder is generated so that `mkdocs build --strict`
still passes.
"""
from __future__ import annotations

import html
import inspect
import logging

import click

MARKER = "<!-- cli-reference -->"
OWNED_ELSEWHERE = {
    "slurm.md": "Slurm executor",
    "ssh.md": "SSH executor",
    "dendro.md": "Dendro",
}
log = logging.getLogger("mkdocs.plugins.drypipe")


def _commands(group: click.Group, ctx: click.Context, prefix: str):
    for name in group.list_commands(ctx):
        try:
            command = group.get_command(ctx, name)
        except Exception as e:  # an optional command group that cannot load here
            log.info("drypipe CLI reference: skipping %s: %s", name, e)
            continue
        if command is None or command.hidden:
            continue
        sub_ctx = click.Context(command, info_name=name, parent=ctx)
        yield f"{prefix} {name}", command, sub_ctx
        if isinstance(command, click.Group):
            yield from _commands(command, sub_ctx, f"{prefix} {name}")


def _inline(text: str) -> str:
    """Markdown for a line of help text: `code` spans kept, <, > and * shown as they are."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = html.escape(parts[i], quote=False).replace("*", "\\*")
    return "`".join(parts)


def _help(text: str | None) -> list[str]:
    """Paragraphs of a click help text; those after a \\b line are kept verbatim."""
    out = []
    for paragraph in inspect.cleandoc(text or "").split("\n\n"):
        if paragraph.startswith("\b\n"):
            out += ["```text", paragraph[2:], "```", ""]
        else:
            out += [_inline(" ".join(paragraph.split())), ""]
    return out


def _option_row(param: click.Parameter, ctx: click.Context) -> str | None:
    record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
    if isinstance(param, click.Argument):
        if not param.get_usage_pieces(ctx):  # a hidden alias of an option (`drypipe why TASK_KEY`)
            return None
        return f"| `{param.human_readable_name}` | argument{' (required)' if param.required else ''} |"
    if record is None:
        return None
    names, help_text = record
    return f"| `{names}` | {_inline(help_text).replace('|', '&#124;')} |"


def render() -> str:
    """The Markdown reference of every command of the `drypipe` CLI."""
    from drypipe.cli import cli

    root = click.Context(cli, info_name="drypipe")
    out = ["## drypipe", "", "```text", cli.get_usage(root), "```", "", *_help(cli.help)]
    rows = [r for r in (_option_row(p, root) for p in cli.get_params(root)) if r]
    out += ["| option | |", "|---|---|", *rows, ""]
    for path, command, ctx in _commands(cli, root, "drypipe"):
        out += [f"## {path}", "", "```text", command.get_usage(ctx), "```", ""]
        out += _help(command.help or command.short_help)
        rows = [r for r in (_option_row(p, ctx) for p in command.get_params(ctx)) if r]
        if rows:
            out += ["| option | |", "|---|---|", *rows, ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == "cli.md" and MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown


def on_files(files, config):
    from mkdocs.structure.files import File

    for name, what in OWNED_ELSEWHERE.items():
        if files.get_file_from_path(name) is None:
            log.info("drypipe: %s is not written yet: generating a placeholder", name)
            files.append(File.generated(config, name, content=(
                f"# {what}\n\nThis page is being written; see the docstrings of the `executors/` "
                "package and `drypipe --help` meanwhile.\n")))
    return files
