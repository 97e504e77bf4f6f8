"""Endpoints beyond job submission: lookups, runtime output URLs, private downloads, job pages."""
import threading

import requests
import yaml

from dendro_bridge import (DendroClient, DendroJobDefinition, DendroJobInputFile, DendroJobOutputFile,
                           DendroJobParameter, DendroJobRequiredResources)
from dendro_bridge.compute import ComputeApi
from dendro_bridge.server import Admin, make_dendro_server
from tests.dendro.conftest import HELLO_APP
from tests.dendro.test_bad_input import post


def compute_api(tenant) -> ComputeApi:
    creds = yaml.safe_load(tenant.compute_config.read_text())
    return ComputeApi(tenant.service.url, creds["computeClientId"], creds["computeClientPrivateKey"])


def test_lookups_hide_private_keys(tenant):
    api = compute_api(tenant)
    service = post(tenant, "getService", {"serviceName": tenant.service_name}).json()["service"]
    assert service["userId"] == tenant.user_id
    apps = post(tenant, "getServiceApps", {"serviceName": tenant.service_name}).json()["serviceApps"]
    assert {a["appName"] for a in apps} == {"hello_world", "testing"}
    app = post(tenant, "getServiceApp", {"serviceName": tenant.service_name, "appName": "hello_world"}).json()["serviceApp"]
    assert [p["name"] for p in app["appSpecification"]["processors"]] == \
        ["hello_world_1", "hello_world_2", "count_characters"]
    client = post(tenant, "getComputeClient", {"computeClientId": api.client_id}).json()["computeClient"]
    assert client["computeClientPrivateKey"] is None and client["computeSlots"][0]["numCpus"] == 4
    clients = post(tenant, "getComputeClients", {"serviceName": tenant.service_name}).json()["computeClients"]
    assert [c["computeClientId"] for c in clients] == [api.client_id]
    assert post(tenant, "getService", {"serviceName": "missing"}).status_code == 404
    assert post(tenant, "noSuchEndpoint", {}).status_code == 404


def test_output_url_determined_at_runtime(tenant):
    client, api = tenant.client(), compute_api(tenant)
    job = client.submit_job(
        service_name=tenant.service_name,
        job_definition=DendroJobDefinition(appName="testing", processorName="runtime_url", inputFiles=[],
                                           parameters=[], outputFiles=[DendroJobOutputFile(
                                               name="output", fileBaseName="o.bin", urlDeterminedAtRuntime=True)]),
        required_resources=DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=1, timeSec=10))
    assert job.outputFileResults[0].url == ""
    [wire_job], _ = api.runnable_jobs(["testing"])
    body = {"jobId": job.jobId, "outputName": "output", "url": "https://example.org/o.bin"}
    assert api.claim(wire_job)
    assert post(tenant, "setOutputFileUrl", body, wire_job["jobPrivateKey"]).status_code == 409  # not running
    api.set_status(wire_job, "running")
    assert post(tenant, "setOutputFileUrl", body, wire_job["jobPrivateKey"]).status_code == 200
    assert post(tenant, "setOutputFileUrl", body, wire_job["jobPrivateKey"]).status_code == 409  # only once
    api.set_status(wire_job, "completed")
    assert job.refresh().outputFileUrlList == ["https://example.org/o.bin"]
    assert requests.get(job.job_url, timeout=10).json()["status"] == "completed"


def test_a_job_cannot_complete_without_its_outputs(tenant):
    api = compute_api(tenant)
    resp = post(tenant, "createJob", {
        "serviceName": tenant.service_name, "userId": "", "batchId": "", "tags": [], "secrets": [],
        "jobDependencies": [], "targetComputeClientIds": ["*"],
        "requiredResources": {"numCpus": 1, "numGpus": 0, "memoryGb": 1, "timeSec": 10},
        "jobDefinition": {"appName": "hello_world", "processorName": "hello_world_2", "inputFiles": [],
                          "outputFiles": [{"name": "output", "fileBaseName": "output.txt"}],
                          "parameters": [{"name": "name", "value": "nothing uploaded"}]}}, tenant.api_key)
    job = resp.json()["job"]
    [wire_job], _ = api.runnable_jobs(["hello_world"])
    assert wire_job["jobId"] == job["jobId"] and wire_job["jobPrivateKey"]
    api.claim(wire_job)
    api.set_status(wire_job, "running")
    resp = post(tenant, "setJobStatus", {"jobId": job["jobId"], "computeClientId": api.client_id,
                                         "status": "completed"}, wire_job["jobPrivateKey"])
    assert resp.status_code == 409 and "was not uploaded" in resp.json()["error"]


def test_private_downloads_need_signed_urls(tmp_path):
    server = make_dendro_server("127.0.0.1", 0, tmp_path, public_downloads=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        admin = Admin(tmp_path)
        key = admin.create_user("u")
        admin.create_service("s", "u")
        admin.add_app("s", yaml.safe_load(HELLO_APP.read_text()))
        client_id, client_key = admin.create_compute_client(["s"], "u", "c")
        job = DendroClient(server.public_url, key).submit_job(
            service_name="s", required_resources=DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=1,
                                                                            timeSec=10),
            job_definition=DendroJobDefinition(appName="hello_world", processorName="hello_world_1", inputFiles=[],
                                               outputFiles=[], parameters=[DendroJobParameter(name="name", value="x")]))
        api = ComputeApi(server.public_url, client_id, client_key)
        [wire_job], _ = api.runnable_jobs(["hello_world"])
        api.claim(wire_job)
        console = tmp_path / "console.txt"
        console.write_text("secret output")
        api.upload(wire_job, str(console), "consoleOutput")
        assert requests.get(job.consoleOutputUrl, timeout=10).status_code == 403
        api.set_status(wire_job, "running")
        api.set_status(wire_job, "completed")  # frees the client's only slot
        # A job reads a private object through getSignedDownloadUrl when it is one of its inputs.
        reader = DendroClient(server.public_url, key).submit_job(
            service_name="s", required_resources=DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=1,
                                                                            timeSec=10),
            job_definition=DendroJobDefinition(
                appName="hello_world", processorName="count_characters", parameters=[],
                inputFiles=[DendroJobInputFile(name="input", fileBaseName="input.txt", url=job.consoleOutputUrl)],
                outputFiles=[DendroJobOutputFile(name="output", fileBaseName="output.json")]))
        [wire_reader], _ = api.runnable_jobs(["hello_world"])
        assert wire_reader["jobId"] == reader.jobId and api.claim(wire_reader)
        downloaded = tmp_path / "downloaded.txt"
        api.download(wire_reader, job.consoleOutputUrl, str(downloaded))
        assert downloaded.read_text() == "secret output"
    finally:
        server.shutdown()


def test_find_by_definition_get_runnable_job_and_delete(tenant):
    client = tenant.client()
    definition = DendroJobDefinition(appName="hello_world", processorName="hello_world_1", inputFiles=[],
                                     outputFiles=[], parameters=[DendroJobParameter(name="name", value="lookup")])
    assert client.find_job_by_definition(tenant.service_name, definition) is None
    job = client.submit_job(service_name=tenant.service_name, job_definition=definition,
                            required_resources=DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=1,
                                                                          timeSec=10))
    assert client.find_job_by_definition(tenant.service_name, definition).jobId == job.jobId
    runnable = post(tenant, "getRunnableJob", {"jobId": job.jobId}, tenant.api_key).json()["job"]
    assert runnable["jobPrivateKey"]  # for `dendro run-pending-job` by the job's owner
    assert post(tenant, "deleteJobs", {"userId": "someone-else", "jobIds": [job.jobId]},
                tenant.api_key).status_code == 403
    assert post(tenant, "deleteJobs", {"userId": tenant.user_id, "jobIds": [job.jobId]},
                tenant.api_key).status_code == 200
    assert client.get_job(job.jobId) is None
    assert client.find_job_by_definition(tenant.service_name, definition) is None
