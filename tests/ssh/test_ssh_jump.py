"""SSH through ~/.ssh/config and jump hosts: a task on a host that only a bastion can reach.

Two real sshds on 127.0.0.1: the bastion (`sshd_server`) and the inner host
(`sshd_inner_server`), whose port an nftables rule closes to everyone but the ssh user, so
that only the bastion's sessions (that user's) reach it: a direct connection is refused.
The pipeline names the inner host by a Host alias of an ssh config file only; drypipe's
paramiko connection and rsync's ssh both go through the bastion.

The last tests resolve ssh_specs through config files without any server.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from drypipe import DryPipe, TaskConf
from drypipe.errors import UserError
from executors.ssh_config import host_settings
from tests.helpers import output_vars, state_of
from tests.ssh.ssh_helpers import drypipe

PIPELINE = "tests.ssh.test_ssh_jump:jump_pipeline"


def jump_dag(dsl):
    """One bash task on DRYPIPE_TEST_JUMP_SPECS (options: DRYPIPE_TEST_SSH_OPTIONS, JSON)."""
    conf = TaskConf(ssh_specs=os.environ["DRYPIPE_TEST_JUMP_SPECS"], remote_base_dir=os.environ["DRYPIPE_TEST_REMOTE_BASE"],
                    executor_options=json.loads(os.environ.get("DRYPIPE_TEST_SSH_OPTIONS") or "{}"))
    yield dsl.task(key="hello", task_conf=conf).inputs(greeting="hello").outputs(
        f=dsl.file("greeting.txt"), who=str).calls('echo "$greeting from $USER" > $f\nexport who=$USER\n')()


def jump_pipeline():
    return DryPipe.create_pipeline(jump_dag)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jump(ssh_env, sshd_server, sshd_inner_server, tmp_path):
    """A user's ssh config (keys under tmp_path, one named with %-tokens), a known_hosts
    with both hosts, and the environment running PIPELINE with them."""
    keys = tmp_path / "keys"
    keys.mkdir()
    bastion_key, inner_key = keys / "bastion", keys / "inner_127.0.0.1"
    shutil.copy2(sshd_server["SSH_KEY"], bastion_key)
    shutil.copy2(sshd_inner_server["SSH_KEY"], inner_key)
    user, bport, iport = sshd_server["SSH_USER"], sshd_server["SSHD_PORT"], sshd_inner_server["SSHD_PORT"]
    config = tmp_path / "ssh_config"
    config.write_text(f"""
Host bastion
    HostName 127.0.0.1
    Port {bport}
    User {user}
    IdentityFile {bastion_key}

Host bastion-again
    HostName 127.0.0.1
    Port {bport}
    IdentityFile {bastion_key}

Host bastion-down
    HostName 127.0.0.1
    Port {_closed_port()}
    IdentityFile {bastion_key}

Host cluster
    HostName 127.0.0.1
    Port {iport}
    User {user}
    IdentityFile ~/.ssh/drypipe-test-no-such-key
    IdentityFile {keys}/inner_%h
    ProxyJump bastion

Host cluster-chain
    HostName 127.0.0.1
    Port 1
    IdentityFile {inner_key}
    ProxyJump bastion,{user}@bastion-again

Host cluster-direct cluster-behind-down-bastion
    HostName 127.0.0.1
    Port {iport}
    IdentityFile {inner_key}

Host cluster-behind-down-bastion
    ProxyJump {user}@bastion-down
""")
    known_hosts = tmp_path / "known_hosts"
    bastion_lines = Path(sshd_server["SSH_KNOWN_HOSTS"]).read_text()
    inner_lines = Path(sshd_inner_server["SSH_KNOWN_HOSTS"]).read_text()
    known_hosts.write_text(bastion_lines + inner_lines)
    env = dict(ssh_env, DRYPIPE_SSH_CONFIG=str(config), DRYPIPE_SSH_KNOWN_HOSTS=str(known_hosts),
               DRYPIPE_TEST_JUMP_SPECS="cluster")
    return {"env": env, "config": config, "known_hosts": known_hosts, "inner_port": int(iport),
            "inner_key": inner_key, "user": user, "bastion_lines": bastion_lines, "inner_lines": inner_lines,
            "inner_log": Path(sshd_inner_server["STATE_DIR"]) / "sshd.log"}


def _logins(log: Path) -> int:
    return log.read_text().count("Accepted publickey for")


def _errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("drypipe: error")]


def test_task_runs_on_a_host_reached_only_through_a_jump_host(jump, tmp_path):
    with pytest.raises(ConnectionRefusedError):  # the inner host is not reachable directly
        socket.create_connection(("127.0.0.1", jump["inner_port"]), timeout=5).close()
    logins = _logins(jump["inner_log"])
    instance = tmp_path / "i"
    result = drypipe("run", "-p", PIPELINE, "-i", str(instance), env=jump["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    # Uploaded with rsync, run on the inner host, its output downloaded with rsync.
    assert (instance / "output/hello/greeting.txt").read_text() == f"hello from {jump['user']}\n"
    assert output_vars(instance, "hello") == {"who": jump["user"]}
    assert _logins(jump["inner_log"]) >= logins + 2  # drypipe's connection and rsync's


def test_a_chain_of_jump_hosts_and_explicit_specs_win_over_the_config(jump, tmp_path):
    """cluster-chain: bastion, then bastion again through it; its Port 1 is overridden by
    ssh_specs, its missing User taken from ssh_specs, the config given as an executor option."""
    env = dict(jump["env"], DRYPIPE_TEST_JUMP_SPECS=f"{jump['user']}@cluster-chain:{jump['inner_port']}",
               DRYPIPE_TEST_SSH_OPTIONS=json.dumps({"ssh_config": str(jump["config"])}))
    env.pop("DRYPIPE_SSH_CONFIG")
    instance = tmp_path / "i"
    result = drypipe("run", "-p", PIPELINE, "-i", str(instance), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (instance / "output/hello/greeting.txt").read_text() == f"hello from {jump['user']}\n"


def test_connection_errors_name_the_hop_that_failed(jump, tmp_path):
    user, iport = jump["user"], jump["inner_port"]
    result = drypipe("run", "-p", PIPELINE, "-i", str(tmp_path / "i"),
                     env=dict(jump["env"], DRYPIPE_TEST_JUMP_SPECS=f"{user}@cluster-direct"))
    assert result.returncode == 1
    (line,) = _errors(result)
    assert "task hello" in line and f"cluster-direct ({user}@127.0.0.1:{iport})" in line, line
    assert "refused" in line.lower() and "jump host" not in line, line

    result = drypipe("run", "-p", PIPELINE, "-i", str(tmp_path / "j"),
                     env=dict(jump["env"], DRYPIPE_TEST_JUMP_SPECS=f"{user}@cluster-behind-down-bastion"))
    assert result.returncode == 1
    (line,) = _errors(result)
    assert "task hello" in line and f"jump host bastion-down ({user}@127.0.0.1:" in line, line
    assert "refused" in line.lower(), line
    assert state_of(tmp_path / "j", "hello") == "ready"  # nothing was started


def test_unknown_host_keys_are_refused_on_every_hop_unless_accepted(jump, tmp_path):
    known_hosts, iport = jump["known_hosts"], jump["inner_port"]
    known_hosts.write_text(jump["bastion_lines"])  # the inner host is unknown
    result = drypipe("run", "-p", PIPELINE, "-i", str(tmp_path / "i"), env=jump["env"])
    assert result.returncode == 1
    (line,) = _errors(result)
    assert f"host [127.0.0.1]:{iport} is not in known_hosts {known_hosts}" in line and "jump host" not in line, line

    known_hosts.write_text(jump["inner_lines"])  # the bastion is unknown
    result = drypipe("run", "-p", PIPELINE, "-i", str(tmp_path / "i"), env=jump["env"])
    assert result.returncode == 1
    (line,) = _errors(result)
    assert "jump host bastion (" in line and "is not in known_hosts" in line and "ssh_accept_unknown_host" in line, line

    # Accepted for this run: drypipe's connection and rsync's ssh (its output comes back).
    known_hosts.write_text(jump["bastion_lines"])
    accept = dict(jump["env"], DRYPIPE_SSH_ACCEPT_UNKNOWN_HOST="1")
    result = drypipe("run", "-p", PIPELINE, "-i", str(tmp_path / "i"), env=accept)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"accepting the UNKNOWN host key of [127.0.0.1]:{iport}" in result.stderr
    assert (tmp_path / "i/output/hello/greeting.txt").is_file()
    assert known_hosts.read_text() == jump["bastion_lines"]  # trusted for that run only

    # A changed key is refused, also on a jump host and also when accepting unknown hosts.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    pub = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    bastion_names = {line.split()[0] for line in jump["bastion_lines"].splitlines()}
    known_hosts.write_text("".join(f"{name} {pub}\n" for name in bastion_names) + jump["inner_lines"])
    result = drypipe("run", "-p", PIPELINE, "-i", str(tmp_path / "k"), env=accept)
    assert result.returncode == 1
    (line,) = _errors(result)
    assert "jump host bastion (" in line and "does NOT match known_hosts" in line, line


# -- resolving ssh_specs through a config file (no server) ----------------------------------------


def _settings(tmp_path, monkeypatch, config: str, specs: str, **options):
    path = tmp_path / "config"
    path.write_text(config)
    monkeypatch.setenv("DRYPIPE_SSH_CONFIG", str(path))
    return host_settings(TaskConf(ssh_specs=specs, executor_options=options))


def test_config_fills_what_ssh_specs_leave_out(tmp_path, monkeypatch):
    key = tmp_path / "id_login.cluster.org"
    key.write_text("")
    config = f"""
Host login
    HostName login.cluster.org
    User me
    Port 2222
    IdentityFile {tmp_path}/missing
    IdentityFile {tmp_path}/id_%h
"""
    settings = _settings(tmp_path, monkeypatch, config, "login")
    target = settings.target
    assert (target.user, target.host, target.port, target.key_path) == ("me", "login.cluster.org", 2222, str(key))
    assert target.label == "login (me@login.cluster.org:2222)" and settings.jumps == ()
    target = _settings(tmp_path, monkeypatch, config, "you@login:22:/keys/k").target
    assert (target.user, target.host, target.port, target.key_path) == ("you", "login.cluster.org", 22, "/keys/k")
    target = _settings(tmp_path, monkeypatch, config, "other.org").target  # not in the config
    assert (target.user, target.host, target.port, target.key_path) == (None, "other.org", 22, None)
    monkeypatch.setenv("DRYPIPE_SSH_CONFIG", "none")
    assert host_settings(TaskConf(ssh_specs="login")).target.host == "login"


def test_proxy_jump_chains(tmp_path, monkeypatch):
    """As with ssh: the first jump host's own ProxyJump comes first, the others' are ignored."""
    config = """
Host target
    ProxyJump a,me@b:2200
Host a
    HostName a.org
    ProxyJump ssh://root@c
Host b
    HostName b.org
    User ignored
    ProxyJump ignored
Host c
    HostName c.org
    Port 2022
Host direct
    ProxyJump none
Host loop1
    ProxyJump loop2
Host loop2
    ProxyJump loop1
"""
    jumps = _settings(tmp_path, monkeypatch, config, "target").jumps
    assert [j.label for j in jumps] == ["c (root@c.org:2022)", "a (a.org:22)", "b (me@b.org:2200)"]
    assert _settings(tmp_path, monkeypatch, config, "direct").jumps == ()
    with pytest.raises(UserError, match="nested ProxyJump"):
        _settings(tmp_path, monkeypatch, config, "loop1")


@pytest.mark.parametrize("config, message", [
    ("Host x\n    ProxyCommand ssh -W %h:%p bastion\n", "host x uses ProxyCommand"),
    ("Host x\n    ProxyJump bad host\n", "ProxyJump 'bad host': invalid host"),
    ("Host x\n    Port http\n", "invalid Port 'http'"),
])
def test_unusable_config_is_a_one_line_error_naming_the_file(tmp_path, monkeypatch, config, message):
    with pytest.raises(UserError, match=message) as error:
        _settings(tmp_path, monkeypatch, config, "x")
    assert str(tmp_path / "config") in str(error.value) and "\n" not in str(error.value)


def test_missing_config_file_is_an_error(tmp_path):
    conf = TaskConf(ssh_specs="x", executor_options={"ssh_config": str(tmp_path / "nowhere")})
    with pytest.raises(UserError, match=f"ssh config file {tmp_path}/nowhere does not exist"):
        host_settings(conf)
