"""The completed-task index (.drypipe/.orchestrator.completed-index): a no-op rerun reads it
instead of every task's control dir and signature, and trusts an entry only while the task's
control dir is unchanged since the last clean end of `drypipe run`."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, drypipe, snapshot, state_of, wait_until, write_module

INDEX = ".drypipe/.orchestrator.completed-index"
KEYS = ("a", "b", "c")

PIPELINE = '''
import os

def gen(dsl):
    version = os.environ.get("VERSION", "1")
    for key in ("a", "b", "c"):
        yield dsl.task(key=key).outputs(f=dsl.file("f.txt")).calls(f"""
echo ran >> "$__pipeline_instance_dir/runs-$__task_key"
test ! -e "$__pipeline_instance_dir/fail-$__task_key" || exit 1
echo {version} > $f
""")()
    if os.environ.get("LATE"):  # a new task, then a generator error once it completed
        yield dsl.task(key="late").calls("sleep ${SLEEP:-0}\\n")()
        for _ in dsl.wait_for_tasks("late"):
            raise RuntimeError("boom")
'''

# Instances prepared once for the module: built, then (after more than the index's 2 s margin)
# run again, so that each one's index holds entries the next run trusts.
CASES = ("strace", "marker", "by-hand-task", "by-hand-restart", "by-hand-reset", "stale", "keep-stale", "corrupt")


def run(base, name, *args, env=None, check=False):
    return drypipe("run", "-p", "noop_pipe:gen", "-i", name, *args, cwd=base, env=env, check=check)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("noop-index")
    write_module(base, "noop_pipe", PIPELINE)
    for name in CASES:
        run(base, name, check=True)
    time.sleep(2.1)
    for name in CASES:
        run(base, name, check=True)
        assert sorted(index_of(base / name)["tasks"]) == sorted(KEYS)
    return base


def index_of(instance):
    return json.loads((instance / INDEX).read_text())


def runs(instance, key):
    path = instance / f"runs-{key}"
    return path.read_text().count("ran") if path.exists() else 0


def outputs(instance):
    return {key: (instance / f"output/{key}/f.txt").read_text() for key in KEYS}


def test_a_rerun_reads_the_index_instead_of_the_control_dirs(built):
    assert shutil.which("strace"), "strace is not installed (Debian package strace)"
    instance = built / "strace"
    trace = built / "strace.log"
    env = dict(os.environ, PYTHONPATH=f"{built}{os.pathsep}{REPO}")
    before = snapshot(instance)
    result = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat", "-o", str(trace), sys.executable, "-m",
                             "drypipe", "run", "-p", "noop_pipe:gen", "-i", "strace"],
                            cwd=built, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    opened = [line for line in trace.read_text().splitlines() if "openat(" in line]
    for key in KEYS:  # neither its signature read nor its dir listed
        control = f"{instance}/.drypipe/{key}"
        assert not [line for line in opened if f'"{control}"' in line or f'"{control}/' in line], key
    assert any(INDEX in line for line in opened)
    assert snapshot(instance) == before
    # The same outcome as a rerun that scans every control dir (no index).
    (instance / INDEX).unlink()
    scanned = run(built, "strace")
    assert snapshot(instance) == before
    assert (scanned.returncode, _timeless(scanned.stdout)) == (result.returncode, _timeless(result.stdout))
    assert "3 completed" in result.stdout
    assert {key: runs(instance, key) for key in KEYS} == dict.fromkeys(KEYS, 1)
    assert sorted(index_of(instance)["tasks"]) == sorted(KEYS)


def _timeless(text):
    return re.sub(r" in [0-9.]+s", "", text)


def test_a_marker_deleted_by_hand_reruns_the_task(built):
    instance = built / "marker"
    (instance / ".drypipe/b/state.completed").unlink()
    assert run(built, "marker").returncode == 0
    assert [runs(instance, key) for key in KEYS] == [1, 2, 1]
    assert state_of(instance, "b") == "completed"


@pytest.mark.parametrize("name, command", [
    ("by-hand-task", ["{instance}/.drypipe/b/task"]),
    ("by-hand-restart", [sys.executable, "-m", "drypipe", "restart", "-i", "{instance}", "-k", "b", "--wait"]),
    ("by-hand-reset", [sys.executable, "-m", "drypipe", "restart", "-i", "{instance}", "-k", "b", "--reset", "--wait"]),
])
def test_a_task_run_by_hand_after_the_end_is_noticed(built, name, command):
    instance = built / name
    (instance / "fail-b").touch()  # its rerun by hand fails
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([part.format(instance=instance) for part in command], cwd=built, env=env,
                   capture_output=True, timeout=60)
    assert state_of(instance, "b") == "failed.0"
    result = run(built, name)
    assert result.returncode == 1
    assert "failed" in result.stdout + result.stderr
    assert [runs(instance, key) for key in KEYS] == [1, 2, 1]
    assert "b" not in index_of(instance)["tasks"]


def test_a_code_change_reruns_the_stale_tasks(built):
    instance = built / "stale"
    assert run(built, "stale", env={"VERSION": "2"}).returncode == 0
    assert outputs(instance) == dict.fromkeys(KEYS, "2\n")
    assert [runs(instance, key) for key in KEYS] == [2, 2, 2]


def test_keep_stale_keeps_them_and_the_next_run_still_finds_them_stale(built):
    instance = built / "keep-stale"
    assert run(built, "keep-stale", "--keep-stale", env={"VERSION": "2"}).returncode == 0
    assert outputs(instance) == dict.fromkeys(KEYS, "1\n")
    assert sorted(index_of(instance)["tasks"]) == sorted(KEYS)
    assert run(built, "keep-stale", env={"VERSION": "2"}).returncode == 0
    assert outputs(instance) == dict.fromkeys(KEYS, "2\n")


@pytest.mark.parametrize("content", ["garbage", '{"version": 1, "reference_ns"', '{"version": 999, "tasks": {}}',
                                     '{"version": 1, "reference_ns": 1, "tasks": {"a": [1, 2, 3]}}', "[]"])
def test_a_corrupt_index_is_ignored(built, tmp_path, content):
    instance = tmp_path / "corrupt"
    shutil.copytree(built / "corrupt", instance, symlinks=True)  # a copy: each case starts from the same one
    (instance / INDEX).write_text(content)
    result = drypipe("-vv", "run", "-p", "noop_pipe:gen", "-i", str(instance), cwd=built)
    assert result.returncode == 0, result.stderr
    assert "completed-task index" in result.stderr and "not used" in result.stderr
    assert [runs(instance, key) for key in KEYS] == [1, 1, 1]
    assert sorted(index_of(instance)["tasks"]) == sorted(KEYS)


def test_no_index_after_a_run_ended_by_an_error_or_stopped(tmp_path):
    write_module(tmp_path, "noop_pipe", PIPELINE)
    run(tmp_path, "i", check=True)
    instance = tmp_path / "i"
    assert sorted(index_of(instance)["tasks"]) == sorted(KEYS)
    failed = run(tmp_path, "i", env={"LATE": "1"})  # ends by the generator's error, once `late` completed
    assert failed.returncode == 1 and "boom" in failed.stderr
    assert state_of(instance, "late") == "completed"
    assert not (instance / INDEX).exists()
    run(tmp_path, "i", check=True)
    assert (instance / INDEX).exists()
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}", LATE="1", SLEEP="30")
    shutil.rmtree(instance / ".drypipe/late")
    stopped = subprocess.Popen([sys.executable, "-m", "drypipe", "run", "-p", "noop_pipe:gen", "-i", "i"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: state_of(instance, "late") == "step-started.0", what="late running")
        assert not (instance / INDEX).exists()  # dropped at start
        stopped.send_signal(signal.SIGINT)  # Ctrl-C: the run stops, the task goes on
        stopped.communicate(timeout=30)
        assert stopped.returncode == 130
        assert not (instance / INDEX).exists()
    finally:
        subprocess.run([sys.executable, "-m", "drypipe", "kill", "-i", "i", "-k", "late"], cwd=tmp_path, env=env,
                       capture_output=True, timeout=30)
        if stopped.poll() is None:
            stopped.kill()


def test_a_run_killed_anywhere_leaves_no_index_to_trust(tmp_path):
    """SIGKILL of the orchestrator at its K-th rename (the first is the lock's pid file, the
    last the index's own): after it, either nothing has changed yet, or there is no index."""
    assert shutil.which("strace"), "strace is not installed (Debian package strace)"
    write_module(tmp_path, "noop_pipe", PIPELINE)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}", VERSION="2")

    def strace_run(name, *options):
        return subprocess.run(["strace", "-qq", *options, "-e", "trace=rename", sys.executable, "-m", "drypipe",
                               "run", "-p", "noop_pipe:gen", "-i", name], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    run(tmp_path, "probe", check=True)
    probe_log = tmp_path / "renames.log"
    assert strace_run("probe", "-o", str(probe_log)).returncode == 0  # the stale rerun that is killed below
    renames = [line for line in probe_log.read_text().splitlines() if line.startswith("rename(")]
    assert INDEX in renames[-1]  # the index is the last thing written
    for when in sorted({1, 2, len(renames) // 2, len(renames) - 1, len(renames)}):
        name = f"k{when}"
        run(tmp_path, name, check=True)
        instance = tmp_path / name
        before = (instance / INDEX).read_bytes()
        killed = strace_run(name, "-o", os.devnull, "-e", f"inject=rename:signal=SIGKILL:when={when}")
        assert killed.returncode != 0, when
        if (instance / INDEX).exists():  # killed before it was taken: nothing has moved yet
            assert (instance / INDEX).read_bytes() == before, when
            assert outputs(instance) == dict.fromkeys(KEYS, "1\n"), when
        final = run(tmp_path, name, env={"VERSION": "2"})
        assert final.returncode == 0, (when, final.stderr)
        assert outputs(instance) == dict.fromkeys(KEYS, "2\n"), when
        assert sorted(index_of(instance)["tasks"]) == sorted(KEYS), when
        assert not list((instance / ".drypipe").glob(".*.tmp")), when
