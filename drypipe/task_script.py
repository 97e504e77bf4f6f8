"""Generates a task's files in `.drypipe/<key>/`: the `task` script, `task-env.sh`,
`task-conf.json` and one `step-N.sh` per bash step.  Paths inside them are relative to
`$__pipeline_instance_dir`, which the script computes from its own location, so an instance
can be moved or copied."""
from __future__ import annotations

import fnmatch
import glob
import json
import os
import shlex
import textwrap
from importlib import resources
from typing import Any

from drypipe import plugins
from drypipe import state as st
from drypipe.containers import DEFAULT_RUNTIME, bind_paths, has_container, resolve_runtime
from drypipe.instance import Instance, write_atomic, write_new
from drypipe.task import Task, _check_variable_name
from drypipe.task_record import TaskRecord

LIB_RELATIVE_PATH = ".drypipe/.lib/task-lib.sh"
WORKER_RELATIVE_PATH = ".drypipe/.lib/worker.sh"  # see executors/process.py


def q(value: str) -> str:
    """Shell-quote a value for bash (any bytes a str can hold, byte-exact)."""
    return shlex.quote(value)


def in_instance(relative: str) -> str:
    """A bash word for a path inside the instance dir, or an absolute path as is."""
    if os.path.isabs(relative):
        return q(relative)
    return f'"$__pipeline_instance_dir"/{q(relative)}'


def task_lib_text() -> str:
    """The shared task runtime: resources/task-lib.sh after the marker reader it uses
    (resources/markers.sh), then what the executor plugins add to it (their `running_elsewhere`
    checks, for `./task tail`)."""
    lib = markers_bash() + "\n" + resources.files("drypipe").joinpath("resources/task-lib.sh").read_text()
    checks = {name: p.running_elsewhere for name, p in plugins.plugins().items() if p.running_elsewhere}
    lines = ["", "# -- from the executor plugins (drypipe.plugins, ExecutorPlugin.running_elsewhere) --"]
    for name, body in checks.items():
        lines += [f"__running_elsewhere_{name}() {{", textwrap.indent(body.strip("\n"), "    "), "}"]
    calls = [f"    __running_elsewhere_{name} && return 0" for name in checks]
    lines += ["__running_elsewhere_plugins() {", *calls, "    return 1", "}", ""]
    return lib + "\n".join(lines)


def markers_bash() -> str:
    """The bash functions that read a task's state marker (__marker_in), as the task runtime and
    the SSH executor's remote scripts use them."""
    return resources.files("drypipe").joinpath("resources/markers.sh").read_text()


def write_task_lib(instance: Instance) -> None:
    """Install the shared task runtime and the process executor's worker into the instance, if
    missing or out of date."""
    worker = resources.files("drypipe").joinpath("resources/worker.sh").read_text()
    for relative, text in ((LIB_RELATIVE_PATH, task_lib_text()), (WORKER_RELATIVE_PATH, worker)):
        path = instance.root / relative
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)


def task_conf_document(task: Task, python_bin: str, pipeline_code_dir: str,
                       containers_dir: str | None) -> dict[str, Any]:
    doc = task.spec()
    # A glob input records the files it matches: those its (completed) upstream tasks made.
    doc["inputs"] = [dict(spec, matched=_matched_files(task.dsl.instance_dir, spec))
                     if spec["kind"] == "glob" else spec for spec in doc["inputs"]]
    doc["python_bin"] = python_bin
    # task-conf.json is written with sorted keys, and extra_env values are expanded in the
    # order given (each may use the ones before it): the order is kept here.
    doc["extra_env_order"] = list(task.task_conf.extra_env)
    doc["bash_strict"] = task.bash_strict()
    doc["pipeline_code_dir"] = pipeline_code_dir
    doc["containers_dir"] = containers_dir
    conf_runtime = task.task_conf.container_runtime
    if has_container(doc) or conf_runtime is not None:  # an unknown runtime is refused even if unused
        doc["container_runtime"] = resolve_runtime(f"task {task.key!r} ({task.source})", conf_runtime)
    return doc


def _matched_files(instance_dir: str, spec: dict[str, Any]) -> list[str]:
    """The files a glob input matches on disk, and those its upstream tasks recorded as their
    outputs when they completed: one deleted since is still expected (and found missing)."""
    upstreams = [TaskRecord(instance_dir, key) for key in spec.get("upstreams", [])]
    if any(record.state() != st.COMPLETED for record in upstreams):
        return []  # yielded before its upstream tasks completed: what they will make is not known yet
    root = os.path.join(instance_dir, "")
    pattern = spec["pattern"]
    found = {p[len(root):] if p.startswith(root) else p
             for p in glob.glob(pattern if os.path.isabs(pattern) else root + pattern)}
    if not os.path.isabs(pattern):
        parts = pattern.split("/")
        for record in upstreams:
            recorded = (record.signature_record() or {}).get("outputs") or {}
            for relative in recorded:
                candidate = f"output/{record.key}/{relative}"
                names = candidate.split("/")
                if len(names) == len(parts) and all(map(fnmatch.fnmatchcase, names, parts)):
                    found.add(candidate)
    return sorted(found)


def _task_files(doc: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(name, content, mode) of each generated file, the `task` script last: its presence
    means the others are complete."""
    files = [(f"step-{i}.sh", step["code"], 0o755) for i, step in enumerate(doc["steps"]) if step["kind"] == "bash"]
    files.append(("task-env.sh", _task_env(doc), 0o644))
    files.append(("task-conf.json", json.dumps(doc, sort_keys=True) + "\n", 0o644))  # one line: 10x faster
    files.append(("task", _task_script(doc), 0o755))
    return files


def write_task_files(instance: Instance, doc: dict[str, Any], fresh: bool = False) -> None:
    """Write the control files of one task.

    `fresh`: the task has no state marker yet, so files are written in place (see write_new)."""
    control = instance.control_dir(doc["key"])
    control.mkdir(parents=True, exist_ok=True)
    write = write_new if fresh else write_atomic
    for name, content, mode in _task_files(doc):
        write(control / name, content, mode)


def task_files_current(instance: Instance, doc: dict[str, Any]) -> bool:
    """True when every generated file on disk is what `doc` generates: a definition that
    changed, or a step edited by hand, is regenerated by the next run."""
    control = instance.control_dir(doc["key"])
    for name, content, _ in _task_files(doc):
        try:
            if (control / name).read_text(encoding="utf-8", errors="surrogateescape") != content:
                return False
        except OSError:
            return False
    return True


def _scratch_dir() -> str:
    """The scratch dir: the first executor plugin's scratch dir variable set (a batch job's
    node-local disk), else output/<key>/scratch."""
    word = "$__task_output_dir/scratch"
    for name in reversed(plugins.scratch_dir_variables()):
        word = f"${{{name}:-{word}}}"
    return word


def _task_env(doc: dict[str, Any]) -> str:
    key = doc["key"]
    conf = doc["task_conf"]
    lines = [
        f"# environment of task {key}: sourced by ./task, which sets $__pipeline_instance_dir",
        f'export __task_output_dir="$__pipeline_instance_dir"/output/{q(key)}',
        'export __out_log="$__control_dir/out.log"',
        f'export __scratch_dir="{_scratch_dir()}"',
        f"export __pipeline_code_dir={q(doc['pipeline_code_dir'])}",
        f"export __containers_dir={q(doc['containers_dir'] or '')}",
        f"export __python_bin={q(doc['python_bin'])}",
    ]
    variables = plugins.scratch_dir_variables()
    if variables:  # passed into podman and docker containers
        lines.append(f"__scratch_dir_variables=({' '.join(variables)})")
    switches = conf.get("python_interpreter_switches") or []
    if switches:
        lines.append(f"__python_switches=({' '.join(map(q, switches))})")
    if conf.get("command_before_task"):
        lines.append(f"export __command_before_task={q(conf['command_before_task'])}")
    if doc.get("bash_strict"):
        lines.append("__bash_strict=1  # bash steps run with set -euo pipefail")
    extra_env = conf.get("extra_env") or {}
    for name in doc.get("extra_env_order") or sorted(extra_env):
        # $name and ${name} are expanded when the task runs, as the original DryPipe did
        # (os.path.expandvars); the value stays quoted: nothing in it is ever executed.
        lines.append(f"__extra_env {name} {q(str(extra_env[name]))}")
    for spec in doc["inputs"]:
        name = spec["name"]
        kind = spec["kind"]
        if kind == "value":
            lines.append(shell_assignment(name, spec["value"]))
        elif kind in ("file", "glob"):
            lines.append(f"export {name}={in_instance(spec['path'] if kind == 'file' else spec['pattern'])}")
        elif kind == "var":
            optional = " may_be_none" if spec.get("may_be_none") else ""
            lines.append(f"__upstream_var {name} {q(spec['upstream'])} {q(spec['output'])}{optional} || return 1")
    files = []
    for spec in doc["outputs"]:
        if spec["kind"] == "file":
            lines.append(f'export {spec["name"]}="$__task_output_dir"/{q(spec["path"])}')
            files.append(f'"$__task_output_dir"/{q(spec["path"])}')
        elif spec["kind"] == "fileset":
            lines.append(f'export {spec["name"]}="$__task_output_dir"/{q(spec["glob"])}')
    lines.append(f"__output_files=({' '.join(files)})")
    # Files that upstream tasks produced (named, or matched by a glob when the task was
    # generated): checked before the first step runs, one may have been deleted since.
    inputs = doc["inputs"]
    upstream_files = [in_instance(spec["path"]) for spec in inputs if spec["kind"] == "file" and spec.get("upstream")]
    upstream_files += [in_instance(path) for spec in inputs if spec["kind"] == "glob" for path in spec["matched"]]
    lines.append(f"__input_files=({' '.join(upstream_files)})")
    if has_container(doc):
        lines.append(f"__container_runtime={q(doc.get('container_runtime', DEFAULT_RUNTIME))}")
        lines.append(f"__container_binds=({' '.join(map(q, bind_paths(doc)))})  # and the instance dir")
    lines.append("__env_complete=1  # last line: a truncated file is noticed")
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
    var_types = [o["type"] for o in doc["outputs"] if o["kind"] == "var"]
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
__output_var_types=({" ".join(var_types)})
__upstream_keys=({" ".join(q(k) for k in doc.get("upstream_keys", []))})
__run_step() {{
    case $1 in
{cases}
        *) echo "task {key} has no step $1" >&2; return 2 ;;
    esac
}}
# A process executor's worker has the task runtime loaded already (resources/worker.sh).
[[ -n ${{__in_worker:-}} ]] || source "$__pipeline_instance_dir/{LIB_RELATIVE_PATH}" || exit 1
__main "$@"
"""


# Values longer than this many characters are not exported (see task-lib.sh, __export_limit).
EXPORT_LIMIT = 32000


def shell_assignment(name: str, value: str) -> str:
    """`export NAME=VALUE` for task-env.sh and output_vars.sh, without `export` for a value too
    large for the environment of the programs the task starts."""
    return f"{'export ' if len(value) <= EXPORT_LIMIT else ''}{name}={q(value)}"


def write_output_vars(control_dir: str | os.PathLike[str], values: dict[str, str]) -> None:
    """Record output variables in both forms the task runtime uses (JSON and bash).  Values are
    data (quoted); names go unquoted into bash, so one that is not a variable name is refused."""
    for name in values:
        _check_variable_name(os.path.basename(os.fspath(control_dir)), "output", name)
    write_atomic(os.path.join(control_dir, "output_vars.sh"),
                 "".join(shell_assignment(n, v) + "\n" for n, v in values.items()))
    write_atomic(os.path.join(control_dir, "output_vars"), json.dumps(values, ensure_ascii=False) + "\n")
