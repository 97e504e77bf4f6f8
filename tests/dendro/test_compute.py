"""Compute resources and job lifecycle: claims, failures, cancellation, timeouts, slots, cache flags."""
import os
import threading
import time

import pytest
import yaml

from dendro_bridge import (DendroApiError, DendroJobDefinition, DendroJobInputFile, DendroJobOutputFile,
                           DendroJobParameter, DendroJobRequiredResources)
from dendro_bridge.compute import ComputeApi


def resources(time_sec: float = 60, cpus: int = 1) -> DendroJobRequiredResources:
    return DendroJobRequiredResources(numCpus=cpus, numGpus=0, memoryGb=1, timeSec=time_sec)


def job_definition(processor: str, parameters: dict, inputs=(), outputs=("output",)) -> DendroJobDefinition:
    return DendroJobDefinition(
        appName="testing", processorName=processor,
        inputFiles=[DendroJobInputFile(name="input", fileBaseName="input.txt", url=u) for u in inputs],
        outputFiles=[DendroJobOutputFile(name=o, fileBaseName=f"{o}.txt") for o in outputs],
        parameters=[DendroJobParameter(name=k, value=v) for k, v in parameters.items()])


def submit(tenant, definition, **kwargs):
    kwargs.setdefault("required_resources", resources())
    return tenant.client().submit_job(service_name=tenant.service_name, job_definition=definition, **kwargs)


def wait_for(predicate, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_compute_resources_race_and_exactly_one_runs_the_job(tenant):
    marker = tenant.work_dir / "marker.txt"
    job = submit(tenant, job_definition("append", {"marker_file": str(marker)}))
    second = tenant.new_compute_client("second")
    procs = [tenant.start_compute("--single-job"), tenant.start_compute("--single-job", config=second)]
    logs = [p.communicate(timeout=30)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sum("claimed job" in log for log in logs) == 1, logs
    assert len(marker.read_text().splitlines()) == 1
    assert job.refresh().status == "completed"


def test_atomic_claim_under_concurrent_requests(tenant):
    job = submit(tenant, job_definition("append", {"marker_file": "unused"}))
    apis = []
    for i in range(6):
        creds = yaml.safe_load(tenant.new_compute_client(f"racer{i}").read_text())
        apis.append(ComputeApi(tenant.service.url, creds["computeClientId"], creds["computeClientPrivateKey"]))
    [wire_job], _ = apis[0].runnable_jobs(["testing"])
    barrier, wins = threading.Barrier(len(apis)), []

    def claim(api):
        barrier.wait()
        if api.claim(wire_job):
            wins.append(api.client_id)

    threads = [threading.Thread(target=claim, args=(api,)) for api in apis]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert job.refresh().computeClientId == wins[0]


def test_failed_upstream_fails_its_dependents(tenant):
    failing = submit(tenant, job_definition("fail", {"tag": "upstream"}))
    middle = submit(tenant, job_definition("copy", {}, inputs=[failing.get_output("output")]))
    last = submit(tenant, job_definition("copy", {}, inputs=[middle.get_output("output")]))
    tenant.run_compute("--exit-when-idle")
    failing.refresh(), middle.refresh(), last.refresh()
    assert failing.status == "failed"
    assert failing.error == "processor exited with code 3: failing on purpose (upstream)"
    assert (middle.status, last.status) == ("failed", "failed")
    assert middle.error.startswith(f"upstream job {failing.jobId} failed: processor exited with code 3")
    assert last.error.startswith(f"upstream job {middle.jobId} failed")
    # A job submitted later on top of the failed one fails at once, instead of waiting for ever.
    late = submit(tenant, job_definition("copy", {}, inputs=[failing.get_output("output")]), skip_cache=True)
    assert late.status == "failed" and late.error.startswith(f"upstream job {failing.jobId} failed")


def test_cancel_stops_a_running_job(tenant):
    pid_file = tenant.work_dir / "sleep.pid"
    job = submit(tenant, job_definition("sleep", {"seconds": 30, "pid_file": str(pid_file)}, outputs=()))
    proc = tenant.start_compute("--exit-when-idle")
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the processor to start")
    pid = int(pid_file.read_text())
    assert job.refresh().status == "running"
    started = time.monotonic()
    job.cancel()
    proc.communicate(timeout=20)
    assert time.monotonic() - started < 10
    assert not pid_alive(pid)
    job.refresh()
    assert (job.status, job.error, job.canceled) == ("failed", "canceled", True)


def test_cancel_of_a_pending_job_fails_it_and_its_dependents(tenant):
    upstream = submit(tenant, job_definition("fail", {"tag": "never runs"}))
    downstream = submit(tenant, job_definition("copy", {}, inputs=[upstream.get_output("output")]))
    upstream.cancel()
    assert (upstream.refresh().status, upstream.error) == ("failed", "canceled")
    assert downstream.refresh().status == "failed"
    assert tenant.run_compute("--exit-when-idle").stdout.count("claimed") == 0


def test_time_limit_kills_the_processor(tenant):
    pid_file = tenant.work_dir / "slow.pid"
    job = submit(tenant, job_definition("sleep", {"seconds": 30, "pid_file": str(pid_file)}, outputs=()),
                 required_resources=resources(time_sec=1))
    started = time.monotonic()
    tenant.run_compute("--exit-when-idle")
    assert time.monotonic() - started < 15
    assert not pid_alive(int(pid_file.read_text()))
    job.refresh()
    assert (job.status, job.error) == ("failed", "timed out after 1 s")


def test_jobs_that_do_not_fit_the_slots_are_not_offered(tenant):
    big = submit(tenant, job_definition("echo", {"value": "big"}), required_resources=resources(cpus=8))
    small = submit(tenant, job_definition("echo", {"value": "small"}))
    untargeted = submit(tenant, job_definition("echo", {"value": "elsewhere"}), target_compute_client_ids=["other"])
    tenant.run_compute("--exit-when-idle")
    assert (big.refresh().status, small.refresh().status, untargeted.refresh().status) == \
        ("pending", "completed", "pending")
    wide = tenant.new_compute_client("wide", slots=[{"numCpus": 16, "minNumCpus": 4}])
    tenant.run_compute("--exit-when-idle", config=wide)
    assert big.refresh().status == "completed"


def test_parameters_reach_the_processor_with_defaults(tenant):
    import requests

    job = submit(tenant, DendroJobDefinition(appName="testing", processorName="echo", inputFiles=[], parameters=[],
                                             outputFiles=[DendroJobOutputFile(name="output", fileBaseName="o.json")]))
    tenant.run_compute("--exit-when-idle")
    assert requests.get(job.refresh().outputFileResults[0].url).json() == {"value": "default"}


def test_cache_flags(tenant):
    definition = job_definition("fail", {"tag": "flags"})
    first = submit(tenant, definition)
    assert submit(tenant, definition, tags=["again"]).jobId == first.jobId  # pending jobs are cached too
    assert set(first.refresh().tags) == {"again"}
    first.cancel()  # now it is failed
    assert submit(tenant, definition).jobId == first.jobId  # a failed job is returned ...
    rerun = submit(tenant, definition, rerun_failing=True)  # ... unless rerun_failing
    assert rerun.jobId != first.jobId and rerun.status == "pending"
    assert tenant.client().get_job(first.jobId) is not None
    rerun.cancel()
    replaced = submit(tenant, definition, rerun_failing=True, delete_failing=True)
    assert tenant.client().get_job(rerun.jobId) is None  # moved to the deleted jobs
    assert submit(tenant, definition, skip_cache=True).jobId not in (replaced.jobId, first.jobId)
    # 1 and 1.0 are the same definition; a cacheBust makes a new one.
    one = submit(tenant, job_definition("echo", {"value": 1}))
    assert submit(tenant, job_definition("echo", {"value": 1.0})).jobId == one.jobId
    busted = job_definition("echo", {"value": 1})
    busted.cacheBust = "x"
    assert submit(tenant, busted).jobId != one.jobId


def test_find_jobs_returns_a_whole_batch_in_one_request(tenant):
    ids = {submit(tenant, job_definition("echo", {"value": str(i)}), batch_id="batch-1", tags=["t"]).jobId
           for i in range(5)}
    submit(tenant, job_definition("echo", {"value": "other"}), batch_id="batch-2")
    client = tenant.client()
    assert {j.jobId for j in client.find_jobs(batch_id="batch-1")} == ids
    assert len(client.find_jobs(batch_id="batch-1", limit=2)) == 2
    assert {j.jobId for j in client.find_jobs(service_name=tenant.service_name, tags=["t"])} == ids
    assert all(j.jobPrivateKey is None for j in client.find_jobs(batch_id="batch-1"))
    with pytest.raises(DendroApiError, match="unknown key"):
        client.api.post("findJobs", {"jobIds": list(ids)})
