"""Automatic retries (TaskConf.retries, drypipe run --retries): a failed task runs again from
its first step, each attempt recorded in drypipe.log, out.log and the attempt count of its
task record, which survives an orchestrator killed between attempts."""
import json
import os
import signal
import subprocess
import sys
import time

from tests.helpers import REPO, drypipe, state_of, wait_until, write_module
from tests.reliability.test_write_order import count_calls, needs_strace, strace_run

# A step that counts its attempts in a file outside the instance's outputs (they are cleared
# at each retry), then fails until attempt $SUCCEED_AT (never when it is 0).
FLAKY = '''
from dry_pipe import TaskConf
STEP = """
n=$(( $(cat "$COUNTER" 2>/dev/null || echo 0) + 1 ))
echo $n > "$COUNTER"
echo "try $n"
sleep "${{SLEEP_AT[$n]:-0}}"
(( $n == {succeed_at} )) || exit 5
echo done > $out
"""
def gen(dsl):
    yield dsl.task(key="flaky", task_conf=TaskConf({conf})).inputs(COUNTER={counter!r}).outputs(
        out=dsl.file("out.txt")).calls("declare -A SLEEP_AT=({sleeps})\\n" + STEP)()
'''


def _pipeline(tmp_path, succeed_at: int, conf: str = "", sleeps: str = "", name: str = "flaky") -> tuple[str, str]:
    counter = str(tmp_path / f"attempts-made-{name}")
    write_module(tmp_path, name, FLAKY.format(succeed_at=succeed_at, conf=conf, counter=counter, sleeps=sleeps))
    return f"{name}:gen", counter


def _attempts_made(counter: str) -> int:
    try:
        return int(open(counter).read())
    except (FileNotFoundError, ValueError):
        return 0


def _control(instance, name: str = "") -> str:
    path = instance / ".drypipe" / "flaky" / name
    return path.read_text() if name else str(path)


def test_task_failing_twice_then_succeeding_is_retried_and_each_attempt_recorded(tmp_path):
    generator, counter = _pipeline(tmp_path, succeed_at=3, conf="retries=2")
    instance = tmp_path / "i"
    drypipe("run", "-p", generator, "-i", str(instance), cwd=tmp_path, check=True)
    assert _attempts_made(counter) == 3
    assert state_of(instance, "flaky") == "completed"
    assert (instance / "output/flaky/out.txt").read_text() == "done\n"

    log = _control(instance, "drypipe.log")
    assert log.count("state.failed.0 exit code 5") == 2 and log.count("state.completed") == 1
    assert "attempt 2 of 3 (retry after failed.0 exit code 5)" in log
    assert "attempt 3 of 3 (retry after failed.0 exit code 5)" in log
    out = _control(instance, "out.log").splitlines()
    separators = [i for i, line in enumerate(out) if line.startswith("===== attempt")]
    assert [out[i].split(" (")[0] for i in separators] == ["===== attempt 2 of 3", "===== attempt 3 of 3"]
    assert out.index("try 1") < separators[0] < out.index("try 2") < separators[1] < out.index("try 3")

    status = drypipe("status", "-i", str(instance), cwd=tmp_path)
    assert status.returncode == 0
    assert "completed (attempt 3 of 3)" in status.stdout and "2 retries" in status.stdout
    report = drypipe("report-execution-times", "-i", str(instance), cwd=tmp_path, check=True)
    header, row = report.stdout.splitlines()[:2]
    assert header.split()[-1] == "attempts" and row.split()[-1] == "3"

    drypipe("run", "-p", generator, "-i", str(instance), cwd=tmp_path, check=True)  # completed: nothing runs
    assert _attempts_made(counter) == 3


def test_task_that_keeps_failing_ends_failed_after_n_plus_1_attempts(tmp_path):
    generator, counter = _pipeline(tmp_path, succeed_at=0)
    instance = tmp_path / "i"
    cache = tmp_path / "cache"
    result = drypipe("run", "-p", generator, "-i", str(instance), "--retries", "2", "--cache", str(cache),
                     cwd=tmp_path)
    assert result.returncode == 1
    # With the failure published at once, the retries would have been restored from the cache.
    assert _attempts_made(counter) == 3
    assert state_of(instance, "flaky") == "failed.0"
    manifests = [json.loads(p.read_text()) for p in cache.rglob("manifest.json")]
    assert [m["status"] for m in manifests] == ["failed"]  # the final failure is the cached outcome
    status = drypipe("status", "-i", str(instance), cwd=tmp_path)
    assert status.returncode == 1 and "failed.0 (attempt 3 of 3)" in status.stdout

    # Its attempts are spent: a later run does not start it again.
    assert drypipe("run", "-p", generator, "-i", str(instance), "--retries", "2", cwd=tmp_path).returncode == 1
    assert _attempts_made(counter) == 3
    # --reset-failed starts a new series of attempts.
    drypipe("run", "-p", generator, "-i", str(instance), "--retries", "1", "--reset-failed", cwd=tmp_path)
    assert _attempts_made(counter) == 5
    assert "failed.0 (attempt 2 of 2)" in drypipe("status", "-i", str(instance), cwd=tmp_path).stdout


def test_task_conf_retries_win_over_the_run_default(tmp_path):
    generator, counter = _pipeline(tmp_path, succeed_at=0, conf="retries=1")
    instance = tmp_path / "i"
    assert drypipe("run", "-p", generator, "-i", str(instance), "--retries", "5", cwd=tmp_path).returncode == 1
    assert _attempts_made(counter) == 2
    generator, counter = _pipeline(tmp_path, succeed_at=0, conf="retries=0", name="never_retried")
    instance = tmp_path / "j"
    assert drypipe("run", "-p", generator, "-i", str(instance), "--retries", "5", cwd=tmp_path).returncode == 1
    assert _attempts_made(counter) == 1


def _start_run(tmp_path, generator, instance, *args):
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    return subprocess.Popen([sys.executable, "-m", "drypipe", "run", "-p", generator, "-i", str(instance), *args],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_orchestrator_killed_between_attempts_resumes_the_count(tmp_path):
    # Attempt 2 runs long enough for the orchestrator to be SIGKILLed, and fails while none runs.
    generator, counter = _pipeline(tmp_path, succeed_at=0, conf="retries=2", sleeps="[2]=2")
    instance = tmp_path / "i"
    run = _start_run(tmp_path, generator, instance)
    wait_until(lambda: _attempts_made(counter) == 2, what="attempt 2 to start")
    run.send_signal(signal.SIGKILL)
    run.communicate()
    wait_until(lambda: state_of(instance, "flaky") == "failed.0", what="attempt 2 to fail unwatched")
    assert _attempts_made(counter) == 2

    result = drypipe("run", "-p", generator, "-i", str(instance), cwd=tmp_path)
    assert result.returncode == 1
    assert _attempts_made(counter) == 3  # attempt 3, the last: never a 4th
    log = _control(instance, "drypipe.log")
    assert log.count("attempt 2 of 3") == 1 and log.count("attempt 3 of 3") == 1
    assert "failed.0 (attempt 3 of 3)" in drypipe("status", "-i", str(instance), cwd=tmp_path).stdout
    assert drypipe("run", "-p", generator, "-i", str(instance), cwd=tmp_path).returncode == 1
    assert _attempts_made(counter) == 3


def test_orchestrator_killed_during_an_attempt_adopts_it_and_keeps_counting(tmp_path):
    generator, counter = _pipeline(tmp_path, succeed_at=0, conf="retries=2", sleeps="[2]=3")
    instance = tmp_path / "i"
    run = _start_run(tmp_path, generator, instance)
    wait_until(lambda: _attempts_made(counter) == 2, what="attempt 2 to start")
    run.send_signal(signal.SIGKILL)
    run.communicate()
    result = drypipe("run", "-p", generator, "-i", str(instance), cwd=tmp_path)  # adopts attempt 2
    assert result.returncode == 1
    assert _attempts_made(counter) == 3
    assert state_of(instance, "flaky") == "failed.0"


def test_drypipe_kill_is_not_retried_but_another_sigterm_is(tmp_path):
    generator, counter = _pipeline(tmp_path, succeed_at=2, conf="retries=2", sleeps="[1]=60")
    instance = tmp_path / "i"
    run = _start_run(tmp_path, generator, instance)
    wait_until(lambda: _attempts_made(counter) == 1 and state_of(instance, "flaky") == "step-started.0",
               what="attempt 1 to run")
    # SIGTERM from elsewhere (./task kill by hand, a Slurm preemption): the task is retried.
    subprocess.run([_control(instance) + "/task", "kill"], check=True, capture_output=True)
    assert run.wait(timeout=30) == 0
    assert _attempts_made(counter) == 2 and state_of(instance, "flaky") == "completed"
    assert "attempt 2 of 3 (retry after killed.0 received SIGTERM)" in _control(instance, "drypipe.log")

    os.unlink(counter)
    instance = tmp_path / "j"
    run = _start_run(tmp_path, generator, instance)
    wait_until(lambda: _attempts_made(counter) == 1 and state_of(instance, "flaky") == "step-started.0",
               what="attempt 1 to run")
    drypipe("kill", "-i", str(instance), "-k", "flaky", cwd=tmp_path, check=True)
    assert run.wait(timeout=30) == 1
    time.sleep(0.5)
    assert _attempts_made(counter) == 1 and state_of(instance, "flaky") == "killed.0"
    # Nor by a later run: the kill was asked for.
    assert drypipe("run", "-p", generator, "-i", str(instance), cwd=tmp_path).returncode == 1
    assert _attempts_made(counter) == 1


def test_retry_scale_grows_mem_and_time_of_each_attempt(tmp_path):
    write_module(tmp_path, "scaled", '''
        from dry_pipe import TaskConf
        def gen(dsl):
            yield dsl.task(key="s", task_conf=TaskConf("slurm", retries=2, mem="1G", time="1:00:00",
                                                       retry_scale={"mem": 2, "time": 1.5})).calls("true\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("prepare", "-p", "scaled:gen", "-i", str(instance), cwd=tmp_path, check=True)
    first = drypipe("sbatch-gen", "-i", str(instance), "-k", "s", cwd=tmp_path, check=True).stdout
    assert "--mem=1024M --time=1:00:00" in first
    from drypipe.task_record import TaskRecord

    conf = TaskRecord(instance, "s").task_conf()
    assert (conf.for_attempt(2).mem, conf.for_attempt(2).time) == ("2048M", "1:30:00")
    assert (conf.for_attempt(3).mem, conf.for_attempt(3).time) == ("4096M", "2:15:00")


def test_bad_retry_settings_are_one_line_errors(tmp_path):
    for conf, message in [("retries=-1", "TaskConf: retries must be a non-negative integer, got -1"),
                          ("retry_scale={'cpus': 2}", "TaskConf: retry_scale: 'cpus' is not scaled (only mem, time)"),
                          ("retry_scale={'mem': 0.5}", "TaskConf: retry_scale['mem'] must be a number of at least 1")]:
        generator, _ = _pipeline(tmp_path, succeed_at=1, conf=conf)
        result = drypipe("run", "-p", generator, "-i", str(tmp_path / "i"), cwd=tmp_path)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = drypipe("run", "-p", generator, "-i", str(tmp_path / "i"), "--retries", "-2", cwd=tmp_path)
    assert result.returncode == 2 and "--retries" in result.stderr


@needs_strace
def test_orchestrator_killed_at_every_rename_never_makes_more_than_n_plus_1_attempts(tmp_path):
    renames = None
    for when in range(1, 30):
        case = tmp_path / f"k{when}"
        case.mkdir()
        generator, counter = _pipeline(case, succeed_at=0, conf="retries=2")
        if renames is None:
            renames = count_calls(case, "rename", "-p", generator, "-i", "probe")
            os.unlink(counter)
        if when > renames:
            break
        strace_run(case, "rename", when, "-p", generator, "-i", "i")
        final = drypipe("run", "-p", generator, "-i", "i", cwd=case, env={"DRYPIPE_LOST_GRACE_SECONDS": "1"})
        assert final.returncode == 1, (when, final.stdout, final.stderr)
        assert state_of(case / "i", "flaky") == "failed.0", when
        # A crash in the instant between counting an attempt and claiming it (at the claim's
        # rename) costs that attempt; no crash adds one.
        assert 2 <= _attempts_made(counter) <= 3, (when, _attempts_made(counter))
        assert (case / "i/.drypipe/flaky/attempt").read_text() == "3 3\n", when
    assert renames and renames > 6


def test_slurm_retry_asks_sbatch_for_the_scaled_mem_and_time(slurm_cluster, tmp_path):
    from tests.slurm.slurm_helpers import FAST, CallLog, slurm_test_env
    from tests.slurm.slurm_helpers import drypipe as slurm_drypipe

    generator, counter = _pipeline(tmp_path, succeed_at=2, conf='"slurm", retries=1, mem="20M", time=2, '
                                                              'retry_scale={"mem": 2, "time": 1.5}')
    calls = CallLog(tmp_path / "calls", commands=("sbatch",))
    env = calls.env(slurm_test_env(slurm_cluster, {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}))
    instance = tmp_path / "i"
    result = slurm_drypipe("run", "-p", generator, "-i", str(instance), *FAST, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _attempts_made(counter) == 2 and state_of(instance, "flaky") == "completed"
    submitted = calls.calls("sbatch")
    assert len(submitted) == 2
    assert "--mem=20M --time=0:02:00" in submitted[0] and "--mem=40M --time=0:03:00" in submitted[1]


def test_a_retry_is_shown_as_one_line_silent_with_quiet_and_logged_only_with_verbose(tmp_path):
    def run(name: str, *options: str):
        generator, counter = _pipeline(tmp_path, succeed_at=2, conf="retries=2", name=name)
        result = drypipe("run", "-p", generator, "-i", str(tmp_path / name), *options, cwd=tmp_path, check=True)
        assert _attempts_made(counter) == 2
        return result

    plain = run("plain")
    lines = [line.split(" ", 2)[2] for line in plain.stdout.splitlines() if " flaky: " in line]
    retry = "flaky: failed.0 (exit code 5), retrying: attempt 2 of 3  [0/1 completed, 1 retrying;"
    assert lines[0].startswith(retry), lines
    assert lines[1].startswith("flaky: completed  [1/1 completed;") and len(lines) == 2, lines
    assert "1 task in " in plain.stdout and "WARNING" not in plain.stderr, plain.stderr

    quiet = run("quiet", "-q")
    assert quiet.stdout == "" and quiet.stderr == "", (quiet.stdout, quiet.stderr)
    verbose = run("verbose", "-v")
    assert "task flaky: failed.0 exit code 5, attempt 2 of 3 follows" in verbose.stderr, verbose.stderr
