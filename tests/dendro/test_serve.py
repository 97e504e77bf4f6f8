"""`dendro serve` runs under waitress (a production WSGI server) and keeps its options."""
import os
import signal
import subprocess
import sys

import requests
import yaml

from dendro_bridge import DendroClient
from dendro_bridge.model import DendroJobDefinition, DendroJobParameter, DendroJobRequiredResources
from dendro_bridge.server import Admin
from tests.dendro.conftest import HELLO_APP, subprocess_env


def test_session_service_is_served_by_waitress(dendro_service):
    resp = requests.post(f"{dendro_service.url}/api/getServices", json={"type": "getServicesRequest"}, timeout=10)
    assert resp.status_code == 200 and resp.headers["Server"] == "waitress"


def test_serve_options_under_waitress(tmp_path):
    data, objects = tmp_path / "data", tmp_path / "objects"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dendro_bridge", "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data), "--storage-url", objects.as_uri(), "--url-ttl-sec", "120",
         "--private-downloads", "--public-url", "http://127.0.0.1:1/unused"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        line = proc.stdout.readline()
        # --public-url is what the service announces and embeds in URLs, not where it listens.
        assert line.strip() == "Dendro service listening on http://127.0.0.1:1/unused", proc.stderr.read()
        admin = Admin(data)
        key = admin.create_user("u")
        admin.create_service("s", "u")
        admin.add_app("s", yaml.safe_load(HELLO_APP.read_text()))
        port = _listening_port(proc.pid)
        job = DendroClient(f"http://127.0.0.1:{port}", key).submit_job(
            service_name="s",
            required_resources=DendroJobRequiredResources(numCpus=1, numGpus=0, memoryGb=1, timeSec=10),
            job_definition=DendroJobDefinition(appName="hello_world", processorName="hello_world_1", inputFiles=[],
                                               outputFiles=[], parameters=[DendroJobParameter(name="name", value="x")]))
        assert job.consoleOutputUrl.startswith("http://127.0.0.1:1/unused/f/s/hello_world/")
        resp = requests.get(f"http://127.0.0.1:{port}/f/s/x.txt", timeout=10)
        assert resp.status_code == 403 and resp.headers["Server"] == "waitress"  # --private-downloads
        assert objects.is_dir()  # --storage-url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _listening_port(pid: int) -> int:
    """The TCP port a process listens on (it was started with --port 0 and a foreign public URL)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # state LISTEN
            return int(fields[1].split(":")[1], 16)
    raise AssertionError(f"process {pid} listens on no TCP port")
