"""What one cycle of the loop costs, and when task files are written.

A launch scan looks at the ready tasks it launches (and at most one more per executor), not
at the whole ready queue; tasks held by --until are not looked at again; a run writes the
files of new tasks in chunks between launches, in yield order, so the first tasks run while
later ones are still being written.  Counted, never timed."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from drypipe import TaskConf, plugins
from drypipe import scheduler as scheduler_module
from drypipe.executor import Liveness, TaskRun
from drypipe.plugins import ExecutorPlugin
from drypipe.scheduler import Scheduler
from tests.fake_executor import FakeExecutor, Script
from tests.inprocess.conftest import Runs

OTHER = TaskConf(executer_type="fake2")
PROMPT = TaskConf(executer_type="prompt")


class PromptFake(FakeExecutor):
    """The fake executor told of each end at once, as the process executor is (the loop
    writes task files between its launches; it writes them all before a polled executor's
    next launch batch).  It wakes the loop at every poll, a tick of its backend, so that the
    loop does not sleep on it.  Its backend is the "fake" one."""

    name = "prompt"
    event_driven = True

    def poll(self, tasks: list[TaskRun]) -> dict[str, Liveness]:
        polled = super().poll(tasks)
        self.context.wakeup.set()
        return polled


@pytest.fixture(autouse=True)
def prompt_executor(run):
    plugins.register(ExecutorPlugin(name="prompt", executor=f"{__name__}:PromptFake"))
    run.scheduler = _with_prompt_backend(run.scheduler, run)
    yield
    plugins.unregister("prompt")


def _with_prompt_backend(scheduler: Callable[..., Scheduler], run: Runs) -> Callable[..., Scheduler]:
    def build(generator: Callable, **options) -> Scheduler:
        options.setdefault("executor_options", {"fake": run.backend, "fake2": run.other, "prompt": run.backend})
        return scheduler(generator, **options)
    return build


def _independent(keys: list[str], other: tuple[str, ...] | list[str] = (), conf: TaskConf | None = None) -> Callable:
    def gen(dsl):
        for key in keys:
            yield dsl.task(key=key, task_conf=conf).calls("true\n")()
        for key in other:
            yield dsl.task(key=key, task_conf=OTHER).calls("true\n")()
    return gen


def _files_written(root: Path, key: str) -> bool:
    control = root / ".drypipe" / key
    return (control / "task-conf.json").exists() and (control / "task").exists()


class Visits:
    """Counts, per cycle, the ready-queue entries the launch scan looked at (each costs one
    `_conf_of_attempt`) and the tasks launched."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, run: Runs):
        self.per_cycle: list[tuple[int, int]] = []  # (entries looked at, tasks launched)
        self.looked_at = 0
        conf_of_attempt = Scheduler._conf_of_attempt
        cycle = Scheduler._cycle

        def counted_conf(scheduler: Scheduler, key: str):
            self.looked_at += 1
            return conf_of_attempt(scheduler, key)

        def counted_cycle(scheduler: Scheduler) -> bool:
            looked_at, launched = self.looked_at, len(run.backend.launched) + len(run.other.launched)
            changed = cycle(scheduler)
            self.per_cycle.append((self.looked_at - looked_at,
                                   len(run.backend.launched) + len(run.other.launched) - launched))
            return changed

        monkeypatch.setattr(Scheduler, "_conf_of_attempt", counted_conf)
        monkeypatch.setattr(Scheduler, "_cycle", counted_cycle)


def test_a_cycle_looks_at_the_ready_tasks_it_launches_not_the_whole_queue(run, backend, monkeypatch):
    """Two executors, each with two slots, and 1,000 ready tasks each: the second executor's
    tasks, queued behind the first one's, are found without walking past them."""
    backend.max_in_flight = run.other.max_in_flight = 2
    backend.script("*", Script(ticks=2))
    run.other.script("*", Script(ticks=2))
    visits = Visits(monkeypatch, run)
    first = [f"a-{i}" for i in range(1000)]
    second = [f"b-{i}" for i in range(1000)]

    assert run(_independent(first, second)).succeeded

    assert [k for k, _ in backend.launched] == first and [k for k, _ in run.other.launched] == second
    # at most one entry more per executor than it launched: the one that found it full
    over = [(looked, launched) for looked, launched in visits.per_cycle if looked > launched + 2]
    assert not over, over[:5]
    assert sum(looked for looked, _ in visits.per_cycle) <= 2000 + 2 * len(visits.per_cycle)


def test_tasks_held_by_until_are_not_looked_at_again(run, backend, monkeypatch):
    backend.max_in_flight = 1
    backend.script("run-*", Script(ticks=3))
    asked: list[str] = []
    held = scheduler_module.held

    def counted_held(key, options):
        asked.append(key)
        return held(key, options)

    monkeypatch.setattr(scheduler_module, "held", counted_held)
    running = [f"run-{i}" for i in range(40)]
    kept = [f"later-{i}" for i in range(2000)]

    summary = run(_independent(running + kept), until="later-*")

    assert [k for k, _ in backend.launched] == running
    assert summary.states == {**dict.fromkeys(running, "completed"), **dict.fromkeys(kept, "ready")}
    # each task is asked about once, when it becomes ready, over ~120 cycles
    assert len(asked) <= len(running) + len(kept), f"{len(asked)} questions for {len(running) + len(kept)} tasks"


def test_ready_tasks_launch_in_readiness_order_across_executors_and_chunks(run, backend):
    backend.max_in_flight, run.other.max_in_flight = 3, 1
    keys = [f"t-{i}" for i in (5, 17, 3, 99, 42, 0, 7)]
    many = [f"{k}-{j}" for j in range(20) for k in keys]  # 140 tasks: several chunks

    def gen(dsl):
        up = dsl.task(key="up").outputs(x=int).calls("true\n")()
        yield up
        for i, key in enumerate(many):
            if i % 2:
                yield dsl.task(key=key, task_conf=OTHER).calls("true\n")()
            else:
                yield dsl.task(key=key).inputs(up.outputs.x).calls("true\n")()

    assert run(gen).succeeded
    assert [k for k, _ in backend.launched] == ["up", *many[0::2]]
    assert [k for k, _ in run.other.launched] == many[1::2]


def test_the_first_task_runs_before_the_last_ones_files_are_written(run, backend, monkeypatch):
    keys = [f"t-{i}" for i in range(300)]
    backend.max_in_flight = 2
    backend.script("*", Script(ticks=3))
    seen: list[tuple[list[str], bool]] = []  # (launched keys, the last task's files exist) per launch
    launch = FakeExecutor.launch

    def observed(executor, tasks):
        seen.append(([t.key for t in tasks], _files_written(run.root, keys[-1])))
        for task in tasks:  # never before its own files and marker
            assert _files_written(run.root, task.key), task.key
        return launch(executor, tasks)

    monkeypatch.setattr(FakeExecutor, "launch", observed)

    assert run(_independent(keys, conf=PROMPT)).succeeded

    assert seen[0] == (["t-0"], False)  # launched as soon as its own files were written
    assert [k for k, _ in backend.launched] == keys  # each once, in yield order
    assert max(len(batch) for batch in backend.polls) == 2


def test_a_polled_executor_gets_every_ready_task_in_its_first_launch_batch(run, backend):
    """A Slurm job array, one rsync per host: all the tasks yielded are written first."""
    keys = [f"t-{i}" for i in range(300)]

    assert run(_independent(keys)).succeeded

    assert backend.prepared[0] == keys


def test_prepare_writes_every_task_before_it_returns(run, backend):
    keys = [f"t-{i}" for i in range(300)]

    summary = run.scheduler(_independent(keys, conf=PROMPT)).prepare()

    assert summary.states == dict.fromkeys(keys, "ready")
    assert all(_files_written(run.root, key) and run.marker(key) == "ready" for key in keys)
    assert backend.launched == []


def test_a_run_stopped_early_leaves_later_tasks_unwritten_and_the_next_run_completes_each_once(
        run, backend, monkeypatch):
    keys = [f"t-{i}" for i in range(300)]
    backend.max_in_flight = 2
    backend.script("*", Script(ticks=2))
    first = run.scheduler(_independent(keys, conf=PROMPT))
    launch = FakeExecutor.launch

    def stop_at_first_launch(executor, tasks):
        first.request_stop()
        return launch(executor, tasks)

    monkeypatch.setattr(FakeExecutor, "launch", stop_at_first_launch)
    first.run()
    monkeypatch.setattr(FakeExecutor, "launch", launch)

    assert [k for k, _ in backend.launched] == ["t-0"]
    # what a stopped run leaves: the tasks it had not reached have no files, as if not yielded yet
    assert not (run.root / ".drypipe" / keys[-1]).exists()
    assert run.marker("t-0") == "launched"

    summary = run(_independent(keys, conf=PROMPT))

    assert summary.succeeded, summary.counts()
    assert sorted(k for k, _ in backend.launched) == sorted(keys)  # each exactly once


def test_generator_evaluated_again_while_earlier_tasks_are_still_being_written(run, backend, monkeypatch):
    """The dynamic DAG: `count` completes while the 200 tasks yielded after it are still being
    written; the parts yielded once it completed queue behind them."""
    backend.script("count", Script(ticks=1, outputs={"n": 40}))
    before = [f"pre-{i}" for i in range(200)]
    written_at_generation: list[bool] = []
    generate = Scheduler._generate

    def observed(scheduler):
        written_at_generation.append(_files_written(run.root, before[-1]))
        return generate(scheduler)

    monkeypatch.setattr(Scheduler, "_generate", observed)

    def gen(dsl):
        count = dsl.task(key="count", task_conf=PROMPT).outputs(n=int).calls("true\n")()
        yield count
        for key in before:
            yield dsl.task(key=key, task_conf=PROMPT).calls("true\n")()
        for _ in dsl.wait_for_tasks(count):
            for i in range(count.outputs.n.fetch()):
                yield dsl.task(key=f"part-{i}", task_conf=PROMPT).calls("true\n")()
        for m in dsl.wait_for_matching_tasks("part-*"):
            yield dsl.task(key="merge", task_conf=PROMPT).props(parts=len(m)).calls("true\n")()

    summary = run(gen)

    assert summary.succeeded, summary.counts()
    parts = [f"part-{i}" for i in range(40)]
    assert [k for k, _ in backend.launched] == ["count", *before, *parts, "merge"]
    assert written_at_generation[:2] == [False, False]  # the second evaluation came before pre-199's files


def test_a_stale_upstream_reruns_itself_and_every_dependent_once(run, backend):
    def gen(version):
        def pipeline(dsl):
            up = dsl.task(key="up", task_conf=PROMPT).outputs(x=int).calls(f"echo {version}\n")()
            yield up
            for i in range(100):
                yield dsl.task(key=f"d-{i}", task_conf=PROMPT).inputs(up.outputs.x).calls("true\n")()
            for i in range(100):
                yield dsl.task(key=f"free-{i}", task_conf=PROMPT).calls("true\n")()
        return pipeline

    backend.script("up", Script(outputs={"x": 1}))
    assert run(gen("v1")).succeeded
    assert len(backend.launched) == 201

    summary = run(gen("v2"))

    assert summary.succeeded, summary.counts()
    again = [k for k, _ in backend.launched[201:]]
    assert again == ["up", *(f"d-{i}" for i in range(100))]


def test_cache_hits_found_while_scanning_take_no_slot_and_the_scan_goes_on(run, backend, tmp_path):
    """Tasks with one signature: once the first ones have published their result, the
    others are restored from the shared cache as the scan reaches them, without a slot."""
    keys = [f"same-{i}" for i in range(30)]
    backend.max_in_flight = 2
    backend.script("*", Script(ticks=2))

    summary = run(_independent(keys), cache_url=str(tmp_path / "cache"))

    assert summary.states == dict.fromkeys(keys, "completed")
    launched = [k for k, _ in backend.launched]
    assert launched == keys[:len(launched)] and 2 <= len(launched) < len(keys)
    assert run.schedulers[0].from_cache == set(keys[len(launched):])
