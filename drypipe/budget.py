"""Task resources: the sizes and durations of TaskConf.cpus, mem and time (written as Slurm
writes them, so that one TaskConf serves the process and the Slurm executors), their scaling
on a retry, and the local budget of cores and memory the process executor never exceeds."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drypipe.errors import UserError

if TYPE_CHECKING:
    from drypipe.task_conf import TaskConf  # not at run time: task_conf imports this module

MIB = 1 << 20
_UNITS = {"K": 1 << 10, "M": MIB, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT](?:I?B)?)?\s*$", re.IGNORECASE)
# Slurm's --time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"^\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*$")


def mem_bytes(value: str | int, what: str = "TaskConf: mem") -> int:
    """A memory size in bytes: an int is MiB (Slurm's default unit), a str may end in K, M, G
    or T (binary units, as Slurm's: "4G", "512M", "1.5GB")."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserError(f"{what} must be MiB (an int) or a size such as '4G', got {value!r}")
    if isinstance(value, int):
        size = value * MIB
    else:
        m = _SIZE.match(value)
        if not m:
            raise UserError(f"{what} {value!r} is not a size such as '4G', '512M' or 2048 (MiB)")
        size = math.ceil(float(m.group(1)) * _UNITS[(m.group(2) or "M")[0].upper()])
    if size <= 0:
        raise UserError(f"{what} must be more than 0, got {value!r}")
    return size


def mem_text(size: int) -> str:
    """Bytes as a short size: 32212254720 -> '30G', 536870912 -> '512M'."""
    for unit in "TGM":
        scaled = size / _UNITS[unit]
        if scaled >= 1:
            return f"{scaled:.4g}{unit}"
    return f"{size / _UNITS['K']:.4g}K"


def time_seconds(value: str | int, what: str = "TaskConf: time") -> int:
    """A duration in seconds: an int is minutes (Slurm's unit), a str one of Slurm's --time forms
    ("30", "1:30:00", "2-12", "2-12:00:00")."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserError(f"{what} must be minutes (an int) or a time such as '1:30:00', got {value!r}")
    if isinstance(value, int):
        seconds = value * 60
    else:
        m = _TIME.match(value)
        if not m:
            raise UserError(f"{what} {value!r} is not a time such as '90' (minutes), '1:30:00' or '2-12:00:00'")
        days, first, second, third = (int(g) if g else 0 for g in m.groups())
        if m.group(1):  # D-H, D-H:M, D-H:M:S
            seconds = ((days * 24 + first) * 60 + second) * 60 + third
        elif m.group(4):  # H:M:S
            seconds = (first * 60 + second) * 60 + third
        else:  # M, M:S
            seconds = first * 60 + second
    if seconds <= 0:
        raise UserError(f"{what} must be more than 0, got {value!r}")
    return seconds


def time_text(seconds: int) -> str:
    """Seconds as sbatch's --time: 'H:MM:SS', or 'D-HH:MM:SS' from a day on."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}" if days else f"{hours}:{minutes:02d}:{secs:02d}"


def mem_mib(value: str | int, factor: float = 1.0) -> str:
    """`value` times `factor` in whole MiB, rounded up: sbatch's --mem form ("2048M")."""
    return f"{math.ceil(mem_bytes(value) * factor / MIB)}M"


def scaled_time(value: str | int, factor: float) -> str:
    return time_text(math.ceil(time_seconds(value) * factor))


# -- the local budget ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """What one task holds while it runs: cores, and memory in bytes."""

    cpus: int = 1
    mem: int = 0

    def __sub__(self, other: Need) -> Need:
        return Need(self.cpus - other.cpus, self.mem - other.mem)

    def within(self, free: Need) -> bool:
        return self.cpus <= free.cpus and self.mem <= free.mem


def need_of(conf: TaskConf) -> Need:
    """A task's need: TaskConf.cpus (default 1) and TaskConf.mem (default 0: not counted)."""
    return Need(conf.cpus or 1, mem_bytes(conf.mem) if conf.mem is not None else 0)


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity: what a Slurm allocation or taskset gives)."""
    return len(os.sched_getaffinity(0))


def machine_mem() -> int:
    """MemTotal of /proc/meminfo, in bytes."""
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise UserError("/proc/meminfo has no MemTotal line: give the memory budget with drypipe run --mem")


@dataclass(frozen=True)
class Budget:
    """The cores and memory (bytes) the tasks of the process executor may hold at once."""

    cores: int
    mem: int

    @classmethod
    def of_machine(cls, cores: int | None = None, mem: int | None = None) -> Budget:
        return cls(cores or machine_cores(), mem or machine_mem())

    @property
    def total(self) -> Need:
        return Need(self.cores, self.mem)

    def check(self, key: str, need: Need) -> None:
        """Refuse a task that could never start: one line naming it, its need and the budget."""
        if need.cpus > self.cores:
            raise UserError(f"task {key}: needs {need.cpus} cpus, more than the local budget of "
                            f"{self.cores} (drypipe run --cores)")
        if need.mem > self.mem:
            raise UserError(f"task {key}: needs {mem_text(need.mem)} of memory, more than the local budget of "
                            f"{mem_text(self.mem)} (drypipe run --mem)")

    def capped(self, need: Need) -> Need:
        """A need scaled up by retries is held to the budget: the task then runs alone."""
        return Need(min(need.cpus, self.cores), min(need.mem, self.mem))


class Admission:
    """Which ready tasks start in one launch cycle, in their ready order, within a budget.

    A task that does not fit waits, and ready tasks behind it that fit start in its place,
    but only until as many as the budget has cores have passed it: from then on it holds its
    place (nothing more starts until it fits), so a large task is never starved by small ones.
    `passed` is kept from cycle to cycle."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.passed: dict[str, int] = {}  # the waiting task at the head -> tasks started ahead of it
        self.free = budget.total
        self.head: str | None = None

    def start_cycle(self, in_use: list[Need]) -> None:
        self.free = self.budget.total
        for need in in_use:
            self.free = self.free - need
        self.head = None

    @property
    def full(self) -> bool:
        """Nothing more can start this cycle: no core is free, or the head holds its place."""
        return self.free.cpus < 1 or (self.head is not None and self.passed.get(self.head, 0) >= self.budget.cores)

    def admit(self, key: str, need: Need) -> bool:
        need = self.budget.capped(need)
        if self.head is not None and self.passed.get(self.head, 0) >= self.budget.cores:
            return False  # the head holds its place
        if need.within(self.free):
            self.free = self.free - need
            self.passed.pop(key, None)
            if self.head is not None:
                self.passed[self.head] = self.passed.get(self.head, 0) + 1
            return True
        if self.head is None:
            self.head = key
        return False

    def forget(self, key: str) -> None:
        self.passed.pop(key, None)
