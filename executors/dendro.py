"""Dendro executor: runs tasks as jobs of a Dendro service (`executer_type="dendro"`).

    conf = TaskConf(executer_type="dendro", dendro_service="my_service", dendro_app="hello_world",
                    dendro_processor="count_characters", required_resources={"numCpus": 1, "timeSec": 600})
    dsl.task(key="count", task_conf=conf).inputs(input=t1.outputs.text).outputs(
        output=dsl.file("counts.json")).calls(dendro_call(conf))()

No task script runs locally: the executor submits the job, watches it, and on completion
downloads the outputs into output/<key>/, records the output variables and writes the task's
terminal state marker itself (with `drypipe.state.transition`), as a task script would.

- launch: one `createJob` per task (the service returns the existing job when one with the same
  definition exists: the Dendro cache).  Then the dependent Dendro tasks whose inputs are all
  known are submitted at once too ("ahead"), with `jobDependencies`, down the DAG: their jobs
  start on the compute resources as soon as their upstream jobs complete.  Those tasks stay
  `waiting` for the scheduler; when it launches them, the executor adopts the job it submitted
  (`.drypipe/<key>/dendro_job` records it) instead of creating it again.
- poll: ONE `findJobs` request per service and cycle for all the instance's jobs (they carry
  the tag `drypipe:<instance id>`; the service adds it to cached jobs too).
- a failed job: its console output goes to out.log and the task records failed.0 (killed.0 when
  canceled, timed-out.0 past its timeSec).  The service fails the jobs submitted ahead downstream
  of it, and the executor records those tasks failed too.
- kill: `cancelJob` (the compute resource stops the job), then killed.0.

Settings: TaskConf.executor_options (see dendro_jobs.OPTION_KEYS) or env `DENDRO_API_URL`,
`DENDRO_API_KEY`, `DRYPIPE_DENDRO_STORE` (where local input files are published; their URLs must
be readable by the compute resources), `DRYPIPE_DENDRO_STORE_PUBLIC_URL`.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from dendro_bridge import DendroApiError, DendroClient, DendroClientError, job_definition_hash
from dendro_bridge.api import env_setting
from dendro_bridge.model import DendroJob
from drypipe import state as st
from drypipe.errors import UserError
from drypipe.executor import Executor, ExecutorContext, Liveness, TaskRun
from drypipe.instance import Instance, write_atomic
from drypipe.task_conf import TaskConf
from drypipe.task_record import TaskRecord
from drypipe.values import format_var, parse_var
from executors.dendro_jobs import (
    FAILED_STATUSES,
    OUTPUT_VARS_OUTPUT,
    InputStore,
    JobSpec,
    Mapper,
    NotReady,
    Settings,
    read_record,
    settings_of,
    write_record,
)

DENDRO = "the dendro executor"
log = logging.getLogger("drypipe.dendro")

_CALL_MARKER = "# Dendro job: app "
# A completed job whose outputs cannot be downloaded is retried this many polls, then failed.
_DOWNLOAD_ATTEMPTS = 3


def dendro_call(task_conf: TaskConf) -> str:
    """The `calls(...)` of a Dendro task: a bash step naming the app and processor, so that
    they are part of the task's signature.  The dendro executor never runs it; started by
    hand (`./task`), it says how the task runs."""
    app, processor = task_conf.dendro_app, task_conf.dendro_processor
    if task_conf.executer_type != "dendro" or not app or not processor:
        raise UserError("dendro_call(task_conf) needs a TaskConf(executer_type='dendro', dendro_app=..., "
                        "dendro_processor=...)")
    return (f"#!/usr/bin/env bash\n{_CALL_MARKER}{app}, processor {processor}\n"
            f"echo \"task $__task_key runs as a Dendro job ({app}/{processor}): start it with drypipe run\" >&2\n"
            "exit 2\n")


class DendroExecutor(Executor):
    name = "dendro"
    event_driven = False  # polled on the loop's --sleep-schedule back-off

    def __init__(self, context: ExecutorContext):
        super().__init__(context)
        self.root = Path(context.instance_dir)
        self.instance = Instance(self.root)
        self.run_options: dict[str, Any] = dict((context.options or {}).get("dendro") or {})
        self._instance_id: str | None = None
        self._clients: dict[tuple[str, str | None], DendroClient] = {}
        self._stores: dict[tuple[str, str | None], InputStore] = {}
        self._store_settings: Settings | None = None
        self._current: dict[str, dict[str, Any]] = {}  # key -> record of a job submitted/adopted this run
        self._ahead: dict[str, str] | None = None  # job id -> key of a waiting task submitted ahead
        self._dependents: dict[str, set[str]] = defaultdict(set)
        self._indexed: set[str] = set()
        self._download_failures: dict[str, int] = defaultdict(int)
        self.poll_count = 0
        self.poll_requests = 0
        self.mapper = Mapper(self.root, self._upstream_record, self._store)

    # -- identity of this pipeline instance ------------------------------------------------------

    @property
    def instance_id(self) -> str:
        """Stable across runs: tags the instance's jobs (one findJobs finds them all)."""
        if self._instance_id is None:
            path = self.root / ".drypipe" / ".dendro" / "instance-id"
            try:
                self._instance_id = path.read_text().strip()
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, uuid.uuid4().hex + "\n")
                self._instance_id = path.read_text().strip()
        return self._instance_id

    @property
    def tag(self) -> str:
        return f"drypipe:{self.instance_id}"

    @property
    def batch_id(self) -> str:
        return f"drypipe-{self.instance_id}"

    def _client(self, settings: Settings) -> DendroClient:
        return self._client_at(settings.api_url, settings.api_key)

    def _client_at(self, api_url: str, api_key: str | None) -> DendroClient:
        if (api_url, api_key) not in self._clients:
            self._clients[(api_url, api_key)] = DendroClient(api_url, api_key)
        return self._clients[(api_url, api_key)]

    def _recorded_client(self, conf: TaskConf, record: dict[str, Any]) -> DendroClient:
        """A client for the service of a recorded job (the API key only matters to cancel it)."""
        options = {**self.run_options, **(conf.executor_options or {})}
        return self._client_at(record["api_url"], options.get("api_key") or env_setting("API_KEY"))

    def _store(self) -> InputStore:
        settings = self._store_settings
        if settings is None or not settings.store:
            raise UserError("a Dendro task has a local input file, but no input store is configured: set "
                            "DRYPIPE_DENDRO_STORE (or executor_options store) to a directory or fsspec URL whose "
                            "files the compute resources can read (see docs/dendro.md)")
        key = (settings.store, settings.store_public_url)
        if key not in self._stores:
            self._stores[key] = InputStore(settings.store, settings.store_public_url)
        return self._stores[key]

    # -- task documents ----------------------------------------------------------------------------

    def _control(self, key: str) -> Path:
        return self.instance.control_dir(key)

    def _doc(self, key: str) -> dict[str, Any] | None:
        try:
            return TaskRecord(self.instance.root, key).conf_document()
        except UserError:
            return None

    def _settings(self, key: str, doc: dict[str, Any]) -> Settings:
        return settings_of(key, doc.get("task_conf") or {}, self.run_options)

    def _dependents_of(self, key: str) -> set[str]:
        """Tasks consuming outputs of `key`, from the task-conf.json files (read once per task)."""
        keys = set(self.instance.task_keys())
        for new in keys - self._indexed:
            doc = self._doc(new)
            if doc is not None:
                for upstream in doc.get("upstream_keys", []):
                    self._dependents[upstream].add(new)
                self._indexed.add(new)
        return self._dependents.get(key, set())

    # -- records -----------------------------------------------------------------------------------

    def _upstream_record(self, key: str) -> dict[str, Any] | None:
        """The job of an upstream Dendro task, if it is current: submitted or adopted in this
        run, or recorded for the task's present signature while it runs or after it completed."""
        if key in self._current:
            submitted = self._current[key]
            return None if submitted.get("status") in FAILED_STATUSES else submitted
        control = self._control(key)
        record = read_record(control)
        current = TaskRecord.at(control).signature_record() or {}
        if record is None or record.get("signature") != current.get("signature"):
            return None
        state = st.read_state(str(control))
        if st.is_in_flight(state) and record.get("status") not in FAILED_STATUSES:
            return record
        if state == st.COMPLETED and record.get("status") == "completed":
            return record
        return None

    def _ahead_jobs(self) -> dict[str, str]:
        if self._ahead is None:
            self._ahead = {}
            for key in self.instance.task_keys():
                record = read_record(self._control(key))
                if record and record.get("submitted") == "ahead" and record.get("status") not in (
                        *FAILED_STATUSES, "completed") and st.read_state(str(self._control(key))) == st.WAITING:
                    self._ahead[record["job_id"]] = key
        return self._ahead

    # -- launch ------------------------------------------------------------------------------------

    def launch(self, tasks: list[TaskRun]) -> dict[str, str]:
        handles: dict[str, str] = {}
        for task in tasks:
            doc = self._doc(task.key)
            if doc is None:
                raise UserError(f"task {task.key}: unreadable {self._control(task.key) / 'task-conf.json'}")
            settings = self._settings(task.key, doc)
            _check_call(task.key, doc, settings)
            try:
                spec = self._spec(task.key, doc, settings)
            except NotReady as e:
                raise UserError(f"task {task.key}: {e}") from None
            record = self._submit_or_adopt(task.key, settings, spec, ahead=False)
            handles[task.key] = record["job_id"]
        self._submit_dependents([task.key for task in tasks])
        return handles

    def _spec(self, key: str, doc: dict[str, Any], settings: Settings) -> JobSpec:
        self._store_settings = settings  # where the mapper publishes this task's local files
        try:
            return self.mapper.spec(key, doc, settings)
        except (OSError, ValueError) as e:  # the store refused a file, an invalid value ...
            raise UserError(f"task {key}: {type(e).__name__}: {e}") from None

    def _submit_or_adopt(self, key: str, settings: Settings, spec: JobSpec, ahead: bool) -> dict[str, Any]:
        """The task's job: the one recorded if its definition is unchanged, else a new createJob."""
        control = self._control(key)
        definition_hash = job_definition_hash(spec.plain)
        record = read_record(control)
        if (record is not None and record.get("definition_hash") == definition_hash
                and record.get("service") == settings.service and record.get("api_url") == settings.api_url
                and record.get("status") not in FAILED_STATUSES):
            record["signature"] = (TaskRecord.at(control).signature_record() or {}).get("signature")
            write_record(control, record)
            self._current[key] = record
            if not ahead:
                self._ahead_jobs().pop(record["job_id"], None)
                log.info("task %s: adopted dendro job %s", key, record["job_id"])
                TaskRecord.at(control).log(
                    f"dendro job {record['job_id']} adopted (submitted {record.get('submitted')})", by=DENDRO)
            return record
        # A task launched again after its job failed asks for a new job (else the service
        # returns the failed one from its cache).
        rerun = settings.rerun_failing or (record is not None and record.get("status") in FAILED_STATUSES)
        started = time.time()
        try:
            job = self._client(settings).submit_job(
                service_name=settings.service, job_definition=spec.definition,
                required_resources=settings.resources, target_compute_client_ids=settings.targets,
                tags=[self.tag, f"drypipe-task:{key}", *settings.tags], skip_cache=settings.skip_cache,
                rerun_failing=rerun, delete_failing=settings.delete_failing, batch_id=self.batch_id)
        except (DendroApiError, DendroClientError) as e:
            raise UserError(f"task {key}: Dendro service {settings.api_url}: {e}") from None
        creator_tag = next((t for t in job.tags if t.startswith("drypipe-task:")), None)
        cache_hit = job.batchId != self.batch_id or creator_tag != f"drypipe-task:{key}"
        record = {
            "job_id": job.jobId, "api_url": settings.api_url, "service": settings.service,
            "app": settings.app, "processor": settings.processor,
            "definition_hash": definition_hash, "service_hash": job.jobDefinitionHash,
            "signature": (TaskRecord.at(control).signature_record() or {}).get("signature"), "cache_hit": cache_hit,
            "submitted": "ahead" if ahead else "launch", "submitted_at": started, "status": job.status,
            "outputs": {r.name: r.url for r in job.outputFileResults}, "console_url": job.consoleOutputUrl,
            "job_url": job.job_url, "dependencies": job.jobDependencies,
        }
        write_record(control, record)
        self._current[key] = record
        if ahead:
            self._ahead_jobs()[job.jobId] = key
        what = "found in the Dendro cache" if cache_hit else "submitted"
        log.info("task %s: dendro job %s %s%s (%s)", key, job.jobId, what, " ahead" if ahead else "", job.status)
        ahead_text = " ahead of its upstream" if ahead else ""
        TaskRecord.at(control).log(f"dendro job {job.jobId} {what}{ahead_text}: {job.status}", by=DENDRO)
        return record

    def _submit_dependents(self, keys: list[str]) -> None:
        """Submit the waiting Dendro tasks downstream of `keys` whose inputs are all known:
        files of Dendro tasks already submitted, and outputs of completed tasks."""
        queue = deque(sorted(d for k in keys for d in self._dependents_of(k)))
        done: set[str] = set()
        while queue:
            key = queue.popleft()
            if key in done or st.read_state(str(self._control(key))) != st.WAITING:
                continue
            doc = self._doc(key)
            if doc is None or (doc.get("task_conf") or {}).get("executer_type") != "dendro":
                continue
            try:
                settings = self._settings(key, doc)
                if not settings.presubmit:
                    continue
                spec = self._spec(key, doc, settings)
                self._submit_or_adopt(key, settings, spec, ahead=True)
            except NotReady as e:
                log.debug("task %s: not submitted ahead: %s", key, e)
                continue  # visited again when another of its upstream tasks is submitted
            except UserError as e:
                log.info("task %s: not submitted ahead: %s", key, e)  # the error shows at its launch
                done.add(key)
                continue
            done.add(key)
            queue.extend(sorted(self._dependents_of(key)))

    # -- poll --------------------------------------------------------------------------------------

    def poll(self, tasks: list[TaskRun]) -> dict[str, Liveness]:
        """One findJobs per service for all in-flight tasks (and the tasks submitted ahead)."""
        self.poll_count += 1
        result: dict[str, Liveness] = {}
        groups: dict[tuple[str, str], list[tuple[TaskRun | str, dict[str, Any]]]] = defaultdict(list)
        clients: dict[tuple[str, str], DendroClient] = {}
        for task in tasks:
            record = self._current.get(task.key) or read_record(task.control_dir)
            if record is None:
                result[task.key] = Liveness(False, st.READY, "no Dendro job was submitted for it", certain=True)
                continue
            group = (record["api_url"], record["service"])
            groups[group].append((task, record))
            if group not in clients:
                clients[group] = self._recorded_client(task.task_conf, record)
        for job_id, key in list(self._ahead_jobs().items()):
            record = read_record(self._control(key))
            if record is None or record["job_id"] != job_id or st.read_state(str(self._control(key))) != st.WAITING:
                self._ahead_jobs().pop(job_id, None)
            elif (record["api_url"], record["service"]) in groups:
                groups[(record["api_url"], record["service"])].append((key, record))
        for (api_url, service), items in groups.items():
            client = clients[(api_url, service)]
            try:
                self.poll_requests += 1
                jobs = {j.jobId: j for j in client.find_jobs(service_name=service, tags=[self.tag])}
            except DendroApiError as e:
                log.warning("dendro: %s; job states unknown this cycle", e)
                result.update({t.key: Liveness(alive=True) for t, _ in items if isinstance(t, TaskRun)})
                continue
            # Tasks submitted ahead first: their failure must be on disk when the loop learns
            # that their upstream failed.
            for key, record in [(t, r) for t, r in items if isinstance(t, str)]:
                job = jobs.get(record["job_id"])
                if job is not None and job.status == "failed":
                    self._ahead_jobs().pop(job.jobId, None)
                    self._record_failure(key, record, job, client)
            for task, record in [(t, r) for t, r in items if isinstance(t, TaskRun)]:
                job = jobs.get(record["job_id"])
                if job is None:  # e.g. a job without our tag: ask for it alone
                    try:
                        job = client.get_job(record["job_id"])
                    except DendroApiError as e:
                        log.warning("dendro: %s", e)
                        result[task.key] = Liveness(alive=True)
                        continue
                if job is None:
                    result[task.key] = Liveness(False, st.LOST, f"dendro job {record['job_id']} no longer exists",
                                                certain=True)
                    continue
                result[task.key] = self._on_job(task.key, record, job, client)
        log.debug("dendro poll %d: %d task(s), %d request(s) so far", self.poll_count, len(tasks), self.poll_requests)
        return result

    def _on_job(self, key: str, record: dict[str, Any], job: DendroJob, client: DendroClient) -> Liveness:
        control = self._control(key)
        if job.status in ("starting", "running"):
            self._started(control, record, job)
            return Liveness(alive=True)
        if job.status == "completed":
            try:
                self._complete(key, record, job, client)
            except _Incomplete as e:
                self._download_failures[key] += 1
                if self._download_failures[key] < _DOWNLOAD_ATTEMPTS:
                    log.warning("task %s: %s; trying again", key, e)
                    return Liveness(alive=True)
                self._record_failure(key, record, job, client, f"job completed, but {e}")
            return Liveness(False, "failed", "dendro job ended", certain=True)
        if job.status == "failed":
            self._record_failure(key, record, job, client)
            return Liveness(False, "failed", "dendro job ended", certain=True)
        return Liveness(alive=True)  # pending

    def _started(self, control: Path, record: dict[str, Any], job: DendroJob) -> None:
        """launched -> step-started.0 once the job runs (at the job's own start time, so that
        `drypipe status` shows how long it ran; cached jobs ran before: they take no time here)."""
        host = f" on {job.computeClientName}" if job.computeClientName else ""
        when = None if record.get("cache_hit") else (job.timestampStartedSec or job.timestampStartingSec)
        TaskRecord.at(control).record_state(st.LAUNCHED, st.step_started(0),
                                            f"dendro job {job.jobId} {job.status}{host}", when, by=DENDRO)

    def _complete(self, key: str, record: dict[str, Any], job: DendroJob, client: DendroClient) -> None:
        """Download the outputs, record the output variables, then the completed marker."""
        control = self._control(key)
        doc = self._doc(key) or {"outputs": []}
        output_dir = self.instance.output_dir(key)
        urls = {r.name: r.url for r in job.outputFileResults}
        files = [(o["name"], output_dir / o["path"]) for o in doc["outputs"] if o["kind"] == "file"]
        var_specs = {o["name"]: o["type"] for o in doc["outputs"] if o["kind"] == "var"}
        if var_specs:
            files.append((OUTPUT_VARS_OUTPUT, control / ".dendro-output-vars.json"))
        for name, path in files:
            if not urls.get(name):
                raise _Incomplete(f"dendro job {job.jobId} has no output {name!r}")
            _download(client, urls[name], path)
        if var_specs:
            values = self._output_vars(job, control / ".dendro-output-vars.json", var_specs)
            TaskRecord.at(control).write_output_vars(values)
        _download_console(client, job, control / "out.log")
        record.update(status="completed", finished_at=time.time())
        write_record(control, record)
        self._started(control, record, job)
        marker = st.read_state(str(control))
        origin = " (from the Dendro cache)" if record.get("cache_hit") else ""
        when = None if record.get("cache_hit") else job.timestampFinishedSec
        if st.is_in_flight(marker) and TaskRecord.at(control).record_state(
                marker, st.COMPLETED, f"dendro job {job.jobId}{origin}", when, by=DENDRO):
            log.info("task %s: dendro job %s completed%s", key, job.jobId, origin)

    def _output_vars(self, job: DendroJob, path: Path, types: dict[str, str]) -> dict[str, str]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise _Incomplete(f"output {OUTPUT_VARS_OUTPUT} of dendro job {job.jobId} is not JSON: {e}") from None
        finally:
            path.unlink(missing_ok=True)
        if not isinstance(data, dict):
            raise _Incomplete(f"output {OUTPUT_VARS_OUTPUT} of dendro job {job.jobId} is not a JSON object")
        missing = sorted(set(types) - set(data))
        if missing:
            raise _Incomplete(f"dendro job {job.jobId} did not set output variable(s) {', '.join(missing)}")
        values = {}
        for name, type_name in types.items():
            text = format_var(data[name])
            try:
                parse_var(text, type_name)
            except ValueError:
                raise _Incomplete(f"output variable {name} = {text!r} of dendro job {job.jobId} is not "
                                  f"a {type_name}") from None
            values[name] = text
        return values

    def _record_failure(self, key: str, record: dict[str, Any], job: DendroJob, client: DendroClient,
                        error: str | None = None) -> None:
        """Console output into out.log, then failed.0 (killed.0 if canceled, timed-out.0)."""
        control = self._control(key)
        error = error or job.error or "failed with no error message"
        if job.canceled or error == "canceled":
            outcome = "killed"
        elif error.startswith("timed out"):
            outcome = "timed-out"
        else:
            outcome = "failed"
        cached = ""
        if record.get("cache_hit") and not error.startswith("upstream job"):
            cached = (" (a job with the same definition failed before: from the Dendro cache; "
                      "--restart-failed or --reset-failed runs it again)")
        _download_console(client, job, control / "out.log")
        with open(control / "out.log", "a") as f:
            f.write(f"drypipe: task {key}: dendro job {job.jobId} failed: {error}{cached}\n")
        record.update(status="killed" if outcome == "killed" else "failed", error=error, finished_at=time.time())
        write_record(control, record)
        if job.timestampStartedSec:
            self._started(control, record, job)
        marker = st.read_state(str(control))
        if st.is_terminal(marker) or marker is None:
            return
        new = f"{outcome}.0"
        reason = f"dendro job {job.jobId} failed: {error}{cached}"
        if TaskRecord.at(control).record_state(marker, new, reason, by=DENDRO):
            log.info("task %s: %s: dendro job %s: %s", key, new, job.jobId, error)

    # -- kill --------------------------------------------------------------------------------------

    def kill(self, tasks: list[TaskRun]) -> None:
        """cancelJob for each task's job (the compute resource stops it), then killed.0."""
        for task in tasks:
            control = task.control_dir
            record = read_record(control)
            if record is not None:
                try:
                    self._recorded_client(task.task_conf, record).cancel_job(record["job_id"])
                except DendroApiError as e:  # e.g. a cached job of another user: it goes on for them
                    log.warning("task %s: cannot cancel dendro job %s: %s", task.key, record["job_id"], e)
                record.update(status="killed", finished_at=time.time())
                write_record(control, record)
            marker = st.read_state(str(control))
            job = f"dendro job {record['job_id']} canceled" if record else "no dendro job"
            if st.is_in_flight(marker):
                TaskRecord.at(control).record_state(marker, st.killed(0), job, by=DENDRO)


class _Incomplete(Exception):
    """A completed job whose outputs could not be brought back (yet)."""


def _check_call(key: str, doc: dict[str, Any], settings: Settings) -> None:
    """A `dendro_call(...)` step must name the TaskConf's processor (it is what the signature sees)."""
    for step in doc.get("steps", []):
        code = step.get("code") or ""
        for line in code.splitlines():
            if line.startswith(_CALL_MARKER):
                named = line[len(_CALL_MARKER):]
                expected = f"{settings.app}, processor {settings.processor}"
                if named != expected:
                    raise UserError(f"task {key}: its calls(dendro_call(...)) names app {named}, but its TaskConf "
                                    f"names app {expected}")


def _download(client: DendroClient, url: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.download")
    try:
        client.api.download(url, str(tmp))
        os.replace(tmp, path)
    except (DendroApiError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise _Incomplete(f"cannot download {url}: {e}") from None
    except Exception as e:  # noqa: BLE001 - requests errors (connection reset ...)
        tmp.unlink(missing_ok=True)
        raise _Incomplete(f"cannot download {url}: {type(e).__name__}: {e}") from None


def _download_console(client: DendroClient, job: DendroJob, out_log: Path) -> None:
    """Append the job's console output to out.log (best effort: a job that never ran has none)."""
    if not job.consoleOutputUrl:
        return
    tmp = out_log.with_name(".out.log.download")
    try:
        client.api.download(job.consoleOutputUrl, str(tmp))
        with open(out_log, "ab") as out, open(tmp, "rb") as console:
            out.write(console.read())
    except Exception as e:  # noqa: BLE001 - 404 when the job never ran, network errors
        log.debug("console output of dendro job %s: %s", job.jobId, e)
    finally:
        tmp.unlink(missing_ok=True)
