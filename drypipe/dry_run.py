"""What `drypipe run` would do to each task, changing nothing: `run --dry-run` prints it and
`drypipe why` explains it.

The decisions are the scheduler's own (`is_stale`, `schedules`, `start_step`, `held`,
`cache_outcome` of drypipe.scheduler); this module only reads what they need (markers,
signature records, the cache's manifests) and follows the DAG, assuming that a task that runs
completes.  Tasks the generator yields only after others complete (inside `wait_for_tasks`)
are not known yet: `Plan.waits` says what the generator waits for.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from drypipe import signature as sig
from drypipe import state as st
from drypipe.cache import OutputCache, open_cache
from drypipe.digests import DigestCache
from drypipe.display import natural_key
from drypipe.dsl import Pipeline, evaluate
from drypipe.instance import Instance
from drypipe.scheduler import RunOptions, cache_outcome, held, is_stale, schedules, start_step
from drypipe.task import Task
from drypipe.task_record import TaskRecord, log_path
from drypipe.task_script import task_conf_document

# What run does to a task (the second column of `run --dry-run`).
COMPLETED = "completed"  # up to date: left as it is
RUNNING = "running"  # in flight: watched until it ends
WOULD_RUN = "would run"
FROM_CACHE = "would restore from cache"
FAILS_FROM_CACHE = "would fail from cache"
STAYS_FAILED = "stays failed"
COUNTED = {STAYS_FAILED: "stay failed"}  # the actions whose words change in `N <action>` counts
WOULD_WAIT = "would wait"  # for an upstream task that does not complete in this run
NOT_STARTED = "not started"  # --until


@dataclass
class Prediction:
    key: str
    action: str
    detail: str = ""
    completes: bool = True  # ends the run completed (when what runs succeeds): its dependents go on
    failed_upstream: str | None = None  # WOULD_WAIT: the failed task at the root of the wait


@dataclass
class Plan:
    predictions: dict[str, Prediction]
    tasks: dict[str, Task]
    signer: sig.Signer
    stale: dict[str, list[sig.Change]] = field(default_factory=dict)  # key -> changed ingredients
    waits: list[str] = field(default_factory=list)  # what the generator still waits for


def plan(pipeline: Pipeline, instance: Instance, options: RunOptions) -> Plan:
    """Predict `run` with `options` on `instance`."""
    states = {k: st.read_state(str(instance.control_dir(k))) for k in instance.task_keys()}
    signer = sig.Signer(str(instance.root), DigestCache(instance.drypipe_dir / ".digests.json"))
    stale: dict[str, list[sig.Change]] = {}
    while True:  # as the scheduler does: stale tasks are not completed for the generator
        evaluation = evaluate(pipeline, str(instance.root), lambda k: states.get(k) == st.COMPLETED and k not in stale)
        for task in evaluation.tasks.values():
            signer.add(task_conf_document(task, task.task_conf.resolved_python_bin(),
                                          pipeline.pipeline_code_dir, pipeline.containers_dir))
        found = _stale(instance, evaluation.tasks, states, stale, signer, options)
        if not found:
            break
        stale.update(found)
    cache = open_cache(options.cache_url) if options.cache_url else None
    predictor = _Predictor(instance, evaluation.tasks, states, stale, signer, options, cache)
    predictions = {key: predictor.predict(key) for key in evaluation.tasks}
    return Plan(predictions, evaluation.tasks, signer, stale, list(evaluation.waits))


def _stale(instance: Instance, tasks: dict[str, Task], states: dict[str, str | None],
           known: dict[str, list[sig.Change]], signer: sig.Signer, options: RunOptions) -> dict[str, list[sig.Change]]:
    found = {}
    for key in tasks:
        if key in known or states.get(key) != st.COMPLETED:
            continue
        recorded = TaskRecord(instance.root, key).signature_record()
        if recorded is not None and is_stale(states[key], recorded, signer.signature(key), options):
            found[key] = sig.differences(recorded.get("ingredients", {}), signer.parts(key))
    return found


class _Predictor:
    def __init__(self, instance: Instance, tasks: dict[str, Task], states: dict[str, str | None],
                 stale: dict[str, list[sig.Change]], signer: sig.Signer,
                 options: RunOptions, cache: OutputCache | None):
        self.instance = instance
        self.tasks, self.states, self.stale, self.signer = tasks, states, stale, signer
        self.options, self.cache = options, cache
        self.done: dict[str, Prediction] = {}

    def predict(self, key: str) -> Prediction:
        if key not in self.done:
            self.done[key] = self._predict(key)
        return self.done[key]

    def _predict(self, key: str) -> Prediction:
        state = st.WAITING if key in self.stale else self.states.get(key)  # a stale task goes back to waiting
        if st.is_in_flight(state):
            return Prediction(key, RUNNING, f"{state}: watched until it ends")
        if state == st.COMPLETED:
            return Prediction(key, COMPLETED, "up to date")
        if not schedules(state, self.options):
            return Prediction(key, STAYS_FAILED, f"{state}: {failed_hint(self.instance, key)}", completes=False)
        upstream = [self.predict(u) for u in sorted(self.tasks[key].upstream_keys, key=natural_key)]
        blocked = next((u for u in upstream if not u.completes), None)
        if blocked is not None:
            return self._waits_for(key, blocked)
        if held(key, self.options):
            return Prediction(key, NOT_STARTED, f"--until {self.options.until}", completes=False)
        after = [u.key for u in upstream if u.action != COMPLETED]
        when = f"after {', '.join(after)}" if after else ""
        cached = self._from_cache(key, state)
        if cached is not None:
            return Prediction(key, cached[0], ", ".join(filter(None, [when, cached[1]])),
                              completes=cached[0] == FROM_CACHE)
        return Prediction(key, WOULD_RUN, ", ".join(filter(None, [when, self._reason(key, state)])))

    def _waits_for(self, key: str, blocked: Prediction) -> Prediction:
        """`key` waits for an upstream task that does not complete: say which, and follow a
        chain of waits to the failed task at its root."""
        if blocked.action in (STAYS_FAILED, FAILS_FROM_CACHE):
            root, detail = blocked.key, f"for {blocked.key}, which failed: {failed_hint(self.instance, blocked.key)}"
        elif blocked.failed_upstream:
            root = blocked.failed_upstream
            detail = f"for {blocked.key}, which waits for {root}, which failed: {failed_hint(self.instance, root)}"
        else:  # held back by --until, itself or further up
            root, detail = None, f"for {blocked.key}, which is not started (--until {self.options.until})"
        return Prediction(key, WOULD_WAIT, detail, completes=False, failed_upstream=root)

    def _reason(self, key: str, state: str | None) -> str:
        if key in self.stale:
            return f"stale: {', '.join(c[0] for c in self.stale[key])} changed"
        if st.is_failure(state):
            flag = "--reset-failed" if self.options.reset_failed else "--restart-failed"
            return f"{state}, again from step {start_step(state, self.options)} ({flag})"
        return ""

    def _from_cache(self, key: str, state: str | None) -> tuple[str, str] | None:
        if self.cache is None or self.options.cache_policy.skip_cache:
            return None
        manifest = self.cache.usable_manifest(self.signer.signature(key), key, self.signer.docs[key]["outputs"])
        outcome = cache_outcome(manifest, st.is_failure(state), self.options.cache_policy)
        if outcome is None:
            return None
        if outcome == st.COMPLETED:
            return FROM_CACHE, self.cache.url
        return FAILS_FROM_CACHE, (f"failed before with the same signature ({self.cache.url}; "
                                  "--rerun-failing runs it again)")


def failed_hint(instance: Instance, key: str) -> str:
    """Where to look, and how to run a failed task again."""
    return f"see {log_path(instance, key)}; run with --restart-failed (or --reset-failed) to run it again"
