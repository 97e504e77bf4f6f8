"""Task state markers: exactly one `state.<name>` file per task control dir.  A transition is an
atomic rename of that file, or (by the task runtime, to a later state) a hard link of the new
name followed by an unlink of the old one: a crash between the two leaves both names, and the
later state counts (`rank`)."""
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
    cannot have written: more than one (other than the two names of a move cut short, whose
    earlier one is removed), an unknown state, a marker that is not a file."""
    try:
        with os.scandir(control_dir) as it:
            entries = list(it)
    except FileNotFoundError:
        return None, []
    names = [e.name for e in entries]
    if strict:
        markers = [e for e in entries if e.name.startswith("state.") and not e.name.endswith(".tmp")]
        _check_markers(control_dir, markers)
        if len(markers) == 2:
            earlier = min(markers, key=lambda m: rank(m.name[6:]))
            _remove_marker(control_dir, earlier.name[6:])
            names.remove(earlier.name)
    leftovers = [n for n in names if n.startswith(".") and n.endswith(".tmp")]
    return _state_of(names), leftovers


def _check_markers(control_dir: str, markers: list[os.DirEntry[str]]) -> None:
    problems = []
    states = sorted((m.name[6:] for m in markers), key=lambda s: rank(s) if is_valid(s) else -1)
    if len(markers) > 2 or (len(markers) == 2 and not is_move_cut_short(*states)):
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


def is_move_cut_short(earlier: str, later: str) -> bool:
    """Whether two markers are what a crash between the link and the unlink of the task
    runtime's move leaves: it moves a running task's marker to a later state that way."""
    return is_valid(earlier) and is_valid(later) and is_in_flight(earlier) and rank(later) > rank(earlier)


def _state_of(names: list[str]) -> str | None:
    states = [n[6:] for n in names if n.startswith("state.") and not n.endswith(".tmp")]
    if not states:
        return None
    return max(states, key=lambda s: rank(s) if is_valid(s) else -1)


def rank(state: str) -> int:
    """The order of states in one run of a task: waiting, ready, launched, then step-started.N
    and step-completed.N by step, then the end (completed, failed.N, killed.N, timed-out.N, lost).
    The task runtime's __rank is the same (tests check)."""
    if is_terminal(state):
        return 1_000_000_000
    m = _STEP_RE.match(state)
    if m:
        return 3 + 2 * int(m.group(2)) + (m.group(1) == "step-completed")
    return {WAITING: 0, READY: 1, LAUNCHED: 2}[state]


def _remove_marker(control_dir: str, state: str) -> None:
    try:
        os.unlink(os.path.join(control_dir, "state." + state))
    except FileNotFoundError:
        pass  # the task's own unlink came first


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
    except FileNotFoundError:
        return False
    if is_terminal(old):  # the task has ended: the earlier name of a move cut short by its crash goes too
        for other in (n[6:] for n in os.listdir(control_dir) if n.startswith("state.") and not n.endswith(".tmp")):
            if other != new and is_move_cut_short(other, old):
                _remove_marker(control_dir, other)
    return True
