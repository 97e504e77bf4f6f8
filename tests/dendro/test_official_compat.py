"""What the unmodified official client (`dendro==0.6.22`) sees of our service: its compute
client (`dendro run-pending-job`, with a stand-in `docker`), its credentials file, and the
calls its SDK makes after a job has ended."""
import os
import subprocess
import textwrap
from pathlib import Path

import requests
import yaml
from click.testing import CliRunner

from dendro_bridge import DendroJobDefinition, DendroJobParameter, DendroJobRequiredResources
from dendro_bridge.cli import dendro
from tests.dendro.test_endpoints import compute_api

HELLO = DendroJobDefinition(appName="hello_world", processorName="hello_world_1", inputFiles=[], outputFiles=[],
                            parameters=[DendroJobParameter(name="name", value="official")])


def official(python: Path, tenant, code: str, **env: str) -> subprocess.CompletedProcess:
    """Run `code` with the official client against the tenant's service."""
    return subprocess.run([str(python), "-c", textwrap.dedent(code)], env=tenant.env(**env), capture_output=True,
                          text=True, timeout=120)


def submit(tenant, num_cpus: int = 1, value: str = "official"):
    definition = DendroJobDefinition(appName=HELLO.appName, processorName=HELLO.processorName, inputFiles=[],
                                     outputFiles=[], parameters=[DendroJobParameter(name="name", value=value)])
    return tenant.client().submit_job(
        service_name=tenant.service_name, job_definition=definition,
        required_resources=DendroJobRequiredResources(numCpus=num_cpus, numGpus=0, memoryGb=1, timeSec=60))


def fake_docker_env(tmp_path: Path) -> dict[str, str]:
    """CONTAINER_METHOD=docker with a `docker` that only records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "docker.log"}\n')
    docker.chmod(0o755)
    return {"CONTAINER_METHOD": "docker", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def run_official_job_start(python: Path, tenant, tmp_path: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """Run an official command that starts a job, in tmp_path (it creates ./jobs/<id>)."""
    return subprocess.run(argv, cwd=tmp_path, env={**tenant.env(), **fake_docker_env(tmp_path)},
                          capture_output=True, text=True, timeout=120)


def create_compute_client_file(tenant, directory: Path, *slot: str) -> Path:
    """`drypipe dendro admin create-compute-client --output DIR/dendro-compute-client.yaml`."""
    directory.mkdir(exist_ok=True)
    path = directory / "dendro-compute-client.yaml"
    result = CliRunner().invoke(dendro, [
        "admin", "--data-dir", str(tenant.service.data_dir), "create-compute-client", "--service",
        tenant.service_name, "--user", tenant.user_id, "--name", "official", *slot, "--output", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_official_client_reads_service_apps(tenant, oracle_python):
    result = official(oracle_python, tenant, f"""
        from dendro.common.api_requests import get_service_app, _post_api_request
        app = get_service_app(service_name={tenant.service_name!r}, app_name='hello_world')
        apps = _post_api_request(url_path='/api/getServiceApps',
                                 data={{'type': 'getServiceAppsRequest', 'serviceName': {tenant.service_name!r}}})
        print(app.appName, [p.name for p in app.appSpecification.processors],
              sorted(a['appName'] for a in apps['serviceApps']))
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == \
        "hello_world ['hello_world_1', 'hello_world_2', 'count_characters'] ['hello_world', 'testing']"


def test_official_daemon_reads_the_compute_client_file(tenant, oracle_python, tmp_path):
    path = create_compute_client_file(tenant, tmp_path / "cc")
    result = official(oracle_python, tenant, f"""
        from dendro.compute_client.start_compute_client import get_compute_client_daemon
        d = get_compute_client_daemon(dir={str(path.parent)!r}, exit_when_idle=True, single_job=True)
        print(d._compute_client_id, d._compute_client_private_key, d._compute_client_name)
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    client_id, key, name = result.stdout.split()
    assert name == "official"
    # The credentials are the real ones: the service accepts them.
    resp = requests.post(f"{tenant.service.url}/api/getRunnableJobsForComputeClient", timeout=10,
                         json={"type": "getRunnableJobsForComputeClientRequest", "computeClientId": client_id},
                         headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text


def test_run_pending_job_as_a_user_starts_the_job(tenant, oracle_python, tmp_path):
    """`dendro run-pending-job JOB` with a user key claims with `computeClientId: ""`,
    reads the app (`serviceApp`) and starts the processor's container."""
    job = submit(tenant)
    result = run_official_job_start(oracle_python, tenant, tmp_path,
                                    [str(oracle_python.parent / "dendro"), "run-pending-job", job.jobId])
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    job.refresh()
    assert (job.status, job.computeClientId, job.error) == ("starting", "", None)
    assert any(line.startswith(f"run -v {tmp_path}/jobs/{job.jobId}/")
               for line in (tmp_path / "docker.log").read_text().splitlines())


def test_run_pending_job_by_another_user_with_process_jobs_right(tenant, oracle_python):
    admin = tenant.service.admin
    runner_key, outsider_key = admin.create_user(f"{tenant.user_id}-runner"), admin.create_user(f"{tenant.user_id}-x")
    admin.create_service(tenant.service_name, tenant.user_id,
                         {f"{tenant.user_id}-runner": ["processJobs"], f"{tenant.user_id}-x": ["createJobs"]})
    job = submit(tenant)
    code = f"""
        import os
        from dendro.common.api_requests import get_runnable_job
        print(get_runnable_job(job_id={job.jobId!r}, user_api_key=os.environ['KEY']).jobId)
        """
    result = official(oracle_python, tenant, code, KEY=runner_key)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == job.jobId
    refused = official(oracle_python, tenant, code, KEY=outsider_key)
    assert refused.returncode != 0 and "403" in refused.stderr


def test_official_sdk_uploads_logs_after_completion(tenant, oracle_python):
    job, api = submit(tenant), compute_api(tenant)
    [wire_job], _ = api.runnable_jobs(["hello_world"])
    api.claim(wire_job)
    api.set_status(wire_job, "running")
    api.set_status(wire_job, "completed")
    result = official(oracle_python, tenant, f"""
        import requests
        from dendro.common.api_requests import get_upload_url
        for kind in ('consoleOutput', 'resourceUtilizationLog'):
            url, _ = get_upload_url(job_id={job.jobId!r}, job_private_key={wire_job['jobPrivateKey']!r},
                                    upload_type=kind, output_name=None, other_name=None, size=5)
            assert requests.put(url, data=b'final').status_code == 200
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    job.refresh()
    assert job.status == "completed"
    assert requests.get(job.consoleOutputUrl, timeout=10).text == "final"
    assert requests.get(job.resourceUtilizationLogUrl, timeout=10).text == "final"


def test_run_pending_job_on_a_compute_client_ignores_slot_capacity(tenant, oracle_python, tmp_path):
    """A job asked for by id is handed out even when it does not fit the client's slots.
    (`dendro run-pending-job --compute-client-dir` itself fails in 0.6.22 before any request,
    calling get_compute_client_daemon without single_job, so its daemon call is made here.)"""
    path = create_compute_client_file(tenant, tmp_path / "cc", "--slot", "numCpus=2")
    job = submit(tenant, num_cpus=8)
    code = ("from dendro.compute_client.start_compute_client import get_compute_client_daemon\n"
            f"d = get_compute_client_daemon(dir={str(path.parent)!r}, exit_when_idle=False, single_job=False)\n"
            f"d.run_pending_job({job.jobId!r})\n")
    result = run_official_job_start(oracle_python, tenant, tmp_path, [str(oracle_python), "-c", code])
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    job.refresh()
    assert (job.status, job.computeClientId) == ("starting", yaml.safe_load(path.read_text())["compute_client_id"])
