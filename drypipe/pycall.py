"""Runs one python-call step inside a task (`python -m drypipe call module:function`).

Inputs and outputs arrive as environment variables (set by task-env.sh); they are passed to
the function as keyword arguments typed by their declarations in task-conf.json.  The
returned dict is checked against the declared output variables and recorded for the next
steps and for downstream tasks.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

from drypipe.errors import UserError, text_problem
from drypipe.task_record import TaskRecord
from drypipe.task_script import shell_assignment
from drypipe.values import VAR_TYPES, GlobExpression, format_var, parse_var, unfilled_parameter


def run_call(module_function: str) -> None:
    control_dir = os.environ["__control_dir"]
    conf = TaskRecord.at(control_dir).conf_document()
    func = _load_function(conf, module_function)
    kwargs = _arguments(conf, func)
    result = func(**kwargs)
    _record_outputs(control_dir, conf, func.__name__, result if result is not None else {})


def _load_function(conf: dict[str, Any], module_function: str) -> Callable[..., Any]:
    module_name, _, func_name = module_function.partition(":")
    step: dict[str, Any] = next(
        (s for s in conf["steps"]
         if s["kind"] == "python" and s["module"] == module_name and s["function"] == func_name),
        {},
    )
    for path in (conf.get("pipeline_code_dir"), step.get("sys_path")):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    if module_name == "__main__" and step.get("file"):
        spec = importlib.util.spec_from_file_location("__drypipe_main__", step["file"])
        if spec is None or spec.loader is None:
            raise UserError(f"task {conf['key']}: cannot load {step['file']} as a Python module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise UserError(f"task {conf['key']}: cannot import {module_name!r}: {type(e).__name__}: {e}") from e
    func: Callable[..., Any] | None = getattr(module, func_name, None)
    if not callable(func):
        raise UserError(f"task {conf['key']}: module {module_name!r} has no function {func_name!r}")
    return func


def _arguments(conf: dict[str, Any], func: Callable[..., Any]) -> dict[str, Any]:
    env = os.environ
    available: dict[str, Any] = {}
    for spec in conf["inputs"]:
        name = spec["name"]
        if spec["kind"] in ("value", "var"):
            text = env[name] if name in env else _large_input(spec)
            if text is not None:
                available[name] = parse_var(text, spec["type"])
            elif spec.get("may_be_none"):  # not set by its producer, which may leave it unset
                available[name] = None
            continue
        if name not in env:
            continue
        if spec["kind"] == "glob":
            available[name] = GlobExpression(env[name])
        else:
            available[name] = env[name]
    earlier = _earlier_outputs(os.environ["__control_dir"], conf)
    for spec in conf["outputs"]:
        name = spec["name"]
        if spec["kind"] == "var":
            available[name] = parse_var(earlier[name], spec["type"]) if name in earlier else None
        else:
            available[name] = env.get(name)
    for name, value in env.items():
        if name.startswith("__"):
            available[name] = value
    missing = unfilled_parameter(func, available.__contains__)
    if missing is not None:
        raise UserError(f"task {conf['key']}: {func.__name__}() argument {missing!r} is not an input, "
                        "output or __ variable of the task")
    kwargs: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind == param.VAR_KEYWORD:
            kwargs.update({k: v for k, v in available.items() if k not in kwargs})
        elif param.name in available:
            kwargs[param.name] = available[param.name]
    return kwargs


def _record_outputs(control_dir: str, conf: dict[str, Any], func_name: str, result: Any) -> None:
    key = conf["key"]
    if not isinstance(result, dict):
        raise UserError(f"task {key}: {func_name}() must return a dict of output variables, "
                        f"got {type(result).__name__}")
    declared = {o["name"]: o["type"] for o in conf["outputs"] if o["kind"] == "var"}
    values = {}
    for name, value in result.items():
        if name not in declared:
            raise UserError(f"task {key}: {func_name}() returned {name!r}, which is not a declared output variable")
        values[name] = _checked(key, func_name, name, value, declared[name])
    path = os.path.join(control_dir, "output_vars.sh")
    existing = _earlier_outputs(control_dir, conf)
    existing.update(values)
    tmp = os.path.join(control_dir, ".output_vars.sh.py.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for name, text in existing.items():
            f.write(shell_assignment(name, text) + "\n")
    os.replace(tmp, path)


def _large_input(spec: dict[str, Any]) -> str | None:
    """An input value too large to be exported (see EXPORT_LIMIT), read from where it is kept."""
    if spec["kind"] == "value":
        value: str = spec["value"]
        return value
    return TaskRecord(os.environ["__pipeline_instance_dir"], spec["upstream"]).output_vars().get(spec["output"])


def _earlier_outputs(control_dir: str, conf: dict[str, Any]) -> dict[str, str]:
    """Output variables set by earlier steps: exported by the task runtime, unless one is too
    large for the environment; then all are read from output_vars.sh, by bash."""
    declared = [o["name"] for o in conf["outputs"] if o["kind"] == "var"]
    found = {n: os.environ[n] for n in declared if n in os.environ}
    path = os.path.join(control_dir, "output_vars.sh")
    try:
        with open(path, "rb") as f:
            if len(found) == len(declared) or all(line.startswith(b"export ") for line in f):
                return found
    except FileNotFoundError:
        return found
    script = 'source "$0" && for n in "$@"; do [[ -v $n ]] && printf "%s\\0%s\\0" "$n" "${!n}"; done; true'
    out = subprocess.run(["bash", "-c", script, path, *declared], capture_output=True, check=True, env={}).stdout
    items = out.decode("utf-8", "surrogateescape").split("\0")[:-1]
    return dict(zip(items[::2], items[1::2], strict=False))  # a trailing name without a value: dropped


def _checked(key: str, func_name: str, name: str, value: Any, type_name: str) -> str:
    expected = VAR_TYPES[type_name]
    if expected is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise UserError(
            f"task {key}: {func_name}() returned {name}={value!r}, but {name} is declared {type_name}"
        )
    text = format_var(value)
    parse_var(text, type_name)
    problem = text_problem(text)
    if problem:
        raise UserError(f"task {key}: {func_name}() returned {name} that {problem}")
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 1 or ":" not in argv[0]:
        print("usage: python -m drypipe call <module>:<function>", file=sys.stderr)
        return 2
    try:
        run_call(argv[0])
    except UserError as e:
        print(f"drypipe: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        sys.stderr.write(user_traceback(e))
        return 1
    return 0


_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_traceback(error: BaseException) -> str:
    """The traceback of an exception raised by the user's code, without drypipe's own frames
    (nor runpy's and importlib's): what out.log shows of a failed Python call."""
    tb = traceback.TracebackException.from_exception(error)
    seen: traceback.TracebackException | None = tb
    while seen is not None:  # the exception and the ones it was raised from, or during
        users = [f for f in seen.stack if not f.filename.startswith((_OWN_DIR, "<frozen "))]
        if users:  # else the error is drypipe's own: its frames stay
            seen.stack = traceback.StackSummary.from_list(users)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return "".join(tb.format())
