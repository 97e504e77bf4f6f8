"""Task state markers: exactly one `state.<name>` file per task control dir; every
transition is an atomic rename of that file."""
from __future__ import annotations

import os
import re
from typing import Final, TypeGuard

# Final: their types are their values (drypipe.executor.Liveness.outcome is a Literal).
WAITING: Final = "waiting"
READY: Final = "ready"
LAUNCHED: Final = "launched"
COMPLETED: Final = "completed"
LOST: Final = "lost"

def step_started(step: int) -> str:
    return f"step-started.{step}"


def failed(step: int) -> str:
    return f"failed.{step}"


def killed(step: int) -> str:
    return f"killed.{step}"


_STEP_RE = re.compile(r"^(step-started|step-completed|failed|killed|timed-out)\.(\d+)$")
TERMINAL_PREFIXES = ("failed.", "killed.", "timed-out.")


# TypeGuard: where these say True, the state is a marker name (not None).
def is_terminal(state: str | None) -> TypeGuard[str]:
    return state == COMPLETED or state == LOST or (state is not None and state.startswith(TERMINAL_PREFIXES))


def is_failure(state: str | None) -> TypeGuard[str]:
    return state == LOST or (state is not None and state.startswith(TERMINAL_PREFIXES))


def is_in_flight(state: str | None) -> TypeGuard[str]:
    return state == LAUNCHED or (state is not None and state.startswith(("step-started.", "step-completed.")))


# How `drypipe run`, `status` and `report` group states; a task without a marker yet shows as waiting.
GROUPS = (WAITING, READY, "running", COMPLETED, "failed")


def text(state: str | None) -> str:
    """The state as shown to users: its marker name, or waiting before it has one."""
    return state or WAITING


def name_of(state: str | None) -> str:
    """The state without its step: waiting, ready, running (launched or in a step), completed,
    failed, killed, timed-out or lost."""
    if is_in_flight(state):
        return "running"
    return text(state).split(".")[0]


def group(state: str | None) -> str:
    """The display group of a state (one of GROUPS): killed, timed-out and lost are failed."""
    return "failed" if is_failure(state) else name_of(state)


def matches(state: str | None, wanted: str) -> bool:
    """Whether a task in `state` is in the `--state` group `wanted`: a name_of (failed takes
    killed, timed-out and lost too) or a marker name (launched)."""
    return wanted in (name_of(state), group(state), state)


def step_of(state: str | None) -> int:
    """The step number a state refers to (0 when it has none)."""
    m = _STEP_RE.match(state or "")
    return int(m.group(2)) if m else 0


def is_valid(state: str) -> bool:
    return state in (WAITING, READY, LAUNCHED, COMPLETED, LOST) or bool(_STEP_RE.match(state))


def read_state(control_dir: str) -> str | None:
    """The task's current state, or None when it has no marker (or the dir does not exist)."""
    return scan(control_dir)[0]


def scan(control_dir: str, strict: bool = False) -> tuple[str | None, list[str]]:
    """The task's state, and the temporary files (`.*.tmp`) an interrupted write left there.

    `strict` (when an orchestrator starts): a UserError names the task whose markers drypipe
    cannot have written: more than one, an unknown state, a marker that is not a file."""
    try:
        with os.scandir(control_dir) as it:
            entries = list(it)
    except FileNotFoundError:
        return None, []
    names = [e.name for e in entries]
    if strict:
        _check_markers(control_dir, [e for e in entries if e.name.startswith("state.") and not e.name.endswith(".tmp")])
    leftovers = [n for n in names if n.startswith(".") and n.endswith(".tmp")]
    return _state_of(names), leftovers


def _check_markers(control_dir: str, markers: list[os.DirEntry[str]]) -> None:
    problems = []
    if len(markers) > 1:
        problems.append(f"{len(markers)} state markers ({', '.join(sorted(m.name for m in markers))}), "
                        "a task has exactly one")
    for m in markers:
        if not is_valid(m.name[6:]):
            problems.append(f"unknown state {m.name!r}")
        elif not m.is_file(follow_symlinks=False):
            problems.append(f"{m.name} is not a regular file")
    if problems:
        from drypipe.errors import UserError

        raise UserError(f"task {os.path.basename(control_dir)}: corrupt state in {control_dir}: "
                        f"{'; '.join(problems)} (repair it by hand: keep one valid state.* file)")


def _state_of(names: list[str]) -> str | None:
    states = [n[6:] for n in names if n.startswith("state.") and not n.endswith(".tmp")]
    if not states:
        return None
    if len(states) > 1:
        # Never expected; prefer the most advanced so a crash mid-cleanup cannot regress a task.
        states.sort(key=_rank, reverse=True)
    return states[0]


def _rank(state: str) -> int:
    if is_terminal(state):
        return 3
    if is_in_flight(state):
        return 2
    return 1 if state == READY else 0


def transition(control_dir: str, old: str | None, new: str) -> bool:
    """Rename state.<old> to state.<new>; create it when the task had no marker.

    Returns False (and changes nothing) when the marker is no longer `old`: someone else
    (the task script, a user) moved it first.
    """
    target = os.path.join(control_dir, "state." + new)
    if old is None:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
        return True
    if old == new:
        return os.path.exists(target)
    try:
        os.rename(os.path.join(control_dir, "state." + old), target)
        return True
    except FileNotFoundError:
        return False
