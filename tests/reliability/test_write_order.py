"""The task record's write orders, each at the crash point or with the leftover that broke it:
a stale rerun killed half-way, a second run racing the first, a kill between claim and spawn,
a fileset producer that makes fewer files, deleted upstream data, a task started by hand too
early, values too large for the environment, and corrupt pid files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import drypipe, output_vars, state_of
from tests.reliability.support import LOG_RUN, cli_env, run_counts, start_run, states, wait_until, write_module

FAST = {"DRYPIPE_LOST_GRACE_SECONDS": "1"}
# Fault injection needs strace (Debian package strace, installed by CI, where it must be there).
needs_strace = pytest.mark.skipif(not shutil.which("strace") and os.environ.get("CI") != "true",
                                  reason="strace is not installed (Debian package strace)")


def run(tmp_path: Path, *args: str, env: dict | None = None, timeout: float = 120):
    return drypipe("run", *args, cwd=tmp_path, env={**FAST, **(env or {})}, timeout=timeout)


def strace_run(tmp_path: Path, syscalls: str, when: int, *args: str, env: dict | None = None):
    """`drypipe run ARGS` with the orchestrator (not its tasks) SIGKILLed at the WHEN-th of SYSCALLS."""
    command = ["strace", "-qq", "-o", os.devnull, "-e", f"trace={syscalls}",
               "-e", f"inject={syscalls}:signal=SIGKILL:when={when}",
               sys.executable, "-m", "drypipe", "run", *args]
    return subprocess.run(command, cwd=tmp_path, env=cli_env(tmp_path, {**FAST, **(env or {})}),
                          capture_output=True, text=True, timeout=120)


def count_calls(tmp_path: Path, syscalls: str, *args: str, env: dict | None = None) -> int:
    log = tmp_path / "strace-count.log"
    command = ["strace", "-qq", "-o", str(log), "-e", f"trace={syscalls}", sys.executable, "-m", "drypipe", "run", *args]
    subprocess.run(command, cwd=tmp_path, env=cli_env(tmp_path, {**FAST, **(env or {})}), capture_output=True, timeout=120)
    return sum(1 for line in log.read_text().splitlines() if "(" in line and "resumed" not in line)


# -- 1. a stale rerun killed at any rename leaves nothing that passes for completed ---------

STALE = LOG_RUN + 'echo "version $VERSION" > "$__task_output_dir/out.txt"\n'


def stale_pipeline(tmp_path: Path) -> None:
    write_module(tmp_path, "stale_pipe", '''
        import os

        def gen(dsl):
            code = %r.replace("$VERSION", os.environ.get("VERSION", "1"))
            a = dsl.task(key="a").outputs(out=dsl.file("out.txt")).calls(code)()
            yield a
            yield dsl.task(key="b").inputs(a.outputs.out).outputs(o=dsl.file("b.txt")).calls(
                'cat "$out" > "$o"\\n')()
    ''' % STALE)


@needs_strace
def test_stale_rerun_killed_at_every_rename_reruns_the_new_code(tmp_path):
    stale_pipeline(tmp_path)
    renames = None
    for when in range(1, 40):
        case = tmp_path / f"k{when}"
        case.mkdir()
        stale_pipeline(case)
        assert run(case, "-p", "stale_pipe:gen", "-i", "i", env={"VERSION": "1"}).returncode == 0
        if renames is None:
            renames = count_calls(case, "rename", "-p", "stale_pipe:gen", "-i", "probe", env={"VERSION": "2"})
        if when > renames:
            break
        strace_run(case, "rename", when, "-p", "stale_pipe:gen", "-i", "i", env={"VERSION": "2"})
        final = run(case, "-p", "stale_pipe:gen", "-i", "i", env={"VERSION": "2"})
        assert final.returncode == 0, (when, final.stdout, final.stderr)
        assert (case / "i/output/b/b.txt").read_text() == "version 2\n", f"killed at rename {when}"
        status = drypipe("status", "-i", "i", "-p", "stale_pipe:gen", cwd=case, env={"VERSION": "2"})
        assert status.returncode == 0, (when, status.stdout)
    assert renames and renames > 3


# -- 2. a second run never reads the instance before it holds the lock ---------------------

def test_second_run_started_while_the_first_runs_does_not_rerun_anything(tmp_path):
    write_module(tmp_path, "race_pipe", '''
        import os, time

        def gen(dsl):
            if os.environ.get("SLOW_GENERATOR"):
                time.sleep(3)  # long enough for the first run to finish meanwhile
            for i in range(4):
                yield dsl.task(key=f"t{i}").calls(%r + "sleep 1.5\\n")()
    ''' % LOG_RUN)
    first = start_run(tmp_path, "run", "-p", "race_pipe:gen", "-i", "i")
    wait_until(lambda: (tmp_path / "i/runs.log").exists(), what="the first run's first task")
    second = start_run(tmp_path, "run", "-p", "race_pipe:gen", "-i", "i", env={"SLOW_GENERATOR": "1"},
                       log=tmp_path / "second.log")
    assert first.wait(60) == 0
    second.wait(60)
    assert set(run_counts(tmp_path / "i").values()) == {1}, run_counts(tmp_path / "i")
    assert set(states(tmp_path / "i").values()) == {"completed"}
    assert "already driven by another drypipe run" in (tmp_path / "second.log").read_text()
    assert run(tmp_path, "-p", "race_pipe:gen", "-i", "i").returncode == 0


# -- 3. a kill between claiming a task and starting it: the next run starts it -------------

@needs_strace
def test_kill_between_claim_and_spawn_of_a_restarted_task_is_not_lost(tmp_path):
    write_module(tmp_path, "claim_pipe", '''
        def gen(dsl):
            yield dsl.task(key="t").calls("""
        if [[ ! -e $__pipeline_instance_dir/fixed ]]; then exit 3; fi
        echo done > "$__task_output_dir/done.txt"
        """)()
    ''')
    assert run(tmp_path, "-p", "claim_pipe:gen", "-i", "i").returncode != 0
    assert state_of(tmp_path / "i", "t") == "failed.0"
    (tmp_path / "i/fixed").touch()
    # posix_spawn is the orchestrator's first process creation: the claim is done by then
    strace_run(tmp_path, "clone,clone3,vfork", 1, "-p", "claim_pipe:gen", "-i", "i", "--restart-failed")
    assert state_of(tmp_path / "i", "t") == "launched"
    final = run(tmp_path, "-p", "claim_pipe:gen", "-i", "i", "--restart-failed")
    assert final.returncode == 0, final.stdout + final.stderr
    assert state_of(tmp_path / "i", "t") == "completed"


# -- 4. a fileset producer that reruns and makes fewer files -------------------------------

def test_fileset_producer_rerun_with_fewer_chunks_drops_the_old_ones(tmp_path):
    write_module(tmp_path, "shrink_pipe", '''
        import os

        def gen(dsl):
            n = int(os.environ["CHUNKS"])
            split = dsl.task(key="split").outputs(chunks=dsl.fileset("chunk.*.txt")).calls(
                f"for i in $(seq 1 {n}); do echo chunk $i > $__task_output_dir/chunk.$i.txt; done\\n")()
            yield split
            for _ in dsl.wait_for_tasks(split):
                for handle in split.outputs.chunks.fetch():
                    i = handle.basename().split(".")[1]
                    yield dsl.task(key=f"work.{i}").inputs(c=handle).outputs(r=dsl.file("r.txt")).calls(
                        'tr a-z A-Z < "$c" > "$r"\\n')()
            for m in dsl.wait_for_matching_tasks("work.*"):
                yield dsl.task(key="gather").inputs(all_r=m.all.r.as_glob_expression()).outputs(
                    total=dsl.file("total.txt")).calls('cat $(ls $all_r | sort -V) > "$total"\\n')()
    ''')
    assert run(tmp_path, "-p", "shrink_pipe:gen", "-i", "i", env={"CHUNKS": "4"}).returncode == 0
    assert (tmp_path / "i/output/gather/total.txt").read_text().count("CHUNK") == 4
    result = run(tmp_path, "-p", "shrink_pipe:gen", "-i", "i", env={"CHUNKS": "3"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "i/output/gather/total.txt").read_text() == "CHUNK 1\nCHUNK 2\nCHUNK 3\n"
    assert sorted(p.name for p in (tmp_path / "i/output/split").iterdir()) == [f"chunk.{i}.txt" for i in (1, 2, 3)]
    assert state_of(tmp_path / "i", "work.4") != "completed"
    assert "not yielded by the generator any more, ignored: work.4" in result.stdout


# -- 5. upstream data deleted after the upstream completed ---------------------------------

def deleted_pipeline(tmp_path: Path) -> None:
    write_module(tmp_path, "deleted_pipe", '''
        def gen(dsl):
            ups = [dsl.task(key=f"up{i}").outputs(f=dsl.file("f.txt"), v=str).calls(
                f"echo {i} > $f; export v=value{i}\\n")() for i in range(3)]
            yield from ups
            for m in dsl.wait_for_matching_tasks("up*"):
                yield dsl.task(key="down").inputs(files=m.all.f.as_glob_expression(), v=ups[2].outputs.v).outputs(
                    n=int).calls('export n=$(cat $files | wc -l); echo "$v"\\n')()
    ''')


def test_downstream_of_a_glob_fails_when_a_matched_file_was_deleted(tmp_path):
    deleted_pipeline(tmp_path)
    assert run(tmp_path, "-p", "deleted_pipe:gen", "-i", "i", "--until", "down").returncode == 0
    (tmp_path / "i/output/up1/f.txt").unlink()
    result = run(tmp_path, "-p", "deleted_pipe:gen", "-i", "i")
    assert result.returncode != 0
    assert state_of(tmp_path / "i", "down") == "failed.0"
    assert "output/up1/f.txt" in (tmp_path / "i/.drypipe/down/drypipe.log").read_text()


def test_downstream_fails_naming_a_deleted_upstream_output_vars_file(tmp_path):
    deleted_pipeline(tmp_path)
    run(tmp_path, "-p", "deleted_pipe:gen", "-i", "i", "--until", "down")
    (tmp_path / "i/.drypipe/up2/output_vars.sh").unlink()
    assert run(tmp_path, "-p", "deleted_pipe:gen", "-i", "i").returncode != 0
    assert state_of(tmp_path / "i", "down") == "failed.0"
    log = (tmp_path / "i/.drypipe/down/drypipe.log").read_text()
    assert "upstream task up2 has no output variables" in log and "output_vars.sh is missing" in log


def test_task_run_by_hand_with_a_truncated_task_env_fails_naming_it(tmp_path):
    deleted_pipeline(tmp_path)
    run(tmp_path, "-p", "deleted_pipe:gen", "-i", "i", "--until", "down")
    env_file = tmp_path / "i/.drypipe/down/task-env.sh"
    env_file.write_text(env_file.read_text()[:200])
    result = subprocess.run([str(tmp_path / "i/.drypipe/down/task")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "task-env.sh is incomplete" in result.stderr
    assert state_of(tmp_path / "i", "down") == "ready"


# -- 6. a task started by hand before its upstream tasks completed -------------------------

def test_task_started_by_hand_refuses_while_an_upstream_has_not_completed(tmp_path):
    write_module(tmp_path, "early_pipe", '''
        def gen(dsl):
            up = dsl.task(key="up").outputs(f=dsl.file("f.txt")).calls("exit 5\\n")()
            yield up
            yield dsl.task(key="down").inputs(up.outputs.f).outputs(g=dsl.file("g.txt")).calls('cp "$f" "$g"\\n')()
    ''')
    assert run(tmp_path, "-p", "early_pipe:gen", "-i", "i").returncode != 0
    for command in ([str(tmp_path / "i/.drypipe/down/task")],
                    [sys.executable, "-m", "drypipe", "task", "-i", "i", "-k", "down", "--wait"]):
        result = subprocess.run(command, cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "upstream task(s) not completed: up (failed.0)" in result.stderr
        assert "--force" in result.stderr
        assert state_of(tmp_path / "i", "down") == "waiting"
        assert not (tmp_path / "i/output/down/g.txt").exists()
    forced = subprocess.run([str(tmp_path / "i/.drypipe/down/task"), "--force"], capture_output=True, text=True)
    assert forced.returncode != 0 and "missing input file(s)" in (tmp_path / "i/.drypipe/down/out.log").read_text()


# -- 8. values larger than the environment can hold ---------------------------------------

def test_values_larger_than_the_environment_arrive_byte_exact(tmp_path):
    write_module(tmp_path, "big_pipe", '''
        from drypipe import DryPipe

        BIG = "".join(chr(0x41 + i % 26) for i in range(300_000)) + " 'q' $(x) `y` é\\n end"

        @DryPipe.python_call()
        def check(big_in, produced, __task_output_dir):
            ok = big_in == BIG and produced == "p" * 200_000
            open(__task_output_dir + "/ok.txt", "w").write(str(ok))
            return {"echoed": produced[:10]}

        def gen(dsl):
            producer = dsl.task(key="producer").outputs(produced=str).calls(
                'export produced=$(printf "p%.0s" $(seq 1 200000))\\n')()
            yield producer
            yield dsl.task(key="consumer").inputs(big_in=BIG, produced=producer.outputs.produced).outputs(
                echoed=str, ok=dsl.file("ok.txt")).calls('[[ ${#big_in} == %d ]] || exit 7; cat /dev/null\\n' % len(BIG)).calls(check)()
    ''')
    result = run(tmp_path, "-p", "big_pipe:gen", "-i", "i")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "i/output/consumer/ok.txt").read_text() == "True"
    assert output_vars(tmp_path / "i", "producer")["produced"] == "p" * 200_000
    assert output_vars(tmp_path / "i", "consumer")["echoed"] == "p" * 10


# -- 10. corrupt pid files, non-UTF-8 values, hand-edited steps ----------------------------

@pytest.mark.parametrize("content", ["", "1234", "garbage here now\n", "\xff\xfe"])
def test_a_corrupt_pid_file_of_an_adopted_task_neither_hangs_nor_crashes(tmp_path, content):
    write_module(tmp_path, "pid_pipe", '''
        def gen(dsl):
            yield dsl.task(key="t").calls("true\\n")()
    ''')
    assert drypipe("prepare", "-p", "pid_pipe:gen", "-i", "i", cwd=tmp_path).returncode == 0
    control = tmp_path / "i/.drypipe/t"
    (control / "state.ready").rename(control / "state.launched")  # as left by a killed orchestrator
    (control / "pid").write_text(content)
    result = run(tmp_path, "-p", "pid_pipe:gen", "-i", "i", timeout=60)
    assert "Traceback" not in result.stderr
    assert state_of(tmp_path / "i", "t") == "lost"
    assert run(tmp_path, "-p", "pid_pipe:gen", "-i", "i", "--restart-failed").returncode == 0


def test_non_utf8_output_value_with_a_cache_does_not_crash_the_orchestrator(tmp_path):
    write_module(tmp_path, "bytes_pipe", '''
        def gen(dsl):
            yield dsl.task(key="t").outputs(v=str).calls("export v=$'caf\\\\xe9'\\n")()
    ''')
    result = run(tmp_path, "-p", "bytes_pipe:gen", "-i", "i", "--cache", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert state_of(tmp_path / "i", "t") == "completed"


def test_a_hand_edited_step_of_a_failed_task_is_regenerated_by_the_next_run(tmp_path):
    write_module(tmp_path, "edit_pipe", '''
        def gen(dsl):
            yield dsl.task(key="t").calls("exit 4\\n")()
    ''')
    run(tmp_path, "-p", "edit_pipe:gen", "-i", "i")
    step = tmp_path / "i/.drypipe/t/step-0.sh"
    step.write_text("true\n")
    run(tmp_path, "-p", "edit_pipe:gen", "-i", "i")
    assert step.read_text() == "exit 4\n"


def test_a_value_over_the_bound_is_refused_at_generation_and_at_the_producer(tmp_path):
    write_module(tmp_path, "huge_pipe", '''
        import os

        def gen(dsl):
            if os.environ.get("HUGE_INPUT"):
                yield dsl.task(key="literal").inputs(v="x" * 10_000_001).calls("true\\n")()
            else:
                yield dsl.task(key="producer").outputs(v=str).calls(
                    'v=$(head -c 10000001 /dev/zero | tr "\\\\0" y); export v\\n')()
    ''')
    refused = run(tmp_path, "-p", "huge_pipe:gen", "-i", "a", env={"HUGE_INPUT": "1"})
    assert refused.returncode != 0
    assert "literal" in refused.stderr and "10,000,001 characters long" in refused.stderr
    assert not (tmp_path / "a/.drypipe/literal").exists()
    produced = run(tmp_path, "-p", "huge_pipe:gen", "-i", "b")
    assert produced.returncode != 0
    assert state_of(tmp_path / "b", "producer") == "failed.0"
    assert "variable v (10000001 characters" in (tmp_path / "b/.drypipe/producer/drypipe.log").read_text()


# -- 7. a task that completed while no orchestrator ran is published by the next run ------

def test_a_task_completed_by_hand_is_published_to_the_cache_by_the_next_run(tmp_path):
    write_module(tmp_path, "hand_pipe", '''
        def gen(dsl):
            yield dsl.task(key="t").outputs(f=dsl.file("f.txt"), v=int).calls('echo hi > "$f"; export v=7\\n')()
    ''')
    cache = str(tmp_path / "cache")
    assert drypipe("prepare", "-p", "hand_pipe:gen", "-i", "i", cwd=tmp_path).returncode == 0
    assert subprocess.run([str(tmp_path / "i/.drypipe/t/task")], capture_output=True).returncode == 0
    assert run(tmp_path, "-p", "hand_pipe:gen", "-i", "i", "--cache", cache).returncode == 0
    restored = run(tmp_path, "-p", "hand_pipe:gen", "-i", "j", "--cache", cache)
    assert restored.returncode == 0 and "restored from cache" in restored.stdout
    assert (tmp_path / "j/output/t/f.txt").read_text() == "hi\n"
    assert output_vars(tmp_path / "j", "t") == {"v": "7"}
