"""Concurrency: a task launched by hand while the orchestrator runs, and two instances sharing
one cache that publish the same entries at the same moment.

(A second `drypipe run` on an instance that one already drives is refused with a clear error
and changes nothing: tests/test_run.py::test_second_orchestrator_is_refused.)"""
from __future__ import annotations

import json

from drypipe.digests import file_sha256
from tests.helpers import drypipe
from tests.reliability.support import LOG_RUN, run_counts, start_run, states, wait_until, write_module

BY_HAND = f'''
LOG = {LOG_RUN!r}

def gen(dsl):
    yield dsl.task(key="blocker").calls(LOG + "sleep 2.5\\n")()
    yield dsl.task(key="manual").outputs(x=int).calls(LOG + "sleep 2.5; export x=7\\n")()
'''


def test_task_launched_by_hand_while_the_orchestrator_runs_is_not_launched_again(tmp_path, reliability):
    """With one local job slot, `manual` is ready but waits for `blocker`; a user starts it by
    hand meanwhile.  The orchestrator finds the marker moved under it, adopts the task instead
    of launching it, and ends when it completes; a second hand launch of a running task is
    refused."""
    write_module(tmp_path, "by_hand", BY_HAND)
    instance = tmp_path / "i"
    run = start_run(tmp_path, "-v", "run", "-p", "by_hand:gen", "-i", str(instance), "--max-local-jobs", "1",
                    log=tmp_path / "run.log")
    wait_until(lambda: (instance / ".drypipe/blocker/state.step-started.0").exists()
             and (instance / ".drypipe/manual/state.ready").exists(), what="blocker running, manual ready")
    drypipe("task", "-i", str(instance), "-k", "manual", cwd=tmp_path, check=True)
    wait_until(lambda: not (instance / ".drypipe/manual/state.ready").exists(), what="the hand launch to start")
    again = drypipe("task", "-i", str(instance), "-k", "blocker", cwd=tmp_path)
    assert again.returncode == 1 and "task blocker is already running (pid " in again.stderr, again.stderr
    assert run.wait(timeout=60) == 0, (tmp_path / "run.log").read_text()
    assert states(instance) == {"blocker": "completed", "manual": "completed"}
    assert json.loads((instance / ".drypipe/manual/output_vars").read_text()) == {"x": "7"}
    counts = run_counts(instance)
    assert counts == {"blocker": 1, "manual": 1}, counts
    assert "manual: adopted" in (tmp_path / "run.log").read_text()
    reliability.fault("task launched by hand during a run")
    reliability.outcome(lost=0, twice=sum(1 for n in counts.values() if n > 1))


SHARED = '''
def gen(dsl):
    for i in range(6):
        # Both instances wait for each other at every task (a barrier in $BARRIER), so that
        # they write the same 2 MB files and publish the same cache entry at the same moment.
        yield dsl.task(key=f"t{i}").inputs(i=i).outputs(a=dsl.file("a.bin"), b=dsl.file("sub/b.txt"), n=int).calls("""
        me=$(basename "$__pipeline_instance_dir")
        touch "$BARRIER/$me.$i"
        for _ in $(seq 200); do [ -e "$BARRIER/one.$i" ] && [ -e "$BARRIER/two.$i" ] && break; sleep 0.05; done
        yes "task $i" | head -c 2000000 > $a
        mkdir -p sub && echo "b of $i" > $b
        export n=$((i * 10))
        """)()
'''


def test_two_instances_publishing_the_same_cache_entries_at_once(tmp_path, reliability):
    write_module(tmp_path, "shared", SHARED)
    cache = tmp_path / "cache"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    runs = [start_run(tmp_path, "run", "-p", "shared:gen", "-i", str(tmp_path / name), "--cache", str(cache),
                      "--max-local-jobs", "2", env={"BARRIER": str(barrier)}, log=tmp_path / f"{name}.log")
            for name in ("one", "two")]
    for run, name in zip(runs, ("one", "two")):
        assert run.wait(timeout=120) == 0, (tmp_path / f"{name}.log").read_text()
        assert "restored from cache" not in (tmp_path / f"{name}.log").read_text()  # both ran every task
    for name in ("one", "two"):
        assert set(states(tmp_path / name).values()) == {"completed"}

    manifests = sorted(cache.glob("*/*/manifest.json"))
    assert len(manifests) == 6, manifests  # one entry per signature, however many publishers
    assert not list(cache.rglob("*.tmp")), list(cache.rglob("*.tmp"))
    for path in manifests:
        manifest = json.loads(path.read_text())  # valid JSON, never half written
        assert manifest["status"] == "completed" and sorted(manifest["files"]) == ["a.bin", "sub/b.txt"]
        for rel, digest in manifest["files"].items():
            assert file_sha256(path.parent / "files" / rel) == digest, (path, rel)
    listing = drypipe("cache", "ls", str(cache), cwd=tmp_path)
    assert listing.returncode == 0 and "6 entries" in listing.stdout, listing.stdout + listing.stderr

    # A third instance is served entirely from the entries both wrote.
    third = drypipe("run", "-p", "shared:gen", "-i", str(tmp_path / "three"), "--cache", str(cache),
                    cwd=tmp_path, check=True)
    assert "6 tasks restored from cache" in third.stdout, third.stdout
    for i in range(6):
        original = (tmp_path / "one/output" / f"t{i}" / "a.bin").read_bytes()
        assert (tmp_path / "three/output" / f"t{i}" / "a.bin").read_bytes() == original
    assert json.loads((tmp_path / "three/.drypipe/t5/output_vars").read_text()) == {"n": "50"}
    reliability.fault("two instances publishing one cache entry at once")
    reliability.outcome(lost=0, twice=0)
