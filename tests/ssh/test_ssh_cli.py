"""The remote-* and array-* commands of the manual, on a prepared instance, with no orchestrator."""
import json

from tests.helpers import output_vars, state_of
from tests.ssh.ssh_helpers import as_ssh_user, drypipe


def test_remote_commands_by_hand(ssh_env, sshd_server, tmp_path):
    instance = tmp_path / "i"
    i = ["-i", str(instance)]
    remote = f"{ssh_env['DRYPIPE_TEST_REMOTE_BASE']}/i"
    result = drypipe("prepare", "-p", "tests.ssh.pipelines:cli", *i, env=ssh_env)
    assert result.returncode == 0, result.stderr
    assert state_of(instance, "a") == "ready" and state_of(instance, "b") == "waiting"

    # what an upload sends: the task, the task runtime, and exactly its inputs
    listed = drypipe("array-rsync-list", *i, "-k", "a", env=ssh_env)
    assert listed.stdout.split() == [".drypipe/.lib/task-lib.sh", ".drypipe/a"], listed.stderr

    result = drypipe("remote-exec", *i, "-k", "a", "--wait", env=ssh_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "a: completed" in result.stdout
    assert (instance / "output/a/a.txt").read_text() == "hello\n"
    assert output_vars(instance, "a") == {"x": "3"}

    listed = drypipe("array-rsync-list", *i, "-k", "b", env=ssh_env)
    assert sorted(listed.stdout.split()) == sorted([".drypipe/.lib/task-lib.sh", ".drypipe/b", "output/a/a.txt",
                                                    ".drypipe/a/output_vars.sh", ".drypipe/a/output_vars",
                                                    ".drypipe/a/state.completed"])  # b checks it before it starts
    result = drypipe("upload-task-inputs", *i, "-k", "b", env=ssh_env)
    assert result.returncode == 0 and f"b: uploaded to {ssh_env['SSH_USER']}@" in result.stdout, result.stderr
    env_sh = as_ssh_user(sshd_server, f"cat {remote}/.drypipe/b/task-env.sh").stdout
    assert "__upstream_var x a x" in env_sh and str(instance) not in env_sh
    assert state_of(instance, "b") == "waiting"  # uploaded, not started

    result = drypipe("remote-exec", *i, "-k", "b", env=ssh_env)  # no --wait
    assert result.returncode == 0, result.stderr
    assert "task b: started on" in result.stdout and "was waiting" in result.stderr
    result = drypipe("fetch-remote-state", *i, "-k", "b", "--wait", env=ssh_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (instance / "output/b/b.txt").read_text() == "hello\nx=3\n"
    result = drypipe("fetch-remote-state", *i, "-k", "b", env=ssh_env)
    assert result.stdout.strip() == "b\tcompleted"

    # a local task run on a host given on the command line
    dest = (f"{ssh_env['SSH_USER']}@{ssh_env['SSH_HOST']}:{ssh_env['SSHD_PORT']}:"
            f"{ssh_env['DRYPIPE_TEST_REMOTE_BASE']}:{ssh_env['SSH_KEY']}")
    env = dict(ssh_env, DRYPIPE_TEST_SSH_OPTIONS="")
    env["DRYPIPE_SSH_KNOWN_HOSTS"] = ssh_env["SSH_KNOWN_HOSTS"]
    result = drypipe("task", *i, "-k", "c", "--ssh-remote-dest", dest, "--wait", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (instance / "output/c/c.txt").read_text() == f"c as {ssh_env['SSH_USER']} x=3\n"
    assert json.loads((instance / ".drypipe/c/ssh_launch").read_text())["ssh_remote_dest"] == dest

    # results lost locally come back; uploads and watches of several tasks at once
    (instance / "output/a/a.txt").unlink()
    result = drypipe("array-download", *i, "-k", "*", env=env)
    assert result.returncode == 0, result.stderr
    assert (instance / "output/a/a.txt").read_text() == "hello\n"
    assert "3 task(s): 3 completed" in result.stdout
    result = drypipe("array-upload", *i, "-k", "[ab]", env=ssh_env)
    assert result.returncode == 0 and "uploaded 2 task(s)" in result.stdout, result.stderr
    result = drypipe("array-watch-from-remote", *i, "-k", "*", env=env)
    assert result.returncode == 0 and "3 task(s): 3 completed" in result.stdout, result.stderr


def test_upload_drypipe_for_remote_instance_installs_once(ssh_env, sshd_server, tmp_path):
    instance = tmp_path / "i"
    env = dict(ssh_env)
    env.pop("DRYPIPE_SSH_REMOTE_VENV")  # the default: a venv in the remote instance
    assert drypipe("prepare", "-p", "tests.ssh.pipelines:cli", "-i", str(instance), env=env).returncode == 0
    first = drypipe("upload-drypipe-for-remote-instance", "-i", str(instance), "-k", "a", env=env)
    assert first.returncode == 0, first.stderr
    venv = f"{ssh_env['DRYPIPE_TEST_REMOTE_BASE']}/i/.drypipe/.venv"
    assert f"{venv}/bin/python (installed" in first.stdout
    second = drypipe("upload-drypipe-for-remote-instance", "-i", str(instance), "-k", "a", env=env)
    assert f"{venv}/bin/python (already up to date" in second.stdout, second.stdout + second.stderr
    check = as_ssh_user(sshd_server, f"{venv}/bin/python -c 'import drypipe.pycall, dry_pipe; print(\"ok\")'")
    assert check.stdout.strip() == "ok", check.stderr
