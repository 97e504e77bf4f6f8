"""Endpoints for submitters and lookups: jobs, services, apps and compute clients."""
from __future__ import annotations

from typing import Any

from dendro_bridge.hash import job_definition_hash
from dendro_bridge.model import DendroJobDefinition, DendroJobRequiredResources, is_bool, is_int, is_str, is_str_list
from dendro_bridge.server import jobs
from dendro_bridge.server.registry import ApiError, Context, endpoint, user_has_right
from dendro_bridge.server.store import JOB_FILTER_COLUMNS


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_secrets(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(s, dict) and set(s) == {"name", "value"}
                                       and is_str(s["name"]) and is_str(s["value"]) for s in v)


@endpoint("createJob", write=True, required={
    "serviceName": is_str, "userId": is_str, "batchId": is_str, "tags": is_str_list,
    "jobDefinition": _is_dict, "requiredResources": _is_dict, "secrets": _is_secrets,
    "jobDependencies": is_str_list,
}, optional={
    "skipCache": is_bool, "rerunFailing": is_bool, "deleteFailing": is_bool, "targetComputeClientIds": is_str_list,
})
def create_job(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    if ctx.token is None:
        raise ApiError(400, "User API token must be provided")
    # The request's shape is checked before the key, as by the service.
    DendroJobDefinition.from_wire(req["jobDefinition"])
    DendroJobRequiredResources.from_wire(req["requiredResources"])
    return {"job": jobs.public_view(jobs.create_job(ctx, ctx.user(), req))}


@endpoint("getJob", required={"jobId": is_str, "includePrivateKey": is_bool}, optional={"computeClientId": is_str})
def get_job(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    job = ctx.db.job(req["jobId"])
    if job is None:
        return {}
    if req["includePrivateKey"]:
        client_id = req.get("computeClientId")
        if not client_id or job["computeClientId"] != client_id:
            raise ApiError(403, "the private key is only given to the job's compute client")
        client = ctx.compute_client(client_id)
        service = ctx.db.service(job["serviceName"])
        # Secrets go only to the client running the job, and only while its user may run it.
        allowed = service is not None and user_has_right(service, client["userId"], "processJobs")
        return {"job": job if allowed else jobs.runner_view(job)}
    return {"job": jobs.public_view(job)}


@endpoint("findJobByDefinition", required={"serviceName": is_str, "jobDefinition": _is_dict})
def find_job_by_definition(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    definition = DendroJobDefinition.from_wire(req["jobDefinition"])
    job = ctx.db.latest_job_with_hash(req["serviceName"], job_definition_hash(definition))
    return {"found": True, "job": jobs.public_view(job)} if job else {"found": False}


_FIND_FILTERS = {key: is_str for key in JOB_FILTER_COLUMNS}


@endpoint("findJobs", optional={**_FIND_FILTERS, "tags": is_str_list, "inputFileUrl": is_str,
                                "outputFileUrl": is_str, "limit": is_int})
def find_jobs(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    column_filters = {k: v for k, v in req.items() if k in JOB_FILTER_COLUMNS}
    doc_filters = {k: v for k, v in req.items() if k not in JOB_FILTER_COLUMNS and k != "limit"}
    limit = req.get("limit")
    # Filters on document contents are applied after the query, so the limit is applied last.
    found = ctx.db.find_jobs(column_filters, None if doc_filters else limit)
    found = [j for j in found if _matches(j, doc_filters)]
    return {"jobs": [jobs.public_view(j) for j in found[:limit]]}


def _matches(job: dict[str, Any], filters: dict[str, Any]) -> bool:
    if "tags" in filters and not set(filters["tags"]) <= set(job["tags"]):
        return False
    if "inputFileUrl" in filters and filters["inputFileUrl"] not in job["inputFileUrlList"]:
        return False
    outputs = [r["url"] for r in job["outputFileResults"]]
    return "outputFileUrl" not in filters or filters["outputFileUrl"] in outputs


@endpoint("cancelJob", write=True, required={"jobId": is_str})
def cancel_job(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    user, job = ctx.user(), ctx.job(req["jobId"])
    if job["userId"] != user["userId"]:
        raise ApiError(401, "only the job's owner may cancel it")
    jobs.cancel_job(ctx, job)
    return {}


@endpoint("deleteJobs", write=True, required={"userId": is_str, "jobIds": is_str_list})
def delete_jobs(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    user = ctx.user()
    if req["userId"] != user["userId"]:
        raise ApiError(403, "userId does not match the API key")
    for job_id in req["jobIds"]:
        job = ctx.job(job_id)
        if job["userId"] != user["userId"]:
            raise ApiError(403, f"job {job_id} belongs to another user")
        if job["status"] not in ("completed", "failed"):
            jobs.cancel_job(ctx, job)
        ctx.db.delete_job(job)
    return {}


@endpoint("getRunnableJob", required={"jobId": is_str})
def get_runnable_job(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """For `dendro run-pending-job`: any user with the processJobs right may run an untargeted job."""
    user, job = ctx.user(), ctx.job(req["jobId"])
    service = ctx.db.service(job["serviceName"])
    if service is None or not user_has_right(service, user["userId"], "processJobs"):
        raise ApiError(403, f"user {user['userId']} may not process jobs of service {job['serviceName']}")
    if not jobs.open_to_any_runner(job):
        raise ApiError(400, f"job {job['jobId']} is targeted to specific compute clients")
    if job["status"] != "pending" or not job["isRunnable"]:
        raise ApiError(409, f"job {job['jobId']} is not runnable")
    return {"job": jobs.runner_view(job)}


def _public_client(client: dict[str, Any]) -> dict[str, Any]:
    return {**client, "computeClientPrivateKey": None}


@endpoint("getService", required={"serviceName": is_str})
def get_service(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    service = ctx.db.service(req["serviceName"])
    if service is None:
        raise ApiError(404, f"no service {req['serviceName']}")
    return {"service": service}


@endpoint("getServices", optional={"userId": is_str})
def get_services(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    services = ctx.db.services()
    if "userId" in req:
        services = [s for s in services if s["userId"] == req["userId"]]
    return {"services": services}


@endpoint("getServiceApp", required={"serviceName": is_str, "appName": is_str})
def get_service_app(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    app = ctx.db.app(req["serviceName"], req["appName"])
    if app is None:
        raise ApiError(404, f"no app {req['appName']} on service {req['serviceName']}")
    return {"serviceApp": app}


@endpoint("getServiceApps", required={"serviceName": is_str})
def get_service_apps(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    return {"serviceApps": ctx.db.apps(req["serviceName"])}


@endpoint("getComputeClient", required={"computeClientId": is_str})
def get_compute_client(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    client = ctx.db.compute_client(req["computeClientId"])
    if client is None:
        raise ApiError(404, f"no compute client {req['computeClientId']}")
    return {"computeClient": _public_client(client)}


@endpoint("getComputeClients", optional={"serviceName": is_str})
def get_compute_clients(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    clients = ctx.db.compute_clients()
    if "serviceName" in req:
        clients = [c for c in clients if req["serviceName"] in c["serviceNames"]]
    return {"computeClients": [_public_client(c) for c in clients]}


@endpoint("pingComputeClients", optional={"serviceName": is_str})
def ping_compute_clients(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    return {}  # compute clients poll here; there is no pubsub channel to ping
