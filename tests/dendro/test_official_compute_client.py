"""The official compute client, unmodified, completes a job on our service.

`dendro start-compute-client --single-job` (dendro==0.6.22, in the oracle venv) claims a job
that the official client submitted, starts the processor of an SDK-protocol app (written with
`dendro.sdk`, tests/dendro/sdk_app) and the SDK inside it runs the job to `completed`: the
output has a file base name with spaces and brackets, and the processor also uploads an
additional output into a folder (`otherName` with a `/`), as the hosted service allows.

The container runtime is replaced by a stand-in, because the real one cannot be had here:
the compute client runs the processor's image with `docker run` (or `apptainer exec
docker://IMAGE`); apptainer and singularity are not packaged for Debian 12, and while Debian's
docker.io installs, no container registry is reachable from this machine or from CI (only the
PyPI, Debian and npm registries are), so neither the processor's image nor a base image to
build one can be pulled.  So `docker` on PATH is tests/dendro/container_standin.py, which runs
the command the compute client gives as a local process, with the container's `/tmp` mount
and image folder (`/app`) mapped to host folders and only the `-e` environment.  Everything
else — the compute client, the SDK, their requests, uploads and status changes — is the
unmodified official code talking to our service over HTTP.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from tests.dendro.conftest import HERE
from tests.dendro.test_official_compat import create_compute_client_file

IMAGE = "drypipe-tests/hello-sdk:local"
REPORT = "Hello report (1).txt"


def sdk_app_spec(oracle_python: Path, app_dir: Path) -> dict:
    """The app's spec as `dendro make-app-spec-file` writes it, with an image to run."""
    app_dir.mkdir()
    (app_dir / "main.py").write_text((HERE / "sdk_app" / "main.py").read_text())
    spec_file = app_dir / "spec.json"
    subprocess.run([str(oracle_python), str(app_dir / "main.py")], env={"SPEC_OUTPUT_FILE": str(spec_file)},
                   check=True, timeout=60)
    spec = json.loads(spec_file.read_text())
    for processor in spec["processors"]:
        assert processor["executable"] == "/app/main.py"  # a path inside the image
        processor["image"] = IMAGE
    return spec


def standin_docker_env(oracle_python: Path, tmp_path: Path, app_dir: Path) -> dict[str, str]:
    bin_dir = tmp_path / "standin-bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "container_standin.py"}" "$@"\n')
    docker.chmod(0o755)
    container_path = os.pathsep.join([str(oracle_python.parent), "/usr/local/bin", "/usr/bin", "/bin"])
    return {"CONTAINER_METHOD": "docker", "PATH": f"{bin_dir}{os.pathsep}{oracle_python.parent}{os.pathsep}"
            f"{os.environ['PATH']}", "STANDIN_DOCKER_PATH": container_path,
            "STANDIN_DOCKER_IMAGES": json.dumps({IMAGE: str(app_dir)}),
            "STANDIN_DOCKER_LOG": str(tmp_path / "docker.log")}


def submit_with_official_client(oracle_python: Path, tenant) -> str:
    code = (
        "import os\n"
        "from dendro.client import submit_job, DendroJobDefinition, DendroJobRequiredResources,"
        " DendroJobOutputFile, DendroJobParameter\n"
        "job = submit_job(service_name=os.environ['DENDRO_SERVICE_NAME'],"
        " required_resources=DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=1, timeSec=120),"
        " job_definition=DendroJobDefinition(appName='hello_sdk', processorName='hello_report', inputFiles=[],"
        f" outputFiles=[DendroJobOutputFile(name='report', fileBaseName={REPORT!r})],"
        " parameters=[DendroJobParameter(name='name', value='official compute client')]))\n"
        "print(job.jobId)\n")
    result = subprocess.run([str(oracle_python), "-c", code], env=tenant.env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()[-1]


def wait_for_job(tenant, job_id: str, timeout_sec: float, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + timeout_sec
    while True:
        job = requests.post(f"{tenant.service.url}/api/getJob", timeout=10,
                            json={"type": "getJobRequest", "jobId": job_id, "includePrivateKey": False}).json()["job"]
        if job["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return job
        assert proc.poll() is None or job["status"] != "pending", "the compute client exited without starting the job"
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """The compute client and what it started in its session (its old-job cleanup process)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def job_processes(job_id: str) -> list[int]:
    """Processes of the job (the SDK's parent process and its detached monitors)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"JOB_ID={job_id}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def wait_for_job_processes(job_id: str, timeout_sec: float) -> None:
    """The SDK's monitors make a last upload once the job's parent process has ended, then
    exit; wait for that, and end any that outlive the test."""
    deadline = time.monotonic() + timeout_sec
    while job_processes(job_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in job_processes(job_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_official_compute_client_completes_an_sdk_job(tenant, oracle_python, tmp_path):
    app_dir = tmp_path / "sdk_app"
    tenant.service.admin.add_app(tenant.service_name, sdk_app_spec(oracle_python, app_dir))
    client_dir = tmp_path / "compute-client"
    client_id = yaml.safe_load(create_compute_client_file(tenant, client_dir).read_text())[
        "compute_client_id"]
    job_id = submit_with_official_client(oracle_python, tenant)

    log = open(tmp_path / "compute-client.log", "w")
    proc = subprocess.Popen([str(oracle_python.parent / "dendro"), "start-compute-client", "--single-job"],
                            cwd=client_dir, env={**tenant.env(), **standin_docker_env(oracle_python, tmp_path, app_dir)},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        job = wait_for_job(tenant, job_id, 120, proc)
    finally:
        stop(proc)
        log.close()
        wait_for_job_processes(job_id, 30)
    output = (tmp_path / "compute-client.log").read_text()
    assert job["status"] == "completed", (job["status"], job["error"], output[-3000:])
    assert job["computeClientId"] == client_id and job["error"] is None
    [result] = job["outputFileResults"]
    assert requests.get(result["url"], timeout=10).text == "Hello, official compute client!"
    assert result["size"] == len("Hello, official compute client!")
    assert result["fileBaseName"] == REPORT and result["url"].endswith("/report/Hello%20report%20%281%29.txt")
    [other] = job["otherFileOutputs"]
    assert other["name"] == "figures/greeting.txt" and other["url"] in job["outputFileUrlList"]
    assert requests.get(other["url"], timeout=10).text == "Hello, official compute client!"
    assert f"Starting job {job_id} hello_sdk:hello_report" in output
    calls = [json.loads(line) for line in (tmp_path / "docker.log").read_text().splitlines()]
    assert calls[0] == ["pull", IMAGE] and calls[1][0] == "run" and IMAGE in calls[1]
    # The SDK's console monitor uploads the processor's output (it may still be on its way).
    deadline = time.monotonic() + 30
    while "Running processor" not in requests.get(job["consoleOutputUrl"], timeout=10).text:
        assert time.monotonic() < deadline, "no console output uploaded"
        time.sleep(0.5)
