"""The compute resource loop: poll for runnable jobs of the local apps, claim them, run each
in a thread, and kill the ones the service has failed meanwhile (e.g. canceled)."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dendro_bridge.api import DendroApiError
from dendro_bridge.compute.api import ComputeApi
from dendro_bridge.compute.runner import ProcessorRunner, SubprocessRunner
from dendro_bridge.compute.worker import JobRun, LocalApp, is_safe_path_part, run_job

log = logging.getLogger("dendro_bridge.compute")


@dataclass
class _Active:
    thread: threading.Thread
    cancel: threading.Event


@dataclass
class ComputeResource:
    api: ComputeApi
    apps: dict[str, LocalApp]
    work_dir: Path
    runner: ProcessorRunner = field(default_factory=SubprocessRunner)
    poll_interval_sec: float = 5.0
    exit_when_idle: bool = False
    single_job: bool = False
    keep_work_dirs: bool = False

    def __post_init__(self) -> None:
        self._active: dict[str, _Active] = {}
        self._wake = threading.Event()  # set when a job finishes, to poll again at once
        self._stop = threading.Event()
        self.jobs_started = 0

    def shutdown(self) -> None:
        """Stop polling and stop the running jobs (they are reported failed)."""
        self._stop.set()
        self._wake.set()
        for active in list(self._active.values()):
            active.cancel.set()
            active.thread.join()

    def run(self) -> None:
        """Loop until stopped; with exit_when_idle / single_job, until there is nothing to do."""
        while not self._stop.is_set():
            self._wake.clear()
            self._reap()
            try:
                runnable, running = self.api.runnable_jobs(sorted(self.apps))
                self._cancel_failed_jobs({j["jobId"] for j in running})
                started = self._start_jobs(runnable)
            except DendroApiError as e:
                log.warning("%s", e)
                started = 0
            if not self._active and not started and (self.exit_when_idle or self.single_job):
                break
            self._wake.wait(self.poll_interval_sec)
        for active in self._active.values():
            active.thread.join()

    def _reap(self) -> None:
        for job_id in [j for j, a in self._active.items() if not a.thread.is_alive()]:
            del self._active[job_id]

    def _cancel_failed_jobs(self, running_ids: set[str]) -> None:
        """A local job that the service no longer lists as ours and running was failed by
        the service (canceled, or failed upstream); stop its process."""
        for job_id, active in self._active.items():
            if job_id in running_ids or active.cancel.is_set():
                continue
            job = self.api.get_job(job_id)
            if job is None or job["status"] == "failed":
                log.info("job %s was %s; stopping it", job_id, "deleted" if job is None else job["error"])
                active.cancel.set()

    def _start_jobs(self, runnable: list[dict[str, Any]]) -> int:
        started = 0
        for job in runnable:
            if self.single_job and self.jobs_started >= 1:
                break
            if not is_safe_path_part(job["jobId"]):  # it names the job's working directory
                log.warning("ignoring job with unsafe id %r", job["jobId"])
                continue
            if job["jobId"] in self._active or not self.api.claim(job):
                continue
            definition = job["jobDefinition"]
            log.info("claimed job %s (%s/%s)", job["jobId"], definition["appName"], definition["processorName"])
            run = JobRun(job=job, app=self.apps[definition["appName"]], work_dir=self.work_dir / job["jobId"],
                         api=self.api.clone(), runner=self.runner, cancel=threading.Event(),
                         keep_work_dir=self.keep_work_dirs)
            thread = threading.Thread(target=self._run_and_wake, args=(run,), name=f"job-{job['jobId']}")
            self._active[job["jobId"]] = _Active(thread, run.cancel)
            thread.start()
            self.jobs_started += 1
            started += 1
        return started

    def _run_and_wake(self, run: JobRun) -> None:
        try:
            run_job(run)
        finally:
            self._wake.set()
