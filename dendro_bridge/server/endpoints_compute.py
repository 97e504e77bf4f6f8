"""Endpoints for compute clients (client key) and for running jobs (job private key)."""
from __future__ import annotations

from typing import Any

from dendro_bridge.model import is_bool, is_int, is_safe_segment, is_str, is_str_list
from dendro_bridge.server import jobs
from dendro_bridge.server.registry import ApiError, Context, endpoint, user_has_right
from dendro_bridge.server.slots import select_jobs

_UPLOAD_TYPES = ("output", "consoleOutput", "resourceUtilizationLog", "other")


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
    if "jobId" in req:
        candidates = [j for j in candidates if j["jobId"] == req["jobId"]]
    if "appNames" in req:
        candidates = [j for j in candidates if j["jobDefinition"]["appName"] in req["appNames"]]
    selected = select_jobs(client["computeSlots"], running, candidates)
    if req.get("singleJob"):
        selected = selected[:1]
    return {"runnableJobs": selected, "runningJobs": running}


@endpoint("setJobStatus", write=True, required={"jobId": is_str, "computeClientId": is_str, "status": is_str},
          optional={"error": is_str})
def set_job_status(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    job = ctx.job_for_key(req["jobId"])
    client = ctx.db.compute_client(req["computeClientId"])
    if client is None:
        raise ApiError(404, f"no compute client {req['computeClientId']}")
    if req["status"] == "starting":
        # The claim: the transaction holds the write lock, so exactly one claimant sees 'pending'.
        if job["status"] != "pending" or not job["isRunnable"] or not _offered_to(client, job) \
                or job["serviceName"] not in client["serviceNames"]:
            raise ApiError(409, f"job {job['jobId']} is {job['status']} and cannot be claimed")
        job.update(computeClientId=client["computeClientId"], computeClientName=client["computeClientName"],
                   computeClientUserId=client["userId"])
    elif job["computeClientId"] != client["computeClientId"]:
        raise ApiError(403, f"job {job['jobId']} belongs to another compute client")
    jobs.set_status(ctx, job, req["status"], req.get("error"))
    return {}


def _active_job(ctx: Context, job_id: str) -> dict[str, Any]:
    job = ctx.job_for_key(job_id)
    if job["status"] not in ("starting", "running"):
        raise ApiError(409, f"job {job_id} is {job['status']}")
    return job


@endpoint("getSignedUploadUrl", required={"jobId": is_str, "uploadType": is_str, "size": is_int},
          optional={"outputName": is_str, "otherName": is_str})
def get_signed_upload_url(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """Uploads above 1000 MiB use one URL too: this service has no multipart uploads."""
    job = _active_job(ctx, req["jobId"])
    folder, kind = jobs.job_folder(job), req["uploadType"]
    if kind == "output":
        result = next((r for r in job["outputFileResults"] if r["name"] == req.get("outputName")), None)
        if result is None or ctx.signer.key_of(result["url"]) is None:
            raise ApiError(400, f"job {job['jobId']} has no uploadable output {req.get('outputName')!r}")
        key = ctx.signer.key_of(result["url"])
    elif kind == "consoleOutput":
        key = f"{folder}/console_output/output.txt"
    elif kind == "resourceUtilizationLog":
        key = f"{folder}/resource_utilization_log/log.jsonl"
    elif kind == "other" and is_safe_segment(req.get("otherName")):
        key = f"{folder}/other/{req['otherName']}"
    else:
        raise ApiError(400, f"uploadType must be one of {', '.join(_UPLOAD_TYPES)} (other needs a safe otherName)")
    return {"signedUrl": ctx.signer.sign("PUT", key), "downloadUrl": ctx.signer.url(key)}


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
    """Signs URLs of this service's storage; other URLs are returned as they are."""
    _active_job(ctx, req["jobId"])
    key = ctx.signer.key_of(req["url"])
    return {"signedUrl": ctx.signer.sign("GET", key) if key is not None else req["url"]}
