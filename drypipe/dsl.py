"""The DSL object handed to a pipeline generator, `DryPipe`, and `Pipeline`."""
from __future__ import annotations

import fnmatch
import functools
import gc
import inspect
import os
import sys
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, overload

from drypipe.errors import UserError
from drypipe.keys import check_task_key
from drypipe.task import Task, TaskBuilder
from drypipe.task_conf import TaskConf
from drypipe.values import File, FileSet, InstanceFile, Matcher, Val, Var

_F = TypeVar("_F", bound=Callable[..., Any])  # a function marked by DryPipe.python_call
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_NOT_USER_CODE = tuple(
    p + os.sep for p in {_PACKAGE_DIR, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}
)


@functools.cache
def _is_user_file(filename: str) -> bool:
    return not filename.startswith("<") and not os.path.abspath(filename).startswith(_NOT_USER_CODE)


def user_source_location() -> str:
    """file:line of the innermost caller outside drypipe: where the user's code is."""
    frame = inspect.currentframe()
    while frame is not None:
        filename = frame.f_code.co_filename
        if _is_user_file(filename):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


class Pipeline:
    """A generator and its pipeline-level settings (`DryPipe.create_pipeline`)."""

    def __init__(
        self,
        generator: Callable[[DSL], Iterable[Any]],
        pipeline_code_dir: str | None = None,
        containers_dir: str | os.PathLike[str] | None = None,
        task_conf: TaskConf | None = None,
        bash_strict: bool = False,
    ):
        if not callable(generator):
            raise UserError(f"create_pipeline: the generator must be a function, got {generator!r}")
        if task_conf is not None and not isinstance(task_conf, TaskConf):
            raise UserError("create_pipeline: task_conf must be a TaskConf")
        self.generator = generator
        if pipeline_code_dir is None:
            source = inspect.getsourcefile(generator) or os.getcwd()
            pipeline_code_dir = os.path.dirname(os.path.abspath(source))
        self.pipeline_code_dir = os.path.abspath(pipeline_code_dir)
        self.containers_dir = os.path.abspath(containers_dir) if containers_dir else None
        self.task_conf = task_conf or TaskConf()
        if not isinstance(bash_strict, bool):
            raise UserError(f"create_pipeline: bash_strict must be True or False, got {bash_strict!r}")
        self.bash_strict = bash_strict  # for the tasks whose TaskConf leaves bash_strict None
        self.conf_defaults: dict[str, Any] = {}  # TaskConf fields from configuration files (drypipe.config)


class SubPipeline:
    """`dsl.sub_pipeline(gen, prefix)`: a generator whose task keys get a prefix; yield it."""

    def __init__(self, parent: DSL, generator: Callable[..., Any], prefix: str):
        self.dsl = parent.child(prefix)
        self.generator = generator
        self.prefix = prefix

    def wait_for_tasks(self, *tasks: Any) -> list[Task | tuple[Task, ...]]:
        return self.dsl.wait_for_tasks(*tasks)

    def wait_for_matching_tasks(self, *globs: str) -> list[Matcher | tuple[Matcher, ...]]:
        return self.dsl.wait_for_matching_tasks(*globs)


MAX_TASKS = 1_000_000


def max_tasks() -> int:
    """The most tasks one evaluation of the generator may yield: $DRYPIPE_MAX_TASKS, else
    MAX_TASKS.  A generator that never ends stops there, with a clear error, not in a MemoryError."""
    text = os.environ.get("DRYPIPE_MAX_TASKS")
    if text is None:
        return MAX_TASKS
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise UserError(f"DRYPIPE_MAX_TASKS must be a positive integer, got {text!r}")
    return limit


class Evaluation:
    """What one run of the generator produced: tasks in yield order, and unsatisfied waits."""

    def __init__(self) -> None:
        self.max_tasks = max_tasks()
        self.tasks: dict[str, Task] = {}
        self.waits: list[str] = []
        # For each unsatisfied wait, the keys it still waits on: when one of these sets
        # empties, running the generator again yields more tasks.
        self.blocked_on: list[set[str]] = []


class DSL:
    """The `dsl` argument of a generator."""

    def __init__(
        self,
        pipeline: Pipeline,
        instance_dir: str,
        is_completed: Callable[[str], bool],
        evaluation: Evaluation | None = None,
        prefix: str = "",
    ):
        self.pipeline = pipeline
        self.instance_dir = os.path.abspath(instance_dir)
        self._is_completed = is_completed
        self.evaluation = evaluation or Evaluation()
        self.prefix = prefix

    def child(self, prefix: str) -> DSL:
        return DSL(self.pipeline, self.instance_dir, self._is_completed, self.evaluation, self.prefix + prefix)

    @property
    def pipeline_code_dir(self) -> str:
        return self.pipeline.pipeline_code_dir

    @property
    def default_task_conf(self) -> TaskConf:
        return self.pipeline.task_conf

    def is_completed(self, key: str) -> bool:
        return self._is_completed(key)

    # -- declarations --------------------------------------------------------------------------

    def task(self, key: str | None = None, task_conf: TaskConf | None = None) -> TaskBuilder:
        if key is None:
            raise UserError("dsl.task(...) needs a key")
        full_key = check_task_key(self.prefix + key if isinstance(key, str) else key)
        return TaskBuilder(self, full_key, task_conf, user_source_location())

    def var(self, type: type = str, may_be_none: bool = False) -> Var:  # noqa: A002 (the original's keyword)
        return Var(type, bool(may_be_none))

    def val(self, value: Any) -> Val:
        return Val(value)

    def file(self, name: str, manage_signature: Any = None, remote_cache_bucket: Any = None) -> File:
        """A file; `manage_signature` and `remote_cache_bucket` (the original DryPipe's remote
        file cache) are accepted and have no effect: signatures always cover file contents."""
        return File(name)

    def fileset(self, glob: str) -> FileSet:
        return FileSet(glob)

    def file_set(self, glob: str, exclude: str | Iterable[str] | None = None) -> FileSet:
        """The original DryPipe's spelling of `fileset`; `exclude`: globs (relative to the
        task's output dir) of files to leave out of the set when it is fetched."""
        excluded = (exclude,) if isinstance(exclude, str) else tuple(exclude or ())
        for pattern in excluded:
            if not isinstance(pattern, str) or not pattern:
                raise UserError(f"dsl.file_set({glob!r}): exclude takes globs (str), got {pattern!r}")
        return FileSet(glob, excluded)

    def file_in_pipeline_instance_dir(self, name: str, must_exist: bool = False) -> InstanceFile:
        """`must_exist` (the original's keyword, there True by default): refuse a missing file
        now; by default one that does not exist yet is accepted (a task checks when it starts)."""
        if must_exist and not os.path.exists(os.path.join(self.instance_dir, name)):
            raise UserError(f"file not found: {os.path.join(self.instance_dir, name)}")
        return InstanceFile(self.instance_dir, name)

    def sub_pipeline(self, generator: Callable[..., Any], prefix: str) -> SubPipeline:
        return SubPipeline(self, generator, prefix)

    # -- lookups -------------------------------------------------------------------------------

    def has_task(self, key: str) -> bool:
        return key in self.evaluation.tasks

    def task_by_key(self, key: str) -> Task:
        try:
            return self.evaluation.tasks[key]
        except KeyError:
            raise UserError(f"task {key!r} was never yielded by the generator") from None

    # -- dynamic DAGs --------------------------------------------------------------------------

    def wait_for_tasks(self, *tasks: Any) -> list[Task | tuple[Task, ...]]:
        """One item (the task, or a tuple of tasks) once all are completed; else nothing.

        A key not yielded (yet) in this evaluation counts as not completed: it may be yielded
        once other tasks complete.  If it never is, the run ends saying what it waits for."""
        keys = [self._key_of(t) for t in tasks]
        pending = [k for k in keys if k not in self.evaluation.tasks or not self.is_completed(k)]
        if pending:
            self.evaluation.waits.append(f"wait_for_tasks({', '.join(pending)})")
            self.evaluation.blocked_on.append(set(pending))
            return []
        resolved = [self.evaluation.tasks[k] for k in keys]
        return [resolved[0] if len(resolved) == 1 else tuple(resolved)]

    def wait_for_matching_tasks(self, *globs: str) -> list[Matcher | tuple[Matcher, ...]]:
        """One matcher (or a tuple of matchers) once every task matching each glob has completed."""
        matchers = []
        for pattern in globs:
            full = self.prefix + pattern
            matched = [t for k, t in self.evaluation.tasks.items() if fnmatch.fnmatchcase(k, full)]
            pending = [t.key for t in matched if not self.is_completed(t.key)]
            if not matched or pending:
                why = "no task matches yet" if not matched else f"{len(pending)} not completed"
                self.evaluation.waits.append(f"wait_for_matching_tasks({full!r}): {why}")
                self.evaluation.blocked_on.append(set(pending))
                return []
            matchers.append(Matcher(full, matched))
        return [matchers[0] if len(matchers) == 1 else tuple(matchers)]

    def _key_of(self, task: Any) -> str:
        if isinstance(task, Task):
            return task.key
        if isinstance(task, TaskBuilder):
            return task.finished().key
        if isinstance(task, str):
            return self.prefix + task
        raise UserError(f"wait_for_tasks takes tasks or task keys, got {task!r}")


class DryPipe:
    """Entry point of the DSL, as in the original DryPipe."""

    @staticmethod
    def create_pipeline(
        generator: Callable[..., Any],
        pipeline_code_dir: str | None = None,
        containers_dir: str | os.PathLike[str] | None = None,
        task_conf: TaskConf | None = None,
        bash_strict: bool = False,
    ) -> Pipeline:
        """`bash_strict`: run every bash step with `set -euo pipefail` (a TaskConf's own
        bash_strict wins); off by default, as in the original DryPipe."""
        given: tuple[object, object] = (containers_dir, task_conf)  # or in the original DryPipe's order:
        match given:  # (generator, pipeline_code_dir, task_conf, containers_dir)
            case (TaskConf() as conf, str() | os.PathLike() | None as directory):
                containers_dir, task_conf = directory, conf
        return Pipeline(generator, pipeline_code_dir, containers_dir, task_conf, bash_strict)

    @overload
    @staticmethod
    def python_call(func: _F, /) -> _F: ...

    @overload
    @staticmethod
    def python_call(*_args: Any, **_kwargs: Any) -> Callable[[_F], _F]: ...

    @staticmethod
    def python_call(*_args: Any, **_kwargs: Any) -> Any:
        """Mark a function as callable from a task: `@DryPipe.python_call()`."""

        def mark(func: _F) -> _F:
            func.__drypipe_python_call__ = True  # type: ignore[attr-defined]  # read by values.python_call_marker
            return func

        if len(_args) == 1 and callable(_args[0]) and not _kwargs:
            return mark(_args[0])  # also accept the bare `@DryPipe.python_call`
        return mark


def evaluate(pipeline: Pipeline, instance_dir: str, is_completed: Callable[[str], bool]) -> Evaluation:
    """Run the generator once from the start; errors name the task and the user's source line."""
    dsl = DSL(pipeline, instance_dir, is_completed)
    # The DAG is built of many small objects that live as long as the run: cyclic garbage
    # collection passes over them cost a third of a large evaluation and free nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _drain(dsl, pipeline.generator)
    finally:
        if collecting:
            gc.enable()
    for task in dsl.evaluation.tasks.values():
        for upstream in task.upstream_tasks:
            if dsl.evaluation.tasks.get(upstream.key) is not upstream:
                raise UserError(
                    f"task {task.key!r} ({task.source}) consumes outputs of task {upstream.key!r}, "
                    "which was never yielded"
                )
    return dsl.evaluation


def _drain(dsl: DSL, generator: Callable[..., Any]) -> None:
    from drypipe.errors import GeneratorError

    try:
        items = generator(dsl)
    except UserError as e:
        raise GeneratorError(f"{e} ({_where(e)})") from e
    except Exception as e:
        raise GeneratorError(f"generator {_name(generator)} raised {_describe(e)}") from e
    if not isinstance(items, Iterator):
        code = getattr(generator, "__code__", None)
        where = f" ({code.co_filename}:{code.co_firstlineno})" if code else ""
        raise GeneratorError(
            f"generator {_name(generator)}{where} returned {_returned(items)} instead of yielding tasks: "
            "a pipeline generator must yield each task (`yield task`, not `return`)"
        )
    tasks = dsl.evaluation.tasks
    limit = dsl.evaluation.max_tasks
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except UserError as e:
            raise GeneratorError(f"{e} ({_where(e)})") from e
        except Exception as e:
            raise GeneratorError(f"generator {_name(generator)} raised {_describe(e)}") from e
        line = _suspended_at(items)
        if isinstance(item, SubPipeline):
            _drain(item.dsl, item.generator)
            continue
        if isinstance(item, TaskBuilder):
            try:
                item = item.finished()
            except UserError as e:  # the builder was yielded unfinished: the yield is the culprit
                raise GeneratorError(f"{e} ({line})") from e
        if not isinstance(item, Task):
            raise GeneratorError(f"generator yielded {item!r}, not a task ({line})")
        if item.key in tasks:
            raise GeneratorError(f"duplicate task key {item.key!r} ({line})")
        if len(tasks) >= limit:
            raise GeneratorError(
                f"generator {_name(generator)} yielded more than {limit:,} tasks, the most one evaluation "
                f"may yield (set DRYPIPE_MAX_TASKS to change it); the last was {item.key!r} ({line})"
            )
        tasks[item.key] = item


def _name(generator: Callable[..., Any]) -> str:
    return getattr(generator, "__qualname__", repr(generator))


def _returned(value: Any) -> str:
    if isinstance(value, Task):
        return f"task {value.key!r}"
    return "None" if value is None else f"a {type(value).__name__}"


def _suspended_at(gen: Any) -> str:
    frame = getattr(gen, "gi_frame", None)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "?"


def _where(e: BaseException) -> str:
    """file:line of the innermost user frame of an exception's traceback."""
    tb = e.__traceback__
    where = "?"
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if _is_user_file(filename):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e} ({_where(e)})"


def import_object(spec: str, option: str, kind: str = "attribute") -> Any:
    """The object named by `module:attribute` (given as `option` on the command line)."""
    import importlib

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"{option} {spec!r}: expected <module>:<function>")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise UserError(f"{option} {spec!r}: cannot import {module_name!r}: {type(e).__name__}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise UserError(f"{option} {spec!r}: module {module_name!r} has no {kind} {attr!r}")
    return obj


def load_pipeline(spec: str) -> Pipeline:
    """`module:function` naming a pipeline, a function returning one, or a generator `gen(dsl)`."""
    obj = import_object(spec, "--generator")
    attr = spec.partition(":")[2]
    if isinstance(obj, Pipeline):
        return obj
    if not callable(obj):
        raise UserError(f"--generator {spec!r} is not a pipeline or a function")
    if inspect.isgeneratorfunction(obj) or _takes_one_argument(obj):
        return Pipeline(obj)
    result = obj()
    if isinstance(result, Pipeline):
        return result
    raise UserError(f"--generator {spec!r}: {attr}() returned {type(result).__name__}, not a pipeline")


def _takes_one_argument(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return len(params) == 1


