"""Submitter-side Dendro client: `submit_job`, job handles, lookups and cancellation.

Same arguments and behaviour as `dendro.client`, except that the service URL and API key
can be passed explicitly (else `DENDRO_API_URL` / `DENDRO_API_KEY`, read at call time).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

from dendro_bridge.api import ApiTransport, env_setting
from dendro_bridge.model import (
    DendroJob as DendroJobRecord,
)
from dendro_bridge.model import (
    DendroJobDefinition,
    DendroJobInputFile,
    DendroJobOutputFile,
    DendroJobRequiredResources,
    SpecialJobOutput,
)

_POLL_MIN_ENV = "DENDRO_POLL_MIN_SEC"
_POLL_MAX_ENV = "DENDRO_POLL_MAX_SEC"


class DendroClientError(RuntimeError):
    """A client-side refusal (missing key, unsubmitted upstream, unknown output ...)."""


class DendroClient:
    """A connection to one Dendro service with one user API key."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None):
        self.api = ApiTransport(base_url)
        self.api_key = api_key or env_setting("API_KEY")

    def _require_key(self) -> str:
        if not self.api_key:
            raise DendroClientError("DENDRO_API_KEY is not set (pass api_key= or export it)")
        return self.api_key

    def submit_job(
        self,
        *,
        service_name: str,
        job_definition: DendroJobDefinition,
        required_resources: DendroJobRequiredResources,
        target_compute_client_ids: list[str] | None = None,
        tags: list[str] | None = None,
        skip_cache: bool = False,
        rerun_failing: bool = False,
        delete_failing: bool = False,
        batch_id: str = "",
    ) -> DendroJob:
        """Create a job, or return the cached one with the same definition (docs/dendro.md)."""
        key = self._require_key()
        definition, dependencies = _resolve_inputs(job_definition)
        body = {
            "serviceName": service_name,
            "userId": "",
            "batchId": batch_id,
            "tags": list(tags or []),
            "jobDefinition": definition.to_wire(),
            "requiredResources": required_resources.to_wire(),
            "secrets": [],
            "jobDependencies": dependencies,
            "skipCache": skip_cache,
            "rerunFailing": rerun_failing,
            "deleteFailing": delete_failing,
            # The service never offers a job without targets to any compute client.
            "targetComputeClientIds": target_compute_client_ids or ["*"],
        }
        job = self._job(self.api.post("createJob", body, token=key)["job"])
        for output in job_definition.outputFiles:
            output._special_job_output = job.get_output(output.name)
        return job

    def get_job(self, job_id: str) -> DendroJob | None:
        resp = self.api.post("getJob", {"jobId": job_id, "includePrivateKey": False})
        return self._job(resp["job"]) if resp.get("job") else None

    def find_jobs(
        self,
        *,
        service_name: str | None = None,
        batch_id: str | None = None,
        tags: list[str] | None = None,
        status: str | None = None,
        app_name: str | None = None,
        processor_name: str | None = None,
        user_id: str | None = None,
        job_id: str | None = None,
        compute_client_id: str | None = None,
        input_file_url: str | None = None,
        output_file_url: str | None = None,
        limit: int | None = None,
    ) -> list[DendroJob]:
        """All jobs matching every given filter, in one request (e.g. a whole batch)."""
        filters = {
            "serviceName": service_name, "batchId": batch_id, "tags": tags, "status": status,
            "appName": app_name, "processorName": processor_name, "userId": user_id, "jobId": job_id,
            "computeClientId": compute_client_id, "inputFileUrl": input_file_url,
            "outputFileUrl": output_file_url, "limit": limit,
        }
        resp = self.api.post("findJobs", {k: v for k, v in filters.items() if v is not None})
        return [self._job(j) for j in resp["jobs"]]

    def find_job_by_definition(self, service_name: str, job_definition: DendroJobDefinition) -> DendroJob | None:
        definition, _ = _resolve_inputs(job_definition)
        resp = self.api.post("findJobByDefinition",
                             {"serviceName": service_name, "jobDefinition": definition.to_wire()})
        return self._job(resp["job"]) if resp.get("found") else None

    def cancel_job(self, job_id: str) -> None:
        """Stop a job: pending jobs never start; running ones are killed by their compute client."""
        self.api.post("cancelJob", {"jobId": job_id}, token=self._require_key())

    def _job(self, data: dict[str, Any]) -> DendroJob:
        job = DendroJob.from_wire(data)
        job._client = self
        return job


@dataclass
class DendroJob(DendroJobRecord):
    """A job returned by the service, bound to the client that fetched it."""

    _client: DendroClient | None = field(default=None, repr=False, compare=False)

    @property
    def job_url(self) -> str:
        base = self._client.api.base_url if self._client else ""
        return f"{base}/job/{self.jobId}"

    def get_output(self, name: str) -> SpecialJobOutput:
        """Reference to an output, usable as a downstream input `url` before this job has run."""
        for result in self.outputFileResults:
            if result.name == name:
                return SpecialJobOutput(job_id=self.jobId, output_name=name, url=result.url)
        raise DendroClientError(f"job {self.jobId} has no output named {name!r}")

    def refresh(self) -> DendroJob:
        fresh = self._bound_client().get_job(self.jobId)
        if fresh is None:
            raise DendroClientError(f"job {self.jobId} no longer exists")
        self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "_client"})
        return self

    def wait_until_done(self, wait_sec: float | None = None) -> DendroJob:
        """Poll until completed or failed; the interval grows from DENDRO_POLL_MIN_SEC (2 s)
        to DENDRO_POLL_MAX_SEC (300 s).  Raises TimeoutError after `wait_sec`."""
        interval = float(os.environ.get(_POLL_MIN_ENV, "2"))
        max_interval = float(os.environ.get(_POLL_MAX_ENV, "300"))
        deadline = None if wait_sec is None else time.monotonic() + wait_sec
        while self.refresh().status not in ("completed", "failed"):
            if deadline is not None and time.monotonic() + interval > deadline:
                raise TimeoutError(f"job {self.jobId} is still {self.status} after {wait_sec} s")
            time.sleep(interval)
            interval = min(interval * 1.5, max_interval)
        return self

    def cancel(self) -> None:
        self._bound_client().cancel_job(self.jobId)

    def _bound_client(self) -> DendroClient:
        if self._client is None:
            raise DendroClientError("this job is not bound to a client")
        return self._client


def _resolve_inputs(definition: DendroJobDefinition) -> tuple[DendroJobDefinition, list[str]]:
    """Replace upstream-output references by their URLs; return the upstream job ids."""
    inputs: list[DendroJobInputFile] = []
    dependencies: list[str] = []
    for inp in definition.inputFiles:
        ref = inp.url
        if isinstance(ref, DendroJobOutputFile):
            if ref._special_job_output is None:
                raise DendroClientError(
                    f"input {inp.name!r} uses output {ref.name!r} of a job that was not submitted first")
            ref = ref._special_job_output
        if isinstance(ref, SpecialJobOutput):
            if ref.job_id not in dependencies:
                dependencies.append(ref.job_id)
            inp = replace(inp, url=ref.url)
        inputs.append(inp)
    return replace(definition, inputFiles=inputs), dependencies


def submit_job(
    *,
    service_name: str,
    job_definition: DendroJobDefinition,
    required_resources: DendroJobRequiredResources,
    target_compute_client_ids: list[str] | None = None,
    tags: list[str] | None = None,
    skip_cache: bool = False,
    rerun_failing: bool = False,
    delete_failing: bool = False,
    batch_id: str = "",
    base_url: str | None = None,
    api_key: str | None = None,
) -> DendroJob:
    """`dendro.client.submit_job`, plus optional `base_url`, `api_key` and `batch_id`."""
    return DendroClient(base_url, api_key).submit_job(
        service_name=service_name, job_definition=job_definition, required_resources=required_resources,
        target_compute_client_ids=target_compute_client_ids, tags=tags, skip_cache=skip_cache,
        rerun_failing=rerun_failing, delete_failing=delete_failing, batch_id=batch_id)


def find_jobs(*, base_url: str | None = None, **filters: Any) -> list[DendroJob]:
    """Module-level `DendroClient.find_jobs` (no API key needed)."""
    return DendroClient(base_url).find_jobs(**filters)
