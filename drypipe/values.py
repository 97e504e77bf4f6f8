"""The values a task declares: literal inputs, output variables, files, filesets, and references
to the outputs of other tasks."""
from __future__ import annotations

import fnmatch
import glob as _glob
import inspect
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drypipe.errors import UserError, text_problem
from drypipe.keys import is_inside_relative_path

if TYPE_CHECKING:
    from drypipe.task import Task

VAR_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def type_name(t: type) -> str:
    for name, cls in VAR_TYPES.items():
        if t is cls:
            return name
    raise UserError(f"unsupported variable type {t!r}: use int, float, str or bool")


def parse_var(text: str, type_name_: str) -> Any:
    """Turn a recorded string value back into its declared type."""
    if type_name_ == "bool":
        return text.strip().lower() in ("1", "true", "yes")
    return VAR_TYPES[type_name_](text)


def format_var(value: Any) -> str:
    """The string form of a variable, as bash sees it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def path_problem(path: object, output: bool, glob: bool = False) -> str | None:
    """Why `path` cannot name a file of a task, or None; phrased to follow the culprit's name.

    An output is a relative path inside the task's output dir; a fileset's glob may use `**`
    only as a whole component (pathlib's rule, applied when the task ends).  An input is
    relative to the instance dir or absolute.  Both name a file: not "", ".", "a/..", "a/"."""
    if not isinstance(path, str):
        return f"must be a path (a str), got {type(path).__name__}: {path!r}"
    problem = text_problem(path)
    if problem:
        return f"{path!r} {problem}"
    names_a_file = path.rpartition("/")[2] not in ("", ".", "..")
    if output:  # one name (no "/") that names a file is inside: the common case, kept fast
        if not names_a_file or ("/" in path and not is_inside_relative_path(posixpath.normpath(path))):
            return f"must be a relative path inside the task's output dir, got {path!r}"
        if glob and "**" in path and any("**" in part and part != "**" for part in path.split("/")):
            return f"must use '**' only as a whole path component (like 'a/**/b.txt'), got {path!r}"
    elif not names_a_file:
        return f"must name a file, got {path!r}"
    return None


@dataclass(frozen=True)
class Var:
    """`dsl.var(int)`: an output variable of a declared type.  `may_be_none` (the original
    DryPipe's): a task consuming it still runs when its producer did not set it."""

    type: type = str
    may_be_none: bool = False


@dataclass(frozen=True)
class Val:
    """`dsl.val(v)`: a literal input value."""

    value: Any


@dataclass(frozen=True)
class File:
    """`dsl.file(name)`: as an output, a file in the task's output dir; as an input, a file
    relative to the pipeline instance dir (or an absolute path)."""

    name: str


@dataclass(frozen=True)
class FileSet:
    """`dsl.fileset(glob)`: the files matching a glob in the task's output dir;
    `dsl.file_set(glob, exclude=...)` leaves out those matching other globs."""

    glob: str
    exclude: tuple[str, ...] = ()

    def keeps(self, relative: str) -> bool:
        """False for a file (relative to the output dir) that an exclude glob matches."""
        return not any(fnmatch.fnmatchcase(relative, pattern) for pattern in self.exclude)


class InstanceFile(str):
    """`dsl.file_in_pipeline_instance_dir(name)`: an absolute path that is also usable as a file input."""

    relative: str

    def __new__(cls, instance_dir: str, relative: str) -> InstanceFile:
        obj = super().__new__(cls, os.path.join(instance_dir, relative))
        obj.relative = relative
        return obj


class FileHandle:
    """One file of a completed task's fileset, as returned by `fetch()`."""

    def __init__(self, instance_dir: str, relative: str):
        self.instance_dir = instance_dir
        self.relative = relative  # relative to the instance dir

    @property
    def path(self) -> str:
        return os.path.join(self.instance_dir, self.relative)

    def basename(self) -> str:
        return os.path.basename(self.relative)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"FileHandle({self.relative!r})"


class GlobExpression(str):
    """A glob over the instance dir.  In a python call it is also callable: `pattern()` lists matches."""

    def __call__(self) -> list[str]:
        return sorted(_glob.glob(self))


@dataclass(frozen=True)
class MatchedGlob:
    """`matcher.all.<output>.as_glob_expression()`: one output of every task matched by a glob."""

    task_glob: str
    relative_pattern: str  # relative to the instance dir
    upstream_keys: tuple[str, ...]


class OutputRef:
    """`task.outputs.<name>`: a reference to one declared output of a task."""

    def __init__(self, task: Task, name: str):
        self.task = task
        self.name = name
        self.decl = task.output_decls[name]

    def __repr__(self) -> str:
        return f"<output {self.name} of task {self.task.key}>"

    def fetch(self) -> Any:
        """The value of a completed task's output: a typed variable, a file path, or file handles."""
        return self.task.fetch_output(self.name)


class TaskOutputs:
    """`task.outputs`: attribute access to the declared outputs of a task."""

    def __init__(self, task: Task):
        self._task = task

    def __getattr__(self, name: str) -> OutputRef:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._task.output_decls:
            declared = ", ".join(self._task.output_decls) or "none"
            raise UserError(f"task {self._task.key!r} has no output {name!r} (declared: {declared})")
        return OutputRef(self._task, name)


class MatchedOutput:
    def __init__(self, matcher: Matcher, name: str):
        self.matcher = matcher
        self.name = name

    def fetch(self) -> list[Any]:
        """The original DryPipe's `matcher.all.<output>.fetch()`: that output of each matched task."""
        return [OutputRef(task, self.name).fetch() for task in self.matcher.tasks]

    def as_glob_expression(self) -> MatchedGlob:
        decls = [t.output_decls.get(self.name) for t in self.matcher.tasks]
        files = [d for d in decls if isinstance(d, File)]
        if not files or len(files) != len(decls) or len(set(files)) != 1:
            raise UserError(
                f"tasks matching {self.matcher.pattern!r} must all declare file output {self.name!r}"
            )
        pattern = f"output/{self.matcher.pattern}/{files[0].name}"
        return MatchedGlob(self.matcher.pattern, pattern, tuple(t.key for t in self.matcher.tasks))


class MatchedAll:
    def __init__(self, matcher: Matcher):
        self._matcher = matcher

    def __getattr__(self, name: str) -> MatchedOutput:
        if name.startswith("_"):
            raise AttributeError(name)
        return MatchedOutput(self._matcher, name)


class Matcher:
    """What `wait_for_matching_tasks` yields: the completed tasks matching a glob."""

    def __init__(self, pattern: str, tasks: list[Task]):
        self.pattern = pattern
        self.tasks = tasks
        self.all = MatchedAll(self)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)


def python_call_marker(func: Callable[..., Any]) -> bool:
    return bool(getattr(func, "__drypipe_python_call__", False))


def unfilled_parameter(func: Callable[..., Any], available: Callable[[str], bool]) -> str | None:
    """The first parameter of a python call that no keyword argument fills: it has no default
    and `available` (is there an input, output or `__` variable of that name?) says no.  The
    generation and the task's own call check with this one rule."""
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.default is not param.empty:
            continue
        if not available(param.name):
            return param.name
    return None
