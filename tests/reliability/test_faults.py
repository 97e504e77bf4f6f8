"""Fault injection: tasks killed in every way, a full disk, markers that appear late, and the
servers of the other executors restarted while a pipeline runs.

Each fault must end in the state drypipe documents (failed.N, killed.N, lost), with the reason
in drypipe.log, in the run's output and in `drypipe status`; exactly one marker per task; no
process of a dead task left running; and a later run must complete what the fault stopped.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import REPO, drypipe, snapshot
try:  # the SSH tests' fixtures (remote base dir for the ssh user, environment of tests.ssh.pipelines)
    from tests.ssh.conftest import remote_base, shared_venv, ssh_env  # noqa: F401
except ImportError:  # pragma: no cover - before the SSH executor's tests exist
    pass
from tests.reliability.support import (
    LOG_RUN,
    alive,
    drypipe_log,
    markers,
    out_log,
    run_counts,
    start_run,
    states,
    task_pid,
    wait_until,
    write_module,
)

# A step that can be told to succeed (touch $__pipeline_instance_dir/healed), else runs `sleep`
# as a child whose pid it records, so that the test can kill the step's own process.
HEAL = 'if [ -e "$__pipeline_instance_dir/healed" ]; then echo ok > "$f"; exit 0; fi\n'
SLEEPER = LOG_RUN + HEAL + 'sleep 60 & echo $! > "$__pipeline_instance_dir/$__task_key.step-pid"\nwait $!\n'

KILLS_PIPELINE = f'''
SLEEPER = {SLEEPER!r}
HEAL = {HEAL!r}
LOG = {LOG_RUN!r}

def gen(dsl):
    tasks = {{}}
    for key in ("step-sigkill", "script-sigkill", "script-sigterm"):
        tasks[key] = dsl.task(key=key).outputs(f=dsl.file("f.txt")).calls(SLEEPER)()
        yield tasks[key]
    # what the out-of-memory killer does: SIGKILL to the step's process
    yield dsl.task(key="oom-sigkill").outputs(f=dsl.file("f.txt")).calls(
        LOG + HEAL + "head -c 1000000 /dev/zero > /dev/null\\nkill -KILL $BASHPID\\n")()
    yield dsl.task(key="exit-137").outputs(f=dsl.file("f.txt")).calls(LOG + HEAL + "exit 137\\n")()
    yield dsl.task(key="after").inputs(tasks["script-sigkill"].outputs.f).calls(LOG + "cat $f\\n")()
    yield dsl.task(key="independent").calls(LOG + "true\\n")()
'''

EXPECTED = {
    "step-sigkill": ("failed.0", "exit code 137: killed by SIGKILL (e.g. out of memory)"),
    "oom-sigkill": ("failed.0", "exit code 137: killed by SIGKILL (e.g. out of memory)"),
    "exit-137": ("failed.0", "exit code 137: killed by SIGKILL (e.g. out of memory)"),
    "script-sigkill": ("killed.0", "task script killed by SIGKILL"),
    "script-sigterm": ("killed.0", "received SIGTERM"),
}


def test_killed_tasks_end_in_the_right_state_with_the_reason(tmp_path, reliability):
    write_module(tmp_path, "kills", KILLS_PIPELINE)
    instance = tmp_path / "i"
    run = start_run(tmp_path, "run", "-p", "kills:gen", "-i", str(instance), "--max-local-jobs", "8",
                    log=tmp_path / "run.log")
    sleepers = ("step-sigkill", "script-sigkill", "script-sigterm")
    wait_until(lambda: all((instance / f"{k}.step-pid").exists() for k in sleepers), what="the sleepers to start")
    step_pids = {k: int((instance / f"{k}.step-pid").read_text()) for k in sleepers}
    os.kill(step_pids["step-sigkill"], signal.SIGKILL)  # the step's process
    os.kill(task_pid(instance, "script-sigkill"), signal.SIGKILL)  # the task script itself
    os.kill(task_pid(instance, "script-sigterm"), signal.SIGTERM)
    assert run.wait(timeout=60) == 1
    output = (tmp_path / "run.log").read_text()
    assert "Traceback" not in output

    final = states(instance)
    for key, (state, reason) in EXPECTED.items():
        assert final[key] == state, (key, final[key])
        assert f"state.{state} {reason}" in drypipe_log(instance, key), (key, drypipe_log(instance, key))
        assert f"{state.split('.')[0].upper()} {key}: {state} ({reason}" in output, output  # FAILED, KILLED ...
    assert final["independent"] == "completed" and final["after"] == "waiting"
    assert "exit code 137: killed by SIGKILL" in out_log(instance, "oom-sigkill")
    # Nothing of a dead task keeps running: the orchestrator stops the steps of a task script
    # that was SIGKILLed (they run in their own process groups), SIGTERM stops them itself.
    assert not [k for k, pid in step_pids.items() if alive(pid)]
    assert "stopped its leftover processes" in drypipe_log(instance, "script-sigkill")

    status = drypipe("status", "-i", str(instance), cwd=tmp_path)
    assert status.returncode != 0
    for key, (state, reason) in EXPECTED.items():
        assert f"{key}: {state} ({reason}" in status.stdout, status.stdout

    (instance / "healed").touch()
    drypipe("run", "-p", "kills:gen", "-i", str(instance), "--restart-failed", cwd=tmp_path, check=True)
    assert set(states(instance).values()) == {"completed"}
    counts = run_counts(instance)
    expected_runs = {**{k: 2 for k in EXPECTED}, "after": 1, "independent": 1}
    twice = sum(1 for k, n in counts.items() if n > expected_runs[k])
    lost = sum(1 for k in expected_runs if counts[k] < expected_runs[k])
    assert (lost, twice) == (0, 0), counts
    for key in EXPECTED:
        reliability.fault(f"{key}")
    reliability.outcome(lost=lost, twice=twice)


# -- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted on tmp_path/instance (root only); unmounted afterwards."""
    mount_point = tmp_path / "instance"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        why = f"cannot mount a tmpfs (needs root): {done.stderr.strip() or done.returncode}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True)
        if os.path.ismount(mount_point):
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


DISK_BEFORE = '''
def gen(dsl):
    yield dsl.task(key="small").outputs(f=dsl.file("f.txt")).calls("echo small > $f\\n")()
'''

DISK_AFTER = '''
def gen(dsl):
    yield dsl.task(key="small").outputs(f=dsl.file("f.txt")).calls("echo small > $f\\n")()
    big = dsl.task(key="big").outputs(f=dsl.file("big.bin")).calls("head -c 400000 /dev/zero > $f\\n")()
    yield big
    yield dsl.task(key="after").inputs(big.outputs.f).outputs(n=int).calls("export n=$(wc -c < $f)\\n")()
'''


def _fill(path: Path, leave: int) -> None:
    """Write `path` until only about `leave` bytes are free on its file system."""
    free = os.statvfs(path.parent).f_bavail * os.statvfs(path.parent).f_frsize
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_full_disk_fails_the_task_clearly_and_corrupts_nothing(tmp_path, small_disk, reliability):
    instance = small_disk  # the whole instance dir lives on the small file system
    write_module(tmp_path, "disk_before", DISK_BEFORE)
    write_module(tmp_path, "disk_after", DISK_AFTER)
    drypipe("run", "-p", "disk_before:gen", "-i", str(instance), cwd=tmp_path, check=True)
    _fill(instance / "filler", leave=96 * 1024)

    # 1. The task that fills the disk fails, naming the reason; nothing else is harmed.
    first = drypipe("run", "-p", "disk_after:gen", "-i", str(instance), cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    assert states(instance) == {"small": "completed", "big": "failed.0", "after": "waiting"}
    # The step's own error message did not fit in out.log: the task script says why instead.
    reason = "state.failed.0 exit code 1 (no space left on device: 0 bytes free for output/big)"
    assert reason in drypipe_log(instance, "big")
    assert "FAILED big: failed.0 (exit code 1 (no space left on device" in first.stderr

    # 2. With the disk now full, the orchestrator stops at once with one clear line and
    #    changes nothing (or, if a few bytes were left, runs and changes nothing either).
    _fill(instance / "filler2", leave=0)
    before = snapshot(instance)
    second = drypipe("run", "-p", "disk_after:gen", "-i", str(instance), "--restart-failed", cwd=tmp_path)
    assert second.returncode == 1
    assert "Traceback" not in second.stderr
    if "drypipe: error:" in second.stderr:
        errors = [line for line in second.stderr.splitlines() if line.strip()]
        assert errors[-1].startswith("drypipe: error: ") and "No space left on device" in errors[-1], errors
    markers_now = markers(instance)
    assert all(len(m) == 1 for m in markers_now.values()), markers_now
    if "drypipe: error:" in second.stderr:
        assert snapshot(instance) == before

    # 3. Space freed: the rerun completes everything.
    (instance / "filler").unlink()
    (instance / "filler2").unlink()
    third = drypipe("run", "-p", "disk_after:gen", "-i", str(instance), "--restart-failed", cwd=tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert set(states(instance).values()) == {"completed"}
    assert (instance / "output/big/big.bin").stat().st_size == 400000
    reliability.fault("full disk")
    reliability.outcome(lost=0, twice=0)


# -- markers that appear late (NFS attribute caches) --------------------------------------------

# The step writes its output, then hands the final marker to a detached process that renames
# it $LATE_DELAY s later, and SIGKILLs the task script: to the orchestrator the task's process is gone
# while its marker is not there yet, as when an NFS client caches the directory's attributes.
LATE_PIPELINE = r'''
LATE = """echo "$__task_key" >> "$__pipeline_instance_dir/runs.log"
sleep 1
echo late > "$f"
setsid bash -c 'sleep "$2"; cd "$1" && mv state.step-started.0 state.completed' _ "$__control_dir" "$LATE_DELAY" \
    </dev/null >/dev/null 2>&1 &
read -r task_pid _ < "$__control_dir/pid"
kill -KILL "$task_pid"
"""

def gen(dsl):
    t = dsl.task(key="late").outputs(f=dsl.file("f.txt")).calls(LATE)()
    yield t
    yield dsl.task(key="next").inputs(t.outputs.f).outputs(g=dsl.file("g.txt")).calls("cp $f $g\n")()
'''


def _adopted_late_task(tmp_path: Path, grace: str, delay: str) -> tuple[Path, subprocess.CompletedProcess]:
    """The late-marker task, launched by a first orchestrator (SIGKILLed at once), then watched
    by a second one that adopted it: to it the task is only a pid, whose death is uncertain."""
    write_module(tmp_path, "late", LATE_PIPELINE)
    instance = tmp_path / "i"
    first = start_run(tmp_path, "run", "-p", "late:gen", "-i", str(instance), env={"LATE_DELAY": delay})
    wait_until(lambda: (instance / ".drypipe/late/pid").exists(), what="the task to start")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = drypipe("-v", "run", "-p", "late:gen", "-i", str(instance), cwd=tmp_path,
                     env={"DRYPIPE_LOST_GRACE_SECONDS": grace})
    return instance, second


def test_a_marker_that_appears_late_is_waited_for(tmp_path, reliability):
    instance, run = _adopted_late_task(tmp_path, grace="15", delay="2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "adopted" in run.stderr
    assert states(instance) == {"late": "completed", "next": "completed"}
    assert (instance / "output/next/g.txt").read_text() == "late\n"
    assert "lost" not in drypipe_log(instance, "late")
    assert run_counts(instance)["late"] == 1
    reliability.fault("marker visible 2 s after the task's process ended")
    reliability.outcome(lost=0, twice=0)


def test_without_the_grace_period_the_same_task_would_be_lost(tmp_path):
    """The control experiment: a grace period shorter than the delay declares the task lost,
    says why, and the late rename then finds nothing to rename (one marker, never two)."""
    instance, run = _adopted_late_task(tmp_path, grace="0.2", delay="4")
    assert run.returncode == 1
    assert "LOST late: lost (process " in run.stderr and "is gone" in run.stderr
    time.sleep(4.5)  # let the late rename try
    assert states(instance) == {"late": "lost", "next": "waiting"}
    status = drypipe("status", "-i", str(instance), cwd=tmp_path)
    assert "late: lost (process " in status.stdout


# -- servers of the other executors restarted mid-run -------------------------------------------

SLURM_PIPELINE = "tests.reliability.slurm_pipeline:gen"


def _slurmctld(cluster: dict) -> tuple[int | None, Path]:
    state_dir = Path(cluster["STATE_DIR"])
    pid_file = state_dir / "run" / "slurmctld.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid = None
    return (pid if pid and alive(pid) else None), state_dir


def test_slurmctld_restarted_mid_run_loses_nothing(tmp_path, slurm_cluster, reliability):
    """slurmctld stops (saving its state) while the jobs of a pipeline run, and comes back a
    few seconds later, as an admin restarting it would.  `squeue` fails meanwhile: the loop
    keeps the tasks in flight, never declares them lost, and every task runs exactly once.

    (`slurm.sh stop` is not used here: it cancels every job first, by design, since it tears
    the test cluster down; this restarts slurmctld alone, with the command `slurm.sh start` uses.)"""
    instance = tmp_path / "i"
    env = {"SLURM_CONF": slurm_cluster["SLURM_CONF"], "DRYPIPE_LOST_GRACE_SECONDS": "5"}
    run = start_run(Path.cwd(), "run", "-p", SLURM_PIPELINE, "-i", str(instance), "--sleep-schedule", "0,0.5,1",
                    env=env, log=tmp_path / "run.log")
    try:
        wait_until(lambda: all(states_or_none(instance, f"long.{i}") == "step-started.0" for i in range(4)),
                 timeout=60, what="the Slurm jobs to start")
        pid, state_dir = _slurmctld(slurm_cluster)
        assert pid is not None, "slurmctld is not running"
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not alive(pid), timeout=30, what="slurmctld to stop")
        time.sleep(3)  # the orchestrator polls a cluster without a controller
        assert run.poll() is None, (tmp_path / "run.log").read_text()
        conf = slurm_cluster["SLURM_CONF"]
        subprocess.run(["/usr/sbin/slurmctld", "-i", "-f", conf], env=dict(os.environ, SLURM_CONF=conf),
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        wait_until(lambda: "UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                                                env=dict(os.environ, SLURM_CONF=conf)).stdout,
                 timeout=30, what="slurmctld to answer again")
        assert run.wait(timeout=180) == 0, (tmp_path / "run.log").read_text()
    finally:
        if run.poll() is None:
            run.kill()
    final = states(instance)
    assert set(final.values()) == {"completed"}, final
    counts = run_counts(instance)
    twice = sum(1 for n in counts.values() if n > 1)
    lost = len(final) - len(counts)
    assert (lost, twice) == (0, 0), counts
    status = subprocess.run(["bash", slurm_cluster["SERVICE_SCRIPT"], "status", slurm_cluster["STATE_DIR"]],
                            capture_output=True, text=True)
    assert status.returncode == 0, status.stderr  # the cluster is whole again for the next tests
    reliability.fault("slurmctld restarted mid-run")
    reliability.outcome(lost=lost, twice=twice)


def states_or_none(instance: Path, key: str) -> str | None:
    found = markers(instance).get(key, []) if (instance / ".drypipe").is_dir() else []
    return found[0][len("state."):] if len(found) == 1 else None


def _executor_module(name: str) -> bool:
    return importlib.util.find_spec(f"executors.{name}") is not None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_dendro_service(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """The self-hosted Dendro service on a fixed port (a restart must come back at the same URL)."""
    from tests.dendro_executor.conftest import base_env

    with open(log, "a") as err:
        proc = subprocess.Popen([sys.executable, "-m", "dendro_bridge", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), "--data-dir", str(data_dir), "--verbose"],
                                stdout=subprocess.PIPE, stderr=err, text=True, env=base_env())
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise AssertionError(f"the Dendro service did not start: {log.read_text()[-2000:]}")
    return proc


@pytest.mark.skipif(not _executor_module("dendro"), reason="executors/dendro.py does not exist")
def test_dendro_server_restarted_mid_run_loses_nothing(tmp_path, reliability):
    """examples/dendro_mixed.py (local tasks and three Dendro jobs) while its Dendro service is
    stopped for 3 s and started again on the same data dir and port, as the first job runs on
    the compute resource: the run completes, with one job per Dendro task (none resubmitted)."""
    import uuid

    import yaml

    from dendro_bridge.server import Admin
    from tests.dendro_executor.conftest import APPS, SLEEP_SCHEDULE, Server, Tenant
    from tests.dendro_executor.test_mixed import DENDRO_TASKS, SPEC, check_outputs

    data_dir, log = tmp_path / "service", tmp_path / "service.log"
    data_dir.mkdir()
    port = _free_port()
    service_proc = _start_dendro_service(data_dir, port, log)
    admin = Admin(data_dir)
    suffix = uuid.uuid4().hex[:8]
    api_key = admin.create_user(f"user-{suffix}")
    admin.create_service(f"service-{suffix}", f"user-{suffix}")
    for spec in APPS:
        admin.add_app(f"service-{suffix}", yaml.safe_load(spec.read_text()))
    client_id, key = admin.create_compute_client([f"service-{suffix}"], f"user-{suffix}", "compute",
                                                 [{"numCpusMax": 4, "memoryGbMax": 8, "multiplicity": 4}])
    (tmp_path / "compute.yaml").write_text(yaml.safe_dump({"computeClientId": client_id,
                                                           "computeClientPrivateKey": key}))
    tenant = Tenant(Server(f"http://127.0.0.1:{port}", data_dir, log, service_proc), f"service-{suffix}", api_key,
                    tmp_path / "compute.yaml", tmp_path)
    tenant.store.mkdir()
    instance = tmp_path / "instance"
    run = None
    try:
        tenant.start_compute()
        env = tenant.env(DRYPIPE_DEMO_DELAY_SEC="4", DRYPIPE_LOST_GRACE_SECONDS="10")
        run = start_run(REPO, "run", "-p", SPEC, "-i", str(instance), "--sleep-schedule", SLEEP_SCHEDULE,
                        env=env, log=tmp_path / "run.log")
        wait_until(lambda: states_or_none(instance, "shout") == "step-started.0", timeout=60,
                 what="the first Dendro job to run")
        service_proc.terminate()
        service_proc.wait(timeout=20)
        time.sleep(3)  # the orchestrator and the compute resource meet a closed port meanwhile
        service_proc = _start_dendro_service(data_dir, port, log)
        assert run.wait(timeout=120) == 0, (tmp_path / "run.log").read_text()
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        tenant.stop()
        service_proc.terminate()
        service_proc.wait(timeout=20)
    check_outputs(instance)
    created = tenant.server.requests("createJob")
    jobs = tenant.server.jobs(tenant.service)
    assert created == len(DENDRO_TASKS) and len(jobs) == len(DENDRO_TASKS), (created, jobs)
    reliability.fault("Dendro service restarted mid-run")
    reliability.outcome(lost=0, twice=created - len(DENDRO_TASKS))


def _restart_sshd_listener(sshd_server: dict, down_seconds: float) -> None:
    """Stop the listening sshd, drop every open session, and start the listener again
    `down_seconds` later on the same port, with the same host key and config."""
    state_dir = Path(sshd_server["STATE_DIR"])
    pid = int((state_dir / "sshd.pid").read_text().split()[0])
    # The sessions, noted while they are the listener's descendants (as `sshd.sh stop` does);
    # detached remote tasks are not among them, as on a real host.
    procs = Path(sshd_server["SERVICE_SCRIPT"]).parent / "procs.py"
    sessions = [int(p) for p in subprocess.run([sys.executable, "-S", str(procs), "--children-of", str(pid)],
                                               capture_output=True, text=True, check=True).stdout.split()]
    assert sessions, "no open ssh session to drop"
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not alive(pid), timeout=20, what="sshd to stop")
    for session in sessions:
        try:
            os.kill(session, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(down_seconds)  # reconnections are refused meanwhile
    subprocess.run(["/usr/sbin/sshd", "-f", str(state_dir / "sshd_config"), "-E", str(state_dir / "sshd.log")],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    wait_until(lambda: subprocess.run(["ssh", "-F", sshd_server["SSH_CONFIG"], sshd_server["SSH_HOST_ALIAS"], "true"],
                                    capture_output=True, timeout=30).returncode == 0,
             timeout=30, what="sshd to accept logins again")


@pytest.mark.skipif(not _executor_module("ssh"), reason="executors/ssh.py does not exist")
def test_sshd_restarted_mid_run_loses_nothing(tmp_path, ssh_env, sshd_server, reliability):
    """Four remote tasks run while the host's sshd goes away for 3 s (every connection dropped,
    new ones refused) and comes back: the executor reconnects, every task completes, and each
    ran exactly once on the host."""
    from tests.ssh.ssh_helpers import as_ssh_user

    runs_file = f"{ssh_env['DRYPIPE_TEST_REMOTE_BASE']}/runs.txt"
    env = dict(ssh_env, DRYPIPE_TEST_N_TASKS="4", DRYPIPE_TEST_TASK_SLEEP="6", DRYPIPE_TEST_ONE_HOST="1",
               DRYPIPE_TEST_RUNS_FILE=runs_file, DRYPIPE_LOST_GRACE_SECONDS="10")
    instance = tmp_path / "i"
    keys = [f"work.{i}" for i in range(4)]
    log = tmp_path / "run.log"
    run = start_run(REPO, "-v", "run", "-p", "tests.ssh.pipelines:many", "-i", str(instance), env=env, log=log)
    try:
        wait_until(lambda: all((states_or_none(instance, k) or "").startswith("step-started") for k in keys),
                 timeout=90, what="the remote tasks to start")
        _restart_sshd_listener(sshd_server, down_seconds=3)
        assert run.wait(timeout=120) == 0, log.read_text()
    finally:
        if run.poll() is None:
            run.kill()
    text = log.read_text()
    assert "reconnecting" in text or text.count("ssh: connected to") > 1, text  # the connection did drop
    final = states(instance)
    assert set(final.values()) == {"completed"}, final
    assert (instance / "output/sum/total.txt").read_text().strip() == str(sum(i * i for i in range(4)))
    text = as_ssh_user(sshd_server, f"cat {runs_file}").stdout
    counts = Counter(line.split()[0] for line in text.splitlines() if line.strip())
    twice = sum(1 for n in counts.values() if n > 1)
    lost = sum(1 for k in keys if counts[k] == 0)
    assert (lost, twice) == (0, 0), counts
    reliability.fault("sshd restarted mid-run")
    reliability.outcome(lost=lost, twice=twice)
