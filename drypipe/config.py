"""Configuration files: defaults for TaskConf fields and for `drypipe run` settings.

Two files, both optional, in YAML:

- the user file `~/.config/drypipe/config.yaml` (or the path in $DRYPIPE_CONFIG);
- the instance file `drypipe.yaml` in the pipeline instance directory.

Precedence, highest first: a task's own TaskConf > the pipeline's TaskConf
(`DryPipe.create_pipeline(task_conf=...)`) > the instance file > the user file > defaults.
For `drypipe run` settings: command-line option > environment variable > instance file >
user file > default.  `drypipe config show` prints every effective value and its source.

    task_conf:                 # any TaskConf field
      executer_type: slurm
      slurm_account: def-someone
      sbatch_options: ["--time=1:00:00", "--mem=4G"]
    cache: /project/def-someone/drypipe-cache   # like --cache
    max_local_jobs: 4                           # like --max-local-jobs
    sleep_schedule: [0, 5, 10, 30]              # like --sleep-schedule
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drypipe.errors import UserError
from drypipe.task_conf import TaskConf

if TYPE_CHECKING:
    from drypipe.dsl import Pipeline

USER_CONFIG_ENV = "DRYPIPE_CONFIG"
INSTANCE_CONFIG_FILE = "drypipe.yaml"
# Seconds between polls of the executors, backing off while nothing changes.
DEFAULT_SLEEP_SCHEDULE: tuple[float, ...] = (0, 1, 3, 5, 10, 15, 20)


def sleep_schedule_text(schedule: tuple[float, ...] | list[float]) -> str:
    """The spelling of --sleep-schedule: comma-separated seconds."""
    return ",".join(f"{n:g}" for n in schedule)


def parse_sleep_schedule(value: object) -> tuple[float, ...] | None:
    """Seconds from "0,1,5" or [0, 1, 5]; None when that is not one or more non-negative numbers."""
    items = value if isinstance(value, list) else str(value).split(",")
    try:
        numbers = tuple(float(v) for v in items if str(v).strip())
    except (TypeError, ValueError):
        return None
    return numbers if numbers and all(n >= 0 for n in numbers) else None


@dataclass(frozen=True)
class RunSetting:
    name: str
    option: str
    envvar: str
    default: Any
    default_note: str = "default"


RUN_SETTINGS = [
    RunSetting("cache", "--cache", "DRYPIPE_CACHE", None),
    RunSetting("max_local_jobs", "--max-local-jobs", "DRYPIPE_MAX_LOCAL_JOBS", None, "default (number of CPUs)"),
    RunSetting("sleep_schedule", "--sleep-schedule", "DRYPIPE_SERVICE_SLEEP_SCHEDULE",
               sleep_schedule_text(DEFAULT_SLEEP_SCHEDULE)),
]
_RUN_NAMES = {s.name for s in RUN_SETTINGS}


def task_conf_fields() -> list[str]:
    """TaskConf's fields and the executor plugins' settings."""
    return TaskConf.field_names()


@dataclass
class Layer:
    """One configuration file: its TaskConf defaults and run settings."""

    source: str  # e.g. "instance file /data/run1/drypipe.yaml"
    task_conf: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)


def user_config_path() -> Path:
    explicit = os.environ.get(USER_CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "drypipe" / "config.yaml"


def read_layer(path: Path, kind: str) -> Layer | None:
    """The file at `path`, validated; None when it does not exist."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UserError(f"{kind} {path}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(f"{kind} {path}: invalid YAML{line}: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{kind} {path}: expected a mapping of settings, got {type(data).__name__}")
    layer = Layer(f"{kind} {path}")
    unknown = sorted(set(data) - _RUN_NAMES - {"task_conf"})
    if unknown:
        known = ", ".join(["task_conf", *sorted(_RUN_NAMES)])
        raise UserError(f"{kind} {path}: unknown setting(s) {', '.join(map(str, unknown))} (known: {known})")
    conf = data.get("task_conf") or {}
    if not isinstance(conf, dict):
        raise UserError(f"{kind} {path}: task_conf must be a mapping of TaskConf fields")
    try:
        TaskConf(**conf)  # validates names and values
    except (UserError, TypeError) as e:
        raise UserError(f"{kind} {path}: task_conf: {e}") from None
    layer.task_conf = dict(conf)
    for name in _RUN_NAMES & set(data):
        layer.run[name] = _check_run_value(layer.source, name, data[name])
    return layer


def _check_run_value(source: str, name: str, value: Any) -> Any:
    if name == "max_local_jobs":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{source}: max_local_jobs must be a positive integer, got {value!r}")
        return value
    if name == "sleep_schedule":
        numbers = parse_sleep_schedule(value)
        if numbers is None:
            raise UserError(f"{source}: sleep_schedule must be non-negative seconds, like [0, 1, 5], got {value!r}")
        return sleep_schedule_text(numbers)
    if not isinstance(value, str) or not value:
        raise UserError(f"{source}: {name} must be a string, got {value!r}")
    return value


@dataclass
class Config:
    """The configuration files that apply to one instance, lowest precedence first."""

    layers: list[Layer]

    def task_conf_defaults(self) -> dict[str, Any]:
        """TaskConf fields set by the files (the instance file wins over the user file)."""
        merged: dict[str, Any] = {}
        for layer in self.layers:
            merged.update(layer.task_conf)
        return merged

    def run_value(self, name: str) -> tuple[Any, str] | None:
        """(value, source) of a run setting set by a file, or None."""
        for layer in reversed(self.layers):
            if name in layer.run:
                return layer.run[name], layer.source
        return None

    def task_conf_sources(self) -> dict[str, str]:
        sources: dict[str, str] = {}
        for layer in self.layers:
            sources.update({k: layer.source for k in layer.task_conf})
        return sources


def load_config(instance_dir: str | os.PathLike[str] | None) -> Config:
    layers = []
    user = read_layer(user_config_path(), "user file")
    if user is not None:
        layers.append(user)
    if instance_dir is not None:
        instance = read_layer(Path(os.path.abspath(instance_dir)) / INSTANCE_CONFIG_FILE, "instance file")
        if instance is not None:
            layers.append(instance)
    return Config(layers)


def apply_to_pipeline(config: Config, pipeline: Pipeline) -> None:
    """Give the pipeline's default TaskConf, and the TaskConf of each task, the files' defaults
    for the fields they do not set themselves."""
    defaults = config.task_conf_defaults()
    if not defaults:
        return
    pipeline.task_conf = pipeline.task_conf.with_defaults(defaults)
    pipeline.conf_defaults = defaults


def effective_settings(
    config: Config,
    pipeline: Pipeline | None = None,
    pipeline_source: str = "pipeline",
    task_conf: TaskConf | None = None,
    task_source: str = "task",
) -> list[tuple[str, Any, str]]:
    """(setting, value, source) for every TaskConf field and run setting."""
    rows: list[tuple[str, Any, str]] = []
    file_values = config.task_conf_defaults()
    file_sources = config.task_conf_sources()
    default = TaskConf()
    pipeline_conf = pipeline.task_conf if pipeline is not None else None
    for name in task_conf_fields():
        value, source = getattr(default, name), "default"
        if name in file_values:
            value, source = file_values[name], file_sources[name]
        if task_conf is not None:  # a task's own TaskConf replaces the pipeline's (as in DryPipe)
            if name in task_conf.given_fields:
                value, source = getattr(task_conf, name), task_source
        elif pipeline_conf is not None and name in pipeline_conf.given_fields:
            value, source = getattr(pipeline_conf, name), pipeline_source
        rows.append((f"task_conf.{name}", value, source))
    for setting in RUN_SETTINGS:
        env = os.environ.get(setting.envvar)
        from_file = config.run_value(setting.name)
        if env:
            rows.append((setting.name, env, f"env {setting.envvar}"))
        elif from_file is not None:
            rows.append((setting.name, from_file[0], from_file[1]))
        else:
            value = setting.default
            if setting.name == "max_local_jobs":
                value = os.cpu_count() or 1
            rows.append((setting.name, value, setting.default_note))
    return rows


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value)
    return str(value)
