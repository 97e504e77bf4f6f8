"""TaskConf: where and how a task runs (executor, container, environment, resources).

TaskConf has the fields every executor shares.  The settings of one executor (Slurm's account,
SSH's host ...) are declared by its plugin (drypipe.plugins): a keyword that names one is kept in
`executor_options`, the one namespace of plugin settings, and reads back as an attribute
(`TaskConf(slurm_account="x").slurm_account`)."""
from __future__ import annotations

import dataclasses
import difflib
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from drypipe import budget, plugins
from drypipe.errors import UserError, check_text, check_type

RETRY_SCALED = ("mem", "time")


@dataclass(init=False)
class TaskConf:
    """Runtime configuration of a task; not part of its signature."""

    # The executor plugin that runs the task (unless a plugin's `selected_by` setting is set).
    executer_type: str = "process"
    # A container image: for apptainer/singularity a .sif file, resolved in `$__containers_dir`
    # (or the executor's containers dir) when relative; for podman/docker an image name.
    container: str | None = None
    # What runs it (drypipe.containers.RUNTIMES); None: $DRYPIPE_CONTAINER_RUNTIME, else apptainer.
    container_runtime: str | None = None
    # The interpreter that runs python calls; default: the one that generated the task.
    python_bin: str | None = None
    # Extra environment variables for the task's steps.
    extra_env: dict[str, str | int | float] = field(default_factory=dict)
    # Bash lines run before each step (module load, conda activate ...).
    command_before_task: str | None = None
    # What the task needs: the process executor keeps the tasks it runs within `drypipe run
    # --cores/--mem`; a batch system's executor asks for them.
    # mem: MiB (an int) or "4G"; time: minutes (an int) or "1:30:00".
    cpus: int | None = None
    mem: str | int | None = None
    time: str | int | None = None
    # Attempts after a failure (None: `drypipe run --retries`), and the factor each retry
    # multiplies mem and time by, e.g. {"mem": 2.0, "time": 1.5}.
    retries: int | None = None
    retry_scale: dict[str, float] = field(default_factory=dict)
    # The executor plugins' settings (by their names, see drypipe.plugins), and free-form
    # options of executors.
    executor_options: dict[str, Any] = field(default_factory=dict)
    # Bash steps with `set -euo pipefail`; None: the pipeline's choice (create_pipeline), by
    # default off as in the original DryPipe, where only a snippet's last command decides.
    bash_strict: bool | None = None
    # The original DryPipe's: options of the interpreter of python calls, and a free label.
    python_interpreter_switches: list[str] = field(default_factory=list)
    label: str | None = None

    @staticmethod
    def default() -> TaskConf:
        """The original DryPipe's `TaskConf.default()`: a local process."""
        return TaskConf("process")

    def __init__(self, executer_type: str | None = None, **kwargs: Any):
        given, options, unknown = _split(kwargs)
        if unknown:
            raise UserError(_unknown_message(unknown))
        # The fields the pipeline set itself (the plugin settings by name): configuration
        # files (drypipe.config) fill the others.
        named = {*given, *(["executer_type"] if executer_type is not None else []),
                 *(["executor_options"] if "executor_options" in kwargs else [])}
        self._given = frozenset(named | set(options if isinstance(options, dict) else ()))
        self.executer_type = "process" if executer_type is None else executer_type
        for f in _FIELDS:
            if f.name == "executer_type":
                continue
            value = given[f.name] if f.name in given else _default(f)
            setattr(self, f.name, value)
        self.executor_options = options  # a dict, else refused by validate()
        self.validate()

    def __getattr__(self, name: str) -> Any:
        """A plugin setting (or its alias): its value in executor_options, else its default."""
        owner = plugins.setting_owner(name) if not name.startswith("_") else None
        if owner is None:
            raise AttributeError(f"'TaskConf' object has no attribute {name!r}")
        plugin, setting = owner
        options = self.__dict__.get("executor_options") or {}
        return options[setting] if setting in options else plugin.default(setting)

    def __setattr__(self, name: str, value: Any) -> None:
        owner = plugins.setting_owner(name) if name not in _NAMES and not name.startswith("_") else None
        if owner is not None:
            self.executor_options[owner[1]] = value
        else:
            object.__setattr__(self, name, value)

    def validate(self) -> None:
        if not isinstance(self.executer_type, str) or not self.executer_type:
            raise UserError(f"TaskConf: executer_type must be a non-empty string, got {self.executer_type!r}")
        for name, types, expected in _CHECKED:  # the fields typed `str | None`, `dict`, ...
            value = getattr(self, name)
            check_type(value, types, expected, f"TaskConf: {name}")
            if isinstance(value, str):
                check_text(value, f"TaskConf: {name}")
        check_type(self.extra_env, dict, "map variable names to str, int or float values", "TaskConf: extra_env")
        for name, value in self.extra_env.items():  # bash names (ASCII); __ names are drypipe's own
            if not (isinstance(name, str) and name.isidentifier() and name.isascii()) or name.startswith("__"):
                raise UserError(f"TaskConf: extra_env: {name!r} is not a valid environment variable name "
                                "(letters, digits and _, not starting with a digit or __)")
            check_type(value, (str, int, float), "be a str, int or float", f"TaskConf: extra_env[{name!r}]")
            if isinstance(value, str):
                check_text(value, f"TaskConf: extra_env[{name!r}]")
        check_type(self.bash_strict, (bool, type(None)), "be True, False or None", "TaskConf: bash_strict")
        check_type(self.python_interpreter_switches, (list, tuple), "be a list of strings",
                   "TaskConf: python_interpreter_switches")
        for switch in self.python_interpreter_switches:
            check_type(switch, str, "be a list of strings", "TaskConf: python_interpreter_switches")
            check_text(switch, "TaskConf: python_interpreter_switches")
        self.python_interpreter_switches = list(self.python_interpreter_switches)
        self._validate_resources()
        self._validate_settings()

    def _validate_resources(self) -> None:
        for name, least, kind in (("cpus", 1, "positive"), ("retries", 0, "non-negative")):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise UserError(f"TaskConf: {name} must be a {kind} integer, got {value!r}")
        if self.mem is not None:
            budget.mem_bytes(self.mem)
        if self.time is not None:
            budget.time_seconds(self.time)
        check_type(self.retry_scale, dict, "be a dict such as {'mem': 2.0, 'time': 1.5}", "TaskConf: retry_scale")
        for name, factor in self.retry_scale.items():
            if name not in RETRY_SCALED:
                raise UserError(f"TaskConf: retry_scale: {name!r} is not scaled (only {', '.join(RETRY_SCALED)})")
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
                raise UserError(f"TaskConf: retry_scale[{name!r}] must be a number of at least 1, got {factor!r}")

    def _validate_settings(self) -> None:
        """Check the plugin settings set (every plugin's, whatever the executor: a configuration
        file's default may reach any task), and keep them as checked (a tuple as a list)."""
        for plugin in plugins.plugins().values():
            own = [name for name in plugin.setting_names() if name in self.executor_options]
            if own:
                settings = plugin.settings_of(self)
                self.executor_options.update({name: getattr(settings, name) for name in own})

    def for_attempt(self, attempt: int) -> TaskConf:
        """The TaskConf of attempt `attempt` (1 is the first): mem and time multiplied by their
        retry_scale factor once per retry.  Derived, never stored: the attempt number is the
        task record's (see TaskRecord.attempt)."""
        if attempt <= 1 or not self.retry_scale:
            return self
        scaled = {name: factor ** (attempt - 1) for name, factor in self.retry_scale.items()
                  if getattr(self, name) is not None and factor != 1}
        if not scaled:
            return self
        conf = TaskConf.from_dict(self.to_dict())
        conf._given = self._given
        if "mem" in scaled and self.mem is not None:
            conf.mem = budget.mem_mib(self.mem, scaled["mem"])
        if "time" in scaled and self.time is not None:
            conf.time = budget.scaled_time(self.time, scaled["time"])
        return conf

    @property
    def given_fields(self) -> frozenset[str]:
        """The fields and plugin settings (by name) given to this TaskConf."""
        return self._given

    def with_defaults(self, defaults: dict[str, Any]) -> TaskConf:
        """A copy whose fields and settings not given to this TaskConf come from `defaults`
        (configuration files: TaskConf keywords, executor_options merged key by key)."""
        fields, options, unknown = _split(defaults)
        if unknown:
            raise UserError(_unknown_message(unknown))
        fields.update({name: getattr(self, name) for name in self._given
                       if name in _NAMES and name != "executor_options"})
        options = {**options, **{name: value for name, value in self.executor_options.items()
                                 if name in self._given}}
        conf = TaskConf(**{**fields, "executor_options": options})
        conf._given = self._given
        return conf

    def resolved_python_bin(self) -> str:
        return self.python_bin or sys.executable

    def executor_name(self) -> str:
        """The executor plugin that runs the task: the first plugin one of whose `selected_by`
        settings is set (it runs the task as executer_type says), else executer_type."""
        for plugin in plugins.plugins().values():
            if any(self.executor_options.get(name) for name in plugin.selected_by):
                return plugin.name
        return self.executer_type

    def to_dict(self) -> dict[str, Any]:
        """The task_conf of task-conf.json: the generic fields, the plugin settings in
        executor_options.  Shallow copies of the list and dict values: dataclasses.asdict's
        deep copy costs more than the rest of a task's generation."""
        data = {f.name: _copy(getattr(self, f.name)) for f in _FIELDS}
        data["executor_options"] = {name: _copy(value) for name, value in self.executor_options.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskConf:
        """From to_dict(), or from a task-conf.json of an earlier version (with the plugin
        settings beside the generic fields: they are routed to executor_options)."""
        data = dict(data)
        return cls(data.pop("executer_type", "process"), **data)

    @staticmethod
    def field_names() -> list[str]:
        """The generic fields, then every installed plugin's settings: what configuration
        files may set (drypipe.config)."""
        return [*_NAMES, *(name for p in plugins.plugins().values() for name in p.setting_names())]

    def batch_key(self) -> str:
        """Tasks with equal batch keys may share one launch (e.g. one job array)."""
        return json.dumps(self.to_dict(), sort_keys=True)


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


def _unknown_message(unknown: list[str]) -> str:
    """One line for keywords that are neither TaskConf fields nor settings of an installed
    executor plugin: the nearest known names, and where to see them all."""
    known = TaskConf.field_names()
    hints = [close[0] for name in unknown for close in [difflib.get_close_matches(name, known, n=1)] if close]
    did_you_mean = f"; did you mean {' or '.join(hints)}?" if hints else ""
    return (f"TaskConf: unknown field(s) {', '.join(unknown)}{did_you_mean} (TaskConf fields: docs/dsl.md; "
            "settings of the installed executors: drypipe executors)")


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any, list[str]]:
    """TaskConf keywords as (generic fields, executor_options with the plugin settings routed
    into it by their names, unknown keywords).  A setting given both ways: the keyword wins; an
    alias and its setting both given: the setting wins."""
    fields = {name: value for name, value in kwargs.items() if name in _NAMES and name != "executor_options"}
    options = kwargs.get("executor_options", {})
    options = dict(options) if isinstance(options, dict) else options
    routed: dict[str, Any] = {}
    unknown = []
    for name, value in kwargs.items():
        if name in _NAMES:
            continue
        owner = plugins.setting_owner(name)
        if owner is None:
            unknown.append(name)
        elif owner[1] == name or owner[1] not in kwargs:
            routed[owner[1]] = value
    if isinstance(options, dict):
        options.update(routed)
    return fields, options, sorted(unknown)


_FIELDS = dataclasses.fields(TaskConf)
_NAMES = tuple(f.name for f in _FIELDS)
GENERIC_FIELDS = frozenset(_NAMES)
# What validate() requires of each field, read from its annotation (a string: see the
# __future__ import); extra_env and the others have their own checks.
_EXPECTED: dict[str, tuple[tuple[type, ...], str]] = {
    "str | None": ((str, type(None)), "be a str or None"),
    "dict[str, Any]": ((dict,), "be a dict"),
    "dict[str, Any] | None": ((dict, type(None)), "be a dict or None"),
}
_CHECKED = [(f.name, *_EXPECTED[f.type]) for f in _FIELDS if isinstance(f.type, str) and f.type in _EXPECTED]
