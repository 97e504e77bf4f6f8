"""Session-scoped pytest fixtures that run REAL servers for tests: Slurm, sshd, S3.

Loaded by ``tests/conftest.py`` (``pytest_plugins = ["tests.services.fixtures"]``).

Fixtures (each returns a dict: the variables of the server's ``env.sh``, plus
``STATE_DIR`` (its state directory) and ``SERVICE_SCRIPT`` (the script that runs it)):

* ``slurm_cluster`` -- single-node Slurm (``slurm.sh``): ``SLURM_CONF``,
  ``DRYPIPE_SLURM_PARTITION``, ``DRYPIPE_SLURM_JOBCOMP_LOG``, ``DRYPIPE_SLURM_STATE_DIR``.
  Also sets ``os.environ["SLURM_CONF"]`` for the whole session (restored at the end), so
  plain ``sbatch``/``squeue`` calls reach it.
* ``sshd_server`` -- sshd on 127.0.0.1 (``sshd.sh``): ``SSHD_PORT``, ``SSH_HOST``,
  ``SSH_USER``, ``SSH_KEY``, ``SSH_KNOWN_HOSTS``, ``SSH_CONFIG``, ``SSH_HOST_ALIAS``,
  ``SSH_REMOTE_BASE``, ``SSH_REMOTE_PYTHON``.
* ``sshd_inner_server`` -- a second sshd on 127.0.0.1 (``sshd_inner.sh``) that only the ssh
  user's processes can reach, i.e. only through ``sshd_server`` as a jump host; same variables.
* ``s3_server`` -- moto S3 server (``s3.sh``): ``AWS_ENDPOINT_URL_S3``, ``S3_ENDPOINT_URL``,
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``.

Servers are started once per session and stopped at its end. To save time, the servers
that the collected tests need are all started in parallel right after collection; each
fixture then only waits for its own. The scripts need root and ``install.sh`` having run.

If a server cannot start, its tests are skipped with the reason -- except on CI
(``CI=true``), where they fail, so that a broken setup cannot pass as green.
Set ``DRYPIPE_KEEP_SERVICE_STATE=1`` to keep the state directories (logs) after the run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SERVICES_DIR = Path(__file__).resolve().parent

# fixture name -> (script, state sub-directory)
SERVICES = {
    "slurm_cluster": ("slurm.sh", "slurm"),
    "sshd_server": ("sshd.sh", "sshd"),
    "sshd_inner_server": ("sshd_inner.sh", "sshd-inner"),
    "s3_server": ("s3.sh", "s3"),
}

START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 90


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse the ``export NAME='value'`` lines the scripts write."""
    env = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            env[name] = value
    return env


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class _Service:
    """One server: its start (possibly running in the background) and its stop."""

    def __init__(self, name: str, base_dir: Path):
        script, sub = SERVICES[name]
        self.name = name
        self.script = SERVICES_DIR / script
        self.state_dir = base_dir / sub
        self.log_path = base_dir / f"{sub}.start.log"
        self.proc: subprocess.Popen | None = None
        self.result: dict[str, str] | None = None
        self.error: str | None = None
        self.stopped = False

    def begin(self) -> None:
        """Launch ``script start`` without waiting (no-op if already launched)."""
        if self.proc is not None or self.error is not None:
            return
        if os.geteuid() != 0:
            self.error = f"{self.name}: the server scripts need root"
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # stdout/stderr to a file, not a pipe: nothing can block on a full pipe, and
            # daemons can never hold a pipe of ours open.
            self.proc = subprocess.Popen(
                ["bash", str(self.script), "start", str(self.state_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    def wait(self) -> dict[str, str]:
        """Wait for the start; return the env dict, or raise skip/fail."""
        if self.result is None and self.error is None:
            self.begin()
        if self.result is None and self.error is None:
            assert self.proc is not None
            try:
                rc = self.proc.wait(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = None
            output = self.log_path.read_text(errors="replace")
            env_file = self.state_dir / "env.sh"
            if rc == 0 and env_file.is_file():
                self.result = parse_env_file(env_file)
                self.result["STATE_DIR"] = str(self.state_dir)
                self.result["SERVICE_SCRIPT"] = str(self.script)
                last = output.strip().splitlines()[-1] if output.strip() else ""
                sys.stderr.write(f"\n[services] {self.name} ready: {last}\n")
            else:
                why = (f"timed out after {START_TIMEOUT_S}s" if rc is None
                       else f"exit code {rc}")
                self.error = (f"{self.name}: `{self.script.name} start` failed ({why}):\n"
                              f"{_tail(output)}")
        if self.error is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(self.error, pytrace=False)
            pytest.skip(self.error)
        assert self.result is not None
        return self.result

    def stop(self) -> str | None:
        """Stop the server if it was launched. Returns an error message or None."""
        if self.stopped or self.proc is None:
            return None
        self.stopped = True
        if self.proc.poll() is None:  # still starting: let it finish, then stop it
            try:
                self.proc.wait(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        res = subprocess.run(
            ["bash", str(self.script), "stop", str(self.state_dir)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=STOP_TIMEOUT_S,
        )
        if res.returncode != 0:
            return (f"{self.name}: `{self.script.name} stop` failed (exit code "
                    f"{res.returncode}):\n{_tail(res.stdout + res.stderr)}")
        return None


class _Services:
    """All servers of one pytest session, under one temporary base directory."""

    def __init__(self):
        self._base: Path | None = None
        self.services: dict[str, _Service] = {}

    @property
    def base(self) -> Path:
        if self._base is None:
            # Not pytest's tmp_path: that is mode 700, and the ssh test user (not root)
            # must be able to enter the sshd state dir.
            self._base = Path(tempfile.mkdtemp(prefix="drypipe-services-"))
            self._base.chmod(0o755)
        return self._base

    def get(self, name: str) -> _Service:
        if name not in self.services:
            self.services[name] = _Service(name, self.base)
        return self.services[name]

    def stop_all(self) -> list[str]:
        errors = [e for s in self.services.values() if (e := s.stop())]
        if self._base is not None and not errors and not os.environ.get(
                "DRYPIPE_KEEP_SERVICE_STATE"):
            shutil.rmtree(self._base, ignore_errors=True)
        return errors


_services_key = pytest.StashKey[_Services]()


def _services(config: pytest.Config) -> _Services:
    if _services_key not in config.stash:
        config.stash[_services_key] = _Services()
    return config.stash[_services_key]


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: start only what will run
def pytest_collection_modifyitems(session, config, items):
    if config.option.collectonly:
        return
    needed = {name for item in items for name in getattr(item, "fixturenames", ())
              if name in SERVICES}
    for name in sorted(needed):
        _services(config).get(name).begin()


def pytest_unconfigure(config):
    # Safety net: servers launched for tests that then never ran (e.g. skipped, or the
    # run was interrupted) are stopped here; the fixtures' own teardown normally did it.
    if _services_key in config.stash:
        for error in config.stash[_services_key].stop_all():
            sys.stderr.write(f"\n[services] WARNING: {error}\n")


def _fixture(request, name: str):
    service = _services(request.config).get(name)
    env = service.wait()
    yield env
    error = service.stop()
    if error:
        raise RuntimeError(error)


@pytest.fixture(scope="session")
def slurm_cluster(request):
    """A running single-node Slurm cluster; SLURM_CONF is set in os.environ."""
    gen = _fixture(request, "slurm_cluster")
    env = next(gen)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    try:
        yield env
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        next(gen, None)


@pytest.fixture(scope="session")
def sshd_server(request):
    """A running sshd on 127.0.0.1 that lets SSH_USER in with SSH_KEY."""
    yield from _fixture(request, "sshd_server")


@pytest.fixture(scope="session")
def sshd_inner_server(request):
    """A running sshd on 127.0.0.1 that root cannot reach directly: only through sshd_server."""
    yield from _fixture(request, "sshd_inner_server")


@pytest.fixture(scope="session")
def s3_server(request):
    """A running S3-compatible server (moto) at S3_ENDPOINT_URL."""
    yield from _fixture(request, "s3_server")
