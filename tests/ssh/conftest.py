"""Fixtures of the SSH tests: a remote base directory for the test user, and the environment
under which `drypipe` runs the pipelines of tests/ssh/pipelines.py.

The remote base is NOT under the sshd state dir: `sshd.sh kill-sessions` kills every process
of the ssh user working there, and the reconnection test needs remote tasks that outlive their
ssh session (as they do on a real host).  Whatever is left running there is killed at the end.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO

PROCS = REPO / "tests" / "services" / "procs.py"


@pytest.fixture(scope="session")
def remote_base(sshd_server):
    """A directory the ssh user owns, outside the sshd state dir (see the module docstring)."""
    user = pwd.getpwnam(sshd_server["SSH_USER"])
    base = Path(tempfile.mkdtemp(prefix="drypipe-ssh-remote-"))
    base.chmod(0o755)
    os.chown(base, user.pw_uid, user.pw_gid)
    yield base
    _kill_under(base)
    if not os.environ.get("DRYPIPE_KEEP_SERVICE_STATE"):
        shutil.rmtree(base, ignore_errors=True)


def _kill_under(base: Path) -> None:
    """Kill processes (of any test) still working under `base` (never anything by name)."""
    found = subprocess.run([sys.executable, "-S", str(PROCS), "--rule", f"cwd-under:{base}"],
                           capture_output=True, text=True, check=False)
    for pid in found.stdout.split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture(scope="session")
def shared_venv(remote_base) -> str:
    """One remote venv with drypipe for the tests' python calls (installing takes ~5 s)."""
    return str(remote_base / "shared-venv")


@pytest.fixture
def ssh_env(sshd_server, remote_base, shared_venv, tmp_path):
    """Environment for `drypipe` running tests/ssh/pipelines.py against the test sshd."""
    remote = remote_base / tmp_path.name
    env = dict(os.environ)
    env.update({k: v for k, v in sshd_server.items() if k.startswith("SSH")})
    env.update(
        PYTHONPATH=str(REPO),
        DRYPIPE_TEST_REMOTE_BASE=str(remote),
        DRYPIPE_SSH_REMOTE_VENV=shared_venv,
        DRYPIPE_LOST_GRACE_SECONDS="2",
        DRYPIPE_SERVICE_SLEEP_SCHEDULE="0,0.3,0.6,1",
    )
    env.pop("DRYPIPE_TEST_SSH_OPTIONS", None)
    return env
