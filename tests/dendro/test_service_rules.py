"""Validation, status codes and object shapes of the hosted service, one rule per test,
asserting what a client sees on the wire."""
import pytest
import requests
import yaml

from dendro_bridge.compute import ComputeApi
from dendro_bridge.hash import job_definition_hash
from tests.dendro.test_bad_input import claimed_job, create_job_body, post

# The fields of the hosted service's objects, no more.
SLOT_FIELDS = {"numCpus", "numGpus", "memoryGb", "timeSec", "minNumCpus", "minNumGpus", "minMemoryGb", "minTimeSec",
               "multiplicity"}
SERVICE_FIELDS = {"serviceName", "userId", "users"}
COMPUTE_CLIENT_FIELDS = {"serviceNames", "computeClientId", "computeClientPrivateKey", "computeClientName", "userId",
                         "processJobsForUsers", "description", "computeSlots", "timestampLastActiveSec"}


def create(tenant, body: dict, token: str | None = "<tenant>") -> requests.Response:
    return post(tenant, "createJob", body, tenant.api_key if token == "<tenant>" else token)


def claim(tenant, job_id: str) -> tuple[ComputeApi, dict]:
    creds = yaml.safe_load(tenant.compute_config.read_text())
    api = ComputeApi(tenant.service.url, creds["computeClientId"], creds["computeClientPrivateKey"])
    [job] = [j for j in api.runnable_jobs(["hello_world"])[0] if j["jobId"] == job_id]
    assert api.claim(job)
    return api, job


def output_body(tenant, file_base_name: str) -> dict:
    return create_job_body(tenant, outputFiles=[{"name": "output", "fileBaseName": file_base_name}])


@pytest.mark.parametrize("mixed", [[1, "a"], [True, 1], ["a", False]])
def test_mixed_type_list_parameter_is_400(tenant, mixed):
    """...while a list of one type (each type of the mixed one alone) is accepted."""
    resp = create(tenant, create_job_body(tenant, parameters=[{"name": "name", "value": mixed}]))
    assert resp.status_code == 400, resp.text
    for value in ([x for x in mixed if type(x) is t] for t in {type(x) for x in mixed}):
        resp = create(tenant, create_job_body(tenant, parameters=[{"name": "name", "value": value}]))
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("file_base_name", ["my output (1).txt", "ç.txt", "[x] #1?.txt"])
def test_output_file_base_names_like_the_service(tenant, file_base_name):
    """Accepted, and the output can be uploaded and downloaded under that name."""
    resp = create(tenant, output_body(tenant, file_base_name))
    assert resp.status_code == 200, resp.text
    [result] = resp.json()["job"]["outputFileResults"]
    assert result["fileBaseName"] == file_base_name
    api, job = claim(tenant, resp.json()["job"]["jobId"])
    api.set_status(job, "running")
    upload = post(tenant, "getSignedUploadUrl", {"jobId": job["jobId"], "uploadType": "output",
                                                 "outputName": "output", "size": 2}, job["jobPrivateKey"])
    assert upload.status_code == 200, upload.text
    assert upload.json()["downloadUrl"] == result["url"]
    assert requests.put(upload.json()["signedUrl"], data=b"ok", timeout=10).status_code == 200
    assert requests.get(result["url"], timeout=10).content == b"ok"


def test_input_file_base_name_with_spaces_and_non_ascii(tenant):
    body = create_job_body(tenant, processorName="count_characters", parameters=[],
                           inputFiles=[{"name": "input", "fileBaseName": "my input (1) ç.txt",
                                        "url": "https://example.org/x.txt"}],
                           outputFiles=[{"name": "output", "fileBaseName": "output.json"}])
    resp = create(tenant, body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["job"]["jobDefinition"]["inputFiles"][0]["fileBaseName"] == "my input (1) ç.txt"


def test_duplicate_parameter_names_are_accepted(tenant):
    body = create_job_body(tenant, parameters=[{"name": "name", "value": "a"}, {"name": "name", "value": "b"}])
    resp = create(tenant, body)
    assert resp.status_code == 200, resp.text
    assert [p["value"] for p in resp.json()["job"]["jobDefinition"]["parameters"]] == ["a", "b"]


@pytest.mark.parametrize("other_name", ["figures/summary.png", "a/b/c/d/e/f", "x-1_y.tar.gz"])
def test_other_upload_names_like_the_service(tenant, other_name):
    """Accepted, uploaded and recorded in otherFileOutputs; the names the service refuses
    (more than 6 parts, empty parts, leading dots, spaces, parts over 64 characters, a name
    already uploaded) are 400."""
    _, job = claimed_job(tenant)

    def upload_url(name: str) -> requests.Response:
        return post(tenant, "getSignedUploadUrl", {"jobId": job["jobId"], "uploadType": "other", "otherName": name,
                                                   "size": 2}, job["jobPrivateKey"])
    resp = upload_url(other_name)
    assert resp.status_code == 200, resp.text
    assert requests.put(resp.json()["signedUrl"], data=b"ok", timeout=10).status_code == 200
    assert requests.get(resp.json()["downloadUrl"], timeout=10).content == b"ok"
    seen = post(tenant, "getJob", {"jobId": job["jobId"], "includePrivateKey": False}).json()["job"]
    assert seen["otherFileOutputs"] == [{"name": other_name, "url": resp.json()["downloadUrl"]}]
    for refused in ("a/b/c/d/e/f/g", "../x", "a//b", ".hidden", "a b", "x" * 65, other_name):
        assert upload_url(refused).status_code == 400, refused


def test_create_job_without_authorization_is_400(tenant):
    resp = create(tenant, create_job_body(tenant), token=None)
    assert resp.status_code == 400 and resp.json()["error"] == "User API token must be provided"


@pytest.mark.parametrize("change", [
    lambda t, b: b.update(serviceName="no-such-service"),
    lambda t, b: b["jobDefinition"].update(appName="no_such_app"),
    lambda t, b: b["jobDefinition"].update(processorName="no_such_processor"),
])
def test_unknown_service_app_or_processor_is_400(tenant, change):
    body = create_job_body(tenant)
    change(tenant, body)
    resp = create(tenant, body)
    assert resp.status_code == 400, resp.text


@pytest.mark.parametrize("case", ["no createJobs right", "userId of another user"])
def test_create_job_refused_to_the_user_is_401(tenant, case):
    stranger_id = f"stranger-{tenant.service_name}"
    stranger_key = tenant.service.admin.create_user(stranger_id)
    body = create_job_body(tenant)
    if case == "no createJobs right":
        resp = create(tenant, body, token=stranger_key)
    else:
        body["userId"] = stranger_id
        resp = create(tenant, body)
    assert resp.status_code == 401, resp.text


def test_cancel_job_of_another_user_is_401(tenant):
    job = create(tenant, create_job_body(tenant)).json()["job"]
    stranger_key = tenant.service.admin.create_user(f"stranger-{tenant.service_name}")
    assert post(tenant, "cancelJob", {"jobId": job["jobId"]}, stranger_key).status_code == 401
    assert post(tenant, "getJob", {"jobId": job["jobId"], "includePrivateKey": False}).json()["job"]["canceled"] is False


@pytest.mark.parametrize("legal, illegal", [
    ([], "starting"), ([], "completed"), ([], "pending"), (["running"], "starting"), (["running"], "running"),
    (["running", "failed"], "running"), (["running", "failed"], "failed"),
])
def test_illegal_status_transition_is_400(tenant, legal, illegal):
    """From a claimed (starting) job, after the `legal` steps."""
    api, job = claimed_job(tenant)
    body = {"jobId": job["jobId"], "computeClientId": api.client_id}
    for status in legal:
        resp = post(tenant, "setJobStatus", {**body, "status": status, **_error(status)}, job["jobPrivateKey"])
        assert resp.status_code == 200, resp.text
    resp = post(tenant, "setJobStatus", {**body, "status": illegal, **_error(illegal)}, job["jobPrivateKey"])
    assert resp.status_code == 400, resp.text


def _error(status: str) -> dict:
    return {"error": "boom"} if status == "failed" else {}


@pytest.mark.parametrize("status, extra", [("failed", {}), ("completed", {"error": "boom"})])
def test_failed_needs_an_error_and_completed_none(tenant, status, extra):
    api, job = claimed_job(tenant)
    api.set_status(job, "running")
    body = {"jobId": job["jobId"], "computeClientId": api.client_id, "status": status, **extra}
    assert post(tenant, "setJobStatus", body, job["jobPrivateKey"]).status_code == 400


def test_compute_slots_have_the_service_fields_only(tenant):
    client_id = tenant.service.admin.create_compute_client([tenant.service_name], tenant.user_id, "slots",
                                                           [{"numCpus": 8, "minNumCpus": 2, "multiplicity": 2}])[0]
    client = post(tenant, "getComputeClient", {"computeClientId": client_id}).json()["computeClient"]
    assert set(client) <= COMPUTE_CLIENT_FIELDS
    [slot] = client["computeSlots"]
    assert slot == {"numCpus": 8, "numGpus": 0, "memoryGb": 8, "timeSec": 3600, "minNumCpus": 2, "minNumGpus": 0,
                    "minMemoryGb": 0, "minTimeSec": 0, "multiplicity": 2}
    assert set(slot) == SLOT_FIELDS


def test_service_has_the_service_fields_only(tenant):
    service = post(tenant, "getService", {"serviceName": tenant.service_name}).json()["service"]
    assert set(service) == SERVICE_FIELDS


def test_job_definition_lists_come_back_sorted_as_hashed(tenant):
    """The service sorts the lists by localeCompare in place before hashing, and stores that."""
    params = ["Zeta", "param1", "param_x", "alpha", "a.b", "a_b"]
    body = create_job_body(tenant, processorName="many", appName="testing",
                           inputFiles=[{"name": n, "fileBaseName": "f.txt", "url": "https://example.org/f"}
                                       for n in ("in_b", "in.a")],
                           outputFiles=[{"name": n, "fileBaseName": "f.txt"} for n in ("out_b", "out1")],
                           parameters=[{"name": n, "value": n} for n in params])
    job = create(tenant, body).json()["job"]
    definition = job["jobDefinition"]
    assert [p["name"] for p in definition["parameters"]] == ["a_b", "a.b", "alpha", "param_x", "param1", "Zeta"]
    assert [f["name"] for f in definition["inputFiles"]] == ["in_b", "in.a"]
    assert [f["name"] for f in definition["outputFiles"]] == ["out_b", "out1"]
    assert [r["name"] for r in job["outputFileResults"]] == ["out_b", "out1"]
    assert job["jobDefinitionHash"] == job_definition_hash(body["jobDefinition"])
