"""Requests the service must refuse, with the status codes of the hosted service."""
import time

import pytest
import requests
import yaml

from dendro_bridge import DendroApiError, DendroJobDefinition, DendroJobOutputFile, DendroJobRequiredResources
from dendro_bridge.compute import ComputeApi
from dendro_bridge.server.objects import UrlSigner, load_or_create_secret

RESOURCES = {"numCpus": 1, "numGpus": 0, "memoryGb": 1, "timeSec": 60}


def post(tenant, endpoint: str, body: dict, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{tenant.service.url}/api/{endpoint}", json={"type": f"{endpoint}Request", **body},
                         headers=headers, timeout=10)


def create_job_body(tenant, **definition_changes) -> dict:
    definition = {"appName": "hello_world", "processorName": "hello_world_2", "inputFiles": [],
                  "outputFiles": [{"name": "output", "fileBaseName": "output.txt"}],
                  "parameters": [{"name": "name", "value": "bad input"}], **definition_changes}
    return {"serviceName": tenant.service_name, "userId": "", "batchId": "", "tags": [], "jobDefinition": definition,
            "requiredResources": dict(RESOURCES), "secrets": [], "jobDependencies": [], "targetComputeClientIds": ["*"]}


def claimed_job(tenant) -> tuple[ComputeApi, dict]:
    resp = post(tenant, "createJob", create_job_body(tenant), tenant.api_key)
    assert resp.status_code == 200, resp.text
    creds = yaml.safe_load(tenant.compute_config.read_text())
    api = ComputeApi(tenant.service.url, creds["computeClientId"], creds["computeClientPrivateKey"])
    [job], _ = api.runnable_jobs(["hello_world"])
    assert api.claim(job)
    return api, job


@pytest.mark.parametrize("change, message", [
    (lambda b: b.update(unexpected=1), "unknown key"),
    (lambda b: b["jobDefinition"].update(unexpected=1), "unknown key"),
    (lambda b: b["requiredResources"].update(numCpus=None), "numCpus"),
    (lambda b: b["jobDefinition"].update(cacheBust=None), "null"),
    (lambda b: b.pop("secrets"), "missing key"),
    (lambda b: b.update(type="getJobRequest"), "type must be createJobRequest"),
    (lambda b: b["jobDefinition"]["parameters"].append({"name": "extra", "value": 1}), "no parameter named"),
    (lambda b: b["jobDefinition"].update(outputFiles=[]), "missing output"),
])
def test_invalid_requests_get_400(tenant, change, message):
    body = {"type": "createJobRequest", **create_job_body(tenant)}
    change(body)
    resp = requests.post(f"{tenant.service.url}/api/createJob", json=body,
                         headers={"Authorization": f"Bearer {tenant.api_key}"}, timeout=10)
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["error"]


def test_path_traversal_in_output_names_is_rejected(tenant):
    for output in ({"name": "../../x", "fileBaseName": "o.txt"}, {"name": "output", "fileBaseName": "../o.txt"},
                   {"name": "output", "fileBaseName": "a/b"}, {"name": "output", "fileBaseName": ".."}):
        resp = post(tenant, "createJob", create_job_body(tenant, outputFiles=[output]), tenant.api_key)
        assert resp.status_code == 400, output
    with pytest.raises(ValueError):
        DendroJobOutputFile(name="output", fileBaseName="../../etc/passwd")
    # Nor can a signed upload URL be bent to another key.
    _, job = claimed_job(tenant)
    upload = post(tenant, "getSignedUploadUrl", {"jobId": job["jobId"], "uploadType": "other",
                                                 "otherName": "../../escape", "size": 1}, job["jobPrivateKey"])
    assert upload.status_code == 400
    assert requests.get(f"{tenant.service.url}/f/..%2F..%2Fsigning.key", timeout=10).status_code in (403, 404)


def test_wrong_api_key_gets_401(tenant):
    assert post(tenant, "createJob", create_job_body(tenant), "not-a-key").status_code == 401
    assert post(tenant, "createJob", create_job_body(tenant)).status_code == 400  # no key at all: 400, as upstream
    client = tenant.client()
    client.api_key = "wrong"
    with pytest.raises(DendroApiError) as e:
        client.submit_job(service_name=tenant.service_name,
                          job_definition=DendroJobDefinition.from_wire(create_job_body(tenant)["jobDefinition"]),
                          required_resources=DendroJobRequiredResources(**RESOURCES))
    assert e.value.status == 401


def test_user_without_rights_gets_401(tenant):
    stranger_key = tenant.service.admin.create_user("stranger-" + tenant.service_name)
    assert post(tenant, "createJob", create_job_body(tenant), stranger_key).status_code == 401


def test_wrong_job_private_key_gets_401(tenant):
    api, job = claimed_job(tenant)
    body = {"jobId": job["jobId"], "computeClientId": api.client_id, "status": "running"}
    assert post(tenant, "setJobStatus", body, "0" * 32).status_code == 401
    assert post(tenant, "getSignedUploadUrl", {"jobId": job["jobId"], "uploadType": "consoleOutput", "size": 1},
                "0" * 32).status_code == 401
    assert post(tenant, "getRunnableJobsForComputeClient", {"computeClientId": api.client_id},
                "0" * 32).status_code == 401
    assert post(tenant, "setJobStatus", body, job["jobPrivateKey"]).status_code == 200
    # Status changes out of order are refused.
    body["status"] = "starting"
    assert post(tenant, "setJobStatus", body, job["jobPrivateKey"]).status_code == 400


def test_expired_or_tampered_signed_urls_get_403(tenant, tmp_path):
    _, job = claimed_job(tenant)
    resp = post(tenant, "getSignedUploadUrl", {"jobId": job["jobId"], "uploadType": "consoleOutput", "size": 5},
                job["jobPrivateKey"])
    signed, download = resp.json()["signedUrl"], resp.json()["downloadUrl"]
    assert requests.put(signed.replace("signature=", "signature=0"), data=b"hello", timeout=10).status_code == 403
    assert requests.put(signed.replace("console_output", "console_outpuX"), data=b"x", timeout=10).status_code == 403
    assert requests.put(signed.split("?")[0], data=b"hello", timeout=10).status_code == 403
    assert requests.get(signed, timeout=10).status_code == 403  # an upload URL does not allow downloads
    assert requests.put(signed, data=b"hello", timeout=10).status_code == 200
    assert requests.get(download, timeout=10).content == b"hello"

    # A URL signed with the service's own key, but expired.
    signer = UrlSigner(load_or_create_secret(tenant.service.data_dir / "signing.key"), tenant.service.url, 60)
    key = signer.key_of(download)
    expired = signer.sign("PUT", key, expires=int(time.time()) - 1)
    assert requests.put(expired, data=b"late", timeout=10).status_code == 403
    assert requests.get(signer.sign("GET", key, expires=int(time.time()) - 1), timeout=10).status_code == 403
    assert requests.get(signer.sign("GET", key), timeout=10).content == b"hello"
