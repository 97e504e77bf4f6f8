"""Tasks whose job vanished, a backend that cannot be reached, an orchestrator restarted
while tasks run, and Ctrl-C."""
from __future__ import annotations

import time

from drypipe import TaskConf
from drypipe.task_record import TaskRecord
from tests.fake_executor import Script


def _one_task(dsl):
    yield dsl.task(key="t").calls("true\n").calls("true\n")()


def test_vanished_task_is_lost_after_the_grace_period_not_before(run, backend):
    backend.script("t", Script(vanish=True))
    asked: list[float] = []
    backend.before_poll = lambda b: asked.append(time.time())

    summary = run(_one_task, lost_grace_seconds=0.3, sleep_schedule=(0.01,))

    assert summary.states == {"t": "lost"}
    lost_at = next(stamp for stamp, event in TaskRecord(run.root, "t").log_events()
                   if event.startswith("state.lost"))
    # its job was first seen gone at the first poll; the loop kept asking during the grace period
    assert lost_at - asked[0] >= 0.3
    assert len(asked) > 5
    assert "state.lost job gone (recorded by the orchestrator)" in run.log("t")


def test_outcome_that_shows_late_wins_over_lost(run, backend):
    backend.script("t", Script(late=5))

    summary = run(_one_task, lost_grace_seconds=5, sleep_schedule=(0.01,))

    assert summary.states == {"t": "completed"}
    assert "lost" not in run.log("t")
    assert len(backend.polls) == 6  # gone at the first poll, the marker shows at the sixth


def test_job_unknown_to_the_backend_is_lost(run, backend):
    """An adopted task whose job the backend never heard of (its record was lost)."""
    backend.script("t", Script(hang=True))
    stopper = run.scheduler(_one_task)
    backend.before_poll = lambda b: stopper.request_stop()
    stopper.run()
    assert run.marker("t") == "step-started.0"

    backend.jobs.clear()
    backend.before_poll = None
    summary = run(_one_task)

    assert summary.states == {"t": "lost"}
    assert backend.launches_of("t") == [0]  # not launched again


def test_backend_down_while_polling_keeps_the_run_going_and_loses_nothing(run, backend):
    backend.script("t", Script(ticks=3))
    backend.unavailable_polls = 4

    summary = run(_one_task, lost_grace_seconds=0, sleep_schedule=(0, 0.01, 0.02))

    assert summary.states == {"t": "completed"}
    assert "lost" not in run.log("t")
    assert len(backend.polls) == 4 + 3  # four refused, then three ticks


def test_backend_down_at_launch_keeps_tasks_ready_and_retries_after_a_back_off(run, backend):
    backend.unavailable_launches = 2
    started = time.monotonic()

    def gen(dsl):
        for i in range(3):
            yield dsl.task(key=f"t{i}").calls("true\n")()

    summary = run(gen, sleep_schedule=(0, 0.1))

    assert summary.succeeded, summary.states
    assert len(backend.prepared) == 3  # refused twice, each time the whole batch
    assert [key for key, _ in backend.launched] == ["t0", "t1", "t2"]  # once each
    assert time.monotonic() - started >= 0.2  # two back-offs of the schedule's longest sleep
    assert all(new != "lost" for _, new in run.events)


def test_new_orchestrator_adopts_tasks_in_flight_without_launching_them_again(run, backend):
    backend.script("*", Script(ticks=4, outputs={"x": 1}))

    def gen(dsl):
        a = dsl.task(key="a").outputs(x=int).calls("true\n")()
        yield a
        yield dsl.task(key="b").calls("true\n")()
        yield dsl.task(key="after-a").inputs(a.outputs.x).calls("true\n")()

    first = run.scheduler(gen)
    backend.before_poll = lambda b: len(b.polls) == 1 and first.request_stop()  # Ctrl-C once
    summary = first.run()
    assert summary.states == {"a": "step-started.0", "b": "step-started.0", "after-a": "waiting"}
    assert backend.kills == []  # the tasks keep running

    backend.before_poll = None
    summary = run(gen)

    assert summary.succeeded, summary.states
    assert [key for key, _ in backend.launched] == ["a", "b", "after-a"]  # each once
    assert backend.jobs["a"].ticks == 4


def test_second_ctrl_c_kills_the_tasks_in_flight_and_they_are_not_retried(run, backend):
    backend.script("*", Script(hang=True), Script())  # a retry would complete

    def gen(dsl):
        for key in ("a", "b"):
            yield dsl.task(key=key, task_conf=TaskConf(executer_type="fake", retries=2)).calls("true\n")()

    scheduler = run.scheduler(gen)
    scheduler.on_stop = scheduler.kill_in_flight  # what a second Ctrl-C does
    backend.before_poll = lambda b: len(b.polls) == 2 and scheduler.request_stop()
    summary = scheduler.run()

    assert summary.states == {"a": "killed.0", "b": "killed.0"}
    assert backend.kills == [["a", "b"]]  # one batch
    assert backend.launches_of("a") == [0]
    for key in ("a", "b"):
        assert "kill requested (drypipe run stopped)" in run.log(key)
    # the next run does not retry them either: a requested kill is not a failure to retry
    backend.before_poll = None
    assert run(gen).states == {"a": "killed.0", "b": "killed.0"}
    assert backend.launches_of("a") == [0]


def test_one_backend_down_does_not_hold_up_the_tasks_of_another(run, backend):
    run.other.unavailable_launches = 1000
    other = TaskConf(executer_type="fake2")

    def gen(dsl):
        yield dsl.task(key="here").calls("true\n")()
        yield dsl.task(key="there", task_conf=other).calls("true\n")()

    scheduler = run.scheduler(gen, sleep_schedule=(0, 0.01))
    seen = scheduler.on_change
    scheduler.on_change = lambda key, old, new: (seen(key, old, new), new == "completed" and scheduler.request_stop())
    summary = scheduler.run()

    assert summary.states == {"here": "completed", "there": "ready"}
    assert len(run.other.prepared) >= 1 and run.other.launched == []  # tried, refused, still ready
    assert run.marker("there") == "ready"


def test_job_dropped_before_it_started_is_launched_again(run, backend):
    backend.script("t", Script(dropped=True), Script())

    summary = run(_one_task)

    assert summary.states == {"t": "completed"}
    assert backend.launches_of("t") == [0, 0]
    assert "lost" not in run.log("t") and "attempt" not in run.log("t")  # not a failure, not a retry


def test_adopted_retry_keeps_counting_its_attempts(run, backend):
    conf = TaskConf(executer_type="fake", retries=2)

    def gen(dsl):
        yield dsl.task(key="t", task_conf=conf).calls("true\n")()

    backend.script("t", Script(fail_at=0), Script(hang=True), Script(fail_at=0))
    first = run.scheduler(gen)
    backend.before_poll = lambda b: len(b.launched) == 2 and first.request_stop()
    first.run()
    assert run.marker("t") == "step-started.0"  # attempt 2 in flight

    backend.jobs["t"].script = Script(fail_at=0)  # attempt 2 fails while the second run watches it
    backend.before_poll = None
    summary = run(gen)

    assert summary.states == {"t": "failed.0"}
    assert len(backend.launches_of("t")) == 3  # attempts 1 and 2 by the first run, 3 by the second
    assert (run.root / ".drypipe/t/attempt").read_text() == "3 3\n"
    assert "attempt 3 of 3" in run.log("t")


def test_stop_kills_queued_and_running_tasks_alike(run, backend):
    backend.script("queued", Script(queued=1000))
    backend.script("running", Script(hang=True))

    def gen(dsl):
        yield dsl.task(key="running").calls("true\n").calls("true\n")()
        yield dsl.task(key="queued").calls("true\n").calls("true\n")()

    scheduler = run.scheduler(gen)
    scheduler.on_stop = scheduler.kill_in_flight
    backend.before_poll = lambda b: len(b.polls) == 3 and scheduler.request_stop()
    summary = scheduler.run()

    assert summary.states == {"running": "killed.0", "queued": "killed.0"}
    assert backend.kills == [["running", "queued"]]
    assert "state.killed.0 received SIGTERM" in run.log("running")
    assert "state.killed.0 cancelled before it started (recorded by the fake executor)" in run.log("queued")


def test_grace_period_defaults_to_the_environment_variable(run, backend, monkeypatch):
    monkeypatch.setenv("DRYPIPE_LOST_GRACE_SECONDS", "0.2")
    backend.script("t", Script(vanish=True))
    started = time.time()

    summary = run(_one_task, lost_grace_seconds=None, sleep_schedule=(0.01,))

    assert summary.states == {"t": "lost"}
    lost_at = next(stamp for stamp, event in TaskRecord(run.root, "t").log_events() if event.startswith("state.lost"))
    assert lost_at - started >= 0.2
