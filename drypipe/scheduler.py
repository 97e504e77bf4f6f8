"""The scheduler loop.

Readiness is a pure function of the state markers on disk: at start the loop reads every
marker once, then keeps an in-memory index that it updates only from what changes (events of
the process executor, batched polls of the others).  The generator is re-run only when a
completion can change what it yields (a task it waited on, or one matching a glob it waited on).
"""
from __future__ import annotations

import fnmatch
import itertools
import logging
import os
import statistics
import time
from array import array
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drypipe import plugins
from drypipe import signature as sig
from drypipe import state as st
from drypipe.budget import Admission, Budget, need_of
from drypipe.cache import CachePolicy, OutputCache, open_cache
from drypipe.completed_index import CompletedIndex, brief
from drypipe.config import DEFAULT_SLEEP_SCHEDULE
from drypipe.digests import DigestCache
from drypipe.display import natural_key
from drypipe.dsl import Evaluation, Pipeline, evaluate
from drypipe.errors import BackendUnavailable, UserError
from drypipe.executor import EndWatch, Executor, ExecutorContext, Liveness, TaskRun, executor_class, outcome_state
from drypipe.instance import Instance
from drypipe.run_log import RunLog
from drypipe.task import Task
from drypipe.task_conf import TaskConf
from drypipe.task_record import CONF_FILE, TaskRecord, upstream_keys_on_disk
from drypipe.task_script import task_conf_document, task_files_current, write_task_files, write_task_lib

log = logging.getLogger("drypipe")
REGISTER_CHUNK = 32  # new tasks whose files `run` writes at most between two polls while tasks run


@dataclass
class RunOptions:
    until: str | None = None
    restart_failed: bool = False
    reset_failed: bool = False
    max_local_jobs: int = 1
    sleep_schedule: tuple[float, ...] = DEFAULT_SLEEP_SCHEDULE
    lost_grace_seconds: float | None = None  # None: DRYPIPE_LOST_GRACE_SECONDS (executor.lost_grace_seconds)
    keep_stale: bool = False
    cache_url: str | None = None
    cache_policy: CachePolicy = field(default_factory=CachePolicy)
    executor_options: dict[str, Any] = field(default_factory=dict)
    retries: int = 0  # attempts after a failure, for tasks whose TaskConf.retries is None
    cores: int | None = None  # the local budget (None: the machine's cores, memory in bytes)
    mem: int | None = None


@dataclass
class RunSummary:
    states: dict[str, str | None]
    blocked: dict[str, list[str]]  # waiting task -> failed/unfinished upstreams
    unsatisfied_waits: list[str]
    not_yielded: set[str] = field(default_factory=set)  # tasks on disk the generator no longer yields

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for s in self.states.values():
            counts[st.name_of(s)] += 1
        return dict(counts)

    @property
    def failed(self) -> list[str]:
        return sorted(k for k, s in self.states.items() if st.is_failure(s))

    @property
    def succeeded(self) -> bool:
        """Every task completed and the generator waits for nothing more."""
        return not self.unsatisfied_waits and all(
            s == st.COMPLETED for k, s in self.states.items() if k not in self.not_yielded)


# -- the decisions `run` makes about one task; `run --dry-run` predicts with the same ones ----

def is_stale(state: str | None, recorded: dict[str, Any] | None, signature: str, options: RunOptions) -> bool:
    """A completed task runs again when its recorded signature is not its current one (a task
    completed before signatures were recorded is adopted as it is)."""
    return (state == st.COMPLETED and not options.keep_stale and recorded is not None
            and recorded.get("signature") != signature)


def schedules(state: str | None, options: RunOptions) -> bool:
    """Whether a task found in `state` is scheduled: it waits for its upstream tasks, then
    runs (or comes from the cache).  A failed one only with --restart-failed / --reset-failed."""
    if state == st.COMPLETED or st.is_in_flight(state):
        return False
    return not st.is_failure(state) or options.restart_failed or options.reset_failed


def start_step(state: str | None, options: RunOptions) -> int:
    """The step a scheduled task starts at: the one that failed with --restart-failed."""
    if st.is_failure(state) and options.restart_failed and not options.reset_failed:
        return st.step_of(state)
    return 0


def held(key: str, options: RunOptions) -> bool:
    """--until: a ready task whose key matches is not started."""
    return bool(options.until and fnmatch.fnmatchcase(key, options.until))


def cache_outcome(manifest: dict[str, Any] | None, rerun_asked: bool, policy: CachePolicy) -> str | None:
    """What a usable cache entry makes of a ready task: completed, failed, or None (it runs).
    `rerun_asked`: a failed task restarted by --restart-failed / --reset-failed."""
    if manifest is None:
        return None
    if manifest.get("status") != "failed":
        return st.COMPLETED
    if rerun_asked or policy.rerun_failing or policy.delete_failing:
        return None
    return st.failed(0)


class Scheduler:
    def __init__(
        self,
        pipeline: Pipeline,
        instance: Instance,
        options: RunOptions,
        on_change: Callable[[str, str | None, str | None], None] | None = None,
    ):
        self.pipeline = pipeline
        self.instance = instance
        self.options = options
        self.on_change = on_change or (lambda key, old, new: None)
        self.context = ExecutorContext(instance.root, options.max_local_jobs, options=options.executor_options,
                                       local_budget=Budget.of_machine(options.cores, options.mem))
        self.states: dict[str, str | None] = {}
        self.tasks: dict[str, Task] = {}
        self.confs: dict[str, TaskConf] = {}
        self.waiting_on: dict[str, set[str]] = {}
        # upstream -> its waiting dependents, in yield order (an ordered set: they become ready in that order)
        self.dependents: dict[str, dict[str, None]] = defaultdict(dict)
        # Ready tasks per executor, in readiness order: key -> (readiness sequence, start step).
        # Change with _ready/_unready; a launch scan stops where its executor is full.
        self.ready: dict[str, dict[str, tuple[int, int]]] = {}
        self.queued: dict[str, str] = {}  # ready key -> the executor whose queue holds it
        self.held: dict[str, int] = {}  # ready tasks --until does not start (key -> start step), never scanned
        self._ready_sequence = itertools.count()
        self.unregistered: deque[tuple[Task, dict[str, Any]]] = deque()  # yielded, files not written yet
        self.cycle_seconds = array("d")  # how long each cycle of the loop took (for probes: len() is the count)
        self.in_flight: dict[str, TaskRun] = {}
        self.end_watch = EndWatch(options.lost_grace_seconds)
        self.executors: dict[str, Executor] = {}
        self.next_poll: dict[str, float] = {}
        self.launch_after: dict[str, float] = {}  # executor -> no launch before (backend unavailable)
        self.evaluation = Evaluation()
        self.blocked_on: dict[str, list[set[str]]] = {}
        self.need_evaluation = True
        self.restarted: set[str] = set()
        self.sleep_index = 0
        self.digests = DigestCache(instance.drypipe_dir / ".digests.json")
        self.index = CompletedIndex(instance)  # the completed-task index, taken at start
        self.signer = sig.Signer(str(instance.root), self.digests)
        self.cache: OutputCache | None = open_cache(options.cache_url) if options.cache_url else None
        self.stale: dict[str, list[sig.Change]] = {}  # key -> changed ingredients, for the summary
        self.from_cache: set[str] = set()
        self._disk_dependents: dict[str, list[str]] | None = None
        self.admissions: dict[str, Admission] = {}  # executor with a local budget -> its admission
        self.attempts: dict[str, int] = {}  # key -> its attempt in flight, when above 1
        self.retrying: dict[str, tuple[int, int, str]] = {}  # key -> (attempt, of attempts, after what)
        self.run_log = RunLog(instance)
        self.stop_requested = False
        self.on_stop: Callable[[], None] | None = None  # called on a requested stop, under the lock

    # -- public --------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        self._start()
        error: BaseException | None = None
        try:
            while not self.stop_requested:
                changed = self._cycle()
                if self._finished():
                    break
                self._sleep(changed)
            if log.isEnabledFor(logging.DEBUG):  # -vv
                log.debug("%s", self.cycle_report())
            if self.stop_requested and self.on_stop is not None:
                self.on_stop()  # before the executors close: it may stop the tasks
        except BaseException as e:
            error = e
            raise
        finally:
            for executor in self.executors.values():
                executor.close()
            self.digests.save()
            self.run_log.end(self.summary(), self.stop_requested, error)
            if error is None and not self.stop_requested:  # a clean end: the next run reads one file
                self.index.write(self.states)
            self.instance.unlock()
        return self.summary()

    def request_stop(self) -> None:
        """Leave the loop at the end of this cycle (Ctrl-C); the tasks keep running.  Safe to
        call from a signal handler."""
        self.stop_requested = True
        self.context.wakeup.set()

    def kill_in_flight(self) -> dict[str, str | None]:
        """Stop every task in flight through its executor (as `drypipe kill` does); their
        states after it."""
        states = {}
        for name, runs in self._in_flight_by_executor().items():
            self.run_log.write(f"stopping the {name} tasks: {' '.join(r.key for r in runs)}")
            for run in runs:  # stopped on request: not retried
                self._record(run.key).request_kill("drypipe run stopped")
            self._executor(name).kill(runs)
            for run in runs:
                self._on_state(run.key, st.read_state(str(run.control_dir)))
                states[run.key] = self.states[run.key]
        return states

    def prepare(self) -> RunSummary:
        """Generate the task files and mark ready what can run, without launching anything."""
        self._start()
        try:
            self._register_some(None)
        except BaseException as e:
            self.run_log.end(None, error=e)
            self.instance.unlock()
            raise
        self.digests.save()
        self.run_log.end(self.summary())
        self.index.write(self.states)
        self.instance.unlock()
        return self.summary()

    def cycle_report(self) -> str:
        """The cycles of the loop so far and what they took: `cycles: N, median X ms, max Y ms`."""
        times = self.cycle_seconds or array("d", [0])
        return (f"cycles: {len(self.cycle_seconds)}, median {statistics.median(times) * 1000:.2f} ms, "
                f"max {max(times) * 1000:.2f} ms")

    def summary(self) -> RunSummary:
        blocked = {
            key: sorted(ups, key=natural_key)
            for key, ups in self.waiting_on.items() if ups and self.states.get(key) == st.WAITING
        }
        not_yielded = set(self.states) - set(self.tasks)
        return RunSummary(dict(self.states), blocked, list(self.evaluation.waits), not_yielded)

    # -- start ---------------------------------------------------------------------------------

    def _start(self) -> None:
        """Take the instance lock, read the markers, run the generator once, and only then
        write: a generator error leaves every file as it was.  The lock comes first: a second
        run must not read markers (or run the generator) while another one writes them."""
        self.instance.lock()
        try:
            self.run_log.begin()
            self.index = CompletedIndex.take(self.instance)  # read, then dropped: written again at a clean end
            leftovers: list[str] = []
            drypipe_dir = str(self.instance.drypipe_dir)
            for key in self.instance.task_keys():
                control = os.path.join(drypipe_dir, key)
                if self.index.holds(key, control):  # completed and unchanged since: nothing to scan
                    self.states[key] = st.COMPLETED
                    continue
                self.states[key], tmp_files = st.scan(control, strict=True)
                leftovers.extend(os.path.join(control, n) for n in tmp_files if not st.is_in_flight(self.states[key]))
            # Tasks to adopt: their task-conf.json is read (and refused if corrupt) before any change.
            adopted = {key: (state, self._read_task_conf(key))
                       for key, state in self.states.items() if st.is_in_flight(state)}
            evaluation = self._generate()
            # Temporary files of writes interrupted by a crash (ours or a task's), never renamed.
            root = self.instance.root
            for path in [*leftovers, *map(str, [*root.glob(".drypipe/.*.tmp"), *root.glob(".drypipe/.lib/.*.tmp"),
                                                *root.glob("output/.*.tmp")])]:
                _remove_leftover(path)
            self.instance.create()
            write_task_lib(self.instance)
            for key, (state, conf) in adopted.items():
                self._adopt(key, state, conf)
            self._apply(evaluation)
        except BaseException as e:
            self.run_log.end(None, error=e)
            self.instance.unlock()
            raise

    def _adopt(self, key: str, state: str, conf: TaskConf | None = None) -> None:
        """A task left running by an earlier orchestrator: watch it instead of launching it again."""
        conf = conf or self._read_task_conf(key)
        attempt, _ = self._record(key).attempt()
        if attempt > 1:
            self.attempts[key] = attempt
        run = TaskRun(key, self.instance.root, conf.for_attempt(attempt), st.step_of(state))
        self.in_flight[key] = run
        self.confs[key] = conf
        log.info("task %s: adopted (%s)", key, state)

    def _read_task_conf(self, key: str) -> TaskConf:
        record = self._record(key)
        conf = record.task_conf()
        try:
            executor_class(conf.executor_name())
        except UserError as e:
            raise UserError(f"task {key}: unreadable {record.path(CONF_FILE)}: {e}") from e
        return conf

    def _record(self, key: str) -> TaskRecord:
        return TaskRecord(self.instance.root, key)

    # -- one cycle -----------------------------------------------------------------------------

    def _cycle(self) -> bool:
        began = time.perf_counter()
        # Cleared before looking, so an exit signalled during this cycle wakes the next sleep.
        self.context.wakeup.clear()
        changed = False
        if self.need_evaluation:
            changed |= self._evaluate()
        changed |= self._poll()
        self._register_next()
        changed |= self._launch_ready()
        self.cycle_seconds.append(time.perf_counter() - began)
        return changed

    def _evaluate(self) -> bool:
        return self._apply(self._generate())

    def _generate(self) -> Evaluation:
        self.need_evaluation = False
        return evaluate(self.pipeline, str(self.instance.root), lambda k: self.states.get(k) == st.COMPLETED)

    def _apply(self, evaluation: Evaluation) -> bool:
        self.evaluation = evaluation
        self.blocked_on = defaultdict(list)  # key -> the generator's waits that include it
        for blocked in evaluation.blocked_on:
            for key in blocked:
                self.blocked_on[key].append(blocked)
        new = [task for key, task in evaluation.tasks.items() if key not in self.tasks]
        batched = False  # a polled executor launches in batches (a Slurm job array, one rsync per host)
        for task in new:  # an unknown executor is a generator error: refuse before writing
            try:
                batched |= not self._executor(task.task_conf.executor_name()).event_driven
            except UserError as e:
                raise UserError(f"task {task.key!r} ({task.source}): {e}") from None
            if self.states.get(task.key) != st.COMPLETED:  # one too large to ever start, too
                self._check_fits(task.key, task.task_conf)
        # In passes, so that the yield order does not matter: every signature can see its
        # upstream's definition, and every stale task is back to waiting before any
        # dependent's readiness is decided.
        docs = [self._document(task) for task in new]
        stale = [task.key for task in new if self._is_stale(task.key)]
        if stale:
            # The generator saw these as completed, so what it yielded after them (their fan-out
            # from old results) may be wrong: forget this evaluation and run it again.
            for task in new:
                del self.tasks[task.key]
            for key in stale:
                self._invalidate(key)
            return self._apply(self._generate()) or True
        # Their files are written between launches (_register_next), in yield order; a task in
        # flight (adopted) has nothing to write: it is watched.  For a polled executor, all of
        # them before its next launch, so that one batch holds every task ready together.
        self.unregistered.extend((task, doc) for task, doc in zip(new, docs, strict=True)
                                 if not st.is_in_flight(self.states.get(task.key)))
        if batched:
            self._register_some(None)
        return bool(new)

    def _register_next(self) -> None:
        """Write the files of the next tasks yielded, in yield order, and schedule them, until
        the executors told of each exit (the process executor) have ready tasks to start: one
        when none runs, one per free slot when none was ready, one for the slot an exit freed
        meanwhile (the wake-up event).  While tasks run, at most REGISTER_CHUNK between two polls."""
        if not self.unregistered:
            return
        free = self._free_slots() if not self._prompt_ready() else 0  # slots with no ready task for them
        written = 0
        while self.unregistered and not self.stop_requested:
            if written and (self.in_flight and written >= REGISTER_CHUNK or self._launch_first(free)):
                return
            self._register_some(1)
            written += 1

    def _launch_first(self, free: int) -> bool:
        """Whether launching comes before writing more task files (see _register_next)."""
        ready = self._prompt_ready()
        if not self.in_flight:
            return ready > 0
        if free:
            return ready >= free
        return ready > 0 and self.context.wakeup.is_set()

    def _in_flight_by_executor(self) -> dict[str, list[TaskRun]]:
        """The tasks in flight, by executor name."""
        by_executor: dict[str, list[TaskRun]] = defaultdict(list)
        for run in self.in_flight.values():
            by_executor[run.task_conf.executor_name()].append(run)
        return by_executor

    def _free_slots(self) -> int:
        """How many more tasks the event-driven executors may have in flight (one for an
        executor without a limit)."""
        running = self._in_flight_by_executor()
        free = 0
        for name, executor in self.executors.items():
            if executor.event_driven:
                limit = executor.max_in_flight()
                free += 1 if limit is None else max(0, limit - len(running.get(name, ())))
        return free

    def _prompt_ready(self) -> int:
        """Ready tasks of the event-driven executors."""
        return sum(len(queue) for name, queue in self.ready.items() if self._executor(name).event_driven)

    def _register_some(self, count: int | None) -> None:
        """Write the files and markers of the next `count` yielded tasks (None: all of them),
        then schedule them: a task is made ready only once its files are on disk."""
        queue = self.unregistered
        chunk = [queue.popleft() for _ in range(len(queue) if count is None else min(count, len(queue)))]
        for task, doc in chunk:
            self._register(task, doc)
        for task, _ in chunk:
            self._schedule(task)

    def _document(self, task: Task) -> dict[str, Any]:
        """The task-conf.json document of a task, also given to the signer."""
        self.tasks[task.key] = task
        self.confs[task.key] = task.task_conf
        doc = task_conf_document(
            task, task.task_conf.resolved_python_bin(), self.pipeline.pipeline_code_dir, self.pipeline.containers_dir
        )
        self.signer.add(doc)
        return doc

    def _register(self, task: Task, doc: dict[str, Any]) -> None:
        """Write a new or changed task's files and marker; send a stale completed task back to waiting."""
        key = task.key
        state = self.states.get(key)
        if state == st.COMPLETED:
            recorded = self._recorded(key)
            if recorded is None:  # completed by hand or before signatures were recorded: adopt
                self._write_signature(self._record(key), self.signer.record(key))
                return
            # It completed while no orchestrator watched it, or before its publication ended.
            if not recorded["outputs_recorded"] or (self.cache is not None and not self._published(recorded)):
                self._record_outcome(key, st.COMPLETED)
        elif not st.is_in_flight(state):
            record = self._record(key)
            fresh = state is None
            if fresh or not task_files_current(self.instance, doc):
                write_task_files(self.instance, doc, fresh)
            if fresh or (record.signature_record() or {}).get("signature") != self.signer.signature(key):
                if state in (st.WAITING, st.READY):  # results of an older definition (a stale rerun cut short)
                    record.clear_results()
                self._write_signature(record, self.signer.record(key), fresh)
            if fresh:
                record.move(None, st.WAITING)
                self._set_state(key, st.WAITING)

    def _is_stale(self, key: str) -> bool:
        """A completed task whose recorded signature differs from the current one (its
        changed ingredients are kept for the summary)."""
        if self.states.get(key) != st.COMPLETED or self.options.keep_stale:
            return False  # the signature record is not read for most tasks
        recorded = self._recorded(key)
        if recorded is None or not is_stale(self.states.get(key), recorded, self.signer.signature(key), self.options):
            return False
        ingredients = (self._record(key).signature_record() or {}).get("ingredients", {})  # not in the brief
        self.stale[key] = sig.differences(ingredients, self.signer.parts(key))
        log.info("task %s is stale: %s changed", key, ", ".join(d[0] for d in self.stale[key]))
        return True

    def _write_signature(self, record: TaskRecord, signed: dict[str, Any], fresh: bool = False) -> None:
        """Every signature record this run writes: the index, written at its end, takes what
        it needs from here instead of reading the file back."""
        record.write_signature_record(signed, fresh)
        self.index.note(record.key, signed)

    def _recorded(self, key: str) -> dict[str, Any] | None:
        """The brief (completed_index.brief) of a completed task's signature record: from the
        index when its entry holds, else from the file."""
        indexed = self.index.recorded(key)
        return indexed if indexed is not None else brief(self._record(key).signature_record())

    def _invalidate(self, key: str) -> bool:
        """Send a completed task back to waiting and clear its results.  The completed tasks on
        disk downstream of it that the generator has not yielded (yet) go first: they were made
        from the results being replaced, and while this task's marker still says completed, the
        next run finds it stale again and finishes the job after a crash.  Its own marker moves
        before its results are cleared (see _register).  False if the marker moved under us."""
        for dependent in self._dependents_on_disk(key):
            if dependent not in self.tasks and self.states.get(dependent) == st.COMPLETED:
                log.info("task %s: upstream %s reruns, its results are cleared", dependent, key)
                self._invalidate(dependent)
        record = self._record(key)
        record.reset_attempts()  # its rerun is a new series of attempts (while completed, the count is history)
        if not record.move(st.COMPLETED, st.WAITING):
            self._refresh(key)
            return False
        self._set_state(key, st.WAITING)
        record.clear_results()
        return True

    def _dependents_on_disk(self, key: str) -> list[str]:
        """Tasks whose definition on disk names `key` as an upstream (read once per run)."""
        if self._disk_dependents is None:
            self._disk_dependents = defaultdict(list)
            for other in self.instance.task_keys():
                for upstream in upstream_keys_on_disk(self._record(other)):
                    self._disk_dependents[upstream].append(other)
        return self._disk_dependents.get(key, [])

    def _schedule(self, task: Task) -> None:
        """Make a registered task ready, or wait for its unfinished upstream tasks."""
        key = task.key
        state = self.states.get(key)
        if not schedules(state, self.options) or key in self.restarted:
            # A failure found on disk with attempts left (it ended while no orchestrator watched).
            if not (st.is_failure(state) and self._plan_retry(key, state)):
                return
        elif st.is_failure(state):
            self.restarted.add(key)
        self._wait_or_ready(task)

    def _wait_or_ready(self, task: Task) -> None:
        key = task.key
        pending = {u for u in task.upstream_keys if self.states.get(u) != st.COMPLETED}
        if pending:
            self.waiting_on[key] = pending
            for upstream in pending:
                self.dependents[upstream][key] = None
        else:
            self._make_ready(key)

    def _make_ready(self, key: str) -> None:
        state = self.states.get(key)
        if key in self.retrying:  # from its first step; results are cleared when it is claimed
            start = 0
        else:
            start = start_step(state, self.options)
            if st.is_failure(state):  # restarted by the user: a new series of attempts
                self._record(key).reset_attempts()
            if st.is_failure(state) and self.options.reset_failed:
                self._record(key).clear_results()  # reset: as if it never ran (the marker is not completed)
        if state == st.WAITING:
            if self._record(key).move(st.WAITING, st.READY):
                self._set_state(key, st.READY)
            else:
                self._refresh(key)
                return
        self._ready(key, start)

    def _set_state(self, key: str, new: str | None) -> None:
        old = self.states.get(key)
        if old != new:
            self.states[key] = new
            self.run_log.change(key, old, new)
            self.on_change(key, old, new)

    def _refresh(self, key: str) -> None:
        """Re-read a marker that moved under us (e.g. the task was launched by hand)."""
        new = st.read_state(str(self.instance.control_dir(key)))
        if st.is_in_flight(new) and key not in self.in_flight:
            self._adopt(key, new)
        self._on_state(key, new)

    # -- completions ---------------------------------------------------------------------------

    def _on_state(self, key: str, new: str | None) -> None:
        was_running = key in self.in_flight
        if st.is_terminal(new):
            self.retrying.pop(key, None)  # e.g. restored from the cache instead
        # Planned before the change is shown: the display tells a retry from a last failure.
        retry = was_running and st.is_failure(new) and self._plan_retry(key, new)
        self._set_state(key, new)
        if not st.is_terminal(new):
            return
        if was_running and key in self.signer.docs and not retry:  # a failure is a result only at the last attempt
            self._record_outcome(key, new)
        self.in_flight.pop(key, None)
        self.end_watch.forget(key)
        self._unready(key)
        if retry:
            self._wait_or_ready(self.tasks[key])
            return
        if new != st.COMPLETED:
            self._pick_up_failed_dependents(key)
            return
        for dependent in self.dependents.pop(key, ()):
            pending = self.waiting_on.get(dependent)
            if pending is not None:
                pending.discard(key)
                if not pending:
                    del self.waiting_on[dependent]
                    self._make_ready(dependent)
        for blocked in self.blocked_on.pop(key, ()):
            blocked.discard(key)
            if not blocked:
                self.need_evaluation = True

    def _plan_retry(self, key: str, state: str) -> bool:
        """Whether a task that ended in `state` runs again, from its first step: a failed step
        (an out-of-memory kill included), a time limit, a lost process or node, a SIGTERM that
        `drypipe kill` did not send (a Slurm preemption), while it has attempts left."""
        conf = self.confs.get(key)
        retries = conf.retries if conf is not None and conf.retries is not None else self.options.retries
        if key not in self.tasks or not retries:
            return False
        record = self._record(key)
        if state.startswith("killed.") and record.kill_requested():
            return False
        attempt, _ = record.attempt()
        if attempt > retries:
            return False
        after = (record.failure_reason() or f"state.{state}").removeprefix("state.")
        self.retrying[key] = (attempt + 1, retries + 1, after)
        log.info("task %s: %s, attempt %d of %d follows", key, after, attempt + 1, retries + 1)  # the display shows it
        return True

    def _pick_up_failed_dependents(self, key: str) -> None:
        """An executor that submits tasks ahead (ExecutorPlugin.submits_ahead: the Dendro
        service fails the jobs submitted downstream of a failed job) may record the failure
        of waiting dependents too: read their markers."""
        for dependent in sorted(self.dependents.get(key, ())):
            conf = self.confs.get(dependent)
            if self.states.get(dependent) == st.WAITING and conf is not None and self._submits_ahead(conf):
                marker = st.read_state(str(self.instance.control_dir(dependent)))
                if st.is_failure(marker):
                    self.waiting_on.pop(dependent, None)
                    self._on_state(dependent, marker)

    @staticmethod
    def _submits_ahead(conf: TaskConf) -> bool:
        found = plugins.plugins().get(conf.executor_name())
        return found is not None and found.submits_ahead

    def _record_outcome(self, key: str, new: str) -> None:
        """Record the output digests of a task that ran, and publish it to the shared cache."""
        record = self._record(key)
        output_dir = record.output_dir
        signed = record.signature_record() or self.signer.record(key)
        files: dict[str, str] = {}
        if new == st.COMPLETED:
            for spec in self.signer.docs[key]["outputs"]:
                pattern = spec.get("path") or spec.get("glob")
                if spec["kind"] == "var" or not pattern:
                    continue
                for path in sorted(output_dir.glob(pattern)):
                    digest = self.digests.digest(path) if path.is_file() else None
                    if digest is not None:
                        files[str(path.relative_to(output_dir))] = digest
            signed["outputs"] = files
            self._write_signature(record, signed)
        # Only a step's own failure is a result: a kill, a time limit or a lost node is not.
        if self.cache is None or not (new == st.COMPLETED or new.startswith("failed.")):
            return
        status = "completed" if new == st.COMPLETED else "failed"
        try:
            self.cache.publish(signed["signature"], key, status, record.output_vars(), files, output_dir)
        except (OSError, ValueError) as e:  # ValueError: a signature record that is not a signature
            log.warning("task %s: could not publish to cache %s: %s", key, self.cache.url, e)
            return
        if new == st.COMPLETED:  # recorded last: a crash before it publishes again (publishing is idempotent)
            signed["published"] = sorted({*signed.get("published", []), self.cache.url})
            self._write_signature(record, signed)

    def _published(self, recorded: dict[str, Any]) -> bool:
        return self.cache is not None and self.cache.url in recorded.get("published", [])

    def _restore_from_cache(self, key: str) -> bool:
        """Complete (or fail) a ready task from the shared cache instead of running it: the
        results first, the marker last (a crash before it leaves a ready task, restored again)."""
        cache = self.cache
        if cache is None:
            return False
        signature = self.signer.signature(key)
        manifest = cache.usable_manifest(signature, key, self.signer.docs[key]["outputs"])  # checked: untrusted
        if manifest is None:
            return False
        record = self._record(key)
        policy = self.options.cache_policy
        outcome = cache_outcome(manifest, key in self.restarted, policy)
        if manifest.get("status") == "failed" and key not in self.restarted and policy.delete_failing:
            cache.delete(signature)
        if outcome is None:
            return False
        if outcome != st.COMPLETED:
            new = outcome
            reason = (f"failed before with the same signature (from cache {cache.url}; "
                      "--rerun-failing runs it again)")
        else:
            if not cache.restore(signature, manifest, record.output_dir):
                return False
            if any(spec["kind"] == "var" for spec in self.signer.docs[key]["outputs"]):
                record.write_output_vars(manifest.get("output_vars", {}))
            signed = self.signer.record(key)
            signed["outputs"] = manifest["files"]
            signed["published"] = [cache.url]
            self._write_signature(record, signed)
            record.mark_cached(cache.url, signature)
            new = st.COMPLETED
            reason = f"from cache {cache.url}"
        if record.record_state(self.states.get(key), new, reason):
            self._unready(key)
            self.from_cache.add(key)
            self._on_state(key, new)
            return True
        return False

    def _poll(self) -> bool:
        changed = False
        now = time.monotonic()
        for name, runs in self._in_flight_by_executor().items():
            executor = self._executor(name)
            if not executor.event_driven and now < self.next_poll.get(name, 0):
                continue
            # Markers first: only tasks without a terminal marker are asked about.
            unfinished = []
            for run in runs:
                marker = st.read_state(str(run.control_dir))
                if marker != self.states.get(run.key):
                    changed = True
                    self._on_state(run.key, marker)
                if not st.is_terminal(marker):
                    unfinished.append(run)
            if not unfinished:
                continue
            try:
                polled = executor.poll(unfinished)
            except BackendUnavailable as e:  # states unknown this cycle: none is lost, it asks again later
                log.warning("%s unavailable (%s): %d tasks not polled this cycle", name, e, len(unfinished))
                continue
            for key, liveness in polled.items():
                if liveness.alive:
                    self.end_watch.forget(key)
                else:
                    changed |= self._on_dead(self.in_flight[key], liveness)
        return changed

    def _on_dead(self, run: TaskRun, liveness: Liveness) -> bool:
        key = run.key
        if not self.end_watch.ended(key, liveness, time.monotonic()):
            return False
        record = self._record(key)
        marker = record.state()
        if st.is_terminal(marker):
            self._on_state(key, marker)
            return True
        if liveness.outcome == st.READY:
            if record.move(marker, st.READY):
                self.in_flight.pop(key)
                self.end_watch.forget(key)
                self._set_state(key, st.READY)
                self._ready(key, run.start_step)
            return True
        new = outcome_state(liveness, marker)
        if record.record_state(marker, new, liveness.reason or "", by="the orchestrator"):
            log.info("task %s: %s (%s)", key, new, liveness.reason)  # the display shows the failure
            self._on_state(key, new)
        else:
            self._refresh(key)
        return True

    # -- launching -----------------------------------------------------------------------------

    def _ready(self, key: str, start: int) -> None:
        """Queue a task for launch behind the ready tasks of its executor (a task already
        queued keeps its place); one held by --until is parked where no scan looks."""
        if held(key, self.options):
            self.held[key] = start
            return
        name = self.queued.get(key) or self.confs[key].executor_name()
        queue = self.ready.setdefault(name, {})
        entry = queue.get(key)
        if entry is None:
            self.queued[key] = name
        queue[key] = (next(self._ready_sequence) if entry is None else entry[0], start)

    def _unready(self, key: str) -> None:
        self.held.pop(key, None)
        name = self.queued.pop(key, None)
        if name is None:
            return
        queue = self.ready[name]
        del queue[key]
        if not queue:
            del self.ready[name]
        for admission in self.admissions.values():
            admission.forget(key)

    def _conf_of_attempt(self, key: str) -> TaskConf:
        """The TaskConf a ready task launches with: its mem and time scaled for a retry."""
        planned = self.retrying.get(key)
        return self.confs[key].for_attempt(planned[0] if planned else self.attempts.get(key, 1))

    def _check_fits(self, key: str, conf: TaskConf) -> None:
        budget = self._executor(conf.executor_name()).resource_budget()
        if budget is not None:
            budget.check(key, need_of(conf))

    def _launch_ready(self) -> bool:
        if not self.ready:
            return False
        in_flight = self._in_flight_by_executor()
        launched = False
        # Batches in the order of each executor's oldest ready task, as the tasks became ready.
        for name in sorted(self.ready, key=lambda n: next(iter(self.ready[n].values()))[0]):
            runs, restored = self._batch(name, len(in_flight.get(name, ())))
            launched |= restored
            if runs:  # after the scan: launching changes the queue
                self._launch(self._executor(name), runs)
                launched = True
        return launched

    def _batch(self, name: str, in_flight: int) -> tuple[list[TaskRun], bool]:
        """The ready tasks of one executor that start this cycle, in readiness order, and
        whether the shared cache completed some of them instead (a hit takes no slot).  The
        scan ends where the executor is full, so a cycle costs what it launches and restores,
        not the length of the queue."""
        limit = self._executor(name).max_in_flight()
        room = None if limit is None else max(0, limit - in_flight)
        if time.monotonic() < self.launch_after.get(name, 0):
            room = 0  # its backend was unavailable a moment ago
        use_cache = self.cache is not None and not self.options.cache_policy.skip_cache
        if room == 0 and not use_cache:
            return [], False
        self._start_admission(name)
        admission = self.admissions.get(name)
        runs: list[TaskRun] = []
        restored = False
        seen: set[str] = set()
        rescan = True
        while rescan:
            rescan = False
            for key, (_, start) in self.ready.get(name, {}).items():
                if key in seen:
                    continue
                seen.add(key)
                if use_cache and self._restore_from_cache(key):
                    restored = rescan = True
                    break  # the queue changed: go on past what was seen
                if room is not None and len(runs) >= room:
                    return runs, restored
                conf = self._conf_of_attempt(key)
                if admission is not None:
                    self._check_fits(key, self.confs[key])  # a stale rerun was not checked when yielded
                    if not admission.admit(key, need_of(conf)):
                        if admission.full:  # the rest of the queue is not scanned for nothing
                            return runs, restored
                        continue
                runs.append(TaskRun(key, self.instance.root, conf, start))
        return runs, restored

    def _start_admission(self, name: str) -> None:
        """This cycle's admission of an executor with a local budget: what its tasks in flight hold."""
        budget = self._executor(name).resource_budget()
        if budget is None:
            return
        admission = self.admissions.setdefault(name, Admission(budget))
        admission.start_cycle([need_of(r.task_conf) for r in self.in_flight.values()
                               if r.task_conf.executor_name() == name])

    def _launch(self, executor: Executor, runs: list[TaskRun]) -> None:
        claimed = []
        for run in runs:
            planned = self.retrying.pop(run.key, None)
            if planned is not None:  # counted before the claim: see TaskRecord.begin_attempt
                self._record(run.key).begin_attempt(*planned)
                self.attempts[run.key] = planned[0]
            if self._record(run.key).claim(self.states.get(run.key)):
                claimed.append(run)
            else:
                self._unready(run.key)
                self._refresh(run.key)
        if not claimed:
            return
        try:
            executor.prepare(claimed)
            handles = executor.launch(claimed)
        except BackendUnavailable as e:
            for run in claimed:  # still ready: launched again after a back-off
                self._record(run.key).unclaim(self.states[run.key])
            delay = max(self.options.sleep_schedule or (1,))
            self.launch_after[executor.name] = time.monotonic() + delay
            log.warning("%s unavailable (%s): %d tasks stay ready, next try in %.0f s",
                        executor.name, e, len(claimed), delay)
            return
        except UserError as e:
            for run in claimed:
                self._record(run.key).unclaim(self.states[run.key])
            message = str(e)
            named = message.startswith(("task ", "tasks "))
            raise UserError(message if named else f"task {claimed[0].key}: {message}") from e
        for run in claimed:
            run.handle = handles.get(run.key)
            self._unready(run.key)
            self.in_flight[run.key] = run
            self._set_state(run.key, st.LAUNCHED)
        self.next_poll.setdefault(executor.name, 0)

    def _executor(self, name: str) -> Executor:
        executor = self.executors.get(name)
        if executor is None:
            executor = executor_class(name)(self.context)
            self.executors[name] = executor
        return executor

    # -- waiting -------------------------------------------------------------------------------

    def _finished(self) -> bool:
        if self.in_flight or self.need_evaluation or self.unregistered:
            return False
        return not self.ready  # the tasks held by --until are not in it

    def _sleep(self, changed: bool) -> None:
        schedule = self.options.sleep_schedule or (1,)
        if changed:
            self.sleep_index = 0
        delay = schedule[min(self.sleep_index, len(schedule) - 1)]
        registering = bool(self.unregistered)  # no sleep: the next chunk is written at once
        if not registering:
            self.sleep_index += 1
        polled = [n for n, e in self.executors.items() if not e.event_driven and any(
            r.task_conf.executor_name() == n for r in self.in_flight.values())]
        now = time.monotonic()
        for name in polled:  # while registering, the polls keep their pace (not pushed back every cycle)
            if not registering or now >= self.next_poll.get(name, 0):
                self.next_poll[name] = now + delay
        if registering:
            return
        if self.end_watch.dead_since:
            delay = min(delay, 1.0)
        if any(e.event_driven for e in self.executors.values()) and not polled and not self.end_watch.dead_since:
            # Exits wake the loop; the timeout only covers adopted processes.
            delay = max(delay, 1.0) if self.in_flight else delay
        if delay <= 0:
            return
        self.context.wakeup.wait(delay)


def _remove_leftover(path: str) -> None:
    import shutil

    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
