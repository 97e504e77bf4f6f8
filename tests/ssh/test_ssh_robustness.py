"""SSH executor under stress: one remote command per host per poll whatever the number of tasks,
dropped connections and a killed orchestrator (nothing runs twice), host key checking, bad
keys, failures whose logs come back, and killing remote tasks."""
import json
import signal
import subprocess
import time
from collections import Counter

import paramiko
import pytest

from drypipe.instance import Instance
from drypipe.scheduler import RunOptions, Scheduler
from executors.ssh import SshExecutor
from tests.helpers import output_vars, state_of
from tests.ssh import pipelines
from tests.ssh.ssh_helpers import as_ssh_user, drypipe, start_drypipe, wait_until


def _runs(sshd_server, path: str) -> Counter:
    """How many times each task ran, from the side-effect file the tasks append to."""
    text = as_ssh_user(sshd_server, f"cat {path} 2>/dev/null").stdout
    return Counter(line.split()[0] for line in text.splitlines() if line.strip())


def _all_started(instance, keys):
    return all((state_of(instance, k) or "").startswith(("step-started", "completed")) for k in keys)


def test_one_remote_command_per_host_per_poll_cycle(ssh_env, monkeypatch, tmp_path):
    """12 remote tasks on 2 hosts: every poll of the executor opens exactly one ssh channel per
    host (counted on paramiko itself), whatever the number of tasks in flight."""
    for name, value in ssh_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DRYPIPE_TEST_N_TASKS", "12")
    monkeypatch.setenv("DRYPIPE_TEST_TASK_SLEEP", "2")
    opened = []
    open_session = paramiko.Transport.open_session

    def counting_open_session(self, *args, **kwargs):
        opened.append(self.getpeername())
        return open_session(self, *args, **kwargs)

    monkeypatch.setattr(paramiko.Transport, "open_session", counting_open_session)
    polls = []
    poll = SshExecutor.poll

    def counting_poll(self, tasks):
        before = len(opened)
        hosts = {t.task_conf.ssh_specs.split(":")[0] for t in tasks}
        result = poll(self, tasks)
        polls.append({"tasks": len(tasks), "hosts": len(hosts), "channels": len(opened) - before})
        return result

    monkeypatch.setattr(SshExecutor, "poll", counting_poll)
    options = RunOptions(max_local_jobs=2, sleep_schedule=(0, 0.3, 0.6, 1), lost_grace_seconds=2)
    summary = Scheduler(pipelines.many(), Instance(tmp_path / "i"), options).run()
    assert summary.succeeded, summary.states
    assert (tmp_path / "i/output/sum/total.txt").read_text().strip() == str(sum(i * i for i in range(12)))
    print(f"\nssh polls: {polls}")
    assert len(polls) >= 3
    assert max(p["tasks"] for p in polls) == 12
    assert all(p["channels"] == p["hosts"] for p in polls), polls
    assert max(p["hosts"] for p in polls) == 2


def test_dropped_connections_mid_run_recover_and_nothing_runs_twice(ssh_env, sshd_server, tmp_path):
    runs_file = f"{ssh_env['DRYPIPE_TEST_REMOTE_BASE']}/runs.txt"
    env = dict(ssh_env, DRYPIPE_TEST_N_TASKS="6", DRYPIPE_TEST_TASK_SLEEP="3", DRYPIPE_TEST_RUNS_FILE=runs_file)
    instance = tmp_path / "i"
    log = tmp_path / "run.log"
    proc = start_drypipe("-v", "run", "-p", "tests.ssh.pipelines:many", "-i", str(instance), env=env, log=log)
    keys = [f"work.{i}" for i in range(6)]
    try:
        wait_until(lambda: _all_started(instance, keys), 60, "remote tasks running")
        kill = ["bash", sshd_server["SERVICE_SCRIPT"], "kill-sessions", sshd_server["STATE_DIR"]]
        for _ in range(3):  # while tasks run, then probably during polls and downloads
            subprocess.run(kill, check=True, capture_output=True, timeout=30)
            time.sleep(0.7)
        assert proc.wait(timeout=90) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "reconnecting" in text or text.count("ssh: connected to") > 2, text
    for key in keys + ["sum"]:
        assert state_of(instance, key) == "completed"
    assert (instance / "output/sum/total.txt").read_text().strip() == str(sum(i * i for i in range(6)))
    assert _runs(sshd_server, runs_file) == Counter({k: 1 for k in keys})


def test_killed_orchestrator_adopts_remote_tasks_without_rerunning_them(ssh_env, sshd_server, tmp_path):
    runs_file = f"{ssh_env['DRYPIPE_TEST_REMOTE_BASE']}/runs.txt"
    env = dict(ssh_env, DRYPIPE_TEST_N_TASKS="4", DRYPIPE_TEST_TASK_SLEEP="3", DRYPIPE_TEST_RUNS_FILE=runs_file)
    instance = tmp_path / "i"
    proc = start_drypipe("run", "-p", "tests.ssh.pipelines:many", "-i", str(instance), env=env,
                         log=tmp_path / "first.log")
    keys = [f"work.{i}" for i in range(4)]
    wait_until(lambda: _all_started(instance, keys), 60, "remote tasks running")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = drypipe("-v", "run", "-p", "tests.ssh.pipelines:many", "-i", str(instance), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "adopted" in result.stderr or "adopted" in result.stdout or all(
        state_of(instance, k) == "completed" for k in keys)
    assert _runs(sshd_server, runs_file) == Counter({k: 1 for k in keys})


def _known_hosts_options(path) -> str:
    return json.dumps({"ssh_known_hosts": str(path)})


def test_unknown_host_key_is_refused_unless_explicitly_accepted(ssh_env, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    env = dict(ssh_env, DRYPIPE_TEST_SSH_OPTIONS=_known_hosts_options(known_hosts))
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "tests.ssh.pipelines:one_remote", "-i", str(instance), env=env)
    assert result.returncode == 1
    error = result.stderr
    assert "task hello" in error and "is not in known_hosts" in error and str(known_hosts) in error, error
    assert "ssh_accept_unknown_host" in error
    assert state_of(instance, "hello") == "ready"  # rolled back: nothing was started
    assert not (instance / ".drypipe/hello/ssh_launch").exists()

    options = {"ssh_known_hosts": str(known_hosts), "ssh_accept_unknown_host": True}
    env["DRYPIPE_TEST_SSH_OPTIONS"] = json.dumps(options)
    result = drypipe("run", "-p", "tests.ssh.pipelines:one_remote", "-i", str(instance), env=env)
    assert result.returncode == 0, result.stderr
    assert "accepting the UNKNOWN host key" in result.stderr
    assert output_vars(instance, "hello") == {"who": ssh_env["SSH_USER"]}
    assert known_hosts.read_text() == ""  # trusted for that run only


def test_changed_host_key_is_refused_even_when_accepting_unknown_hosts(ssh_env, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known_hosts = tmp_path / "known_hosts"
    pub = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    known_hosts.write_text(f"[{ssh_env['SSH_HOST']}]:{ssh_env['SSHD_PORT']} {pub}\n")
    options = {"ssh_known_hosts": str(known_hosts), "ssh_accept_unknown_host": True}
    env = dict(ssh_env, DRYPIPE_TEST_SSH_OPTIONS=json.dumps(options))
    result = drypipe("run", "-p", "tests.ssh.pipelines:one_remote", "-i", str(tmp_path / "i"), env=env)
    assert result.returncode == 1
    assert "task hello" in result.stderr and "does NOT match known_hosts" in result.stderr, result.stderr


@pytest.mark.parametrize("problem", ["missing", "not authorized"])
def test_bad_private_key_gives_a_clear_error_naming_the_task(ssh_env, tmp_path, problem):
    key = tmp_path / "nowhere" / "id_ed25519"
    if problem == "not authorized":
        key = tmp_path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = dict(ssh_env, DRYPIPE_TEST_SSH_KEY_PATH=str(key))
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "tests.ssh.pipelines:one_remote", "-i", str(instance), env=env)
    assert result.returncode == 1
    lines = [l for l in result.stderr.splitlines() if l.startswith("drypipe: error")]
    assert len(lines) == 1, result.stderr
    assert "task hello" in lines[0] and str(key) in lines[0]
    assert ("not found" if problem == "missing" else "authentication as") in lines[0]
    if problem == "not authorized":  # the key's content never shows
        secret = "".join(key.read_text().splitlines()[1:-1])
        assert secret[:40] not in result.stderr + result.stdout
    assert state_of(instance, "hello") == "ready"


def test_failed_remote_task_brings_its_logs_back(ssh_env, tmp_path):
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "tests.ssh.pipelines:failing", "-i", str(instance), env=ssh_env)
    assert result.returncode == 1
    assert state_of(instance, "bad") == "failed.0"
    assert "something went wrong on" in (instance / ".drypipe/bad/out.log").read_text()
    assert "exit code 7" in (instance / ".drypipe/bad/drypipe.log").read_text()
    assert "FAILED bad" in result.stderr and "something went wrong" in result.stderr


def test_kill_stops_remote_tasks(ssh_env, sshd_server, tmp_path):
    runs_file = f"{ssh_env['DRYPIPE_TEST_REMOTE_BASE']}/runs.txt"
    env = dict(ssh_env, DRYPIPE_TEST_N_TASKS="2", DRYPIPE_TEST_TASK_SLEEP="120", DRYPIPE_TEST_ONE_HOST="1",
               DRYPIPE_TEST_RUNS_FILE=runs_file)
    instance = tmp_path / "i"
    proc = start_drypipe("run", "-p", "tests.ssh.pipelines:many", "-i", str(instance), env=env,
                         log=tmp_path / "run.log")
    keys = ["work.0", "work.1"]
    try:
        wait_until(lambda: _all_started(instance, keys), 60, "remote tasks running")
        result = drypipe("kill", "-i", str(instance), "-k", "work.*", env=env)
        assert result.returncode == 0, result.stderr
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    for key in keys:
        assert state_of(instance, key) == "killed.0"
        remote_ctl = f"{ssh_env['DRYPIPE_TEST_REMOTE_BASE']}/i/.drypipe/{key}"
        alive = as_ssh_user(sshd_server, f"read pid _ < {remote_ctl}/pid && kill -0 $pid && echo alive")
        assert "alive" not in alive.stdout
        assert "received SIGTERM" in (instance / ".drypipe" / key / "drypipe.log").read_text()
    assert _runs(sshd_server, runs_file) == Counter({k: 1 for k in keys})


def test_remote_process_killed_without_a_final_state_is_lost_with_its_logs(ssh_env, sshd_server, tmp_path):
    env = dict(ssh_env, DRYPIPE_TEST_N_TASKS="1", DRYPIPE_TEST_TASK_SLEEP="120")
    instance = tmp_path / "i"
    proc = start_drypipe("run", "-p", "tests.ssh.pipelines:many", "-i", str(instance), env=env,
                         log=tmp_path / "run.log")
    try:
        wait_until(lambda: _all_started(instance, ["work.0"]), 60, "the remote task running")
        remote_ctl = f"{ssh_env['DRYPIPE_TEST_REMOTE_BASE']}/i/.drypipe/work.0"
        killed = as_ssh_user(sshd_server, f"read pid _ < {remote_ctl}/pid && kill -9 $pid")
        assert killed.returncode == 0, killed.stderr
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    assert state_of(instance, "work.0") == "lost"
    log = (instance / ".drypipe/work.0/drypipe.log").read_text()
    assert "state.step-started.0" in log  # written on the host, downloaded
    assert "state.lost its process on" in log and "gone without a final state" in log
