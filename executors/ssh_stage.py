"""What goes to a remote host for a task, and the remote versions of its control files.

The remote copy of an instance has the local layout under `<remote_base_dir>/<instance name>/`:

    .drypipe/.lib/task-lib.sh          the shared task runtime
    .drypipe/<key>/                    the task's control dir (task script, steps, logs)
    output/<upstream>/...              exactly the files the task consumes (its `inputs`)
    .drypipe/<upstream>/output_vars*   for variables it consumes
    .drypipe/<upstream>/state.completed   so that the task sees its upstream tasks completed
    .drypipe/.ssh/code/pipeline/       $__pipeline_code_dir (scripts, modules of python calls)
    .drypipe/.ssh/code/py-<hash>/      the package of each python call, importable from there
    .drypipe/.ssh/external/<abs path>  inputs given by absolute paths outside the instance
    .drypipe/.venv/                    drypipe for python calls (only if the task has any)

`task-env.sh` and `task-conf.json` are the only control files that name local paths (code dir,
python interpreter, containers dir, absolute inputs); they are regenerated for the remote side
by the same code that writes the local ones, and never copied from the local side.
"""
from __future__ import annotations

import copy
import glob
import hashlib
import json
import logging
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drypipe.errors import UserError
from drypipe.instance import Instance
from drypipe.task_record import TaskRecord
from drypipe.task_script import LIB_RELATIVE_PATH, write_task_files

log = logging.getLogger("drypipe.ssh")

SSH_DIR = ".drypipe/.ssh"
CODE_DIR = f"{SSH_DIR}/code"
EXTERNAL_DIR = f"{SSH_DIR}/external"
DEFAULT_VENV = ".drypipe/.venv"

# Control-dir files never uploaded: markers (the remote side is reset to `launched`), local
# process and job records, and the two files regenerated for the remote side.  An upstream
# task's `completed` marker does go (listed by stage_task): the task checks it before it starts.
UPLOAD_INCLUDES = ["/.drypipe/*/state.completed"]
UPLOAD_EXCLUDES = [
    "/.drypipe/*/state.*", "/.drypipe/*/pid", "/.drypipe/*/ssh_launch", "/.drypipe/*/slurm_job_id",
    "/.drypipe/*/sbatch-launcher.sh", "/.drypipe/*/task-env.sh", "/.drypipe/*/task-conf.json",
    "/.drypipe/*/.*.tmp", "/.drypipe/*/cached",
]
CODE_EXCLUDES = ["__pycache__/", "*.pyc", ".git/", ".drypipe/", ".pytest_cache/", ".mypy_cache/", ".venv/"]
# What comes back from a finished task's control dir (its output dir comes back whole).
DOWNLOADED_CONTROL_FILES = ("out.log", "drypipe.log", "output_vars", "output_vars.sh", "slurm.log")


def read_doc(instance: Instance, key: str) -> dict[str, Any]:
    return TaskRecord(instance.root, key).conf_document()


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class RemoteTask:
    """The remote versions of a task's files, and what must be uploaded for it."""

    key: str
    paths: list[str]  # relative to the instance root, for rsync --files-from
    code: dict[str, str] = field(default_factory=dict)  # remote relative dest -> local path
    externals: list[str] = field(default_factory=list)  # absolute local paths
    env_text: str = ""
    conf_text: str = ""
    needs_python: bool = False


def _relative_or_external(root: Path, path: str) -> tuple[str | None, str | None]:
    """(path relative to the instance, None) or (None, absolute path outside it)."""
    absolute = path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))
    relative = os.path.relpath(absolute, root)
    if relative == ".." or relative.startswith(".." + os.sep):
        return None, absolute
    return relative, None


def _external_relative(absolute: str) -> str:
    return posixpath.join(EXTERNAL_DIR, absolute.lstrip("/"))


def stage_task(instance: Instance, key: str, remote_root: str, python_bin: str | None,
               containers_dir: str | None, upload_code: bool, plain_python: str = "python3") -> RemoteTask:
    """The remote task-env.sh / task-conf.json of a task and the list of what it needs.

    `python_bin`: the remote interpreter for python calls (None: keep the TaskConf's);
    tasks without python calls get `plain_python` (no local path leaks to the host)."""
    root = instance.root
    doc = read_doc(instance, key)
    remote = copy.deepcopy(doc)
    paths = [LIB_RELATIVE_PATH, f".drypipe/{key}"]
    result = RemoteTask(key, paths)

    # inputs: exactly the files the task consumes, and the variables of its upstreams
    for spec in remote["inputs"]:
        kind = spec["kind"]
        if kind == "file":
            relative, external = _relative_or_external(root, spec["path"])
            if external:
                result.externals.append(external)
                spec["path"] = _external_relative(external)
            elif relative is not None:
                paths.append(relative)
        elif kind == "glob":
            pattern = spec["pattern"]
            relative, external = _relative_or_external(root, pattern)
            matches = sorted(glob.glob(external if external else os.path.join(root, pattern)))
            if external:
                result.externals.extend(matches)
                spec["pattern"] = _external_relative(external)
                spec["matched"] = [_external_relative(m) for m in matches]
            else:
                paths.extend(os.path.relpath(m, root) for m in matches)
        elif kind == "var":
            upstream = spec["upstream"]
            paths += [f".drypipe/{upstream}/output_vars.sh", f".drypipe/{upstream}/output_vars"]
    # the task checks that its upstream tasks completed before it starts
    paths += [f".drypipe/{upstream}/state.completed" for upstream in doc.get("upstream_keys", [])]

    # code: $__pipeline_code_dir and the packages of python calls
    code_dir = doc.get("pipeline_code_dir")
    if upload_code and code_dir and os.path.isdir(code_dir):
        result.code[f"{CODE_DIR}/pipeline"] = code_dir
        remote["pipeline_code_dir"] = posixpath.join(remote_root, CODE_DIR, "pipeline")
    for step in remote["steps"]:
        if step["kind"] != "python":
            continue
        result.needs_python = True
        module = step["module"]
        if module == "__main__" and step.get("file"):
            dest = f"{CODE_DIR}/main-{_short_hash(step['file'])}"
            name = os.path.basename(step["file"])
            result.code[f"{dest}/{name}"] = step["file"]
            step["file"] = posixpath.join(remote_root, dest, name)
            continue
        sys_path = step.get("sys_path")
        if not sys_path:
            continue
        top = module.split(".")[0]
        source = os.path.join(sys_path, top)
        if not os.path.isdir(source):
            source += ".py"
        if not os.path.exists(source):
            continue  # importable some other way (installed package): nothing to copy
        dest = f"{CODE_DIR}/py-{_short_hash(sys_path)}"
        result.code[f"{dest}/{os.path.basename(source)}"] = source
        step["sys_path"] = posixpath.join(remote_root, dest)
    if python_bin:
        remote["python_bin"] = python_bin if result.needs_python else plain_python
    if containers_dir:
        remote["containers_dir"] = containers_dir
    result.env_text, result.conf_text = _render(remote)
    return result


def _render(doc: dict[str, Any]) -> tuple[str, str]:
    """task-env.sh and task-conf.json for a document, written by drypipe's own generator."""
    with tempfile.TemporaryDirectory(prefix="drypipe-ssh-") as tmp:
        scratch = Instance(tmp)
        write_task_files(scratch, doc)
        control = scratch.control_dir(doc["key"])
        return (control / "task-env.sh").read_text(), (control / "task-conf.json").read_text()


def code_excludes(remote_dest: str, local_source: str, instance_root: Path) -> list[str]:
    """rsync excludes for a code upload: caches, VCS dirs, and the instance itself when it
    lives inside the code dir."""
    excludes = list(CODE_EXCLUDES)
    try:
        inside = os.path.relpath(instance_root, local_source)
    except ValueError:
        inside = ".."
    if inside != "." and not inside.startswith(".."):
        excludes.append("/" + inside.replace(os.sep, "/") + "/")
    return excludes


# -- drypipe for python calls on the remote side ------------------------------------------------


def _package_dirs() -> list[Path]:
    import dry_pipe
    import drypipe

    return [Path(drypipe.__file__).parent, Path(dry_pipe.__file__).parent]


def source_digest() -> str:
    """A digest of drypipe's installed source: the remote venv is rebuilt when it changes."""
    h = hashlib.sha256()
    for directory in _package_dirs():
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                h.update(str(path.relative_to(directory.parent)).encode() + b"\0")
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _cache_dir() -> Path:
    base = os.environ.get("DRYPIPE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "drypipe")
    return Path(base) / "wheels"


def build_wheel() -> Path:
    """A wheel of the running drypipe (`pip wheel --no-deps`), built once per source digest."""
    import drypipe

    digest = source_digest()
    target = _cache_dir() / digest
    found = sorted(target.glob("drypipe-*.whl")) if target.is_dir() else []
    if found:
        return found[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drypipe-wheel-") as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        for directory in _package_dirs():
            shutil.copytree(directory, source / directory.name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (source / "pyproject.toml").write_text(_pyproject(drypipe.__version__))
        out = Path(tmp) / "wheel"
        errors = []
        # Without build isolation when the local setuptools can (fast, offline); else pip's default.
        for extra in (["--no-build-isolation"], []):
            done = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                 *extra, "-w", str(out), str(source)],
                capture_output=True, text=True, check=False, timeout=600,
            )
            wheels = sorted(out.glob("drypipe-*.whl"))
            if done.returncode == 0 and wheels:
                staged = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
                shutil.copy2(wheels[0], staged / wheels[0].name)
                try:
                    os.rename(staged, target)
                except OSError:  # built meanwhile by another process
                    shutil.rmtree(staged, ignore_errors=True)
                return min(target.glob("drypipe-*.whl"))
            errors.append((done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"])
        raise UserError(
            "cannot build a drypipe wheel for the remote host (pip wheel --no-deps failed: "
            f"{'; '.join(e[0] for e in errors)}); install `wheel` locally, or give the remote "
            "tasks a python_bin that has drypipe installed"
        )


def _pyproject(version: str) -> str:
    try:
        from importlib.metadata import requires

        deps = [r for r in (requires("drypipe") or []) if "extra ==" not in r]
    except Exception:  # noqa: BLE001 - metadata is optional here
        deps = []
    return (
        '[build-system]\nrequires = ["setuptools>=61", "wheel"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "drypipe"\nversion = "{version}"\nrequires-python = ">=3.10"\n'
        f"dependencies = {json.dumps(deps)}\n\n"
        '[tool.setuptools.packages.find]\ninclude = ["drypipe*", "dry_pipe*"]\n\n'
        '[tool.setuptools.package-data]\ndrypipe = ["resources/*"]\n'
    )
