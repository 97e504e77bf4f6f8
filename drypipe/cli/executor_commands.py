"""`drypipe executors [NAME]`: the installed executor plugins and the TaskConf keywords of each.

Read from the plugins' descriptors (drypipe.plugins) only: no executor class is imported."""
from __future__ import annotations

import dataclasses
from typing import Any

import click

from drypipe import plugins
from drypipe.cli import cli


@cli.command()
@click.argument("name", required=False)
def executors(name: str | None) -> None:
    """List the executor plugins, or the settings (TaskConf keywords) of one.

    With NAME: each setting's keyword, type, default and help, and its other spellings."""
    if name is None:
        _list_plugins()
    else:
        _show_plugin(plugins.plugin(name))


def _list_plugins() -> None:
    found = plugins.plugins()
    width = max(map(len, found), default=0)
    for name, plugin in found.items():
        click.echo(f"{name:<{width}}  {', '.join(plugin.setting_names()) or '(no settings)'}")
    click.echo("\n`drypipe executors NAME` shows the type, default and help of each setting of executor NAME.")


def _show_plugin(plugin: plugins.ExecutorPlugin[Any]) -> None:
    executor = plugin.executor if isinstance(plugin.executor, str) else plugin.executor.__qualname__
    click.echo(f"{plugin.name}: executer_type={plugin.name!r} ({executor})")
    rows = [(f.name, _type_name(f.type), repr(plugin.default(f.name)), str(f.metadata.get("help", "")))
            for f in dataclasses.fields(plugin.settings)]
    if not rows:
        click.echo("no settings")
        return
    header = ("TaskConf keyword", "type", "default", "help")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for keyword, type_name, default, help_text in [header, *rows]:
        click.echo(f"  {keyword:<{widths[0]}}  {type_name:<{widths[1]}}  {default:<{widths[2]}}  {help_text}".rstrip())
    for alias, setting in sorted(plugin.aliases.items()):
        click.echo(f"{alias} is another spelling of {setting}")
    for setting in plugin.selected_by:
        click.echo(f"a task that sets {setting} runs on {plugin.name}, whatever its executer_type")


def _type_name(annotation: Any) -> str:
    """The annotation as written (a string under `from __future__ import annotations`)."""
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
