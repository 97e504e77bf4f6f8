"""Running tasks again: --restart-failed, --reset-failed, retries, stale reruns, the shared cache."""
from __future__ import annotations

import json

from drypipe import TaskConf
from drypipe.cache import CachePolicy
from tests.fake_executor import Script
from tests.inprocess.conftest import Runs


def _three_steps(dsl):
    yield dsl.task(key="t").outputs(f=dsl.file("f.txt")).calls("true\n").calls("true\n").calls("true\n")()


def test_failed_task_stays_failed_until_restart_failed_resumes_it_at_the_failed_step(run, backend):
    backend.script("t", Script(fail_at=1), Script(files={"f.txt": "done"}))

    assert run(_three_steps).states == {"t": "failed.1"}
    assert run(_three_steps).states == {"t": "failed.1"}  # a plain rerun leaves it failed
    assert backend.launches_of("t") == [0]

    summary = run(_three_steps, restart_failed=True)

    assert summary.succeeded, summary.states
    assert backend.launches_of("t") == [0, 1]
    assert backend.steps_run == [("t", 0), ("t", 1), ("t", 1), ("t", 2)]
    assert run.output("t", "f.txt") == "done"


def test_reset_failed_starts_again_at_the_first_step(run, backend):
    backend.script("t", Script(fail_at=2), Script(files={"f.txt": "done"}))

    assert run(_three_steps).states == {"t": "failed.2"}
    summary = run(_three_steps, reset_failed=True)

    assert summary.succeeded, summary.states
    assert backend.launches_of("t") == [0, 0]
    assert backend.steps_run == [("t", 0), ("t", 1), ("t", 2), ("t", 0), ("t", 1), ("t", 2)]


def _flaky(retries: int):
    conf = TaskConf(executer_type="fake", retries=retries)

    def gen(dsl):
        t = dsl.task(key="flaky", task_conf=conf).outputs(n=int).calls("true\n")()
        yield t
        yield dsl.task(key="after").inputs(t.outputs.n).calls("true\n")()
    return gen


def test_retries_run_a_failing_task_again_until_it_succeeds(run, backend):
    backend.script("flaky", Script(fail_at=0), Script(vanish=True), Script(outputs={"n": 7}))

    summary = run(_flaky(retries=2))

    assert summary.succeeded, summary.states
    assert backend.launches_of("flaky") == [0, 0, 0]
    assert backend.launches_of("after") == [0]  # once, after the attempt that succeeded
    log = run.log("flaky")
    assert "attempt 2 of 3 (retry after failed.0 exit code 1)" in log
    assert "attempt 3 of 3 (retry after lost job gone" in log
    assert (run.root / ".drypipe/flaky/attempt").read_text() == "3 3\n"
    assert json.loads((run.root / ".drypipe/flaky/output_vars").read_text()) == {"n": "7"}


def test_retries_stop_when_the_attempts_are_used_up(run, backend):
    backend.script("flaky", Script(fail_at=0))

    summary = run(_flaky(retries=1))

    assert summary.states == {"flaky": "failed.0", "after": "waiting"}
    assert backend.launches_of("flaky") == [0, 0]
    # the next run does not retry it: a failure found on disk with no attempts left stays failed
    assert run(_flaky(retries=1)).states["flaky"] == "failed.0"
    assert backend.launches_of("flaky") == [0, 0]


def _chain(version: str):
    def gen(dsl):
        a = dsl.task(key="a").outputs(x=int).calls(f"echo {version}\n")()
        yield a
        yield dsl.task(key="b").inputs(a.outputs.x).calls("true\n")()
        yield dsl.task(key="other").calls("true\n")()
    return gen


def test_changed_code_reruns_the_task_and_its_downstream_only(run, backend):
    backend.script("a", Script(outputs={"x": 1}))
    assert run(_chain("v1")).succeeded
    assert run(_chain("v1")).succeeded  # nothing changed: nothing runs
    assert len(backend.launched) == 3

    summary = run(_chain("v2"))

    assert summary.succeeded, summary.states
    assert [key for key, _ in backend.launched[3:]] == ["a", "b"]
    assert run.when("b", "waiting") < run.when("a", "completed")  # b waited for the new a
    assert "a" in run.schedulers[-1].stale
    # --keep-stale: an edit does not rerun anything
    assert run(_chain("v3"), keep_stale=True).succeeded and len(backend.launched) == 5


def _cached(dsl):
    t = dsl.task(key="t").inputs(n=1).outputs(x=int, f=dsl.file("f.txt")).calls("true\n")()
    yield t
    yield dsl.task(key="bad").calls("true\n")()


def test_cache_hit_completes_a_task_without_running_it(run, backend, tmp_path):
    cache = str(tmp_path / "cache")
    backend.script("t", Script(outputs={"x": 5}, files={"f.txt": "result"}))
    backend.script("bad", Script(fail_at=0))
    assert run(_cached, cache_url=cache).states == {"t": "completed", "bad": "failed.0"}

    other = Runs(tmp_path / "other-instance", backend)
    summary = other(_cached, cache_url=cache)

    assert summary.states == {"t": "completed", "bad": "failed.0"}  # the failure is a result too
    assert [key for key, _ in backend.launched] == ["t", "bad"]  # nothing ran for the second instance
    assert other.schedulers[0].from_cache == {"t", "bad"}
    assert other.output("t", "f.txt") == "result"
    assert json.loads((other.root / ".drypipe/t/output_vars").read_text()) == {"x": "5"}
    # skipping the cache runs them
    Runs(tmp_path / "third", backend)(_cached, cache_url=cache, cache_policy=CachePolicy(skip_cache=True))
    assert [key for key, _ in backend.launched] == ["t", "bad", "t", "bad"]



def _fan_out(version: str):
    def gen(dsl):
        count = dsl.task(key="count").outputs(n=int).calls(f"echo {version}\n")()
        yield count
        for _ in dsl.wait_for_tasks(count):
            for i in range(count.outputs.n.fetch()):
                yield dsl.task(key=f"part-{i}").inputs(count.outputs.n, i=i).calls("true\n")()
    return gen


def test_stale_producer_that_yields_fewer_tasks_clears_the_ones_left_out(run, backend):
    backend.script("count", Script(outputs={"n": 3}), Script(outputs={"n": 2}))
    assert run(_fan_out("v1")).succeeded

    summary = run(_fan_out("v2"))

    assert summary.succeeded, summary.states
    assert summary.not_yielded == {"part-2"}
    assert run.marker("part-2") == "waiting"  # made from the old count: its results are gone
    assert [key for key, _ in backend.launched[4:]] == ["count", "part-0", "part-1"]


def test_restart_failed_after_the_retries_gives_a_new_series_of_attempts(run, backend):
    backend.script("flaky", Script(fail_at=0), Script(fail_at=0), Script(fail_at=0), Script(outputs={"n": 1}))
    assert run(_flaky(retries=1)).states["flaky"] == "failed.0"
    assert (run.root / ".drypipe/flaky/attempt").read_text() == "2 2\n"

    summary = run(_flaky(retries=1), restart_failed=True)

    assert summary.succeeded, summary.states
    assert backend.launches_of("flaky") == [0, 0, 0, 0]  # attempts 1 and 2, then 1 and 2 again
    assert (run.root / ".drypipe/flaky/attempt").read_text() == "2 2\n"
    assert run.log("flaky").count("attempt 2 of 2") == 2
