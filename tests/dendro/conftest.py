"""Fixtures: a real Dendro service process on 127.0.0.1 (free port), fresh services with
users and compute clients per test, compute resources as real subprocesses, and the
official `dendro==0.6.22` client in its own venv as an oracle."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from dendro_bridge import DendroClient
from dendro_bridge.server import Admin

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HELLO_APP = REPO / "examples" / "dendro" / "hello_world" / "app.yaml"
TESTING_APP = HERE / "apps" / "testing.yaml"
ORACLE_VENV = Path(os.environ.get("DRYPIPE_DENDRO_ORACLE_VENV", "/tmp/drypipe-dendro-oracle-venv"))
ORACLE_VERSION = "0.6.22"


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: this checkout importable, fast client polling."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DENDRO_", "PAIRIO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(DENDRO_POLL_MIN_SEC="0.1", DENDRO_POLL_MAX_SEC="0.5", **extra)
    return env


@dataclass
class DendroService:
    url: str
    data_dir: Path
    proc: subprocess.Popen

    @property
    def admin(self) -> Admin:
        return Admin(self.data_dir)


@pytest.fixture(scope="session")
def dendro_service(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("dendro-service")
    log = open(data_dir / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dendro_bridge", "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=log, text=True, env=subprocess_env())
    line = proc.stdout.readline()  # "Dendro service listening on URL"; '' if it died
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"the Dendro service did not start: {(data_dir / 'serve.log').read_text()[-2000:]}")
    yield DendroService(url=line.split()[-1], data_dir=data_dir, proc=proc)
    proc.terminate()
    proc.wait(10)
    log.close()


@dataclass
class Tenant:
    """A fresh service with one user (its owner), the test apps, and a compute client."""

    service: DendroService
    service_name: str
    user_id: str
    api_key: str
    compute_config: Path
    work_dir: Path

    def client(self) -> DendroClient:
        return DendroClient(self.service.url, self.api_key)

    def env(self, **extra: str) -> dict[str, str]:
        return subprocess_env(DENDRO_API_URL=self.service.url, DENDRO_API_KEY=self.api_key,
                              DENDRO_SERVICE_NAME=self.service_name, **extra)

    def new_compute_client(self, name: str, slots: list[dict] | None = None) -> Path:
        client_id, key = self.service.admin.create_compute_client([self.service_name], self.user_id, name, slots)
        path = self.work_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"computeClientId": client_id, "computeClientPrivateKey": key}))
        return path

    def compute_command(self, *extra: str, config: Path | None = None, apps: tuple[Path, ...] = ()) -> list[str]:
        apps = apps or (HELLO_APP, TESTING_APP)
        return [sys.executable, "-m", "dendro_bridge", "start-compute-resource", "--api-url", self.service.url,
                "--config", str(config or self.compute_config), "--work-dir", str(self.work_dir / "jobs"),
                "--poll-interval", "0.1", *[a for app in apps for a in ("--app", str(app))], *extra]

    def run_compute(self, *extra: str, config: Path | None = None, apps: tuple[Path, ...] = (),
                    timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a compute resource in the foreground (pass --exit-when-idle or --single-job)."""
        return subprocess.run(self.compute_command(*extra, config=config, apps=apps), env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=True)

    def start_compute(self, *extra: str, config: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.compute_command(*extra, config=config), env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def tenant(dendro_service: DendroService, tmp_path: Path) -> Tenant:
    admin = dendro_service.admin
    suffix = uuid.uuid4().hex[:8]
    user_id, service_name = f"user-{suffix}", f"service-{suffix}"
    api_key = admin.create_user(user_id)
    admin.create_service(service_name, user_id)
    for spec in (HELLO_APP, TESTING_APP):
        admin.add_app(service_name, yaml.safe_load(spec.read_text()))
    tenant = Tenant(dendro_service, service_name, user_id, api_key, tmp_path / "compute.yaml", tmp_path)
    tenant.compute_config = tenant.new_compute_client("compute")
    return tenant


def _oracle_works(python: Path) -> bool:
    # pubnub: the compute client's extra, imported by `dendro start-compute-client` even with --single-job
    check = ("import dendro.client, dendro.sdk, pubnub, importlib.metadata as m; "
             f"assert m.version('dendro') == '{ORACLE_VERSION}'")
    return python.exists() and subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def oracle_python() -> Path:
    """The interpreter of a venv holding the unmodified official client with its compute-client
    extra (created once, reused)."""
    python = ORACLE_VENV / "bin" / "python"
    if _oracle_works(python):
        return python
    shutil.rmtree(ORACLE_VENV, ignore_errors=True)
    steps = [[sys.executable, "-m", "venv", str(ORACLE_VENV)],
             [str(python), "-m", "pip", "install", "--quiet", f"dendro[compute-client]=={ORACLE_VERSION}"]]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            _oracle_unavailable(f"{' '.join(step[-2:])} failed: {result.stderr.strip()[-500:]}")
    if not _oracle_works(python):
        _oracle_unavailable(f"{ORACLE_VENV} was created but does not import dendro {ORACLE_VERSION}")
    return python


def _oracle_unavailable(reason: str) -> None:
    """Skip outside CI; under CI=true a missing oracle is a failure, never a silent skip."""
    message = f"cannot create the oracle venv: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
