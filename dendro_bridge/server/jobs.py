"""Job lifecycle on the service: creation with cache semantics, status transitions, and
propagation to dependents (runnable on upstream completion, failed on upstream failure)."""
from __future__ import annotations

import secrets
import string
from typing import Any

from dendro_bridge.api import redact_signed_urls
from dendro_bridge.appspec import check_definition, find_processor
from dendro_bridge.hash import canonical_definition, job_definition_hash
from dendro_bridge.model import DendroJobDefinition, DendroJobRequiredResources, ValidationError
from dendro_bridge.server.registry import ApiError, Context, user_has_right

_ALNUM = string.ascii_letters + string.digits
# Allowed setJobStatus transitions; 'pending -> failed' happens only inside the service.
TRANSITIONS = {"pending": {"starting"}, "starting": {"running", "failed"}, "running": {"completed", "failed"}}
# Storage folders of a job that outputs must not shadow.
_RESERVED_OUTPUT_NAMES = {"console_output", "resource_utilization_log", "other"}


def random_id(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def public_view(job: dict[str, Any]) -> dict[str, Any]:
    """A job as submitters see it: no private key, no secrets."""
    return {**job, "jobPrivateKey": None, "secrets": None}


def runner_view(job: dict[str, Any]) -> dict[str, Any]:
    """A job as whoever runs it sees it by default: the private key, but no secrets."""
    return {**job, "secrets": None}


def open_to_any_runner(job: dict[str, Any]) -> bool:
    """Untargeted jobs (no targets, or '*') may be run without a compute client."""
    targets = job["targetComputeClientIds"] or []
    return not targets or "*" in targets


def job_folder(job: dict[str, Any]) -> str:
    d = job["jobDefinition"]
    return f"{job['serviceName']}/{d['appName']}/{d['processorName']}/{job['jobId']}"


def create_job(ctx: Context, user: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
    """createJob: validate, then return the cached job or a new pending one (docs/dendro.md)."""
    # The service's order of checks and status codes: the request's shape (400), the key
    # (401), the service (400), the right to create jobs (401), the app and processor (400).
    definition = DendroJobDefinition.from_wire(req["jobDefinition"]).to_wire()
    resources = DendroJobRequiredResources.from_wire(req["requiredResources"]).to_wire()
    if req["userId"] not in ("", user["userId"]):
        raise ApiError(401, "userId does not match the API key")
    service = ctx.db.service(req["serviceName"])
    if service is None:
        raise ApiError(400, f"Service not found: {req['serviceName']}")
    if not user_has_right(service, user["userId"], "createJobs"):
        raise ApiError(401, f"user {user['userId']} may not create jobs on service {service['serviceName']}")
    app = ctx.db.app(service["serviceName"], definition["appName"])
    if app is None:
        raise ApiError(400, f"Service app not found: {definition['appName']}")
    processor = find_processor(app["appSpecification"], definition["processorName"])
    if processor is None:
        raise ApiError(400, f"Processor not found in app: {definition['processorName']}")
    check_definition(processor, definition)
    for out in definition["outputFiles"]:
        if out["name"] in _RESERVED_OUTPUT_NAMES:
            raise ValidationError(f"output name {out['name']!r} is reserved")
    found = [ctx.db.job(j) for j in req["jobDependencies"]]
    upstream = [j for j in found if j is not None]
    if len(upstream) != len(found):
        raise ValidationError("jobDependencies names a job that does not exist")

    # The service sorts the definition's lists in place to hash it, so jobs carry them sorted.
    definition = canonical_definition(definition)
    definition_hash = job_definition_hash(definition)
    if not req.get("skipCache"):
        cached = ctx.db.latest_job_with_hash(service["serviceName"], definition_hash)
        if cached is not None and not (cached["status"] == "failed" and req.get("rerunFailing")):
            cached["tags"] = cached["tags"] + [t for t in req["tags"] if t not in cached["tags"]]
            cached["timestampUpdatedSec"] = ctx.now
            ctx.db.put_job(cached)
            return cached
        if cached is not None and req.get("deleteFailing"):
            ctx.db.delete_job(cached)

    job = _new_job(ctx, user, req, definition, resources, definition_hash)
    failed_upstream = next((u for u in upstream if u["status"] == "failed"), None)
    if failed_upstream is not None:
        _finish(job, "failed", _upstream_error(failed_upstream), ctx.now)
    ctx.db.put_job(job)
    ctx.db.add_dependencies(job["jobId"], req["jobDependencies"])
    return job


def _new_job(ctx: Context, user: dict[str, Any], req: dict[str, Any], definition: dict[str, Any],
             resources: dict[str, Any], definition_hash: str) -> dict[str, Any]:
    job: dict[str, Any] = {
        "jobId": random_id(20), "jobPrivateKey": random_id(32), "serviceName": req["serviceName"],
        "userId": user["userId"], "batchId": req["batchId"], "tags": list(req["tags"]),
        "jobDefinition": definition, "jobDefinitionHash": definition_hash,
        "jobDependencies": list(req["jobDependencies"]), "requiredResources": resources,
        "targetComputeClientIds": req.get("targetComputeClientIds"), "secrets": req["secrets"],
        "inputFileUrlList": [f["url"] for f in definition["inputFiles"]], "outputFileUrlList": [],
        "timestampCreatedSec": ctx.now, "timestampStartingSec": None, "timestampStartedSec": None,
        "timestampFinishedSec": None, "timestampUpdatedSec": ctx.now,
        "canceled": False, "status": "pending", "isRunnable": False, "error": None,
        "computeClientId": None, "computeClientName": None, "computeClientUserId": None, "imageUri": None,
    }
    folder = job_folder(job)
    # Output URLs are fixed now, so dependents can be submitted before this job runs.
    job["outputFileResults"] = [
        {"name": o["name"], "fileBaseName": o["fileBaseName"], "size": None,
         "url": "" if o.get("urlDeterminedAtRuntime") else ctx.signer.url(f"{folder}/{o['name']}/{o['fileBaseName']}")}
        for o in definition["outputFiles"]]
    job["consoleOutputUrl"] = ctx.signer.url(f"{folder}/console_output/output.txt")
    job["resourceUtilizationLogUrl"] = ctx.signer.url(f"{folder}/resource_utilization_log/log.jsonl")
    job["isRunnable"] = _all_completed(ctx, req["jobDependencies"])
    return job


def _all_completed(ctx: Context, job_ids: list[str]) -> bool:
    return all((ctx.db.job(j) or {}).get("status") == "completed" for j in job_ids)


def _upstream_error(upstream: dict[str, Any]) -> str:
    return f"upstream job {upstream['jobId']} failed: {upstream['error'] or 'no error message'}"


def _finish(job: dict[str, Any], status: str, error: str | None, now: float) -> None:
    job.update(status=status, error=error, timestampFinishedSec=now, timestampUpdatedSec=now)


def set_status(ctx: Context, job: dict[str, Any], status: str, error: str | None = None) -> None:
    """Apply a transition of TRANSITIONS and propagate it to dependent jobs."""
    if status not in TRANSITIONS.get(job["status"], set()):
        raise ApiError(400, f"job {job['jobId']} is {job['status']}; cannot set it to {status}")
    if status == "completed" and error:
        raise ApiError(400, "Error should not be set for completed job")
    if status == "failed" and not error:
        raise ApiError(400, "Error must be set for failed job")
    job["timestampUpdatedSec"] = ctx.now
    if status == "starting":
        job.update(status="starting", timestampStartingSec=ctx.now)
    elif status == "running":
        job.update(status="running", timestampStartedSec=ctx.now)
    elif status == "completed":
        _record_outputs(ctx, job)
        _finish(job, "completed", None, ctx.now)
    else:
        # Error text comes from the runner and may quote a signed URL: never store a signature.
        _finish(job, "failed", redact_signed_urls(error or ""), ctx.now)
    ctx.db.put_job(job)
    if status == "completed":
        _update_runnable(ctx, job)
    elif status == "failed":
        fail_dependents(ctx, job)


def _record_outputs(ctx: Context, job: dict[str, Any]) -> None:
    """Fill in output sizes; a job cannot complete without all its outputs."""
    for result in job["outputFileResults"]:
        key = ctx.signer.key_of(result["url"])
        size = ctx.objects.size(key) if key is not None else None
        if result["url"] == "" or (key is not None and size is None):
            raise ApiError(409, f"output {result['name']!r} of job {job['jobId']} was not uploaded")
        result["size"] = size
    job["outputFileUrlList"] = [r["url"] for r in job["outputFileResults"]] + \
        [o["url"] for o in job.get("otherFileOutputs") or []]


def _update_runnable(ctx: Context, upstream: dict[str, Any]) -> None:
    for job in ctx.db.pending_dependents(upstream["jobId"]):
        if _all_completed(ctx, job["jobDependencies"]):
            job.update(isRunnable=True, timestampUpdatedSec=ctx.now)
            ctx.db.put_job(job)


def fail_dependents(ctx: Context, upstream: dict[str, Any]) -> None:
    """Fail every pending job downstream of a failed job (the hosted service leaves them
    pending for ever)."""
    queue = [upstream]
    while queue:
        failed = queue.pop()
        for job in ctx.db.pending_dependents(failed["jobId"]):
            _finish(job, "failed", _upstream_error(failed), ctx.now)
            ctx.db.put_job(job)
            queue.append(job)


def cancel_job(ctx: Context, job: dict[str, Any]) -> None:
    """Mark a job canceled and failed; its compute client sees that and kills the process."""
    job["canceled"] = True
    if job["status"] in ("completed", "failed"):
        job["timestampUpdatedSec"] = ctx.now
        ctx.db.put_job(job)
        return
    _finish(job, "failed", "canceled", ctx.now)
    ctx.db.put_job(job)
    fail_dependents(ctx, job)
