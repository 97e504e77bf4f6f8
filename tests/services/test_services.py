"""Smoke tests: each real server the fixtures start does what the rest of the suite needs."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)


# --------------------------------------------------------------------------- Slurm

def _wait_for_states(job_id: str, expected_count: int, timeout: float = 60) -> dict[str, str]:
    """Poll `squeue -t all` (the controller's view: sacct lags a little) until the job's
    `expected_count` records are all finished. Faster than sbatch --wait, which sleeps
    2 s, then 8 s, then 32 s between its checks."""
    deadline = time.monotonic() + timeout
    while True:
        out = _run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i %T"]).stdout
        states = dict(line.split() for line in out.splitlines() if line.strip())
        finished = {k: v for k, v in states.items()
                    if v not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING")}
        if len(finished) == expected_count and len(states) == expected_count:
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not finished after {timeout}s: {states}")
        time.sleep(0.1)


def test_slurm_env(slurm_cluster):
    assert os.environ["SLURM_CONF"] == slurm_cluster["SLURM_CONF"]
    assert Path(slurm_cluster["SLURM_CONF"]).is_file()
    assert slurm_cluster["DRYPIPE_SLURM_PARTITION"] == "debug"
    out = _run(["sinfo", "-h", "-o", "%P %a %D"]).stdout.split()
    assert out == ["debug*", "up", "1"]


def test_slurm_array(slurm_cluster, tmp_path):
    res = _run(["sbatch", "--parsable", "--array=0-9", "-o", str(tmp_path / "%A_%a.out"),
                "--wrap", f"echo $SLURM_ARRAY_TASK_ID > {tmp_path}/task-$SLURM_ARRAY_TASK_ID"])
    job_id = res.stdout.strip().split(";")[0]
    states = _wait_for_states(job_id, 10)
    assert states == {f"{job_id}_{i}": "COMPLETED" for i in range(10)}
    for i in range(10):
        assert (tmp_path / f"task-{i}").read_text() == f"{i}\n"
    # The completion log (jobcomp/filetxt) records every task.
    log = Path(slurm_cluster["DRYPIPE_SLURM_JOBCOMP_LOG"]).read_text()
    assert log.count(f"ArrayJobId={job_id} ") == 10


def test_slurm_sbatch_wait(slurm_cluster, tmp_path):
    # Not the cluster's first job on purpose: slurmctld schedules nothing in its first ~3 s,
    # and sbatch --wait checks after 2 s, then 10 s - a first job would cost 10 s here.
    out_file = tmp_path / "hi.txt"
    res = _run(["sbatch", "--parsable", "--wait", "-o", str(tmp_path / "slurm-%j.out"),
                "--wrap", f"echo hi > {shlex.quote(str(out_file))}"])
    job_id = res.stdout.strip().split(";")[0]
    assert job_id.isdigit()
    assert out_file.read_text() == "hi\n"
    out = _run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i %T"]).stdout.split()
    assert out == [job_id, "COMPLETED"]


def test_slurm_failed_job_and_parallelism(slurm_cluster, tmp_path):
    # A failing job is FAILED with its exit code; several jobs run at the same time
    # (CPUs=16 advertised), so 8 jobs of 1 s finish in far less than 8 s.
    fail = _run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "exit 3"]).stdout.strip()
    t0 = time.monotonic()
    ids = [_run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 1"]).stdout.strip()
           for _ in range(8)]
    for job_id in ids:
        assert _wait_for_states(job_id, 1) == {job_id: "COMPLETED"}
    assert time.monotonic() - t0 < 6
    assert _wait_for_states(fail, 1) == {fail: "FAILED"}
    show = _run(["scontrol", "show", "job", fail]).stdout
    assert "ExitCode=3:0" in show


def test_slurm_sacct_reports_a_finished_job(slurm_cluster, tmp_path):
    # Accounting works: a finished job is in sacct with its state, exit code, the peak RSS of
    # its batch step (100 MiB held for 2 s: the 1 s sampling sees it) and its CPU time.
    job_id = _run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap",
                   "python3 -c 'import time; b = bytearray(100 << 20); time.sleep(2)'; exit 4"]).stdout.strip()
    assert _wait_for_states(job_id, 1) == {job_id: "FAILED"}
    deadline = time.monotonic() + 15
    while True:
        out = _run(["sacct", "-n", "-P", "-j", job_id, "-o", "JobID,State,ExitCode,MaxRSS,TotalCPU"]).stdout
        rows = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines() if line}
        if rows.get(f"{job_id}.batch", ["", "", ""])[2] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows[job_id][:2] == ["FAILED", "4:0"], out
    max_rss = rows[f"{job_id}.batch"][2]
    assert max_rss.endswith("K") and int(max_rss[:-1]) >= 100 * 1024, out
    assert re.fullmatch(r"\d\d:\d\d\.\d{3}", rows[job_id][3]), out


# --------------------------------------------------------------------------- sshd

def _paramiko_client(sshd_server):
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(sshd_server["SSH_KNOWN_HOSTS"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=int(sshd_server["SSHD_PORT"]),
                   username=sshd_server["SSH_USER"], key_filename=sshd_server["SSH_KEY"],
                   allow_agent=False, look_for_keys=False, timeout=10)
    return client


def _exec(client, command: str) -> tuple[int, str]:
    _, stdout, _ = client.exec_command(command, timeout=30)
    out = stdout.read().decode()
    return stdout.channel.recv_exit_status(), out


def test_sshd_paramiko_known_host(sshd_server):
    client = _paramiko_client(sshd_server)
    try:
        assert _exec(client, "echo hello") == (0, "hello\n")
        assert _exec(client, "id -un") == (0, "drypipe-ssh\n")
    finally:
        client.close()


def test_sshd_rejects_unknown_host_key(sshd_server, tmp_path):
    import paramiko

    client = paramiko.SSHClient()
    # An empty known_hosts: the server's key is unknown, RejectPolicy must refuse it.
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    client.load_host_keys(str(empty))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect("127.0.0.1", port=int(sshd_server["SSHD_PORT"]),
                       username=sshd_server["SSH_USER"], key_filename=sshd_server["SSH_KEY"],
                       allow_agent=False, look_for_keys=False, timeout=10)
    client.close()


def test_sshd_remote_python(sshd_server):
    client = _paramiko_client(sshd_server)
    try:
        rc, out = _exec(client, "command -v python3 && python3 -c 'import sys; print(sys.version_info[:2] >= (3, 10))'")
        assert rc == 0
        assert out.split() == [sshd_server["SSH_REMOTE_PYTHON"], "True"]
        base = sshd_server["SSH_REMOTE_BASE"]
        assert _exec(client, f"touch {base}/w && test -w {base}/w && echo ok") == (0, "ok\n")
    finally:
        client.close()


def _ssh_cmd(sshd_server) -> str:
    """The `ssh` command line for rsync -e: our key, our known_hosts, no ~/.ssh/config."""
    return " ".join(shlex.quote(a) for a in [
        "ssh", "-F", "/dev/null", "-i", sshd_server["SSH_KEY"], "-p", sshd_server["SSHD_PORT"],
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={sshd_server['SSH_KNOWN_HOSTS']}",
    ])


def test_sshd_rsync(sshd_server, tmp_path):
    src = tmp_path / "payload.txt"
    src.write_text("drypipe rsync payload\n")
    dest_dir = f"{sshd_server['SSH_REMOTE_BASE']}/rsync-{uuid.uuid4().hex[:8]}"
    user_host = f"{sshd_server['SSH_USER']}@127.0.0.1"
    _run(["rsync", "-a", "--mkpath", "-e", _ssh_cmd(sshd_server), str(src), f"{user_host}:{dest_dir}/"])
    copied = Path(dest_dir) / "payload.txt"
    assert copied.read_text() == "drypipe rsync payload\n"
    # Written by the ssh user, not root.
    import pwd
    assert pwd.getpwuid(copied.stat().st_uid).pw_name == sshd_server["SSH_USER"]
    # And back.
    back = tmp_path / "back.txt"
    _run(["rsync", "-a", "-e", _ssh_cmd(sshd_server), f"{user_host}:{copied}", str(back)])
    assert back.read_text() == "drypipe rsync payload\n"


def test_sshd_ssh_config_alias(sshd_server):
    out = _run(["ssh", "-F", sshd_server["SSH_CONFIG"], sshd_server["SSH_HOST_ALIAS"], "echo", "via-alias"])
    assert out.stdout == "via-alias\n"


def test_sshd_kill_sessions_then_reconnect(sshd_server):
    client = _paramiko_client(sshd_server)
    try:
        assert _exec(client, "echo before") == (0, "before\n")
        _run(["bash", sshd_server["SERVICE_SCRIPT"], "kill-sessions", sshd_server["STATE_DIR"]])
        deadline = time.monotonic() + 10
        while client.get_transport().is_active() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not client.get_transport().is_active()
    finally:
        client.close()
    client = _paramiko_client(sshd_server)  # the server itself still listens
    try:
        assert _exec(client, "echo after") == (0, "after\n")
    finally:
        client.close()


def test_slurm_used_by_the_ssh_user(slurm_cluster, sshd_server):
    # drypipe's remote mode: log in over ssh, then submit to Slurm as that (non-root) user.
    client = _paramiko_client(sshd_server)
    try:
        out_file = f"{sshd_server['SSH_REMOTE_BASE']}/slurm-{uuid.uuid4().hex[:8]}.txt"
        rc, out = _exec(client, f"SLURM_CONF={slurm_cluster['SLURM_CONF']} sbatch --parsable "
                                f"-o /dev/null --wrap 'id -un > {out_file}'")
        assert rc == 0, out
        job_id = out.strip()
        assert _wait_for_states(job_id, 1) == {job_id: "COMPLETED"}
        assert Path(out_file).read_text() == f"{sshd_server['SSH_USER']}\n"
        rc, out = _exec(client, f"SLURM_CONF={slurm_cluster['SLURM_CONF']} squeue --me -h -t all -j {job_id} -o '%i %T'")
        assert (rc, out.split()) == (0, [job_id, "COMPLETED"])
    finally:
        client.close()


# --------------------------------------------------------------------------- S3

def test_s3_roundtrip(s3_server):
    import s3fs

    fs = s3fs.S3FileSystem(
        key=s3_server["AWS_ACCESS_KEY_ID"], secret=s3_server["AWS_SECRET_ACCESS_KEY"],
        # No region_name here: with one, moto refuses the bucket creation.
        client_kwargs={"endpoint_url": s3_server["S3_ENDPOINT_URL"]},
        skip_instance_cache=True,
    )
    bucket = f"drypipe-smoke-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    with fs.open(f"{bucket}/dir/hello.txt", "wb") as f:
        f.write(b"hello s3\n")
    assert fs.cat(f"{bucket}/dir/hello.txt") == b"hello s3\n"
    assert fs.ls(f"{bucket}/dir", detail=False) == [f"{bucket}/dir/hello.txt"]
    assert bucket in fs.ls("", detail=False)


def test_s3_via_fsspec_open(s3_server):
    import fsspec

    opts = {"key": "testing", "secret": "testing",
            "client_kwargs": {"endpoint_url": s3_server["S3_ENDPOINT_URL"]},
            "skip_instance_cache": True}
    fs = fsspec.filesystem("s3", **opts)
    bucket = f"drypipe-open-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    with fsspec.open(f"s3://{bucket}/k.bin", "wb", **opts) as f:
        f.write(b"\x00\x01")
    with fsspec.open(f"s3://{bucket}/k.bin", "rb", **opts) as f:
        assert f.read() == b"\x00\x01"


def test_servers_listen_on_loopback_only(sshd_server, s3_server):
    # The test servers must never be reachable from outside the machine.
    for port in (int(sshd_server["SSHD_PORT"]), int(s3_server["S3_ENDPOINT_URL"].rsplit(":", 1)[1])):
        out = _run(["ss", "-Hltn", f"sport = :{port}"]).stdout
        assert out.strip(), f"nothing listens on {port}"
        for line in out.splitlines():
            assert "127.0.0.1:" in line.split()[3], line
