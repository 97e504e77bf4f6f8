"""Executor plugins (drypipe/plugins.py): the core knows an executor only through its
descriptor -- its settings (TaskConf keywords), aliases, `selected_by`, handle, scratch dir
variable and `running_elsewhere` check -- and a plugin registered in-process runs tasks."""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drypipe import DryPipe, TaskConf, plugins
from drypipe.errors import UserError
from drypipe.executor import TaskRun
from drypipe.instance import Instance
from drypipe.plugins import ExecutorPlugin, register, unregister
from drypipe.scheduler import RunOptions, Scheduler
from drypipe.status_table import rows
from drypipe.task_record import TaskRecord
from executors.process import ProcessExecutor
from executors.slurm_plugin import PLUGIN as SLURM
from executors.slurm_plugin import SlurmSettings
from tests.helpers import drypipe, state_of, write_module

# -- a third-party executor, registered in-process ---------------------------------------------


@dataclass
class TagSettings:
    tag_colour: str | None = field(default=None, metadata={"help": "written to the task's tag file"})
    tag_depth: int = field(default=1, metadata={"help": "a positive number"})

    def validate(self) -> None:
        if self.tag_depth < 1:
            raise UserError(f"TaskConf: tag_depth must be at least 1, got {self.tag_depth}")


class TagExecutor(ProcessExecutor):
    """Runs tasks as local processes, recording each one's tag (its handle) first."""

    name = "tagged"

    def launch(self, tasks: list[TaskRun]) -> dict[str, str]:
        for task in tasks:
            settings = TAGGED.settings_of(task.task_conf, task.key)
            (task.control_dir / "tag").write_text(f"{settings.tag_colour}-{settings.tag_depth}\n")
        return super().launch(tasks)


def _tag(record: TaskRecord) -> str | None:
    try:
        return record.path("tag").read_text().strip()
    except OSError:
        return None


TAGGED = ExecutorPlugin(name="tagged", executor=TagExecutor, settings=TagSettings, aliases={"colour": "tag_colour"},
                        handle=_tag, scratch_dir_variable="TAGGED_TMPDIR",
                        running_elsewhere='[[ -e "$__control_dir/tagged-job" ]]')


@pytest.fixture
def tagged():
    register(TAGGED)
    yield TAGGED
    unregister("tagged")


# -- the registry -------------------------------------------------------------------------------

def test_unknown_executor_names_the_known_ones_and_how_to_add_one(tmp_path):
    with pytest.raises(UserError) as e:
        plugins.plugin("warp-drive")
    known = re.match(r"unknown executer_type 'warp-drive' \(known: ([^)]*)\); ", str(e.value))
    assert known and {"dendro", "process", "slurm", "ssh"} <= set(known.group(1).split(", ")), str(e.value)
    assert "'drypipe.plugins' entry point (pip install <package>)" in str(e.value)
    assert "drypipe.plugins.register()" in str(e.value) and "docs/executors.md" in str(e.value)
    # ... and what `drypipe run` says: that one line, before anything runs
    write_module(tmp_path, "warp", '''
        from drypipe import TaskConf

        def gen(dsl):
            yield dsl.task(key="t", task_conf=TaskConf(executer_type="warp-drive")).calls("true\\n")()
        ''')
    result = drypipe("run", "-p", "warp:gen", "-i", str(tmp_path / "inst"), cwd=tmp_path)
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and f"unknown executer_type 'warp-drive' (known: {known.group(1)})" in errors[0]
    assert state_of(tmp_path / "inst", "t") is None


def test_register_takes_a_class_or_a_module_path_and_refuses_taken_settings(tagged):
    assert plugins.plugin("tagged").executor_class() is TagExecutor
    by_path = ExecutorPlugin(name="tagged2", executor="executors.process:ProcessExecutor")
    register(by_path)
    try:
        assert plugins.plugin("tagged2").executor_class() is ProcessExecutor
    finally:
        unregister("tagged2")
    taken = "max_simultaneous_jobs, sbatch_options, slurm_account"
    with pytest.raises(UserError, match=f"'clash': settings {taken} are TaskConf's or another plugin's"):
        register(ExecutorPlugin(name="clash", executor=TagExecutor, settings=SlurmSettings))
    with pytest.raises(UserError, match="'bad': 'nowhere' is not one of its settings"):
        ExecutorPlugin(name="bad", executor=TagExecutor, settings=TagSettings, selected_by=("nowhere",))
    unregister("tagged")
    with pytest.raises(UserError, match="unknown field"):
        TaskConf(tag_colour="red")


def test_a_registered_plugin_runs_tasks_with_its_settings_handle_and_scratch_dir(tmp_path, tagged, monkeypatch):
    scratch = tmp_path / "node-local"
    scratch.mkdir()
    monkeypatch.setenv("TAGGED_TMPDIR", str(scratch))

    def gen(dsl):
        yield dsl.task(key="t", task_conf=TaskConf(executer_type="tagged", colour="red", tag_depth=3)).outputs(
            where=str).calls('export where="$__scratch_dir"\n')()

    instance = Instance(tmp_path / "inst")
    summary = Scheduler(DryPipe.create_pipeline(gen), instance, RunOptions(sleep_schedule=(0,))).run()
    assert summary.states == {"t": "completed"}
    record = TaskRecord(instance.root, "t")
    assert record.output_vars() == {"where": str(scratch)}
    conf = record.conf_document()["task_conf"]
    assert conf["executer_type"] == "tagged"
    assert conf["executor_options"] == {"tag_colour": "red", "tag_depth": 3}
    [row] = rows(instance, {"t": "completed"})
    assert (row.executor, row.job_id) == ("tagged", "red-3")  # the plugin's handle
    # `./task tail` follows the logs while the plugin's check says the task runs elsewhere
    (record.control_dir / "state.completed").rename(record.control_dir / "state.step-started.0")
    (record.control_dir / "tagged-job").touch()
    tail = subprocess.Popen([str(record.control_dir / "task"), "tail"], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    assert tail.poll() is None
    (record.control_dir / "tagged-job").unlink()
    assert tail.wait(timeout=10) == 0


# -- TaskConf and the plugins' settings ---------------------------------------------------------

def test_plugin_keywords_and_aliases_land_in_executor_options_and_read_back():
    conf = TaskConf(executer_type="slurm", slurm_account="def-me", slurm_options=("--partition=debug",))
    assert conf.executor_options == {"slurm_account": "def-me", "sbatch_options": ["--partition=debug"]}
    assert (conf.slurm_account, conf.sbatch_options, conf.slurm_options) == ("def-me", ["--partition=debug"],
                                                                             ["--partition=debug"])
    assert conf.max_simultaneous_jobs is None  # not set: the setting's default
    settings = SLURM.settings_of(conf)
    assert (settings.slurm_account, settings.sbatch_options) == ("def-me", ["--partition=debug"])
    conf.slurm_account = "def-other"  # an attribute set lands there too
    assert SLURM.settings_of(conf).slurm_account == "def-other"
    assert TaskConf.from_dict(conf.to_dict()) == conf
    assert TaskConf(executer_type="slurm", sbatch_options=["--a"], slurm_options=["--b"]).sbatch_options == ["--a"]
    with pytest.raises(AttributeError):
        _ = conf.slurm_acount


def test_selected_by_routes_a_task_to_its_plugin(tagged):
    assert TaskConf(executer_type="slurm").executor_name() == "slurm"
    assert TaskConf(executer_type="slurm", ssh_specs="me@cluster").executor_name() == "ssh"
    assert TaskConf(ssh_remote_dest="me@cluster:/k").executor_name() == "ssh"
    register(ExecutorPlugin(name="tagged", executor=TagExecutor, settings=TagSettings, selected_by=("tag_colour",)))
    assert TaskConf(tag_colour="red").executor_name() == "tagged"
    assert TaskConf(tag_colour=None).executor_name() == "process"


def test_plugin_setting_errors_name_the_setting_and_the_task(tagged):
    with pytest.raises(UserError, match=r"^TaskConf: max_simultaneous_jobs must be a positive integer, got 0$"):
        TaskConf(max_simultaneous_jobs=0)
    with pytest.raises(UserError, match=r"^TaskConf: tag_colour must be a str or None, got int: 5$"):
        TaskConf(tag_colour=5)
    with pytest.raises(UserError, match=r"^TaskConf: tag_depth must be at least 1, got 0$"):
        TaskConf(executor_options={"tag_depth": 0})  # given either way
    conf = TaskConf(executer_type="tagged")
    conf.tag_depth = True  # changed after it was built: refused where the executor reads it
    with pytest.raises(UserError, match=r"^task align-3: TaskConf: tag_depth must be an int, got bool: True$"):
        TAGGED.settings_of(conf, "align-3")


def test_a_task_conf_json_of_the_earlier_layout_loads(tmp_path):
    """Written before the plugins: every setting beside the generic fields."""
    write_module(tmp_path, "one", '''
        def gen(dsl):
            yield dsl.task(key="t").calls("true\\n")()
        ''')
    instance = tmp_path / "inst"
    drypipe("prepare", "-p", "one:gen", "-i", str(instance), cwd=tmp_path, check=True)
    path = instance / ".drypipe" / "t" / "task-conf.json"
    doc = json.loads(path.read_text())
    doc["task_conf"] = {
        "executer_type": "slurm", "slurm_account": "def-me", "sbatch_options": ["--time=5"], "container": None,
        "ssh_specs": None, "remote_base_dir": None, "remote_containers_dir": None, "python_bin": None,
        "extra_env": {}, "command_before_task": None, "max_simultaneous_jobs": 4, "cpus": 2, "mem": None,
        "time": None, "retries": None, "retry_scale": {}, "dendro_service": None, "dendro_app": None,
        "dendro_processor": None, "required_resources": None, "executor_options": {}, "bash_strict": None,
        "python_interpreter_switches": [], "label": None, "container_runtime": None,
    }
    path.write_text(json.dumps(doc))
    conf = TaskRecord(instance, "t").task_conf()
    assert (conf.executer_type, conf.cpus, conf.slurm_account, conf.max_simultaneous_jobs) == ("slurm", 2, "def-me", 4)
    assert SLURM.settings_of(conf).sbatch_options == ["--time=5"]
    (instance / ".drypipe" / "t" / "slurm_job_id").write_text("812_3\n")
    status = drypipe("status", "-i", str(instance), cwd=tmp_path, env={"COLUMNS": "200"})
    [line] = [line for line in status.stdout.splitlines() if line.startswith("t ")]
    assert line.split()[1:4] == ["ready", "slurm", "812_3"], status.stdout


def test_the_task_runtime_knows_no_executor_by_name():
    """Scratch dirs and `./task tail`'s check come from the plugins, none is hard-coded."""
    lib = (Path(__file__).parent.parent / "drypipe" / "resources" / "task-lib.sh").read_text()
    code = "\n".join(line.split("#")[0] for line in lib.splitlines())  # comments aside
    assert not [word for word in ("slurm", "squeue", "ssh", "dendro") if word in code.lower()]
