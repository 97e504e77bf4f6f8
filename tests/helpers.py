"""Shared helpers for tests: write a pipeline module, run the real `drypipe` CLI on it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from drypipe import state as st

REPO = Path(__file__).resolve().parent.parent


def write_module(directory: Path, name: str, source: str) -> str:
    """Write `<directory>/<name>.py` and return the module name."""
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def drypipe(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120, check: bool = False):
    """Run `python -m drypipe ARGS` in `cwd` (where pipeline modules live)."""
    full_env = dict(os.environ, PYTHONPATH=f"{cwd}{os.pathsep}{REPO}", **(env or {}))
    result = subprocess.run(
        [sys.executable, "-m", "drypipe", *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"drypipe {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def state_of(instance: Path, key: str) -> str | None:
    """The task's marker; two only for the instant between the link and the unlink of a move."""
    markers = sorted((p.name[6:] for p in (instance / ".drypipe" / key).glob("state.*")),
                     key=lambda s: st.rank(s) if st.is_valid(s) else -1)
    assert len(markers) <= 1 or (len(markers) == 2 and st.is_move_cut_short(*markers)), markers
    return markers[-1] if markers else None


def output_vars(instance: Path, key: str) -> dict:
    return json.loads((instance / ".drypipe" / key / "output_vars").read_text())


def snapshot(instance: Path) -> dict[str, bytes]:
    """Every file under the instance with its content, to prove nothing changed."""
    if not instance.exists():
        return {}
    return {
        str(p.relative_to(instance)): p.read_bytes()
        for p in sorted(instance.rglob("*"))
        if p.is_file() and not p.name.startswith(".orchestrator.")  # the run lock, not state
    }


def wait_until(predicate, timeout: float = 30.0, what: str = "condition", interval: float = 0.05):
    """Poll `predicate` until it returns something true (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def require_bash_loadables(*names: str, without: str) -> None:
    """Skip (fail under CI, whose machine installs them) unless bash's loadable builtins
    `names` (Debian package bash-builtins) are installed; `without`: what a skip means."""
    import pytest

    if all(Path(f"/usr/lib/bash/{name}").exists() for name in names):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("bash-builtins is not installed (tests/services/install.sh installs it)")
    pytest.skip(f"bash-builtins not installed: {without}")
