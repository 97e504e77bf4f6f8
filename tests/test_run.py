"""Running pipelines with the process executor: values, failures, restarts, concurrency."""
import os
import shutil
import signal
import subprocess
import sys
import time

from tests.helpers import REPO, drypipe, output_vars, snapshot, state_of, wait_until, write_module

WEIRD = "it's \"q\" $(touch PWNED) `touch PWNED2` ; rm -rf nothing \n2nd line é ☃ \\ \t tab \x01 ctrl"


def test_any_value_reaches_bash_and_python_byte_exact(tmp_path):
    write_module(tmp_path, "weird", f'''
        from dry_pipe import DryPipe
        V = {WEIRD!r}
        @DryPipe.python_call()
        def check(v, w):
            assert v == V, (v, V)
            assert w == V, (w, V)
            return {{"out2": w}}
        def gen(dsl):
            t = dsl.task(key="w1").inputs(v=V).outputs(out=str, f=dsl.file("v.txt")).calls("""
            printf '%s' "$v" > $f
            export out="$v"
            """)()
            yield t
            yield dsl.task(key="w2").inputs(v=V, w=t.outputs.out).outputs(out2=str).calls(check)()
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "weird:gen", "-i", str(instance), cwd=tmp_path, check=True)
    assert (instance / "output/w1/v.txt").read_text() == WEIRD
    assert output_vars(instance, "w1") == {"out": WEIRD}
    assert output_vars(instance, "w2") == {"out2": WEIRD}
    assert not list(tmp_path.rglob("PWNED*"))


def test_failed_task_shows_step_and_log_and_blocks_dependents(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            t = dsl.task(key="bad").outputs(x=int).calls("echo the reason it broke >&2\\nexit 3\\n")()
            yield t
            yield dsl.task(key="after").inputs(t.outputs.x).calls("true\\n")()
            yield dsl.task(key="independent").calls("true\\n")()
        ''')
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path)
    assert result.returncode == 1
    assert state_of(instance, "bad") == "failed.0"
    assert state_of(instance, "after") == "waiting"
    assert state_of(instance, "independent") == "completed"
    assert "the reason it broke" in result.stderr
    assert "waiting after: upstream not completed: bad" in result.stderr
    status = drypipe("status", "-i", str(instance), cwd=tmp_path)
    assert status.returncode == 1
    assert "exit code 3" in status.stdout and "the reason it broke" in status.stdout


def test_missing_output_file_fails_naming_it(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            yield dsl.task(key="nofile").outputs(f=dsl.file("expected.txt")).calls("echo hi\\n")()
        ''')
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path)
    assert result.returncode == 1
    assert state_of(instance, "nofile") == "failed.0"
    assert "missing output(s): expected.txt" in result.stderr


def test_multi_step_restart_failed_resumes_at_failed_step(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            yield dsl.task(key="steps").outputs(a=int, b=int).calls("""
            echo step0 >> ../../counter
            export a=1
            """).calls("""
            test -e ../../go || exit 5
            export b=$((a + 1))
            """)()
        ''')
    instance = tmp_path / "i"
    assert drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path).returncode == 1
    assert state_of(instance, "steps") == "failed.1"
    (instance / "go").touch()
    # without --restart-failed a failed task stays failed
    assert drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path).returncode == 1
    drypipe("run", "-p", "p:gen", "-i", str(instance), "--restart-failed", cwd=tmp_path, check=True)
    assert state_of(instance, "steps") == "completed"
    assert output_vars(instance, "steps") == {"a": "1", "b": "2"}
    assert (instance / "counter").read_text() == "step0\n"


def test_reset_failed_restarts_from_first_step(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            yield dsl.task(key="steps").calls("echo step0 >> ../../counter\\n").calls("test -e ../../go\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path)
    (instance / "go").touch()
    drypipe("run", "-p", "p:gen", "-i", str(instance), "--reset-failed", cwd=tmp_path, check=True)
    assert (instance / "counter").read_text() == "step0\nstep0\n"


def test_completed_tasks_never_run_again(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            for i in range(3):
                yield dsl.task(key=f"t{i}").calls("echo ran >> ../../runs\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path, check=True)
    before = snapshot(instance)
    drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path, check=True)
    assert (instance / "runs").read_text().count("ran") == 3
    assert snapshot(instance) == before


def test_until_leaves_matching_tasks_unstarted(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            yield dsl.task(key="first").calls("true\\n")()
            yield dsl.task(key="later-1").calls("true\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "p:gen", "-i", str(instance), "--until", "later-*", cwd=tmp_path, check=True)
    assert state_of(instance, "first") == "completed"
    assert state_of(instance, "later-1") == "ready"


def test_dry_run_changes_nothing(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            t = dsl.task(key="a").outputs(x=int).calls("export x=1\\n")()
            yield t
            yield dsl.task(key="b").inputs(t.outputs.x).calls("true\\n")()
        ''')
    instance = tmp_path / "i"
    result = drypipe("run", "-p", "p:gen", "-i", str(instance), "--dry-run", cwd=tmp_path, check=True)
    assert "a\twould run" in result.stdout
    assert "b\twould run\tafter a" in result.stdout
    assert not instance.exists()


def test_max_local_jobs_bounds_concurrency(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            for i in range(6):
                yield dsl.task(key=f"t{i}").calls("echo start $EPOCHREALTIME >> ../../log; sleep 0.3; echo end $EPOCHREALTIME >> ../../log\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "p:gen", "-i", str(instance), "--max-local-jobs", "2", cwd=tmp_path, check=True)
    events = sorted((float(t), kind) for kind, t in (line.split() for line in (instance / "log").read_text().splitlines()))
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2


def test_chain_of_100_tasks_completes(tmp_path):
    """Dependents start on their upstream's exit, not after a sleep (timing is in bench/)."""
    write_module(tmp_path, "p", '''
        def gen(dsl):
            prev = None
            for i in range(100):
                b = dsl.task(key=f"c{i}").outputs(n=int)
                if prev is None:
                    prev = b.calls("export n=0\\n")()
                else:
                    prev = b.inputs(p=prev.outputs.n).calls("export n=$((p + 1))\\n")()
                yield prev
        ''')
    instance = tmp_path / "i"
    started = time.monotonic()
    drypipe("run", "-p", "p:gen", "-i", str(instance), "--sleep-schedule", "5", cwd=tmp_path, check=True)
    elapsed = time.monotonic() - started
    print(f"chain of 100 tasks: {elapsed:.2f}s")
    assert output_vars(instance, "c99") == {"n": "99"}


def test_task_runs_by_hand_and_restart_at_step(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            yield dsl.task(key="t").outputs(x=int).calls("echo s0 >> ../../steps; export x=1\\n").calls("echo s1 >> ../../steps\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("prepare", "-p", "p:gen", "-i", str(instance), cwd=tmp_path, check=True)
    assert state_of(instance, "t") == "ready"
    subprocess.run([str(instance / ".drypipe/t/task")], check=True)
    assert state_of(instance, "t") == "completed"
    drypipe("restart", "-i", str(instance), "-k", "t", "--at-step", "1", "--wait", cwd=tmp_path, check=True)
    assert (instance / "steps").read_text() == "s0\ns1\ns1\n"
    assert output_vars(instance, "t") == {"x": "1"}
    help_text = subprocess.run([str(instance / ".drypipe/t/task"), "--help"], capture_output=True, text=True).stdout
    assert "task kill" in help_text


def test_instance_can_be_moved(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            t = dsl.task(key="a").outputs(f=dsl.file("a.txt")).calls("echo A > $f\\n")()
            yield t
            yield dsl.task(key="b").inputs(t.outputs.f).outputs(g=dsl.file("b.txt")).calls("cat $f > $g\\n")()
        ''')
    drypipe("prepare", "-p", "p:gen", "-i", str(tmp_path / "before"), cwd=tmp_path, check=True)
    shutil.move(tmp_path / "before", tmp_path / "after")
    drypipe("run", "-p", "p:gen", "-i", str(tmp_path / "after"), cwd=tmp_path, check=True)
    assert (tmp_path / "after/output/b/b.txt").read_text() == "A\n"


def _start_run(tmp_path, instance, module="p:gen"):
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    return subprocess.Popen(
        [sys.executable, "-m", "drypipe", "run", "-p", module, "-i", str(instance)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )




SLOW = '''
def gen(dsl):
    for i in range(2):
        yield dsl.task(key=f"slow{i}").outputs(f=dsl.file("f")).calls(
            "echo run >> ../../runs-$__task_key; sleep 1.5; echo done > $f\\n")()
    yield dsl.task(key="fast").calls("echo run >> ../../runs-$__task_key\\n")()
'''


def test_orchestrator_killed_then_restarted_adopts_running_tasks(tmp_path):
    write_module(tmp_path, "p", SLOW)
    instance = tmp_path / "i"
    first = _start_run(tmp_path, instance)
    wait_until(lambda: state_of(instance, "slow0") == "step-started.0" and state_of(instance, "slow1") == "step-started.0")
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = drypipe("-v", "run", "-p", "p:gen", "-i", str(instance), "--max-local-jobs", "2", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    for key in ("slow0", "slow1", "fast"):
        assert state_of(instance, key) == "completed"
        assert (instance / f"runs-{key}").read_text() == "run\n", key
    assert "adopted" in second.stderr


def test_second_orchestrator_is_refused(tmp_path):
    write_module(tmp_path, "p", SLOW)
    instance = tmp_path / "i"
    first = _start_run(tmp_path, instance)
    try:
        wait_until(lambda: state_of(instance, "slow0") == "step-started.0")
        second = drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path)
        assert second.returncode == 1
        assert f"already driven by another drypipe run (pid {first.pid})" in second.stderr
    finally:
        first.wait(timeout=30)
    assert first.returncode == 0


def _is_gone(pid: int) -> bool:
    """No such process, or only its exit status left (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_task_kill_records_killed_state(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            yield dsl.task(key="sleeper").calls("echo $BASHPID > ../../step.pid; exec sleep 60\\n")()
        ''')
    instance = tmp_path / "i"
    run = _start_run(tmp_path, instance)
    wait_until(lambda: state_of(instance, "sleeper") == "step-started.0")
    killed = drypipe("kill", "-i", str(instance), "-k", "sleeper", cwd=tmp_path, check=True)
    assert "killed.0" in killed.stdout
    run.wait(timeout=20)
    assert run.returncode == 1
    assert state_of(instance, "sleeper") == "killed.0"
    step_pid = int((instance / "step.pid").read_text())
    wait_until(lambda: _is_gone(step_pid))


def test_task_launched_by_hand_is_not_launched_again(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            yield dsl.task(key="t").calls("echo run >> ../../runs; sleep 1\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("prepare", "-p", "p:gen", "-i", str(instance), cwd=tmp_path, check=True)
    drypipe("task", "-i", str(instance), "-k", "t", cwd=tmp_path, check=True)
    wait_until(lambda: state_of(instance, "t") == "step-started.0")
    drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path, check=True)
    assert state_of(instance, "t") == "completed"
    assert (instance / "runs").read_text() == "run\n"


def test_leftover_temporary_files_of_a_crash_are_removed(tmp_path):
    write_module(tmp_path, "p", '''
        def gen(dsl):
            yield dsl.task(key="t").calls("true\\n")()
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path, check=True)
    leftovers = [instance / ".drypipe/t/.task-env.sh.tmp", instance / ".drypipe/.digests.json.tmp",
                 instance / "output/.t.cache-1234.tmp"]
    for path in leftovers:
        path.write_text("half written")
    drypipe("run", "-p", "p:gen", "-i", str(instance), cwd=tmp_path, check=True)
    assert not any(p.exists() for p in leftovers)
