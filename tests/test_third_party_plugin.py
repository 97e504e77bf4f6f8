"""The plugin boundary, proved from outside: a PBS executor written as a third-party package
(its own pyproject.toml, descriptor, settings, executor and command), installed for real with
pip, runs a pipeline through the `drypipe` CLI on fake qsub/qstat/qdel that really run the task
script, and nothing under drypipe/ changes for it."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import REPO, state_of, wait_until, write_module

# -- the package: what docs/executors.md, "Writing an executor plugin", says a plugin is --------

PYPROJECT = '''
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "drypipe-pbs"
version = "0.1.0"
dependencies = ["drypipe"]

[project.entry-points."drypipe.plugins"]
pbs = "drypipe_pbs.plugin:PLUGIN"

[project.entry-points."drypipe.commands"]
pbs = "drypipe_pbs.commands:COMMANDS"
'''

PLUGIN = '''
from __future__ import annotations

import re
from dataclasses import dataclass, field

from drypipe.errors import UserError
from drypipe.plugins import ExecutorPlugin
from drypipe.task_record import TaskRecord

JOB_ID_FILE = "pbs_job_id"


@dataclass
class PbsSettings:
    pbs_queue: str | None = field(default=None, metadata={"help": "the queue (qsub -q)"})
    pbs_walltime: str | None = field(default=None, metadata={"help": "the job's time limit, HH:MM:SS"})

    def validate(self) -> None:
        if self.pbs_walltime is not None and not re.fullmatch(r"\\d+:\\d\\d:\\d\\d", self.pbs_walltime):
            raise UserError(f"TaskConf: pbs_walltime must be HH:MM:SS, got {self.pbs_walltime!r}")


def job_id(record: TaskRecord) -> str | None:
    try:
        return record.path(JOB_ID_FILE).read_text().strip() or None
    except OSError:
        return None


PLUGIN = ExecutorPlugin(name="pbs", executor="drypipe_pbs.executor:PbsExecutor", settings=PbsSettings,
                        handle=job_id, scratch_dir_variable="PBS_JOBFS")
'''

EXECUTOR = '''
from __future__ import annotations

import subprocess

from drypipe.executor import Executor, Liveness, TaskRun
from drypipe.instance import write_atomic
from drypipe.task_record import TaskRecord
from drypipe_pbs.plugin import JOB_ID_FILE, PLUGIN, job_id


def running(jobs: list[str]) -> set[str]:
    out = subprocess.run(["qstat", *jobs], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines()}


class PbsExecutor(Executor):
    name = "pbs"

    def launch(self, tasks: list[TaskRun]) -> dict[str, str]:
        handles = {}
        for task in tasks:
            settings = PLUGIN.settings_of(task.task_conf, task.key)
            queue = ["-q", settings.pbs_queue] if settings.pbs_queue else []
            walltime = ["-l", f"walltime={settings.pbs_walltime}"] if settings.pbs_walltime else []
            submitted = subprocess.run(
                ["qsub", *queue, *walltime, "-o", str(task.control_dir / "pbs.log"),
                 "--", "/bin/bash", str(task.script), "--at-step", str(task.start_step)],
                capture_output=True, text=True, check=True)
            handles[task.key] = submitted.stdout.strip()
            write_atomic(task.control_dir / JOB_ID_FILE, handles[task.key] + "\\n")
        return handles

    def poll(self, tasks: list[TaskRun]) -> dict[str, Liveness]:
        jobs = {task.key: task.handle or job_id(TaskRecord(task.instance_dir, task.key)) for task in tasks}
        alive = running([j for j in jobs.values() if j])
        return {key: Liveness(alive=job in alive) for key, job in jobs.items()}

    def kill(self, tasks: list[TaskRun]) -> None:
        jobs = [job_id(TaskRecord(task.instance_dir, task.key)) for task in tasks]
        subprocess.run(["qdel", *filter(None, jobs)], capture_output=True)
'''

COMMANDS = '''
from drypipe.cli.plugin_commands import CommandSpec

COMMANDS = (
    CommandSpec("pbs-queue-status", "drypipe_pbs.cli:queue_status", "PBS",
                "Show the PBS job of each task and whether it is still queued or running.",
                example="drypipe pbs-queue-status -i /data/run1"),
)
'''

CLI = '''
from pathlib import Path

import click

from drypipe.cli import DryPipeCommand
from drypipe.cli.options import instance_dir_option
from drypipe_pbs.executor import running
from drypipe_pbs.plugin import JOB_ID_FILE


@click.command("pbs-queue-status", cls=DryPipeCommand)
@instance_dir_option
def queue_status(instance_dir: str) -> None:
    """Show the PBS job of each task and whether it is still queued or running."""
    files = sorted(Path(instance_dir, ".drypipe").glob(f"*/{JOB_ID_FILE}"))
    jobs = {p.parent.name: p.read_text().strip() for p in files}
    alive = running(list(jobs.values()))
    for key, job in jobs.items():
        click.echo(f"{key} {job} {'running' if job in alive else 'ended'}")
'''

# -- the fake PBS: each job is a real background process, as a batch system's would be --------

QSUB = '''#!/bin/bash
# qsub [-q QUEUE] [-l RESOURCE] -o LOG -- COMMAND...: starts COMMAND detached, prints the job id
queue=default resources= log=/dev/null
while (($#)); do
    case $1 in -q) queue=$2 ;; -l) resources=$2 ;; -o) log=$2 ;; --) shift; break ;; esac
    shift 2
done
setsid "$@" >> "$log" 2>&1 < /dev/null &
id=$!.pbs
echo "$! $queue $resources" > "JOBS/$id"
echo "$id"
'''
QSTAT = '''#!/bin/bash
# qstat JOB...: "JOB QUEUE R" for each job whose process still runs (not a zombie)
for id; do
    read -r pid queue _ < "JOBS/$id" 2>/dev/null || continue
    [[ $(ps -o stat= -p "$pid") == [^Z]* ]] && echo "$id $queue R"
done
exit 0
'''
QDEL = '''#!/bin/bash
for id; do read -r pid _ < "JOBS/$id" && kill -TERM "$pid"; done
'''

PIPELINE = '''
from drypipe import TaskConf

def gen(dsl):
    yield dsl.task(key="t", task_conf=TaskConf(executer_type="pbs", {settings})).outputs(
        answer=int, marker=dsl.file("marker.txt")).calls("""
        while [[ ! -e {release} ]]; do sleep 0.1; done
        echo "on $HOSTNAME" > "$marker"
        export answer=42
        """)()
'''


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def pbs(tmp_path_factory):
    """The drypipe-pbs package, pip-installed into a directory of its own; the fake PBS on PATH."""
    root = tmp_path_factory.mktemp("pbs")
    package = root / "drypipe-pbs"
    (package / "drypipe_pbs").mkdir(parents=True)
    (package / "pyproject.toml").write_text(PYPROJECT.lstrip())
    for name, source in {"__init__": "", "plugin": PLUGIN, "executor": EXECUTOR, "commands": COMMANDS,
                         "cli": CLI}.items():
        (package / "drypipe_pbs" / f"{name}.py").write_text(source.lstrip())
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(package)],
                   check=True, capture_output=True, timeout=120)
    assert (site / "drypipe_pbs-0.1.0.dist-info" / "entry_points.txt").is_file()
    jobs, bin_dir = root / "jobs", root / "bin"
    jobs.mkdir()
    bin_dir.mkdir()
    for name, script in {"qsub": QSUB, "qstat": QSTAT, "qdel": QDEL}.items():
        (bin_dir / name).write_text(script.replace("JOBS", str(jobs)))
        (bin_dir / name).chmod(0o755)
    return {"site": site, "jobs": jobs, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def _drypipe(*args: str, cwd: Path, pbs: dict | None, popen: bool = False):
    """The real `drypipe` CLI, with the plugin installed (its directory on PYTHONPATH) or not."""
    path = [str(cwd), *([str(pbs["site"])] if pbs else []), str(REPO)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), PATH=pbs["PATH"] if pbs else os.environ["PATH"])
    command = [sys.executable, "-m", "drypipe", *args]
    if popen:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _pipeline(tmp_path: Path, settings: str) -> Path:
    write_module(tmp_path, "pbs_pipeline", textwrap.dedent(PIPELINE).format(
        settings=settings, release=tmp_path / "release"))
    return tmp_path / "inst"


def test_an_installed_third_party_executor_runs_tasks_and_adds_its_command(tmp_path, pbs):
    before = _tree_digest(REPO / "drypipe")
    instance = _pipeline(tmp_path, 'pbs_queue="short", pbs_walltime="0:10:00"')
    run = _drypipe("run", "-p", "pbs_pipeline:gen", "-i", str(instance), cwd=tmp_path, pbs=pbs, popen=True)
    try:
        job_file = instance / ".drypipe" / "t" / "pbs_job_id"
        wait_until(lambda: run.poll() is not None or job_file.is_file(), what="the qsub of task t")
        assert run.poll() is None, run.communicate()[1]
        job = job_file.read_text().strip()
        # the job is a real process, submitted with the task's settings
        assert (pbs["jobs"] / job).read_text().split()[1:] == ["short", "walltime=0:10:00"]
        queue = _drypipe("pbs-queue-status", "-i", str(instance), cwd=tmp_path, pbs=pbs)
        assert (queue.returncode, queue.stdout) == (0, f"t {job} running\n"), queue.stderr
        (tmp_path / "release").touch()
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert state_of(instance, "t") == "completed"
    assert (instance / "output" / "t" / "marker.txt").read_text().startswith("on ")
    status = _drypipe("status", "-i", str(instance), cwd=tmp_path, pbs=pbs)
    assert re.search(rf"^\s*t\s+completed\s+pbs\s+{re.escape(job)}\b", status.stdout, re.M), status.stdout
    queue = _drypipe("pbs-queue-status", "-i", str(instance), cwd=tmp_path, pbs=pbs)
    assert queue.stdout == f"t {job} ended\n"
    # its command has its section in `drypipe --help`, and its settings are listed with their help
    help_text = _drypipe("--help", cwd=tmp_path, pbs=pbs).stdout
    section = re.search(r"^PBS:\n((?:  .*\n|\n)*)", help_text, re.M)
    assert section, help_text
    assert re.search(r"^  pbs-queue-status\s+Show the PBS job of each task", section.group(1), re.M)
    assert "e.g. drypipe pbs-queue-status -i /data/run1" in section.group(1)
    listed = _drypipe("executors", "pbs", cwd=tmp_path, pbs=pbs)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^  pbs_walltime\s+str \| None\s+None\s+the job's time limit, HH:MM:SS$", listed.stdout, re.M)
    assert _tree_digest(REPO / "drypipe") == before  # the core did not change for it


@pytest.mark.parametrize("settings, message", [
    ("pbs_queue=3", "TaskConf: pbs_queue must be a str or None, got int: 3"),
    ('pbs_walltime="ten minutes"', "TaskConf: pbs_walltime must be HH:MM:SS, got 'ten minutes'"),
])
def test_a_bad_setting_is_refused_in_one_line_naming_the_task(tmp_path, pbs, settings, message):
    instance = _pipeline(tmp_path, settings)
    result = _drypipe("run", "-p", "pbs_pipeline:gen", "-i", str(instance), cwd=tmp_path, pbs=pbs)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"drypipe: error: {message} ("), line  # then where: file:line
    assert state_of(instance, "t") is None


def test_without_the_plugin_drypipe_says_how_to_install_one(tmp_path):
    instance = _pipeline(tmp_path, "")
    result = _drypipe("run", "-p", "pbs_pipeline:gen", "-i", str(instance), cwd=tmp_path, pbs=None)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "unknown executer_type 'pbs'" in line, line
    assert "installing a package with a 'drypipe.plugins' entry point (pip install <package>)" in line
    assert "pbs-queue-status" not in _drypipe("--help", cwd=tmp_path, pbs=None).stdout


def test_executors_lists_the_plugins_and_the_settings_of_each_without_importing_them(tmp_path, pbs):
    listed = _drypipe("executors", cwd=tmp_path, pbs=pbs)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^pbs +pbs_queue, pbs_walltime$", listed.stdout, re.M), listed.stdout
    assert re.search(r"^process +\(no settings\)$", listed.stdout, re.M)
    assert re.search(r"^slurm +slurm_account, sbatch_options, ", listed.stdout, re.M)
    assert "pbs " not in _drypipe("executors", cwd=tmp_path, pbs=None).stdout
    pbs_settings = _drypipe("executors", "pbs", cwd=tmp_path, pbs=pbs).stdout.splitlines()
    assert pbs_settings[0] == "pbs: executer_type='pbs' (drypipe_pbs.executor:PbsExecutor)"
    assert re.fullmatch(r"  TaskConf keyword +type +default +help", pbs_settings[1])
    assert re.fullmatch(r"  pbs_queue +str \| None +None +the queue \(qsub -q\)", pbs_settings[2])
    slurm = _drypipe("executors", "slurm", cwd=tmp_path, pbs=None).stdout
    assert re.search(r"^  sbatch_options +list\[str\] +\[\] +more sbatch options", slurm, re.M), slurm
    assert "slurm_options is another spelling of sbatch_options" in slurm
    ssh = _drypipe("executors", "ssh", cwd=tmp_path, pbs=None).stdout
    assert "a task that sets ssh_specs runs on ssh, whatever its executer_type" in ssh
    unknown = _drypipe("executors", "pbs", cwd=tmp_path, pbs=None)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.startswith("drypipe: error: unknown executer_type 'pbs' (known: ")
    # the descriptors are enough: no executor module is imported
    code = textwrap.dedent("""
        import sys
        from drypipe.cli import cli
        try:
            cli.main(["executors", "slurm"], prog_name="drypipe")
        except SystemExit:
            pass
        executors = ("executors.slurm", "executors.ssh", "executors.dendro", "executors.process")
        print(sorted(m for m in sys.modules if m.startswith(executors) and not m.endswith("_plugin")), file=sys.stderr)
        """)
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert imported.stderr.strip() == "[]", imported.stderr
