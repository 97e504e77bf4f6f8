"""Executor plugins: the light descriptors through which the core knows the executors.

Each executor package declares one `ExecutorPlugin` in the entry-point group
`drypipe.plugins` (see docs/executors.md, "Writing an executor plugin"):

    [project.entry-points."drypipe.plugins"]
    pbs = "drypipe_pbs.plugin:PLUGIN"

A descriptor imports nothing heavy: its executor class ("module:Class") is imported only when a
task runs on it.  It declares the plugin's settings (a dataclass whose field names are TaskConf
keywords), what identifies a task's job for `drypipe status`, the environment variable naming
the node-local scratch directory, and what the scheduler and the task runtime need to know.
`register()` adds a plugin in-process (tests, notebooks); it takes precedence over entry points.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from drypipe.errors import UserError, check_text, check_type

if TYPE_CHECKING:
    from drypipe.executor import Executor
    from drypipe.task_record import TaskRecord

ENTRY_POINT_GROUP = "drypipe.plugins"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
log = logging.getLogger("drypipe")


class HasExecutorOptions(Protocol):
    """What settings_of reads: a TaskConf (drypipe.task_conf imports this module)."""

    executor_options: dict[str, Any]


@dataclass(frozen=True)
class NoSettings:
    """The settings of a plugin that has none."""


S = TypeVar("S")


@dataclass(frozen=True)
class ExecutorPlugin(Generic[S]):
    """What the core knows of one executor.

    - `executor`: the Executor subclass, as "module:Class" (imported when a task runs on it)
      or the class itself.
    - `settings`: a dataclass whose fields are the plugin's TaskConf keywords, each with a
      default and `metadata={"help": ...}`; values are checked against the field's annotation
      (str, int, float, bool, list[str], dict, `| None`), then by its `validate()` if it has one
      (raising UserError naming the setting).
    - `aliases`: other spellings of settings (the original DryPipe's), e.g.
      {"slurm_options": "sbatch_options"}.
    - `selected_by`: settings that, when set, route a task to this executor whatever its
      executer_type says (SSH's ssh_specs: executer_type then says how it runs there).
    - `handle`: what identifies a task's job for `drypipe status`, from its record (None: the
      task's local pid is shown, if any).
    - `origin`: where a completed task's results came from when its backend did not run it
      (Dendro's cache: "from Dendro cache, job J"), from its record; `drypipe why` shows it.
    - `scratch_dir_variable`: the environment variable naming the node-local scratch directory
      of a job (`$__scratch_dir` is the first one set, else output/<key>/scratch).
    - `running_elsewhere`: the body of a bash function of the task runtime that succeeds while
      the task, whose marker says it runs, runs on another machine this executor knows of
      (`./task tail` follows its logs until it ends); it may read `$__control_dir`.
    - `submits_ahead`: tasks are submitted to the backend before their upstream tasks end, and
      the backend may record their failure when an upstream task fails (the scheduler then
      reads the markers of the waiting dependents of a failed task).
    """

    name: str
    executor: str | type[Executor]
    settings: type[S] = NoSettings  # type: ignore[assignment]  # S is NoSettings when not given
    aliases: Mapping[str, str] = field(default_factory=dict)
    selected_by: tuple[str, ...] = ()
    handle: Callable[[TaskRecord], str | None] | None = None
    origin: Callable[[TaskRecord], str | None] | None = None
    scratch_dir_variable: str | None = None
    running_elsewhere: str | None = None
    submits_ahead: bool = False

    def __post_init__(self) -> None:
        what = f"executor plugin {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise UserError(f"{what}: the name must be letters, digits, _ and - (starting with a letter)")
        if not (isinstance(self.settings, type) and dataclasses.is_dataclass(self.settings)):
            raise UserError(f"{what}: settings must be a dataclass, got {self.settings!r}")
        for f in dataclasses.fields(self.settings):
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise UserError(f"{what}: setting {f.name} needs a default")
        if self.scratch_dir_variable is not None and not self.scratch_dir_variable.isidentifier():
            raise UserError(f"{what}: scratch_dir_variable {self.scratch_dir_variable!r} is not a variable name")
        names = set(self.setting_names())
        for name in (*self.selected_by, *self.aliases.values()):
            if name not in names:
                raise UserError(f"{what}: {name!r} is not one of its settings ({', '.join(sorted(names))})")

    def setting_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.settings))  # type: ignore[arg-type]

    def default(self, name: str) -> Any:
        """The default of setting `name` (a new list or dict for a default_factory)."""
        f = next(f for f in dataclasses.fields(self.settings) if f.name == name)  # type: ignore[arg-type]
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default

    def settings_of(self, conf: HasExecutorOptions, key: str | None = None) -> S:
        """The plugin's settings from a TaskConf's executor_options (its own fields only),
        checked: a bad value is a UserError naming the task (when `key` is given) and the setting."""
        hints = _hints(self.settings)
        options = conf.executor_options
        try:
            settings = self.settings(**{name: _checked(options[name], hints[name], f"TaskConf: {name}")
                                        for name in self.setting_names() if name in options})
            validate = getattr(settings, "validate", None)
            if callable(validate):
                validate()
        except UserError as e:
            raise UserError(f"task {key}: {e}") if key is not None else e from None
        return settings

    def executor_class(self) -> type[Executor]:
        """The Executor subclass (imported now)."""
        from drypipe.executor import Executor

        target = self.executor
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            try:
                target = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as e:
                raise UserError(f"executor plugin {self.name!r}: cannot import {self.executor!r}: {e}") from None
        if not (isinstance(target, type) and issubclass(target, Executor)):
            raise UserError(f"executor plugin {self.name!r}: {self.executor!r} is not an Executor subclass")
        return target


# -- checks of setting values, from the settings dataclass's annotations --------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(settings: type) -> dict[str, Any]:
    """The settings dataclass's annotations, evaluated (once: TaskConf checks settings per task)."""
    if settings not in _HINTS:
        _HINTS[settings] = typing.get_type_hints(settings)
    return _HINTS[settings]


_PHRASES: dict[type, tuple[tuple[type, ...], str]] = {
    str: ((str,), "a str"), int: ((int,), "an int"), float: ((int, float), "a number"),
    bool: ((bool,), "True or False"), dict: ((dict,), "a dict"), list: ((list, tuple), "a list"),
}


def _checked(value: Any, hint: Any, what: str) -> Any:
    """`value` if it is of type `hint` (lists and tuples as a list), else a UserError
    "<what> must be <type>, got <its type>: <value>"; strings must reach a task intact."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else Any
    if hint is Any:
        return value
    origin = typing.get_origin(hint) or hint
    accepted, phrase = _PHRASES.get(origin, ((object,), "a value"))
    items = typing.get_args(hint)[0] if origin is list and typing.get_args(hint) else None
    if items is str:
        phrase = "a list of strings"
    expected = f"be {phrase}" + (" or None" if optional else "")
    bad_int = origin in (int, float) and isinstance(value, bool)
    check_type(value, accepted if not bad_int else (), expected, what)
    if isinstance(value, str):
        check_text(value, what)
    if origin is list:
        value = list(value)
        for item in value:
            if items is str:
                check_type(item, str, expected, what)
                check_text(item, what)
    return value


# -- the registry ----------------------------------------------------------------------------------

_registered: dict[str, ExecutorPlugin[Any]] = {}


@cache
def _installed() -> dict[str, ExecutorPlugin[Any]]:
    """The plugins of the `drypipe.plugins` entry points, loaded once.  One that fails to load
    is left out with a warning: a broken package must not stop drypipe for the other executors."""
    found: dict[str, ExecutorPlugin[Any]] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        try:
            loaded = ep.load()
        except Exception as e:  # any error of third-party code
            log.warning("executor plugin %s (%s) does not load, left out: %s", ep.name, ep.value, e)
            continue
        if not isinstance(loaded, ExecutorPlugin):
            log.warning("executor plugin %s (%s) is not an ExecutorPlugin, left out", ep.name, ep.value)
            continue
        found[loaded.name] = loaded
    return found


def plugins() -> dict[str, ExecutorPlugin[Any]]:
    """Every executor plugin by name: the registered ones, then the installed ones."""
    return _catalog()[0]


@cache
def _catalog() -> tuple[dict[str, ExecutorPlugin[Any]], dict[str, tuple[ExecutorPlugin[Any], str]]]:
    """The plugins, and each setting name and alias -> (its plugin, its setting)."""
    found = {**_installed(), **_registered}
    owners: dict[str, tuple[ExecutorPlugin[Any], str]] = {}
    for name in sorted(found):
        candidate = found[name]
        names = {**{s: s for s in candidate.setting_names()}, **candidate.aliases}
        clash = sorted(n for n in names if n in owners or n in _generic_fields())
        if clash:
            log.warning("executor plugin %s left out: its settings %s are another's", name, ", ".join(clash))
            del found[name]
            continue
        owners.update({n: (candidate, setting) for n, setting in names.items()})
    return dict(sorted(found.items())), owners


def _generic_fields() -> frozenset[str]:
    from drypipe.task_conf import GENERIC_FIELDS

    return GENERIC_FIELDS


def plugin(name: str) -> ExecutorPlugin[Any]:
    """The plugin named `name`, or a UserError saying which are known and how to add one."""
    found = plugins().get(name)
    if found is None:
        raise UserError(
            f"unknown executer_type {name!r} (known: {', '.join(plugins()) or 'none'}); an executor is added "
            f"by installing a package with a {ENTRY_POINT_GROUP!r} entry point (pip install <package>) or by "
            "drypipe.plugins.register(): see docs/executors.md, \"Writing an executor plugin\"")
    return found


def setting_owner(name: str) -> tuple[ExecutorPlugin[Any], str] | None:
    """(plugin, setting) for a plugin's setting name or alias, else None."""
    return _catalog()[1].get(name)


def register(new: ExecutorPlugin[Any]) -> None:
    """Add (or replace) a plugin in this process: it takes precedence over an installed one."""
    if not isinstance(new, ExecutorPlugin):
        raise UserError(f"register() takes an ExecutorPlugin, got {type(new).__name__}")
    others = {n: p for n, p in plugins().items() if n != new.name}
    taken = sorted(n for n in (*new.setting_names(), *new.aliases)
                   if n in _generic_fields() or any(n in p.setting_names() or n in p.aliases for p in others.values()))
    if taken:
        raise UserError(f"executor plugin {new.name!r}: settings {', '.join(taken)} are TaskConf's or another plugin's")
    _registered[new.name] = new
    _catalog.cache_clear()


def unregister(name: str) -> None:
    """Remove a plugin added by register() (an installed one of that name shows again)."""
    _registered.pop(name, None)
    _catalog.cache_clear()


def scratch_dir_variables() -> list[str]:
    """The plugins' scratch directory variables, in plugin name order."""
    return [p.scratch_dir_variable for p in plugins().values() if p.scratch_dir_variable]


def handle_from_json(record: TaskRecord, file_name: str, *keys: str) -> str | None:
    """A handle from a JSON record of the task's control dir: its `keys` joined by ":"
    ("?" when the record names none of them), or None without such a record."""
    try:
        data = json.loads(record.path(file_name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return ":".join(str(data[k]) for k in keys if data.get(k)) or "?"
