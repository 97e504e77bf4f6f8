"""A task as the generator declares it: inputs, outputs, steps and TaskConf, and its
serialisable specification (what task-conf.json records)."""
from __future__ import annotations

import glob
import hashlib
import inspect
import os
import pathlib
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drypipe.digests import stat_file_to_digest
from drypipe.errors import UserError, check_type, text_problem
from drypipe.task_conf import TaskConf
from drypipe.task_record import TaskRecord
from drypipe.text import first_of
from drypipe.values import (
    VAR_TYPES,
    File,
    FileHandle,
    FileSet,
    InstanceFile,
    MatchedGlob,
    OutputRef,
    TaskOutputs,
    Val,
    Var,
    format_var,
    parse_var,
    path_problem,
    python_call_marker,
    type_name,
    unfilled_parameter,
)

if TYPE_CHECKING:
    from drypipe.dsl import DSL



class Task:
    """One node of the DAG.  Immutable once the builder is finished."""

    def __init__(self, dsl: DSL, key: str, task_conf: TaskConf, source: str):
        self.dsl = dsl
        self.key = key
        self.task_conf = task_conf
        self.source = source  # "file:line" of the dsl.task(...) call, for error messages
        self.inputs: list[dict[str, Any]] = []
        self.input_names: set[str] = set()  # a gather task may have thousands of inputs
        self.output_decls: dict[str, Var | File | FileSet] = {}
        self.steps: list[dict[str, Any]] = []
        self.upstream_keys: set[str] = set()
        self.upstream_tasks: list[Task] = []
        self.outputs = TaskOutputs(self)
        self.out = self.outputs  # the original DryPipe 0.8's spelling: task.out.<name>
        self.props = TaskProps(key)

    def __repr__(self) -> str:
        return f"<task {self.key}>"

    # -- what the scheduler and script writer read -------------------------------------------

    def spec(self) -> dict[str, Any]:
        """The JSON-serialisable definition of the task (task-conf.json without run details)."""
        return {
            "key": self.key,
            "inputs": self.inputs,
            "outputs": [_output_spec(n, d) for n, d in self.output_decls.items()],
            "steps": self.steps,
            "task_conf": self.task_conf.to_dict(),
            "upstream_keys": sorted(self.upstream_keys),
        }

    def bash_strict(self) -> bool:
        """Whether bash steps run with `set -euo pipefail`: the TaskConf's choice, else the pipeline's."""
        chosen = self.task_conf.bash_strict
        return self.dsl.pipeline.bash_strict if chosen is None else chosen

    # -- fetch ---------------------------------------------------------------------------------

    def fetch_output(self, name: str) -> Any:
        if not self.dsl.is_completed(self.key):
            raise UserError(
                f"cannot fetch output {name!r} of task {self.key!r}: it has not completed "
                "(fetch inside `for _ in dsl.wait_for_tasks(...)`)"
            )
        decl = self.output_decls[name]
        instance_dir = self.dsl.instance_dir
        if isinstance(decl, Var):
            values = TaskRecord(instance_dir, self.key).output_vars()
            if name not in values:
                if decl.may_be_none:
                    return None
                raise UserError(f"task {self.key!r} completed without setting output variable {name!r}")
            return parse_var(values[name], type_name(decl.type))
        if isinstance(decl, File):
            return os.path.join(instance_dir, "output", self.key, decl.name)
        output_dir = os.path.join(instance_dir, "output", self.key)
        return [
            FileHandle(instance_dir, os.path.relpath(p, instance_dir))
            for p in sorted(glob.glob(os.path.join(output_dir, decl.glob)))
            if decl.keeps(os.path.relpath(p, output_dir))
        ]


def _output_spec(name: str, decl: Var | File | FileSet) -> dict[str, Any]:
    if isinstance(decl, Var):
        return {"name": name, "kind": "var", "type": type_name(decl.type)}
    if isinstance(decl, File):
        return {"name": name, "kind": "file", "path": decl.name}
    if decl.exclude:
        return {"name": name, "kind": "fileset", "glob": decl.glob, "exclude": list(decl.exclude)}
    return {"name": name, "kind": "fileset", "glob": decl.glob}


class TaskProps(dict[str, Any]):
    """`task.props`: what `.props(name=value)` gave, also as attributes (`task.props.name`)."""

    def __init__(self, key: str):
        super().__init__()
        self._key = key

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise UserError(f"task {self._key!r} has no prop {name!r}") from None


class TaskBuilder:
    """`dsl.task(key=...)`: collects inputs, outputs and calls; `()` finishes the task."""

    def __init__(self, dsl: DSL, key: str, task_conf: TaskConf | None, source: str):
        if task_conf is not None:
            check_type(task_conf, TaskConf, "be a TaskConf", f"task {key!r}: task_conf")
            try:  # checked when built, and here again: its fields may have been changed since
                if dsl.pipeline.conf_defaults:  # drypipe.config: files fill unset fields
                    task_conf = task_conf.with_defaults(dsl.pipeline.conf_defaults)
                else:
                    task_conf.validate()
            except UserError as e:
                raise UserError(f"task {key!r}: {e}") from None
        self._task = Task(dsl, key, task_conf or dsl.default_task_conf, source)
        self._finished: Task | None = None
        self._python_calls: list[Callable[..., Any]] = []  # checked against the inputs and outputs at the end

    def _check_open(self) -> Task:
        if self._finished is not None:
            raise UserError(f"task {self._task.key!r} is already finished")
        return self._task

    # -- inputs --------------------------------------------------------------------------------

    def inputs(self, *positional: Any, **named: Any) -> TaskBuilder:
        task = self._check_open()
        for ref in positional:
            if not isinstance(ref, OutputRef):
                raise UserError(
                    f"task {task.key!r}: positional inputs must be outputs of other tasks "
                    f"(like t1.outputs.x), got {ref!r}; name it: inputs(name=...)"
                )
            self._add_input(ref.name, ref)
        for name, value in named.items():
            self._add_input(name, value)
        return self

    consumes = inputs

    def _add_input(self, name: str, value: Any) -> None:
        task = self._task
        _check_variable_name(task.key, "input", name)
        if name in task.input_names or name in task.output_decls:
            raise UserError(f"task {task.key!r}: {name!r} is declared twice")
        task.inputs.append(_input_spec(task, name, value))
        task.input_names.add(name)

    # -- outputs -------------------------------------------------------------------------------

    def outputs(self, *positional: Any, **named: Any) -> TaskBuilder:
        task = self._check_open()
        if positional:
            raise UserError(f"task {task.key!r}: outputs must be named, like outputs(x=int)")
        for name, decl in named.items():
            _check_variable_name(task.key, "output", name)
            if name in task.output_decls or name in task.input_names:
                raise UserError(f"task {task.key!r}: {name!r} is declared twice")
            if isinstance(decl, type):
                decl = Var(decl)
            elif isinstance(decl, pathlib.PurePath):  # the original DryPipe's outputs(f=Path("x.tsv"))
                decl = File(decl.as_posix())
            if isinstance(decl, Var):
                type_name(decl.type)
            elif isinstance(decl, File):
                _refuse(task.key, path_problem(decl.name, True, False), "output", name)
            elif isinstance(decl, FileSet):
                _refuse(task.key, path_problem(decl.glob, True, True), "output", name)
            else:
                raise UserError(
                    f"task {task.key!r}: output {name!r} must be a type, dsl.var(...), dsl.file(...) "
                    f"or dsl.fileset(...), got {decl!r}"
                )
            task.output_decls[name] = decl
        return self

    produces = outputs

    # -- calls ---------------------------------------------------------------------------------

    def props(self, **props: Any) -> TaskBuilder:
        """The original DryPipe's task properties: values for the generator, read back as
        `task.props.<name>`; not part of the task's definition or signature."""
        self._check_open().props.update(props)
        return self

    def calls(self, code: Any, container: str | None = None) -> TaskBuilder:
        task = self._check_open()
        task.steps.append(_step_spec(task, code, container))
        if task.steps[-1]["kind"] == "python":
            self._python_calls.append(code)
        return self

    def __call__(self) -> Task:
        task = self._check_open()
        if not task.steps:
            raise UserError(f"task {task.key!r} has no calls(...)")
        for func in self._python_calls:  # now that every input and output is declared
            _check_call_parameters(task, func)
        self._finished = task
        return task

    def finished(self) -> Task:
        """The finished task; a builder yielded without `()` is finished here."""
        return self._finished or self()


def _check_variable_name(key: str, what: str, name: str) -> None:
    if not name.isidentifier() or not name.isascii() or name.startswith("__"):  # a bash variable name
        raise UserError(f"task {key!r}: invalid {what} name {name!r}")


def _refuse(key: str, problem: str | None, what: str, name: str | None = None) -> None:
    """When there is a problem, a UserError "task 'k': <what> ['name'] <problem>"."""
    if problem is not None:
        what = what if name is None else f"{what} {name!r}"
        raise UserError(f"task {key!r}: {what} {problem}")


def _file_input(task: Task, name: str, path: str, upstream: str | None) -> dict[str, Any]:
    """A file input; one that no task produces must be a regular file, or not exist yet."""
    _refuse(task.key, path_problem(path, False), "input", name)
    if upstream is None:
        try:
            stat_file_to_digest(os.path.join(task.dsl.instance_dir, path))
        except UserError as e:
            raise UserError(f"task {task.key!r}: input {name!r}: {e}") from None
    return {"name": name, "kind": "file", "path": path, "upstream": upstream}


def _input_spec(task: Task, name: str, value: Any) -> dict[str, Any]:
    dsl = task.dsl
    if isinstance(value, Val):
        value = value.value
        if isinstance(value, OutputRef):
            value = value.fetch()
    if isinstance(value, OutputRef):
        upstream = value.task
        _add_upstream(task, upstream)
        decl = value.decl
        if isinstance(decl, Var):
            spec: dict[str, Any] = {"name": name, "kind": "var", "type": type_name(decl.type),
                    "upstream": upstream.key, "output": value.name}
            if decl.may_be_none:  # only then: the definitions of other tasks stay as they were
                spec["may_be_none"] = True
            return spec
        if isinstance(decl, File):
            return {"name": name, "kind": "file", "path": f"output/{upstream.key}/{decl.name}",
                    "upstream": upstream.key}
        if decl.exclude:  # a glob input is one bash glob: it cannot leave files out
            raise UserError(f"task {task.key!r}: input {name!r}: file set {value.name!r} of task "
                            f"{upstream.key!r} has exclude globs; pass its files (fetch()) instead")
        return {"name": name, "kind": "glob", "pattern": f"output/{upstream.key}/{decl.glob}",
                "upstreams": [upstream.key]}
    if isinstance(value, MatchedGlob):
        for key in value.upstream_keys:
            _add_upstream(task, dsl.task_by_key(key))
        return {"name": name, "kind": "glob", "pattern": value.relative_pattern,
                "upstreams": list(value.upstream_keys)}
    if isinstance(value, FileHandle):
        parts = value.relative.split(os.sep)
        upstream_key = parts[1] if len(parts) > 2 and parts[0] == "output" else None
        if upstream_key and dsl.has_task(upstream_key):
            _add_upstream(task, dsl.task_by_key(upstream_key))
        return _file_input(task, name, value.relative, upstream_key)
    if isinstance(value, InstanceFile):
        return _file_input(task, name, value.relative, None)
    if isinstance(value, File):
        return _file_input(task, name, value.name, None)
    if isinstance(value, bool) or type(value) in VAR_TYPES.values():
        if type(value) is str:
            _refuse(task.key, text_problem(value), "input", name)
        return {"name": name, "kind": "value", "type": type_name(type(value)), "value": format_var(value)}
    raise UserError(
        f"task {task.key!r}: input {name!r} has unsupported type {type(value).__name__} ({value!r})"
    )


def _add_upstream(task: Task, upstream: Task) -> None:
    if upstream.key == task.key:
        raise UserError(f"task {task.key!r} cannot consume its own outputs")
    if upstream.key not in task.upstream_keys:
        task.upstream_keys.add(upstream.key)
        task.upstream_tasks.append(upstream)


def _step_spec(task: Task, code: Any, container: str | None) -> dict[str, Any]:
    step: dict[str, Any]
    n = len(task.steps)
    if container is not None:
        check_type(container, str, "be a str or None", f"task {task.key!r}: step {n} container")
        _refuse(task.key, text_problem(container), f"step {n} container")
    bash = isinstance(code, str) and ("\n" in code or code.startswith("#!"))
    if isinstance(code, str):
        _refuse(task.key, text_problem(code), f"step {n} ({'bash snippet' if bash else 'script name'})")
    if callable(code):
        step = _python_step(task, code)
    elif bash:
        step = {"kind": "bash", "code": textwrap.dedent(code).lstrip("\n")}
    elif isinstance(code, str) and code.strip():
        path = os.path.join(task.dsl.pipeline_code_dir, code)
        if not os.path.isfile(path):
            raise UserError(f"task {task.key!r}: script {code!r} not found in {task.dsl.pipeline_code_dir}")
        step = {"kind": "script", "path": code}
    else:
        raise UserError(
            f"task {task.key!r}: calls(...) takes a bash snippet, a script name or a "
            f"@DryPipe.python_call() function, got {code!r}"
        )
    if container or task.task_conf.container:
        step["container"] = container or task.task_conf.container
    return step


def _python_step(task: Task, func: Callable[..., Any]) -> dict[str, Any]:
    func = getattr(func, "__wrapped__", func)
    name = getattr(func, "__qualname__", "")
    if not inspect.isfunction(func) or "<" in name or "." in name:
        raise UserError(
            f"task {task.key!r}: python call {name or func!r} must be a module-level function "
            "decorated with @DryPipe.python_call()"
        )
    if not python_call_marker(func):
        raise UserError(f"task {task.key!r}: function {name} is not decorated with @DryPipe.python_call()")
    module = func.__module__
    file = inspect.getsourcefile(func) or ""
    try:
        source = inspect.getsource(func)
    except OSError:
        source = func.__code__.co_code.hex()
    return {"kind": "python", "module": module, "function": name,
            "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
            "file": os.path.abspath(file) if file else None,
            "sys_path": _module_root(module, file)}


def _check_call_parameters(task: Task, func: Callable[..., Any]) -> None:
    """A parameter of a python call that the task cannot fill fails at generation, not when
    the task runs after its upstream tasks."""
    def available(name: str) -> bool:
        return name in task.input_names or name in task.output_decls or name.startswith("__")

    func = getattr(func, "__wrapped__", func)
    missing = unfilled_parameter(func, available)
    if missing is None:
        return
    code = func.__code__
    raise UserError(
        f"task {task.key!r}: python call {func.__module__}:{func.__qualname__}() "
        f"({code.co_filename}:{code.co_firstlineno}) takes {missing!r}, which is not an input, output "
        f"or __ variable of the task (inputs: {_names([s['name'] for s in task.inputs])}; "
        f"outputs: {_names(list(task.output_decls))})"
    )


def _names(names: list[str]) -> str:
    return first_of(names, most=8, empty="none")


def _module_root(module: str, file: str) -> str | None:
    """The sys.path entry from which `module` was imported (so the task can import it too)."""
    mod = sys.modules.get(module)
    if not file or mod is None:
        return None
    root = os.path.dirname(os.path.abspath(file))
    depth = module.count(".") + (1 if os.path.basename(file) == "__init__.py" else 0)
    for _ in range(depth):
        root = os.path.dirname(root)
    return root
