"""Commands of executor plugins: listed by `drypipe --help` from their CommandSpec without being
imported, loaded when used, and a new plugin needs nothing but its package and one entry point."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest

from tests.helpers import REPO, drypipe, write_module

HEAVY = ["executors.slurm", "executors.ssh", "executors.slurm_cli", "executors.ssh_cli", "dendro_bridge.cli",
         "dendro_bridge.client", "paramiko", "requests"]

ONE = '''
def gen(dsl):
    yield dsl.task(key="align.1").calls("echo one\\n")()
    yield dsl.task(key="align.2").calls("echo two\\n")()
'''

# A third-party executor package: its commands, and one option it adds to `drypipe task`.
PBS_COMMANDS = '''
from drypipe.cli.plugin_commands import CommandSpec, OptionSpec

COMMANDS = (
    CommandSpec("qsub", "pbsplug.cli:qsub", "PBS", "Submit one task to PBS.", example="drypipe qsub -k align.1"),
    OptionSpec("task", "--pbs-queue", "pbsplug.cli:task_in_queue"),
)
'''
PBS_CLI = '''
import click
from drypipe.cli import DryPipeCommand
from drypipe.cli.options import instance_dir_option, task_key_option

@click.command("qsub", cls=DryPipeCommand)
@instance_dir_option
@task_key_option
def qsub(instance_dir, task_key):
    """Submit one task to PBS."""
    click.echo(f"qsub {task_key}")

def task_in_queue(ctx, queue):
    click.echo(f"task {ctx.params['task_key']} in queue {queue}")
'''


def _install_plugin(root: Path, name: str, entry: str) -> None:
    """A distribution on sys.path (the cwd is on PYTHONPATH) with one `drypipe.commands` entry."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[drypipe.commands]\n{name} = {entry}\n")


def _imported_by_help(cwd: Path) -> tuple[str, list[str]]:
    code = ("import sys\nfrom drypipe.cli import cli\ntry:\n    cli.main(['--help'], prog_name='drypipe')\n"
            "except SystemExit:\n    pass\n"
            f"print(','.join(m for m in {HEAVY!r} + ['pbsplug.cli'] if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=60,
                            env=dict(os.environ, PYTHONPATH=f"{cwd}{os.pathsep}{REPO}"))
    return result.stdout, [m for m in result.stderr.strip().split(",") if m]


def _section(help_text: str, title: str) -> str:
    match = re.search(rf"^{re.escape(title)}.*:\n((?:  .*\n|\n)*?)(?=^\S|\Z)", help_text, re.M)
    assert match, f"no section {title!r} in:\n{help_text}"
    return match.group(1)


def test_help_lists_plugin_commands_in_their_sections_without_importing_them(tmp_path):
    text, imported = _imported_by_help(tmp_path)
    assert imported == []
    sections = {title: _section(text, title) for title in ("Slurm", "SSH", "Dendro", "Plumbing")}
    for name in ("sbatch", "sbatch-gen", "array-create-parent", "array-submit", "restart-failed-array-tasks"):
        assert re.search(rf"^  {name} ", sections["Slurm"], re.M), name
    for name in ("remote-exec", "fetch-remote-state", "array-submit-from-remote", "array-watch-from-remote"):
        assert re.search(rf"^  {name} ", sections["SSH"], re.M), name
    for name in ("upload-task-inputs", "upload-drypipe-for-remote-instance", "array-upload", "array-download",
                 "array-rsync-list"):
        assert re.search(rf"^  {name}( |$)", sections["Plumbing"], re.M), name
    assert "  sbatch                      Submit one task to Slurm as a job" in sections["Slurm"]
    assert "e.g. drypipe sbatch -i /data/run1 -k align.3 --wait" in sections["Slurm"]
    assert "e.g. drypipe remote-exec -i /data/run1 -k fetch --wait" in sections["SSH"]
    assert "e.g. drypipe dendro serve --data-dir /srv/dendro" in sections["Dendro"]
    assert "Plumbing (used by drypipe itself and by scripts):" in text


def test_plugin_command_help_runs_and_completes_task_keys(tmp_path):
    result = drypipe("sbatch", "--help", cwd=tmp_path, check=True)
    assert result.stdout.startswith("Usage: drypipe sbatch [OPTIONS]")
    assert "Submit one task to Slurm as a job" in result.stdout and "--wait" in result.stdout

    write_module(tmp_path, "two", ONE)
    drypipe("prepare", "-p", "two:gen", "-i", str(tmp_path / "i"), cwd=tmp_path, check=True)
    drypipe_bin = shutil.which("drypipe")
    assert drypipe_bin, "the drypipe entry point is installed by pip install -e ."

    def complete(line: str) -> list[str]:
        env = dict(os.environ, COMP_WORDS=line, COMP_CWORD=str(len(line.split(" ")) - 1),
                   _DRYPIPE_COMPLETE="bash_complete", PYTHONPATH=str(REPO))
        out = subprocess.run([drypipe_bin], env=env, cwd=tmp_path / "i", capture_output=True, text=True,
                             timeout=60).stdout
        return [item.split(",", 1)[1] for item in out.splitlines()]

    assert complete("drypipe sbatch -k al") == ["align.1", "align.2"]
    assert complete("drypipe array-upload -k align.") == ["align.1", "align.2"]
    assert complete("drypipe restart-failed") == ["restart-failed-array-tasks"]


def test_unknown_command_is_one_line(tmp_path):
    result = drypipe("sbatchh", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("drypipe: error: No such command 'sbatchh'. (Did you mean one of: 'sbatch', "
                             "'sbatch-gen'?) (see 'drypipe --help')\n")


def test_a_new_executor_package_adds_commands_and_task_options(tmp_path):
    (tmp_path / "pbsplug").mkdir()
    (tmp_path / "pbsplug" / "__init__.py").write_text("")
    (tmp_path / "pbsplug" / "commands.py").write_text(textwrap.dedent(PBS_COMMANDS))
    (tmp_path / "pbsplug" / "cli.py").write_text(textwrap.dedent(PBS_CLI))
    _install_plugin(tmp_path, "pbsplug", "pbsplug.commands:COMMANDS")

    text, imported = _imported_by_help(tmp_path)
    assert imported == []
    assert text.index("\nSSH:") < text.index("\nPBS:") < text.index("\nPlumbing")
    assert "  qsub  Submit one task to PBS.\n\n  e.g. drypipe qsub -k align.1" in _section(text, "PBS")

    write_module(tmp_path, "two", ONE)
    i = str(tmp_path / "i")
    drypipe("prepare", "-p", "two:gen", "-i", i, cwd=tmp_path, check=True)
    assert drypipe("qsub", "-i", i, "-k", "align.1", cwd=tmp_path, check=True).stdout == "qsub align.1\n"
    result = drypipe("task", "-i", i, "-k", "align.2", "--pbs-queue", "short", cwd=tmp_path, check=True)
    assert result.stdout == "task align.2 in queue short\n"
    assert "--pbs-queue" not in drypipe("task", "--help", cwd=tmp_path, check=True).stdout  # hidden


def test_a_broken_plugin_is_named_and_left_out(tmp_path):
    _install_plugin(tmp_path, "brokenplug", "brokenplug_missing.commands:COMMANDS")
    result = drypipe("--help", cwd=tmp_path, check=True)
    assert "  sbatch " in result.stdout  # the other plugins' commands are still there
    assert result.stderr == ("drypipe: warning: drypipe.commands entry point brokenplug "
                             "(brokenplug_missing.commands:COMMANDS) cannot load: "
                             "No module named 'brokenplug_missing'\n")


def test_command_specs_match_their_commands():
    """The one-line help `drypipe --help` shows is the command's own first sentence."""
    from drypipe.cli.plugin_commands import CommandSpec, load_command
    from executors.commands import COMMANDS

    specs = [s for s in COMMANDS if isinstance(s, CommandSpec)]
    assert len(specs) == 14
    for spec in specs:
        command = load_command(spec)
        assert isinstance(command, click.Command) and command.name == spec.name
        assert command.get_short_help_str(limit=1000) == spec.short_help, spec.name


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports (`from executors import slurm_files` counts as executors.slurm_files)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["executors", "dendro_bridge"])
def test_drypipe_imports_no_plugin(package):
    offenders = {str(path.relative_to(REPO)): sorted(m for m in _imported_modules(path)
                                                     if m == package or m.startswith(package + "."))
                 for path in sorted((REPO / "drypipe").rglob("*.py"))}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_ssh_uses_slurm_only_through_its_public_module():
    used = {path.name: sorted({m.split(".")[1] for m in _imported_modules(path) if m.startswith("executors.slurm")})
            for path in sorted((REPO / "executors").glob("ssh*.py"))}
    assert {name: modules for name, modules in used.items() if set(modules) - {"slurm_api"}} == {}
    assert used["ssh.py"] == ["slurm_api"]
