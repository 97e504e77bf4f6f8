"""TaskConf: where and how a task runs (executor, Slurm, SSH, container, environment)."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any

from drypipe import budget
from drypipe.errors import UserError, check_text, check_type

RETRY_SCALED = ("mem", "time")


@dataclass
class TaskConf:
    """Runtime configuration of a task; not part of its signature."""

    executer_type: str = "process"
    # Slurm: account and extra `sbatch` options (e.g. ["--time=0:5:00"]).
    slurm_account: str | None = None
    sbatch_options: list[str] = field(default_factory=list)
    # A container image: for apptainer/singularity a .sif file, resolved in `$__containers_dir`
    # (or remote_containers_dir) when relative; for podman/docker an image name.
    container: str | None = None
    # What runs it (drypipe.containers.RUNTIMES); None: $DRYPIPE_CONTAINER_RUNTIME, else apptainer.
    container_runtime: str | None = None
    # SSH: "user@host[:port]:/path/to/private_key", and where instances live on that host.
    ssh_specs: str | None = None
    remote_base_dir: str | None = None
    remote_containers_dir: str | None = None
    # The interpreter that runs python calls; default: the one that generated the task.
    python_bin: str | None = None
    # Extra environment variables for the task's steps.
    extra_env: dict[str, str | int | float] = field(default_factory=dict)
    # Bash lines run before each step (module load, conda activate ...).
    command_before_task: str | None = None
    # Slurm array throttle (%N); None means no throttle.
    max_simultaneous_jobs: int | None = None
    # What the task needs: the process executor keeps the tasks it runs within `drypipe run
    # --cores/--mem`; the Slurm executor asks sbatch for them (--cpus-per-task, --mem, --time).
    # mem: MiB (an int) or "4G"; time: minutes (an int) or "1:30:00" (Slurm's forms).
    cpus: int | None = None
    mem: str | int | None = None
    time: str | int | None = None
    # Attempts after a failure (None: `drypipe run --retries`), and the factor each retry
    # multiplies mem and time by, e.g. {"mem": 2.0, "time": 1.5}.
    retries: int | None = None
    retry_scale: dict[str, float] = field(default_factory=dict)
    # Dendro executor settings.
    dendro_service: str | None = None
    dendro_app: str | None = None
    dendro_processor: str | None = None
    required_resources: dict[str, Any] | None = None
    # Free-form settings for third-party executors.
    executor_options: dict[str, Any] = field(default_factory=dict)
    # Bash steps with `set -euo pipefail`; None: the pipeline's choice (create_pipeline), by
    # default off as in the original DryPipe, where only a snippet's last command decides.
    bash_strict: bool | None = None
    # The original DryPipe's: options of the interpreter of python calls, and a free label.
    python_interpreter_switches: list[str] = field(default_factory=list)
    label: str | None = None

    @staticmethod
    def default() -> "TaskConf":
        """The original DryPipe's `TaskConf.default()`: a local process."""
        return TaskConf("process")

    def __init__(self, executer_type: str | None = None, **kwargs: Any):
        # Accept the original DryPipe spellings so its pipelines run unchanged.
        if "slurm_options" in kwargs:
            kwargs.setdefault("sbatch_options", kwargs.pop("slurm_options"))
        if "ssh_remote_dest" in kwargs:
            kwargs.setdefault("ssh_specs", kwargs.pop("ssh_remote_dest"))
        known = {f.name for f in dataclasses.fields(TaskConf)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise UserError(f"TaskConf: unknown field(s) {', '.join(unknown)}")
        # The fields the pipeline set itself: configuration files (drypipe.config) fill the others.
        self._given = frozenset(kwargs) | ({"executer_type"} if executer_type is not None else frozenset())
        self.executer_type = "process" if executer_type is None else executer_type
        for f in dataclasses.fields(TaskConf):
            if f.name == "executer_type":
                continue
            if f.name in kwargs:
                value = kwargs[f.name]
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            setattr(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.executer_type, str) or not self.executer_type:
            raise UserError(f"TaskConf: executer_type must be a non-empty string, got {self.executer_type!r}")
        check_type(self.sbatch_options, (list, tuple), "be a list of strings", "TaskConf: sbatch_options")
        for option in self.sbatch_options:
            check_type(option, str, "be a list of strings", "TaskConf: sbatch_options")
            check_text(option, "TaskConf: sbatch_options")
        self.sbatch_options = list(self.sbatch_options)
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
        if self.max_simultaneous_jobs is not None and (
            not isinstance(self.max_simultaneous_jobs, int) or self.max_simultaneous_jobs < 1
        ):
            raise UserError("TaskConf: max_simultaneous_jobs must be a positive integer")
        self._validate_resources()

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

    def for_attempt(self, attempt: int) -> "TaskConf":
        """The TaskConf of attempt `attempt` (1 is the first): mem and time multiplied by their
        retry_scale factor once per retry.  Derived, never stored: the attempt number is the
        task record's (see TaskRecord.attempt)."""
        if attempt <= 1 or not self.retry_scale:
            return self
        scaled = {name: factor ** (attempt - 1) for name, factor in self.retry_scale.items()
                  if getattr(self, name) is not None and factor != 1}
        if not scaled:
            return self
        conf = dataclasses.replace(self)
        conf._given = self._given
        if "mem" in scaled:
            conf.mem = budget.scaled_mem(self.mem, scaled["mem"])
        if "time" in scaled:
            conf.time = budget.scaled_time(self.time, scaled["time"])
        return conf

    @property
    def given_fields(self) -> frozenset[str]:
        return self._given

    def with_defaults(self, defaults: dict[str, Any]) -> "TaskConf":
        """A copy whose fields not given to this TaskConf come from `defaults` (config files)."""
        conf = TaskConf(**{**defaults, **{name: getattr(self, name) for name in self._given}})
        conf._given = self._given
        return conf

    def resolved_python_bin(self) -> str:
        return self.python_bin or sys.executable

    def executor_name(self) -> str:
        """The executor plugin that runs the task: "ssh" when ssh_specs is set (it runs the
        task on that host as executer_type says: process or slurm), else executer_type."""
        return "ssh" if self.ssh_specs else self.executer_type

    def to_dict(self) -> dict[str, Any]:
        # Shallow copies of the list and dict fields: dataclasses.asdict's deep copy costs
        # more than the rest of a task's generation.
        return {
            f.name: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
            for f in _FIELDS
            for v in (getattr(self, f.name),)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskConf":
        data = dict(data)
        return cls(data.pop("executer_type", "process"), **data)

    def batch_key(self) -> str:
        """Tasks with equal batch keys may share one launch (e.g. one Slurm job array)."""
        import json

        return json.dumps(self.to_dict(), sort_keys=True)


_FIELDS = dataclasses.fields(TaskConf)
# What validate() requires of each field, read from its annotation (a string: see the
# __future__ import); extra_env, sbatch_options and the others have their own checks.
_EXPECTED: dict[str, tuple[tuple[type, ...], str]] = {
    "str | None": ((str, type(None)), "be a str or None"),
    "dict[str, Any]": ((dict,), "be a dict"),
    "dict[str, Any] | None": ((dict, type(None)), "be a dict or None"),
}
_CHECKED = [(f.name, *_EXPECTED[f.type]) for f in _FIELDS if f.type in _EXPECTED]
