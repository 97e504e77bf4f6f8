"""Oracle: the unmodified official client and SDK (`dendro==0.6.22`, in their own venv)
against our service give the same hashes, cache hits and results as our client."""
import json
import re
import subprocess
import sys

import requests

from dendro_bridge import job_definition_hash
from tests.dendro.conftest import HERE, REPO

EXAMPLES = REPO / "examples" / "dendro"
JOB_URL = re.compile(r"/job/([A-Za-z0-9]{20})")


def official_example(tenant, python, number: int, tmp_path) -> list[str]:
    """Run README example N as published (`from dendro.client import ...`); returns the
    job ids it prints."""
    script = tmp_path / f"official_example{number}.py"
    source = (EXAMPLES / f"example{number}.py").read_text()
    script.write_text(source.replace("from dendro_bridge import", "from dendro.client import"))
    out = subprocess.run([str(python), str(script)], env=tenant.env(), capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return JOB_URL.findall(out)


def test_official_client_gets_same_hashes_and_cache_hits(tenant, oracle_python, tmp_path):
    client = tenant.client()
    official_ids = [official_example(tenant, oracle_python, n, tmp_path) for n in (1, 2, 3)]
    ours = [subprocess.run([sys.executable, str(EXAMPLES / f"example{n}.py")], env=tenant.env(), capture_output=True,
                           text=True, timeout=60, check=True).stdout for n in (1, 2, 3)]
    assert [JOB_URL.findall(out) for out in ours] == official_ids
    assert official_ids[1] == official_ids[2][:1]  # example 2's job is example 3's first job

    jobs = client.find_jobs(service_name=tenant.service_name)
    assert len(jobs) == 3
    for job in jobs:
        assert job.jobDefinitionHash == job_definition_hash(job.jobDefinition)
    hello = next(j for j in jobs if j.jobDefinition.processorName == "hello_world_1")
    assert hello.jobDefinitionHash == "bdcb6312bd8cc42bb71ad90fbebad2b2f5d305e2"

    tenant.run_compute("--exit-when-idle")
    assert [official_example(tenant, oracle_python, n, tmp_path) for n in (1, 2, 3)] == official_ids
    assert all(j.status == "completed" for j in client.find_jobs(service_name=tenant.service_name))

    # The official job handle's wait_until_done and output references work against us too.
    script = tmp_path / "official_wait.py"
    script.write_text(
        "import os\n"
        "from dendro.client import submit_job, DendroJobDefinition, DendroJobRequiredResources,"
        " DendroJobOutputFile, DendroJobParameter\n"
        "d = DendroJobDefinition(appName='hello_world', processorName='hello_world_2', inputFiles=[],"
        " outputFiles=[DendroJobOutputFile(name='output', fileBaseName='output.txt')],"
        " parameters=[DendroJobParameter(name='name', value='world')])\n"
        "r = DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=4, timeSec=60)\n"
        "job = submit_job(service_name=os.environ['DENDRO_SERVICE_NAME'], job_definition=d, required_resources=r)\n"
        "job.wait_until_done()\n"
        "print(job.jobId, job.status)\n")
    out = subprocess.run([str(oracle_python), str(script)], env=tenant.env(), capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.splitlines()[-1].split() == [official_ids[1][0], "completed"]


def test_official_sdk_app_runs_on_our_compute_resource(tenant, oracle_python, tmp_path):
    """An app written with `dendro.sdk` runs as the Dendro compute client would run it: the
    SDK itself sets the status, uploads outputs and console output through our service."""
    app_dir = tmp_path / "sdk_app"
    app_dir.mkdir()
    main = app_dir / "main.py"
    main.write_text((HERE / "sdk_app" / "main.py").read_text())
    main.chmod(0o755)
    spec_file = app_dir / "spec.json"
    subprocess.run([str(oracle_python), str(main)], env={"SPEC_OUTPUT_FILE": str(spec_file)}, check=True,
                   timeout=60)
    spec = json.loads(spec_file.read_text())  # as `dendro make-app-spec-file` writes it
    spec.update(command=[str(oracle_python), "{app_dir}/main.py"], protocol="dendro-sdk")
    for processor in spec["processors"]:
        processor["executable"] = str(main)  # no container: the script is where it is
    (app_dir / "app.json").write_text(json.dumps(spec))
    tenant.service.admin.add_app(tenant.service_name, spec)

    script = tmp_path / "submit_sdk_jobs.py"
    script.write_text(
        "import os\n"
        "from dendro.client import submit_job, DendroJobDefinition, DendroJobRequiredResources,"
        " DendroJobInputFile, DendroJobOutputFile, DendroJobParameter\n"
        "s = os.environ['DENDRO_SERVICE_NAME']\n"
        "r = DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=1, timeSec=60)\n"
        "out = DendroJobOutputFile(name='output', fileBaseName='output.txt')\n"
        "j1 = submit_job(service_name=s, required_resources=r, job_definition=DendroJobDefinition("
        "appName='hello_sdk', processorName='hello_world_2', inputFiles=[], outputFiles=[out],"
        " parameters=[DendroJobParameter(name='name', value='SDK')]))\n"
        "j2 = submit_job(service_name=s, required_resources=r, job_definition=DendroJobDefinition("
        "appName='hello_sdk', processorName='count_characters',"
        " inputFiles=[DendroJobInputFile(name='input', fileBaseName='input.txt', url=out)],"
        " outputFiles=[DendroJobOutputFile(name='output', fileBaseName='output.json')],"
        " parameters=[DendroJobParameter(name='include_whitespace', value=True)]))\n"
        "print(j1.jobId, j2.jobId)\n")
    id1, id2 = subprocess.run([str(oracle_python), str(script)], env=tenant.env(), capture_output=True, text=True,
                              timeout=60, check=True).stdout.split()

    tenant.run_compute("--exit-when-idle", apps=(app_dir / "app.json",))
    client = tenant.client()
    job1, job2 = client.get_job(id1), client.get_job(id2)
    assert (job1.status, job1.error, job2.status, job2.error) == ("completed", None, "completed", None)
    assert requests.get(job1.outputFileResults[0].url).text == "Hello, SDK!"
    assert json.loads(requests.get(job2.outputFileResults[0].url).text) == {"num_characters": 11}
    console = requests.get(job1.consoleOutputUrl).text
    assert "Running processor" in console
    assert job1.outputFileResults[0].size == len("Hello, SDK!")
