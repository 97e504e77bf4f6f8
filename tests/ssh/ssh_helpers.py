"""Helpers of the SSH tests: run the real `drypipe` CLI, look at the remote side, wait."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, wait_until  # noqa: F401  (re-exported for the tests)


def drypipe(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drypipe", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_drypipe(*args: str, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "drypipe", *args], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def as_ssh_user(sshd_server, command: str) -> subprocess.CompletedProcess:
    """Run a shell command on the test host as the ssh user (to look at the remote side)."""
    return subprocess.run(["ssh", "-F", sshd_server["SSH_CONFIG"], sshd_server["SSH_HOST_ALIAS"], command],
                          capture_output=True, text=True, timeout=60, check=False)




def outputs(instance: Path, *remote_roots: str) -> dict[str, bytes]:
    """Every file under output/ with its content, instance paths (local and remote) replaced."""
    root = instance / "output"
    found = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            for r in (str(instance), *remote_roots):
                data = data.replace(r.encode(), b"<instance>")
            found[str(p.relative_to(root))] = data
    return found
