"""Helpers for the Slurm tests: run the CLI against the real cluster, count Slurm calls."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO, wait_until  # noqa: F401  (re-exported for the tests)

# The CLI of this checkout (PYTHONPATH); its Slurm commands come from the installed
# `drypipe.commands` entry points (pip install -e .).
CLI = "from drypipe.cli import main; main()"
FAST = ["--sleep-schedule", "0,0.5,1"]


def slurm_test_env(slurm_cluster: dict, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(
        SLURM_CONF=slurm_cluster["SLURM_CONF"],
        DRYPIPE_LOST_GRACE_SECONDS="2",
        PYTHONPATH=str(REPO),
    )
    env.update(extra or {})
    return env


def drypipe(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_drypipe(*args: str, env: dict, log: Path) -> subprocess.Popen:
    """`drypipe ARGS` in the background, stdout+stderr to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", CLI, *args], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)




def job_id(instance: Path, key: str) -> str | None:
    try:
        return (instance / ".drypipe" / key / "slurm_job_id").read_text().strip()
    except FileNotFoundError:
        return None


def squeue_state(job: str) -> str | None:
    """The job's state as squeue shows it now (an array cancelled while pending: its base id)."""
    result = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", job.split("_")[0], "-o", "%i %T"],
                            capture_output=True, text=True, check=False)
    states = dict(line.split() for line in result.stdout.splitlines() if line.strip())
    return states.get(job) or states.get(job.split("_")[0])


class CallLog:
    """Wrapper scripts for Slurm commands, first on PATH: each logs its arguments, then runs
    the real command.  `fail_account` makes the sbatch wrapper refuse that account as a
    cluster with accounting does (this test cluster accepts any account)."""

    def __init__(self, directory: Path, commands=("sbatch", "squeue", "scancel", "sacct"),
                 fail_account: str | None = None):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for name in commands:
            real = _which(name)
            refuse = ""
            if name == "sbatch" and fail_account:
                refuse = (f'for a in "$@"; do if [ "$a" = "--account={fail_account}" ]; then\n'
                          '  echo "sbatch: error: Batch job submission failed: Invalid account or '
                          'account/partition combination specified" >&2; exit 1; fi; done\n')
            script = directory / name
            script.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> {directory}/{name}.calls\n'
                              f'{refuse}exec {real} "$@"\n')
            script.chmod(0o755)

    def env(self, env: dict) -> dict:
        return dict(env, PATH=f"{self.directory}{os.pathsep}{env.get('PATH', '')}")

    def calls(self, name: str) -> list[str]:
        path = self.directory / f"{name}.calls"
        return path.read_text().splitlines() if path.exists() else []


def _which(name: str) -> str:
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return f"/usr/bin/{name}"
