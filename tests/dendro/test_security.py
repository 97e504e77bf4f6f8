"""Security: untrusted file names from a service, download signing, job secrets, and
signed URLs kept out of error texts."""
import re
from pathlib import Path

import pytest

from dendro_bridge import (DendroJobDefinition, DendroJobInputFile, DendroJobOutputFile, DendroJobParameter,
                           DendroJobRequiredResources)
from dendro_bridge.server import Admin
from tests.dendro.test_bad_input import post
from tests.dendro.test_endpoints import compute_api

RESOURCES = DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=1, timeSec=30)
SIGNATURE = re.compile(r"signature=[0-9a-f]{16,}")


def copy_job(tenant, input_url: str):
    return tenant.client().submit_job(
        service_name=tenant.service_name, required_resources=RESOURCES,
        job_definition=DendroJobDefinition(
            appName="testing", processorName="copy", parameters=[],
            inputFiles=[DendroJobInputFile(name="input", fileBaseName="in.txt", url=input_url)],
            outputFiles=[DendroJobOutputFile(name="output", fileBaseName="out.txt")]))


def tamper(tenant, job_id: str, change) -> None:
    """Rewrite a stored job, as a malicious or broken service would send it."""
    with tenant.service.admin.store.transaction(write=True) as db:
        job = db.job(job_id)
        change(job["jobDefinition"])
        db.put_job(job)


def files_outside(root: Path, jobs_dir: Path) -> set[Path]:
    return {p for p in root.rglob("*") if jobs_dir not in p.parents and p != jobs_dir}


@pytest.mark.parametrize("kind, key, value", [
    ("inputFiles", "name", "../../../escaped"),
    ("inputFiles", "fileBaseName", "../../../../escaped.txt"),
    ("inputFiles", "fileBaseName", "ABSOLUTE"),
    ("inputFiles", "fileBaseName", "a\0b"),
    ("outputFiles", "name", "../../../escaped"),
    ("outputFiles", "fileBaseName", "sub/../../../../../escaped.txt"),
])
def test_unsafe_file_names_from_the_service_fail_the_job(tenant, tmp_path, kind, key, value):
    source = tmp_path / "source.txt"
    source.write_text("data")
    job = copy_job(tenant, source.as_uri())
    value = str(tmp_path / "absolute.txt") if value == "ABSOLUTE" else value
    tamper(tenant, job.jobId, lambda d: d[kind][0].update({key: value}))
    before = files_outside(tmp_path, tmp_path / "jobs")
    tenant.run_compute("--exit-when-idle", "--allow-input-url", tmp_path.as_uri())
    stored = post(tenant, "getJob", {"jobId": job.jobId, "includePrivateKey": False}).json()["job"]
    assert stored["status"] == "failed"
    assert f"unsafe {key} {value!r}" in stored["error"]
    assert files_outside(tmp_path, tmp_path / "jobs") == before  # nothing written outside the job dirs


def test_download_urls_are_signed_only_for_the_jobs_inputs(tenant):
    api = compute_api(tenant)
    other = tenant.client().submit_job(
        service_name=tenant.service_name, required_resources=RESOURCES,
        job_definition=DendroJobDefinition(appName="hello_world", processorName="hello_world_1", inputFiles=[],
                                           outputFiles=[], parameters=[DendroJobParameter(name="name", value="o")]))
    job = copy_job(tenant, other.consoleOutputUrl)
    [wire_job] = [j for j in api.runnable_jobs(["testing"])[0] if j["jobId"] == job.jobId]
    assert api.claim(wire_job)

    def sign(url: str):
        return post(tenant, "getSignedDownloadUrl", {"jobId": job.jobId, "url": url}, wire_job["jobPrivateKey"])

    assert SIGNATURE.search(sign(other.consoleOutputUrl).json()["signedUrl"])  # its own input
    for url in (other.resourceUtilizationLogUrl, job.consoleOutputUrl, f"{tenant.service.url}/f/any/object"):
        resp = sign(url)
        assert resp.status_code == 403 and not SIGNATURE.search(resp.text)
    assert sign("https://example.org/public.txt").json()["signedUrl"] == "https://example.org/public.txt"


def test_secrets_only_reach_the_compute_client_running_the_job(tenant):
    api = compute_api(tenant)
    body = {"serviceName": tenant.service_name, "userId": "", "batchId": "", "tags": [], "jobDependencies": [],
            "secrets": [{"name": "DANDI_API_KEY", "value": "top-secret"}], "targetComputeClientIds": ["*"],
            "requiredResources": {"numCpus": 1, "numGpus": 0, "memoryGb": 1, "timeSec": 10},
            "jobDefinition": {"appName": "hello_world", "processorName": "hello_world_1", "inputFiles": [],
                              "outputFiles": [], "parameters": [{"name": "name", "value": "secret"}]}}
    created = post(tenant, "createJob", body, tenant.api_key)
    job_id = created.json()["job"]["jobId"]
    runnable = post(tenant, "getRunnableJobsForComputeClient", {"computeClientId": api.client_id},
                    api.private_key).json()["runnableJobs"]
    for_user = post(tenant, "getRunnableJob", {"jobId": job_id}, tenant.api_key)
    found = post(tenant, "findJobs", {"jobId": job_id})
    for resp in (created, for_user, found, post(tenant, "getJob", {"jobId": job_id, "includePrivateKey": False})):
        assert "top-secret" not in resp.text
    [wire_job] = [j for j in runnable if j["jobId"] == job_id]
    assert wire_job["secrets"] is None and wire_job["jobPrivateKey"]

    # A compute client of a user without the processJobs right may not claim the job.
    admin: Admin = tenant.service.admin
    outsider = f"{tenant.user_id}-outsider"
    admin.create_user(outsider)
    outsider_id, _ = admin.create_compute_client([tenant.service_name], outsider, "outsider")
    claim = {"jobId": job_id, "computeClientId": outsider_id, "status": "starting"}
    assert post(tenant, "setJobStatus", claim, wire_job["jobPrivateKey"]).status_code == 401

    assert api.claim(wire_job)
    running = post(tenant, "getJob", {"jobId": job_id, "includePrivateKey": True, "computeClientId": api.client_id},
                   api.private_key).json()["job"]
    assert running["secrets"] == [{"name": "DANDI_API_KEY", "value": "top-secret"}]


def test_no_signed_url_in_job_errors(tenant, tmp_path):
    # An input on the service that does not exist: the download through a signed URL fails.
    job = copy_job(tenant, f"{tenant.service.url}/f/{tenant.service_name}/missing/in.txt")
    result = tenant.run_compute("--exit-when-idle")
    job.refresh()
    assert job.status == "failed" and "404" in job.error
    assert "signature=" in job.error and not SIGNATURE.search(job.error)
    assert not SIGNATURE.search(result.stdout + result.stderr)

    # Error texts a runner reports are stored without signatures too (e.g. the SDK's).
    api = compute_api(tenant)
    job2 = copy_job(tenant, f"{tenant.service.url}/f/{tenant.service_name}/other/in.txt")
    [wire_job] = [j for j in api.runnable_jobs(["testing"])[0] if j["jobId"] == job2.jobId]
    api.claim(wire_job)
    leaked = f"{tenant.service.url}/f/x/y?expires=9999999999&signature={'ab' * 32}"
    api.set_status(wire_job, "failed", f"could not fetch {leaked}: 500")
    job2.refresh()
    assert job2.error.startswith("could not fetch") and not SIGNATURE.search(job2.error)
