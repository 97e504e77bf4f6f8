"""Endpoints for compute clients (client key) and for running jobs (job private key)."""
from __future__ import annotations

import re
from typing import Any

from dendro_bridge.model import is_bool, is_int, is_str, is_str_list
from dendro_bridge.server import jobs
from dendro_bridge.server.registry import ApiError, Context, endpoint, user_has_right
from dendro_bridge.server.slots import select_jobs

_UPLOAD_TYPES = ("output", "consoleOutput", "resourceUtilizationLog", "other")
# The SDK's monitors upload these logs once more after the job has ended.
_LOG_UPLOAD_STATUSES = ("starting", "running", "completed", "failed")
# An `other` upload's name: up to 6 '/'-separated parts of 1-64 characters, each dot-separated
# runs of letters, digits, '_' and '-' (as the service checks it).
_OTHER_NAME_PART = re.compile(r"^[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*$")
_MAX_OTHER_SIZE = 1024 ** 3 + 10


def is_valid_other_name(name: str) -> bool:
    parts = name.split("/")
    return 0 < len(parts) <= 6 and all(0 < len(p) <= 64 and _OTHER_NAME_PART.match(p) for p in parts)


def _offered_to(client: dict[str, Any], job: dict[str, Any]) -> bool:
    targets = job["targetComputeClientIds"] or []  # null targets are never offered, as upstream
    users = client.get("processJobsForUsers")
    return ("*" in targets or client["computeClientId"] in targets) and (not users or job["userId"] in users)


@endpoint("getRunnableJobsForComputeClient", required={"computeClientId": is_str},
          optional={"jobId": is_str, "singleJob": is_bool, "appNames": is_str_list})
def get_runnable_jobs(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """Runnable jobs that fit the client's free slots; `appNames` (an extension of this
    service) restricts them to the apps the client can run."""
    client = ctx.compute_client(req["computeClientId"])
    running = ctx.db.active_jobs_of_client(client["computeClientId"])
    candidates = []
    for service_name in client["serviceNames"]:
        service = ctx.db.service(service_name)
        if service is None or not user_has_right(service, client["userId"], "processJobs"):
            continue
        candidates += [j for j in ctx.db.runnable_jobs(service_name) if _offered_to(client, j)]
    if "appNames" in req:
        candidates = [j for j in candidates if j["jobDefinition"]["appName"] in req["appNames"]]
    if "jobId" in req:
        # A job asked for by id (`dendro run-pending-job`) is not held back by slot capacity.
        selected = [j for j in candidates if j["jobId"] == req["jobId"]]
    else:
        selected = select_jobs(client["computeSlots"], running, candidates)
    if req.get("singleJob"):
        selected = selected[:1]
    return {"runnableJobs": [jobs.runner_view(j) for j in selected],
            "runningJobs": [jobs.runner_view(j) for j in running]}


@endpoint("setJobStatus", write=True, required={"jobId": is_str, "computeClientId": is_str, "status": is_str},
          optional={"error": is_str})
def set_job_status(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """`computeClientId: ""` is a job run without a compute client (`dendro run-pending-job`
    by a user, who got the job's key from getRunnableJob)."""
    job = ctx.job_for_key(req["jobId"])
    client = ctx.db.compute_client(req["computeClientId"]) if req["computeClientId"] else None
    if req["computeClientId"] and client is None:
        raise ApiError(404, f"no compute client {req['computeClientId']}")
    if req["status"] == "starting":
        # The claim: the transaction holds the write lock, so exactly one claimant sees 'pending'.
        if job["status"] != "pending" or not job["isRunnable"]:
            raise ApiError(400, f"Trying to start job. Job {job['jobId']} is {job['status']} and cannot be claimed")
        if not _may_claim(ctx, client, job):
            raise ApiError(401, f"this compute client may not process job {job['jobId']}")
        job.update(computeClientId=req["computeClientId"],
                   computeClientName=client["computeClientName"] if client else "",
                   computeClientUserId=client["userId"] if client else None)
    elif job["computeClientId"] != req["computeClientId"]:
        raise ApiError(401, f"job {job['jobId']} belongs to another compute client")
    jobs.set_status(ctx, job, req["status"], req.get("error"))
    return {}


def _may_claim(ctx: Context, client: dict[str, Any] | None, job: dict[str, Any]) -> bool:
    if client is None:
        return jobs.open_to_any_runner(job)
    service = ctx.db.service(job["serviceName"])
    return _offered_to(client, job) and job["serviceName"] in client["serviceNames"] \
        and service is not None and user_has_right(service, client["userId"], "processJobs")


def _active_job(ctx: Context, job_id: str, statuses: tuple[str, ...] = ("starting", "running")) -> dict[str, Any]:
    job = ctx.job_for_key(job_id)
    if job["status"] not in statuses:
        raise ApiError(409, f"job {job_id} is {job['status']}")
    return job


@endpoint("getSignedUploadUrl", write=True, required={"jobId": is_str, "uploadType": is_str, "size": is_int},
          optional={"outputName": is_str, "otherName": is_str})
def get_signed_upload_url(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """Uploads above 1000 MiB use one URL too: this service has no multipart uploads."""
    kind = req["uploadType"]
    job = _active_job(ctx, req["jobId"], _LOG_UPLOAD_STATUSES if kind in ("consoleOutput", "resourceUtilizationLog")
                      else ("starting", "running"))
    folder = jobs.job_folder(job)
    if kind == "output":
        result = next((r for r in job["outputFileResults"] if r["name"] == req.get("outputName")), None)
        output_key = None if result is None else ctx.signer.key_of(result["url"])
        if output_key is None:
            raise ApiError(400, f"job {job['jobId']} has no uploadable output {req.get('outputName')!r}")
        key = output_key
    elif kind == "consoleOutput":
        key = f"{folder}/console_output/output.txt"
    elif kind == "resourceUtilizationLog":
        key = f"{folder}/resource_utilization_log/log.jsonl"
    elif kind == "other":
        key = _other_file_key(ctx, job, folder, req)
    else:
        raise ApiError(400, f"uploadType must be one of {', '.join(_UPLOAD_TYPES)}")
    return {"signedUrl": ctx.signer.sign("PUT", key), "downloadUrl": ctx.signer.url(key)}


def _other_file_key(ctx: Context, job: dict[str, Any], folder: str, req: dict[str, Any]) -> str:
    """Record an `other` output of the job (`otherFileOutputs`) and return its object key."""
    name = req.get("otherName")
    if not name:
        raise ApiError(400, "Must specify otherName")
    if not is_valid_other_name(name):
        raise ApiError(400, "Invalid otherName")
    if req["size"] > _MAX_OTHER_SIZE:
        raise ApiError(400, "File size too large")
    others = job.get("otherFileOutputs") or []
    if any(o["name"] == name for o in others):
        raise ApiError(400, "Other file already exists")
    key = f"{folder}/other/{name}"
    job["otherFileOutputs"] = [*others, {"name": name, "url": ctx.signer.url(key)}]
    job["timestampUpdatedSec"] = ctx.now
    ctx.db.put_job(job)
    return key


@endpoint("setOutputFileUrl", write=True, required={"jobId": is_str, "outputName": is_str, "url": is_str})
def set_output_file_url(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    job = ctx.job_for_key(req["jobId"])
    if job["status"] != "running":
        raise ApiError(409, f"job {job['jobId']} is {job['status']}, not running")
    outputs = {o["name"]: o for o in job["jobDefinition"]["outputFiles"]}
    output = outputs.get(req["outputName"])
    if output is None or not output.get("urlDeterminedAtRuntime"):
        raise ApiError(400, f"output {req['outputName']!r} is not determined at runtime")
    result = next(r for r in job["outputFileResults"] if r["name"] == req["outputName"])
    if result["url"]:
        raise ApiError(409, f"the url of output {req['outputName']!r} is already set")
    result["url"] = req["url"]
    job["timestampUpdatedSec"] = ctx.now
    ctx.db.put_job(job)
    return {}


@endpoint("getSignedDownloadUrl", required={"jobId": is_str, "url": is_str})
def get_signed_download_url(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """Signs the job's own inputs on this service's storage; URLs elsewhere are returned as
    they are (there is nothing to sign)."""
    job = _active_job(ctx, req["jobId"])
    key = ctx.signer.key_of(req["url"])
    if key is None:
        return {"signedUrl": req["url"]}
    # A job key must not become a read credential for every object of the service.
    if req["url"] not in (f["url"] for f in job["jobDefinition"]["inputFiles"]):
        raise ApiError(403, f"{req['url']} is not an input of job {job['jobId']}")
    return {"signedUrl": ctx.signer.sign("GET", key)}
