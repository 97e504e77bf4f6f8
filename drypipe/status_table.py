"""The `drypipe status` table."""
from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from drypipe import state as st
from drypipe.instance import Instance
from drypipe.task_info import failure_reason, log_tail, task_timing


def state_group(state: str | None) -> str:
    if st.is_in_flight(state):
        return "running"
    if state is None:
        return "none"
    return state.split(".")[0]


def print_status(instance: Instance, states: dict[str, str | None], state_filter: str | None) -> bool:
    """Print the table and summary; True when every task has completed."""
    console = Console()
    table = Table(box=None, pad_edge=False)
    table.add_column("task")
    table.add_column("state")
    table.add_column("duration", justify="right")
    shown = {
        k: s for k, s in states.items()
        if not state_filter or state_group(s) == state_filter or s == state_filter
    }
    for key, state in shown.items():
        seconds = task_timing(instance, key).seconds if state != st.WAITING else None
        table.add_row(key, state or "none", "" if seconds is None else f"{seconds:.1f}s")
    console.print(table)
    counts = Counter(state_group(s) for s in states.values())
    console.print(f"{len(states)} tasks: " + ", ".join(f"{n} {g}" for g, n in sorted(counts.items())), highlight=False)
    for key, state in shown.items():
        if st.is_failure(state):
            console.print(f"[bold red]{key}[/]: {failure_reason(instance, key) or state}", highlight=False)
            for line in log_tail(instance, key):
                console.print(f"    {line}", markup=False, highlight=False)
    return bool(states) and all(s == st.COMPLETED for s in states.values())
