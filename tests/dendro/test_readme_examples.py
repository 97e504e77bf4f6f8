"""The three README examples, with only their import line changed, against our service and
our compute resource."""
import json
import subprocess
import sys

import requests

from dendro_bridge import (DendroJobDefinition, DendroJobInputFile, DendroJobOutputFile, DendroJobParameter,
                           DendroJobRequiredResources)
from tests.dendro.conftest import REPO

EXAMPLES = REPO / "examples" / "dendro"


def run_example(tenant, number: int) -> list[list[str]]:
    """Run examples/dendro/exampleN.py; returns its printed lines, split into words."""
    out = subprocess.run([sys.executable, str(EXAMPLES / f"example{number}.py")], env=tenant.env(),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split() for line in out.splitlines()]


def job_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def test_examples_compute_then_hit_the_cache(tenant):
    client = tenant.client()

    # Example 3 first: job 2 waits for job 1.
    (url1, status1), (url2, status2, runnable2) = run_example(tenant, 3)
    assert url1.startswith(tenant.service.url + "/job/")
    assert (status1, status2, runnable2) == ("pending", "pending", "False")

    tenant.run_compute("--single-job")  # runs job 1, the only runnable job
    job1, job2 = client.get_job(job_id(url1)), client.get_job(job_id(url2))
    assert job1.status == "completed"
    assert (job2.status, job2.isRunnable) == ("pending", True)

    tenant.run_compute("--single-job")
    job2.refresh()
    assert job2.status == "completed"
    assert job2.jobDependencies == [job1.jobId]
    assert job2.timestampStartingSec >= job1.timestampFinishedSec
    text = requests.get(job1.outputFileResults[0].url).text
    assert text == "Hello, world!"
    counted = json.loads(requests.get(job2.outputFileResults[0].url).text)
    assert counted == {"num_characters": len(text)}
    assert job2.jobDefinition.inputFiles[0].url == job1.outputFileResults[0].url

    # Examples 1 and 2: example 2's definition is example 3's first job, so it is a cache hit.
    [(url_a, status_a)] = run_example(tenant, 1)
    [(url_b, status_b)] = run_example(tenant, 2)
    assert (status_a, status_b) == ("pending", "completed")
    assert job_id(url_b) == job1.jobId
    tenant.run_compute("--exit-when-idle")
    console = requests.get(client.get_job(job_id(url_a)).consoleOutputUrl).text
    assert "Hello, world!" in console

    # Second run: every job is a cache hit with the same id, already completed.
    assert run_example(tenant, 1) == [[url_a, "completed"]]
    assert run_example(tenant, 2) == [[url1, "completed"]]
    assert run_example(tenant, 3) == [[url1, "completed"], [url2, "completed", "True"]]
    assert len(client.find_jobs(service_name=tenant.service_name)) == 3


def test_get_output_as_downstream_input_and_wait(tenant):
    """The README's other form of example 3: `url=job1.get_output('output')`."""
    client = tenant.client()
    resources = DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=4, timeSec=60)
    job1 = client.submit_job(service_name=tenant.service_name, required_resources=resources, tags=["example"],
                             job_definition=DendroJobDefinition(
                                 appName="hello_world", processorName="hello_world_2", inputFiles=[],
                                 outputFiles=[DendroJobOutputFile(name="output", fileBaseName="output.txt")],
                                 parameters=[DendroJobParameter(name="name", value="Ada Lovelace")]))
    job2 = client.submit_job(service_name=tenant.service_name, required_resources=resources, tags=["more"],
                             job_definition=DendroJobDefinition(
                                 appName="hello_world", processorName="count_characters",
                                 inputFiles=[DendroJobInputFile(name="input", fileBaseName="input.txt",
                                                                url=job1.get_output("output"))],
                                 outputFiles=[DendroJobOutputFile(name="output", fileBaseName="output.json")],
                                 parameters=[DendroJobParameter(name="include_whitespace", value=False)]))
    assert job2.jobDependencies == [job1.jobId]
    proc = tenant.start_compute("--exit-when-idle")
    assert job2.wait_until_done(wait_sec=30).status == "completed"
    proc.communicate(timeout=30)
    counted = json.loads(requests.get(job2.outputFileResults[0].url).text)
    assert counted == {"num_characters": len("Hello,AdaLovelace!")}
