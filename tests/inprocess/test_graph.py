"""What runs when: readiness, order, dynamic DAG growth, blocked tasks, --until, limits, batching."""
from __future__ import annotations

import pytest

from drypipe import TaskConf
from drypipe.errors import UserError
from tests.fake_executor import Script


def test_task_starts_only_after_all_its_upstreams_completed(run, backend):
    backend.script("slow", Script(ticks=4, outputs={"y": 2}))
    backend.script("quick", Script(ticks=1, outputs={"x": 1}))

    def gen(dsl):
        quick = dsl.task(key="quick").outputs(x=int).calls("true\n")()
        slow = dsl.task(key="slow").outputs(y=int).calls("true\n")()
        yield quick
        yield slow
        yield dsl.task(key="join").inputs(quick.outputs.x, slow.outputs.y).calls("true\n")()

    summary = run(gen)

    assert summary.succeeded, summary.states
    assert run.when("join", "ready") > run.when("slow", "completed") > run.when("quick", "completed")
    assert [key for key, _ in backend.launched] == ["quick", "slow", "join"]


def test_ready_tasks_launch_in_yield_order(run, backend):
    backend.max_in_flight = 1
    keys = ["t-3", "t-1", "t-10", "t-2", "a"]

    def gen(dsl):
        for key in keys:
            yield dsl.task(key=key).calls("true\n")()

    assert run(gen).succeeded
    assert [key for key, _ in backend.launched] == keys
    assert all(len(batch) == 1 for batch in backend.polls)  # one at a time, as max_in_flight says


def test_generator_yields_more_tasks_once_the_results_it_waits_for_arrive(run, backend):
    backend.script("count", Script(ticks=2, outputs={"n": 3}))

    def gen(dsl):
        count = dsl.task(key="count").outputs(n=int).calls("true\n")()
        yield count
        for _ in dsl.wait_for_tasks(count):
            for i in range(count.outputs.n.fetch()):
                yield dsl.task(key=f"part-{i}").calls("true\n")()
        for m in dsl.wait_for_matching_tasks("part-*"):
            yield dsl.task(key="merge").props(parts=len(m)).calls("true\n")()

    summary = run(gen)

    assert summary.succeeded, summary.states
    assert sorted(summary.states) == ["count", "merge", "part-0", "part-1", "part-2"]
    assert [key for key, _ in backend.launched] == ["count", "part-0", "part-1", "part-2", "merge"]
    assert run.when("part-0", "waiting") > run.when("count", "completed")
    assert run.when("merge", "waiting") > max(run.when(f"part-{i}", "completed") for i in range(3))


def test_failed_upstream_blocks_its_downstream_only(run, backend):
    backend.script("bad", Script(outputs={"x": 1}))  # but not the file it declares

    def gen(dsl):
        bad = dsl.task(key="bad").outputs(x=int, f=dsl.file("f.txt")).calls("true\n")()
        yield bad
        yield dsl.task(key="after").inputs(bad.outputs.x).calls("true\n")()
        yield dsl.task(key="independent").calls("true\n")()

    summary = run(gen)

    assert not summary.succeeded
    assert summary.states == {"bad": "failed.0", "after": "waiting", "independent": "completed"}
    assert summary.failed == ["bad"] and summary.blocked == {"after": ["bad"]}
    assert backend.launches_of("after") == []
    assert run.log("bad").splitlines()[-1].endswith("state.failed.0 missing output(s): f.txt")


def test_generator_waiting_on_a_failed_task_is_reported_unsatisfied(run, backend):
    backend.script("bad", Script(fail_at=0))

    def gen(dsl):
        bad = dsl.task(key="bad").outputs(x=int).calls("true\n")()
        yield bad
        for _ in dsl.wait_for_tasks(bad):
            yield dsl.task(key="never").calls("true\n")()

    summary = run(gen)

    assert summary.states == {"bad": "failed.0"}
    assert len(summary.unsatisfied_waits) == 1 and "bad" in summary.unsatisfied_waits[0]


def test_until_leaves_matching_ready_tasks_unstarted(run, backend):
    def gen(dsl):
        first = dsl.task(key="first").outputs(x=int).calls("true\n")()
        yield first
        yield dsl.task(key="later-1").inputs(first.outputs.x).calls("true\n")()
        yield dsl.task(key="later-2").calls("true\n")()

    summary = run(gen, until="later-*")

    assert summary.states == {"first": "completed", "later-1": "ready", "later-2": "ready"}
    assert [key for key, _ in backend.launched] == ["first"]
    # the next run without --until starts them
    assert run(gen).succeeded
    assert [key for key, _ in backend.launched] == ["first", "later-1", "later-2"]


def test_max_in_flight_is_never_exceeded(run, backend):
    backend.max_in_flight = 2
    backend.script("*", Script(ticks=3))

    def gen(dsl):
        for i in range(7):
            yield dsl.task(key=f"t{i}").calls("true\n")()

    assert run(gen).succeeded
    # a poll asks about every task in flight: never more than two, and two most of the time
    assert max(len(batch) for batch in backend.polls) == 2
    assert len(backend.launched) == 7


def test_one_batched_poll_per_executor_per_cycle(run, backend):
    backend.script("*", Script(ticks=3))
    run.other.script("*", Script(ticks=3))
    other = TaskConf(executer_type="fake2")

    def gen(dsl):
        for i in range(5):
            yield dsl.task(key=f"a{i}").calls("true\n")()
            yield dsl.task(key=f"b{i}", task_conf=other).calls("true\n")()

    assert run(gen).succeeded
    # each task needs three ticks: three polls of each backend, each about all its five tasks
    assert backend.polls == [[f"a{i}" for i in range(5)]] * 3
    assert run.other.polls == [[f"b{i}" for i in range(5)]] * 3
    assert backend.prepared == [[f"a{i}" for i in range(5)]]  # one launch batch too
    assert backend.closed == 1 and run.other.closed == 1


def test_tasks_made_ready_by_one_completion_launch_in_yield_order(run, backend):
    """The same DAG starts its tasks in the same order at every run, whatever the hash seed."""
    backend.max_in_flight = 1
    keys = [f"d-{i}" for i in (7, 3, 5, 0, 6, 1, 4, 2)]

    def gen(dsl):
        up = dsl.task(key="up").outputs(x=int).calls("true\n")()
        yield up
        for key in keys:
            yield dsl.task(key=key).inputs(up.outputs.x).calls("true\n")()

    assert run(gen).succeeded
    assert [key for key, _ in backend.launched] == ["up", *keys]


def test_downstream_on_another_executor_waits_for_its_upstream(run, backend):
    backend.script("up", Script(ticks=3, outputs={"x": 1}))

    def gen(dsl):
        up = dsl.task(key="up").outputs(x=int).calls("true\n")()
        yield up
        yield dsl.task(key="down", task_conf=TaskConf(executer_type="fake2")).inputs(up.outputs.x).calls("true\n")()

    assert run(gen).succeeded
    assert backend.launched == [("up", 0)] and run.other.launched == [("down", 0)]
    assert run.when("down", "ready") > run.when("up", "completed")


def test_unknown_executor_stops_the_run_before_anything_is_written(run, backend):
    def gen(dsl):
        yield dsl.task(key="fine").calls("true\n")()
        yield dsl.task(key="odd", task_conf=TaskConf(executer_type="nope")).calls("true\n")()

    with pytest.raises(UserError) as raised:
        run(gen)

    message = str(raised.value)
    assert message.startswith("task 'odd'") and "unknown executer_type 'nope'" in message
    assert "fake" in message  # the known ones are named
    assert backend.launched == []
    assert not list(run.root.glob(".drypipe/*/state.*"))
