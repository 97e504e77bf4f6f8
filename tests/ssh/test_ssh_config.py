"""ssh_specs parsing, the executor choice, and the remote versions of a task's files (no server)."""
import json
import os

import pytest

from drypipe import DryPipe, TaskConf
from drypipe.errors import UserError
from executors.ssh import SshExecutor
from executors.ssh_config import (
    host_settings,
    parse_ssh_specs,
    remote_settings,
    resolve_remote_dir,
)


@pytest.mark.parametrize("specs, user, host, port, key, base", [
    ("me@login.example.org:~/.ssh/id_rsa", "me", "login.example.org", 22, "~/.ssh/id_rsa", None),
    ("me@127.0.0.1:2222:/keys/k", "me", "127.0.0.1", 2222, "/keys/k", None),
    ("me@host:2222", "me", "host", 2222, None, None),
    ("host", None, "host", 22, None, None),
    ("me@host:/remote/base:/keys/k", "me", "host", 22, "/keys/k", "/remote/base"),  # original's ssh_remote_dest
    ("me@[::1]:2200:/keys/k", "me", "[::1]", 2200, "/keys/k", None),
])
def test_ssh_specs(specs, user, host, port, key, base):
    target, remote_base = parse_ssh_specs(specs)
    assert (target.user, target.host, target.port, remote_base) == (user, host, port, base)
    assert target.key_path == (os.path.abspath(os.path.expanduser(key)) if key else None)


@pytest.mark.parametrize("specs", ["", "me@", "me@ho st:/k", "me@host:99999:/k", "a b@host", "me@host:1:/a:/b:/c"])
def test_bad_ssh_specs_are_clear_errors(specs):
    with pytest.raises(UserError, match="ssh_specs"):
        parse_ssh_specs(specs)


def test_tasks_with_ssh_specs_go_to_the_ssh_executor():
    assert TaskConf().executor_name() == "process"
    assert TaskConf(executer_type="slurm").executor_name() == "slurm"
    assert TaskConf(executer_type="slurm", ssh_specs="me@h:/k").executor_name() == "ssh"
    assert TaskConf(ssh_remote_dest="me@h:/base:/k").executor_name() == "ssh"  # the original's spelling


def test_settings_from_executor_options_and_environment(monkeypatch):
    monkeypatch.setenv("DRYPIPE_SSH_KNOWN_HOSTS", "/etc/kh")
    conf = TaskConf(ssh_specs="me@h:2:/k", remote_base_dir="~/runs",
                    executor_options={"remote_env": {"SLURM_CONF": "/x y"}, "remote_init": "module load slurm"})
    settings = host_settings(conf)
    assert settings.known_hosts == "/etc/kh" and not settings.accept_unknown
    remote = remote_settings(conf)
    assert "export SLURM_CONF='/x y'" in remote.prelude() and "module load slurm" in remote.prelude()
    assert "unset SSH_CONNECTION" in remote.prelude()  # remote tasks outlive the ssh session
    assert resolve_remote_dir(remote.base_dir, "/home/me") == "/home/me/runs"
    assert resolve_remote_dir("runs", "/home/me") == "/home/me/runs"
    assert resolve_remote_dir("/abs", "/home/me") == "/abs"
    conf = TaskConf(ssh_specs="me@h:2:/k", executor_options={"ssh_known_hosts": "/mine", "ssh_accept_unknown_host": True})
    assert host_settings(conf).known_hosts == "/mine" and host_settings(conf).accept_unknown


def test_remote_dest_of_the_task_command():
    conf = SshExecutor.with_remote_dest(TaskConf(), "me@h:2200:/scratch/runs:/keys/k")
    assert (conf.ssh_specs, conf.remote_base_dir) == ("me@h:2200:/keys/k", "/scratch/runs")
    conf = SshExecutor.with_remote_dest(TaskConf(), "me@h:/scratch/runs")
    assert (conf.ssh_specs, conf.remote_base_dir) == ("me@h", "/scratch/runs")  # the port: ssh config's or 22


@DryPipe.python_call()
def _unused():
    return {}


def test_remote_task_files_name_no_local_path(tmp_path):
    """task-env.sh / task-conf.json for the host: code dir, python, absolute inputs rewritten."""
    from drypipe.instance import Instance
    from drypipe.scheduler import RunOptions, Scheduler
    from executors.ssh_stage import stage_task

    outside = tmp_path / "data.txt"
    outside.write_text("x")

    def gen(dsl):
        yield dsl.task(key="t", task_conf=TaskConf(ssh_specs="me@h:/k")).inputs(
            d=dsl.file(str(outside)), v="it's").outputs(o=dsl.file("o")).calls("cat $d > $o\n")()

    instance = Instance(tmp_path / "i")
    Scheduler(DryPipe.create_pipeline(gen, pipeline_code_dir=str(tmp_path)), instance, RunOptions()).prepare()
    staged = stage_task(instance, "t", "/r/i", "/r/venv/bin/python", None, True)
    assert str(tmp_path) not in staged.env_text.replace(".drypipe/.ssh/external" + str(tmp_path), "")
    assert 'export d="$__pipeline_instance_dir"/.drypipe/.ssh/external' + str(outside) in staged.env_text
    assert "export v='it'\"'\"'s'" in staged.env_text
    conf = json.loads(staged.conf_text)
    assert conf["pipeline_code_dir"] == "/r/i/.drypipe/.ssh/code/pipeline"
    assert conf["python_bin"] == "python3"  # no python call: no venv needed
    assert staged.externals == [str(outside)] and staged.code == {".drypipe/.ssh/code/pipeline": str(tmp_path)}
    assert staged.paths == [".drypipe/.lib/task-lib.sh", ".drypipe/t"]
