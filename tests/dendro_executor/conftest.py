"""Fixtures for the Dendro executor: a real Dendro service process (logging every request, so
tests count `createJob` calls), a fresh service with the example and test apps per test, a
real compute resource process, and `drypipe run` as a user types it."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from dendro_bridge import DendroClient
from dendro_bridge.server import Admin

REPO = Path(__file__).resolve().parents[2]
APPS = (REPO / "examples" / "dendro" / "hello_world" / "app.yaml",
        REPO / "examples" / "dendro" / "textstats" / "app.yaml",
        REPO / "tests" / "dendro" / "apps" / "testing.yaml")
SLEEP_SCHEDULE = "0,0.1,0.2"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DENDRO_", "PAIRIO_", "DRYPIPE_DENDRO_", "DRYPIPE_PIPELINE"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


@dataclass
class Server:
    url: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen

    def requests(self, endpoint: str) -> int:
        """How many `POST /api/<endpoint>` the service has answered (its request log)."""
        return self.log_path.read_text().count(f'"POST /api/{endpoint} HTTP')

    def jobs(self, service: str) -> list[tuple[str, str, str | None]]:
        """(job id, status, compute client) of every job of a service, from its database."""
        with sqlite3.connect(self.data_dir / "dendro.sqlite") as db:
            return list(db.execute("SELECT job_id, status, compute_client_id FROM jobs WHERE service_name = ?",
                                   (service,)))


@pytest.fixture(scope="session")
def dendro_server(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("dendro-executor-service")
    log_path = data_dir / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dendro_bridge", "serve", "--host", "127.0.0.1", "--port", "0",
             "--data-dir", str(data_dir), "--verbose"],
            stdout=subprocess.PIPE, stderr=log, text=True, env=base_env())
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"the Dendro service did not start: {log_path.read_text()[-2000:]}")
    yield Server(line.split()[-1], data_dir, log_path, proc)
    proc.terminate()
    proc.wait(10)


@dataclass
class Tenant:
    """A fresh service with one user, the apps, an input store and a compute client."""

    server: Server
    service: str
    api_key: str
    compute_config: Path
    root: Path
    computes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def store(self) -> Path:
        return self.root / "store"

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(DENDRO_API_URL=self.server.url, DENDRO_API_KEY=self.api_key,
                        DENDRO_SERVICE_NAME=self.service, DRYPIPE_DENDRO_STORE=str(self.store), **extra)

    def client(self) -> DendroClient:
        return DendroClient(self.server.url, self.api_key)

    def start_compute(self, *extra: str) -> Path:
        """A compute resource process running the apps; returns its log file."""
        log_path = self.root / f"compute-{len(self.computes)}.log"
        command = [sys.executable, "-m", "dendro_bridge", "start-compute-resource", "--api-url", self.server.url,
                   "--config", str(self.compute_config), "--work-dir", str(self.root / "jobs"),
                   "--poll-interval", "0.1", "--allow-input-url", self.store.as_uri() + "/",
                   *[a for app in APPS for a in ("--app", str(app))], *extra]
        with open(log_path, "w") as log:
            self.computes.append(subprocess.Popen(command, env=base_env(), stdout=log, stderr=subprocess.STDOUT))
        return log_path

    def claimed(self) -> int:
        """Jobs claimed by the compute resources so far (their logs)."""
        return sum(p.read_text().count("claimed job") for p in self.root.glob("compute-*.log"))

    def stop(self) -> None:
        for proc in self.computes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.computes:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def tenant(dendro_server: Server, tmp_path: Path):
    admin = Admin(dendro_server.data_dir)
    suffix = uuid.uuid4().hex[:8]
    user, service = f"user-{suffix}", f"service-{suffix}"
    api_key = admin.create_user(user)
    admin.create_service(service, user)
    for spec in APPS:
        admin.add_app(service, yaml.safe_load(spec.read_text()))
    client_id, key = admin.create_compute_client([service], user, "compute",
                                                 [{"numCpus": 4, "memoryGb": 8, "multiplicity": 4}])
    config = tmp_path / "compute.yaml"
    config.write_text(yaml.safe_dump({"computeClientId": client_id, "computeClientPrivateKey": key}))
    t = Tenant(dendro_server, service, api_key, config, tmp_path)
    t.store.mkdir()
    yield t
    t.stop()


def drypipe(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drypipe", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def run_pipeline(spec: str, instance: Path, env: dict[str, str], expect: int = 0) -> subprocess.CompletedProcess:
    result = drypipe("run", "-p", spec, "-i", str(instance), "--sleep-schedule", SLEEP_SCHEDULE, env=env)
    assert result.returncode == expect, (
        f"drypipe run exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n"
        + logs(instance))
    return result


def logs(instance: Path) -> str:
    text = []
    for control in sorted((instance / ".drypipe").glob("*/")):
        if control.name.startswith("."):
            continue
        states = [p.name for p in control.glob("state.*")]
        for name in ("drypipe.log", "out.log"):
            path = control / name
            if path.exists():
                text.append(f"--- {control.name} {states} {name}\n{path.read_text()[-1500:]}")
    return "\n".join(text)


def state_of(instance: Path, key: str) -> str | None:
    markers = [p.name[6:] for p in (instance / ".drypipe" / key).glob("state.*")]
    assert len(markers) <= 1, markers
    return markers[0] if markers else None


def wait_for(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
