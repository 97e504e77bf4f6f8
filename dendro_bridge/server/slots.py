"""Compute slots: which runnable jobs fit a compute client beside the jobs it already runs."""
from __future__ import annotations

from typing import Any

RESOURCES = ("numCpus", "numGpus", "memoryGb", "timeSec")
# The hosted service's default: one slot of 4 CPUs, 0 GPUs, 8 GB, 3600 s.
DEFAULT_SLOT = {
    "numCpusMin": 0, "numCpusMax": 4, "numGpusMin": 0, "numGpusMax": 0,
    "memoryGbMin": 0, "memoryGbMax": 8, "timeSecMin": 0, "timeSecMax": 3600, "multiplicity": 1,
}
SLOT_KEYS = frozenset(DEFAULT_SLOT)


def check_slot(slot: Any) -> dict[str, Any]:
    """A complete slot (missing keys take the default); raises ValueError when invalid."""
    if not isinstance(slot, dict) or set(slot) - SLOT_KEYS:
        raise ValueError(f"a compute slot takes only {', '.join(sorted(SLOT_KEYS))}")
    full = {**DEFAULT_SLOT, **slot}
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in full.values()):
        raise ValueError("compute slot values must be non-negative numbers")
    if not isinstance(full["multiplicity"], int) or full["multiplicity"] < 1:
        raise ValueError("a compute slot's multiplicity must be a positive integer")
    return full


def _fits(slot: dict[str, Any], required: dict[str, Any]) -> bool:
    return all(slot[f"{r}Min"] <= required[r] <= slot[f"{r}Max"] for r in RESOURCES)


class SlotPool:
    """Greedy assignment of jobs to slots: a job takes the first fitting slot with room."""

    def __init__(self, slots: list[dict[str, Any]]):
        self.slots = slots
        self.free = [s["multiplicity"] for s in slots]

    def take(self, required: dict[str, Any]) -> bool:
        for i, slot in enumerate(self.slots):
            if self.free[i] > 0 and _fits(slot, required):
                self.free[i] -= 1
                return True
        return False


def select_jobs(slots: list[dict[str, Any]], running: list[dict[str, Any]],
                candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates that fit in the slots left over by the running jobs, in order."""
    pool = SlotPool(slots)
    for job in running:
        pool.take(job["requiredResources"])
    return [job for job in candidates if pool.take(job["requiredResources"])]
