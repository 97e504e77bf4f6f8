"""Generates a task's files in `.drypipe/<key>/`: the `task` script, `task-env.sh`,
`task-conf.json` and one `step-N.sh` per bash step.  Paths inside them are relative to
`$__pipeline_instance_dir`, which the script computes from its own location, so an instance
can be moved or copied."""
from __future__ import annotations

import hashlib
import json
import os
import shlex
from importlib import resources
from typing import Any

from drypipe.instance import Instance, write_atomic, write_new
from drypipe.task import Task

LIB_RELATIVE_PATH = ".drypipe/.lib/task-lib.sh"


def q(value: str) -> str:
    """Shell-quote a value for bash (any bytes a str can hold, byte-exact)."""
    return shlex.quote(value)


def in_instance(relative: str) -> str:
    """A bash word for a path inside the instance dir, or an absolute path as is."""
    if os.path.isabs(relative):
        return q(relative)
    return f'"$__pipeline_instance_dir"/{q(relative)}'


def write_task_lib(instance: Instance) -> None:
    """Install the shared task runtime into the instance, if missing or out of date."""
    lib = resources.files("drypipe").joinpath("resources/task-lib.sh").read_text()
    path = instance.root / LIB_RELATIVE_PATH
    if not path.exists() or path.read_text() != lib:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lib)


def task_conf_document(task: Task, python_bin: str, pipeline_code_dir: str, containers_dir: str | None) -> dict[str, Any]:
    doc = task.spec()
    doc["python_bin"] = python_bin
    doc["pipeline_code_dir"] = pipeline_code_dir
    doc["containers_dir"] = containers_dir
    body = json.dumps(doc, sort_keys=True)
    doc["digest"] = hashlib.sha256(body.encode()).hexdigest()
    return doc


def write_task_files(instance: Instance, doc: dict[str, Any], fresh: bool = False) -> None:
    """Write the control files of one task (the `task` script last: its presence means complete).

    `fresh`: the task has no state marker yet, so files are written in place (see write_new)."""
    control = instance.control_dir(doc["key"])
    control.mkdir(parents=True, exist_ok=True)
    write = write_new if fresh else write_atomic
    for i, step in enumerate(doc["steps"]):
        if step["kind"] == "bash":
            write(control / f"step-{i}.sh", step["code"], 0o755)
    write(control / "task-env.sh", _task_env(doc))
    write(control / "task-conf.json", json.dumps(doc, sort_keys=True) + "\n")  # one line: json.dumps is 10x faster without indent
    write(control / "task", _task_script(doc), 0o755)


def _task_env(doc: dict[str, Any]) -> str:
    key = doc["key"]
    conf = doc["task_conf"]
    lines = [
        f"# environment of task {key}: sourced by ./task, which sets $__pipeline_instance_dir",
        f'export __task_output_dir="$__pipeline_instance_dir"/output/{q(key)}',
        'export __out_log="$__control_dir/out.log"',
        'export __scratch_dir="${SLURM_TMPDIR:-$__task_output_dir/scratch}"',
        f"export __pipeline_code_dir={q(doc['pipeline_code_dir'])}",
        f"export __containers_dir={q(doc['containers_dir'] or '')}",
        f"export __python_bin={q(doc['python_bin'])}",
    ]
    if conf.get("command_before_task"):
        lines.append(f"export __command_before_task={q(conf['command_before_task'])}")
    for name, value in sorted((conf.get("extra_env") or {}).items()):
        lines.append(f"export {name}={q(str(value))}")
    for spec in doc["inputs"]:
        name = spec["name"]
        kind = spec["kind"]
        if kind == "value":
            lines.append(f"export {name}={q(spec['value'])}")
        elif kind in ("file", "glob"):
            lines.append(f"export {name}={in_instance(spec['path'] if kind == 'file' else spec['pattern'])}")
        elif kind == "var":
            lines.append(f"__upstream_var {name} {q(spec['upstream'])} {q(spec['output'])} || return 1")
    files = []
    for spec in doc["outputs"]:
        if spec["kind"] == "file":
            lines.append(f'export {spec["name"]}="$__task_output_dir"/{q(spec["path"])}')
            files.append(f'"$__task_output_dir"/{q(spec["path"])}')
        elif spec["kind"] == "fileset":
            lines.append(f'export {spec["name"]}="$__task_output_dir"/{q(spec["glob"])}')
    lines.append(f"__output_files=({' '.join(files)})")
    # Files that upstream tasks produced: checked before the first step runs (one may have been deleted).
    upstream_files = [in_instance(spec["path"]) for spec in doc["inputs"] if spec["kind"] == "file" and spec.get("upstream")]
    lines.append(f"__input_files=({' '.join(upstream_files)})")
    return "\n".join(lines) + "\n"


def _step_command(i: int, step: dict[str, Any]) -> str:
    kind = step["kind"]
    if kind == "bash":
        code = step["code"]
        runner = "__bash_step" if _is_bash(code) else "__exec_step"
        command = f'{runner} "$__control_dir/step-{i}.sh"'
    elif kind == "script":
        path = f'"$__pipeline_code_dir"/{q(step["path"])}'
        command = f"__bash_step {path}"
    else:
        command = f"__python_step {q(step['module'] + ':' + step['function'])}"
    return f"__container_or {q(step.get('container') or '')} {i} {command}"


def _is_bash(code: str) -> bool:
    first = code.splitlines()[0] if code else ""
    return not first.startswith("#!") or first.rstrip().endswith(("bash", "/sh"))


def _task_script(doc: dict[str, Any]) -> str:
    key = doc["key"]
    var_names = [o["name"] for o in doc["outputs"] if o["kind"] == "var"]
    cases = "\n".join(f"        {i}) {_step_command(i, s)} ;;" for i, s in enumerate(doc["steps"]))
    return f"""#!/usr/bin/env bash
# drypipe task {key}: `./task` runs it (also by hand or under sbatch); `./task --help` for more.
__control_dir=${{BASH_SOURCE[0]%/*}}  # this script's directory, found without forking
[[ ${{BASH_SOURCE[0]}} == */* ]] || __control_dir=.
[[ $__control_dir == /* ]] || __control_dir=$PWD/$__control_dir
[[ $__control_dir != */../* && $__control_dir != */.. ]] || __control_dir=$(cd -- "$__control_dir" && pwd)
__pipeline_instance_dir=${{__control_dir%/.drypipe/*}}
export __control_dir __pipeline_instance_dir
export __task_key={q(key)}
__step_count={len(doc["steps"])}
__output_var_names=({" ".join(var_names)})
__run_step() {{
    case $1 in
{cases}
        *) echo "task {key} has no step $1" >&2; return 2 ;;
    esac
}}
source "$__pipeline_instance_dir/{LIB_RELATIVE_PATH}" || exit 1
__main "$@"
"""


def write_output_vars(control_dir, values: dict[str, str]) -> None:
    """Record output variables in both forms the task runtime uses (JSON and bash)."""
    write_atomic(os.path.join(control_dir, "output_vars.sh"),
                 "".join(f"export {n}={q(v)}\n" for n, v in values.items()))
    write_atomic(os.path.join(control_dir, "output_vars"), json.dumps(values, ensure_ascii=False) + "\n")
